//! The worker's metrics as CloudWatch Embedded Metric Format (EMF) lines:
//! one JSON object a line on stdout, the stream the `awslogs` driver already
//! ships, so CloudWatch extracts the metrics from the logs with no agent and
//! no `cloudwatch:PutMetricData` permission.
//!
//! Each run makes one [`Metrics`] registry (lock-free counters) and hands it
//! down to what records into it (the handler, the runtime's poller, acker and
//! heartbeat) as an `Arc`; nothing records into a process global, so an
//! error built by `doctor` or `dlq` counts nothing. [`Emitter`] turns the change since its last flush into one EMF document.
//! Hand-written rather than `metrics_cloudwatch_embedded`: that crate keeps at
//! most 100 raw histogram values between flushes and reports an error beyond
//! them (a 60 s flush overflows at 2 writes/s), while here write latencies are
//! a uniform sample of at most [`MAX_EMF_VALUES`] per flush.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use student_shared::Outcome;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use crate::aws::{AwsError, Resource};

/// EMF allows at most 100 values for one metric in one document.
pub const MAX_EMF_VALUES: usize = 100;
/// The dimension every metric carries: the source queue's name.
pub const DIMENSION: &str = "QueueName";
/// The second dimension of `Throttles` by cause: DynamoDB's throttling reason.
pub const REASON_DIMENSION: &str = "Reason";

/// Lock-free counters and gauges of one worker process.
#[derive(Debug)]
pub struct Metrics {
    received: AtomicU64,
    finished: AtomicU64,
    outcomes: [AtomicU64; Outcome::ALL.len()],
    retries: AtomicU64,
    throttles: AtomicU64,
    dlq_forwards: AtomicU64,
    concurrency: AtomicU64,
    /// Unix milliseconds of the last receive that completed or message that finished.
    last_progress_ms: AtomicU64,
    latencies: Mutex<Reservoir>,
    /// Throttles by DynamoDB's reason (`Unspecified` when it gives none).
    throttle_reasons: Mutex<BTreeMap<String, u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty registry.
    pub const fn new() -> Self {
        Self {
            received: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            outcomes: [const { AtomicU64::new(0) }; Outcome::ALL.len()],
            retries: AtomicU64::new(0),
            throttles: AtomicU64::new(0),
            dlq_forwards: AtomicU64::new(0),
            concurrency: AtomicU64::new(0),
            last_progress_ms: AtomicU64::new(0),
            latencies: Mutex::new(Reservoir::new()),
            throttle_reasons: Mutex::new(BTreeMap::new()),
        }
    }

    /// A receive completed with `count` messages (0 for an empty long poll):
    /// the loop made progress.
    pub fn received(&self, count: usize) {
        self.received.fetch_add(count as u64, Ordering::Relaxed);
        self.progress();
    }

    /// A message ended with `outcome` after `attempts` write attempts.
    pub fn finished(&self, outcome: Outcome, attempts: u32) {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
        self.retries.fetch_add(u64::from(attempts.saturating_sub(1)), Ordering::Relaxed);
        self.finished.fetch_add(1, Ordering::Relaxed);
        self.progress();
    }

    /// Classifies a failed call of `action` on `resource` that the worker
    /// made, counting it when AWS throttled it (the one throttling list,
    /// [`AwsError::is_throttling`]).
    pub fn failed<E, R>(&self, resource: &Resource, err: &SdkError<E, R>, action: &'static str) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        let error = resource.error(err, action);
        self.count(&error);
        error
    }

    fn count(&self, error: &AwsError) {
        let causes = error.throttle_causes();
        if causes.is_empty() {
            return;
        }
        self.throttles.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut by_reason) = self.throttle_reasons.lock() {
            for reason in causes {
                *by_reason.entry(reason).or_default() += 1;
            }
        }
    }

    fn throttle_reasons(&self) -> BTreeMap<String, u64> {
        self.throttle_reasons.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// A message was forwarded to the DLQ.
    pub fn dlq_forwarded(&self) {
        self.dlq_forwards.fetch_add(1, Ordering::Relaxed);
    }

    /// One event took `elapsed` to apply, retries included.
    pub fn write_latency(&self, elapsed: Duration) {
        if let Ok(mut reservoir) = self.latencies.lock() {
            reservoir.offer(elapsed.as_secs_f64() * 1000.0);
        }
    }

    /// The concurrency limit in force: `WORKER_CONCURRENCY` at start, then
    /// whatever an adaptive limiter sets whenever it moves the limit.
    pub fn set_concurrency(&self, limit: usize) {
        self.concurrency.store(limit as u64, Ordering::Relaxed);
    }

    /// Marks the loop as alive now (also done by [`received`](Self::received)
    /// and [`finished`](Self::finished)).
    pub fn progress(&self) {
        self.last_progress_ms.store(unix_ms(SystemTime::now()), Ordering::Relaxed);
    }

    /// Unix milliseconds of the last progress (0: none yet).
    pub fn last_progress_ms(&self) -> u64 {
        self.last_progress_ms.load(Ordering::Relaxed)
    }

    fn totals(&self) -> Totals {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Totals {
            received: load(&self.received),
            finished: load(&self.finished),
            outcomes: std::array::from_fn(|i| load(&self.outcomes[i])),
            retries: load(&self.retries),
            throttles: load(&self.throttles),
            dlq_forwards: load(&self.dlq_forwards),
        }
    }

    fn take_latencies(&self) -> Vec<f64> {
        self.latencies.lock().map(|mut r| r.take()).unwrap_or_default()
    }
}

/// Monotonic totals; a flush reports the difference from the previous one.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    received: u64,
    finished: u64,
    outcomes: [u64; Outcome::ALL.len()],
    retries: u64,
    throttles: u64,
    dlq_forwards: u64,
}

/// A uniform random sample (Vitter's algorithm R) of at most
/// [`MAX_EMF_VALUES`] latencies, so percentiles stay honest under load.
#[derive(Debug)]
struct Reservoir {
    seen: u64,
    samples: Vec<f64>,
    rng: u64,
}

impl Reservoir {
    const fn new() -> Self {
        Self { seen: 0, samples: Vec::new(), rng: 0x9E37_79B9_7F4A_7C15 }
    }

    fn offer(&mut self, value: f64) {
        self.seen += 1;
        if self.samples.len() < MAX_EMF_VALUES {
            self.samples.push(value);
            return;
        }
        let slot = self.next_random() % self.seen;
        if let Some(kept) = usize::try_from(slot).ok().and_then(|i| self.samples.get_mut(i)) {
            *kept = value;
        }
    }

    fn take(&mut self) -> Vec<f64> {
        self.seen = 0;
        std::mem::take(&mut self.samples)
    }

    /// splitmix64: sampling needs spread, not secrecy, and no extra crate.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Turns the registry's change since the previous flush into EMF documents.
#[derive(Debug)]
pub struct Emitter {
    metrics: Arc<Metrics>,
    namespace: String,
    queue_name: String,
    previous: Totals,
    previous_reasons: BTreeMap<String, u64>,
}

impl Emitter {
    /// An emitter whose first document counts what is recorded from now on.
    pub fn new(metrics: Arc<Metrics>, namespace: &str, queue_url: &str) -> Self {
        let (previous, previous_reasons) = (metrics.totals(), metrics.throttle_reasons());
        Self { metrics, namespace: namespace.to_owned(), queue_name: queue_name(queue_url), previous, previous_reasons }
    }

    /// The EMF document for the interval since the previous call.
    pub fn document(&mut self, now: SystemTime) -> Value {
        let totals = self.metrics.totals();
        let previous = std::mem::replace(&mut self.previous, totals);
        let mut values: Vec<(&str, &str, Value)> =
            vec![("MessagesReceived", "Count", json!(totals.received - previous.received))];
        for outcome in Outcome::ALL {
            let i = outcome as usize;
            values.push((outcome_metric(outcome), "Count", json!(totals.outcomes[i] - previous.outcomes[i])));
        }
        values.extend([
            ("WriteRetries", "Count", json!(totals.retries - previous.retries)),
            ("Throttles", "Count", json!(totals.throttles - previous.throttles)),
            ("DlqForwards", "Count", json!(totals.dlq_forwards - previous.dlq_forwards)),
            ("MessagesInFlight", "Count", json!(totals.received.saturating_sub(totals.finished))),
            ("ConcurrencyLevel", "Count", json!(self.metrics.concurrency.load(Ordering::Relaxed))),
        ]);
        let latencies = self.metrics.take_latencies();
        if !latencies.is_empty() {
            values.push(("WriteLatency", "Milliseconds", json!(latencies)));
        }
        self.render(now, None, values)
    }

    /// One document per throttling reason seen since the previous call:
    /// `Throttles` by `QueueName` and `Reason` (EMF takes one value per
    /// dimension per document). A hot student key and a table at its limit
    /// call for different fixes, so the reasons are counted apart.
    pub fn reason_documents(&mut self, now: SystemTime) -> Vec<Value> {
        let totals = self.metrics.throttle_reasons();
        let previous = std::mem::replace(&mut self.previous_reasons, totals.clone());
        totals
            .iter()
            .map(|(reason, n)| (reason, n - previous.get(reason).copied().unwrap_or(0)))
            .filter(|(_, delta)| *delta > 0)
            .map(|(reason, delta)| self.render(now, Some(reason), vec![("Throttles", "Count", json!(delta))]))
            .collect()
    }

    fn render(&self, now: SystemTime, reason: Option<&str>, values: Vec<(&str, &str, Value)>) -> Value {
        let definitions: Vec<Value> =
            values.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect();
        let dimensions = match reason {
            Some(_) => json!([DIMENSION, REASON_DIMENSION]),
            None => json!([DIMENSION]),
        };
        let mut document = Map::new();
        document.insert(
            "_aws".into(),
            json!({
                "Timestamp": unix_ms(now),
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [dimensions],
                    "Metrics": definitions,
                }],
            }),
        );
        document.insert(DIMENSION.into(), json!(self.queue_name));
        if let Some(reason) = reason {
            document.insert(REASON_DIMENSION.into(), json!(reason));
        }
        // A plain field too, so Logs Insights can find these lines: `filter message = "metrics"`.
        document.insert("message".into(), json!("metrics"));
        for (name, _, value) in values {
            document.insert(name.into(), value);
        }
        Value::Object(document)
    }

    /// Writes the documents, one a line (a single write, so they never
    /// interleave with log lines from other threads).
    pub fn flush(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        let now = SystemTime::now();
        let mut lines = self.document(now).to_string();
        lines.push('\n');
        for document in self.reason_documents(now) {
            lines.push_str(&document.to_string());
            lines.push('\n');
        }
        out.write_all(lines.as_bytes())?;
        out.flush()
    }
}

/// The metric name of an outcome's count, e.g. `MessagesApplied`.
pub fn outcome_metric(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Applied => "MessagesApplied",
        Outcome::Duplicate => "MessagesDuplicate",
        Outcome::Stale => "MessagesStale",
        Outcome::Deferred => "MessagesDeferred",
        Outcome::Invalid => "MessagesInvalid",
        Outcome::Retry => "MessagesRetry",
        Outcome::Released => "MessagesReleased",
    }
}

/// The last path segment of a queue URL: `.../123456789012/students` → `students`.
pub fn queue_name(queue_url: &str) -> String {
    queue_url.trim_end_matches('/').rsplit('/').next().unwrap_or(queue_url).to_owned()
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::Kind;
    use crate::aws::error::{ThrottlingReasons, UNSPECIFIED_REASON};
    use crate::config::observe::DEFAULT_NAMESPACE;

    fn aws_error(code: &str) -> AwsError {
        AwsError {
            throttling_reasons: crate::aws::error::ThrottlingReasons::default(),
            kind: Kind::Transient,
            action: "dynamodb:PutItem",
            resource: "table Students".into(),
            region: "ap-northeast-2".into(),
            code: Some(code.into()),
            message: "said".into(),
        }
    }

    fn metric_names(document: &Value) -> Vec<String> {
        document["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .expect("Metrics")
            .iter()
            .map(|m| m["Name"].as_str().expect("Name").to_owned())
            .collect()
    }

    #[test]
    fn a_document_reports_the_change_since_the_last_flush() {
        let metrics = Arc::new(Metrics::new());
        metrics.set_concurrency(32);
        let mut emitter = Emitter::new(Arc::clone(&metrics), "Test", "http://127.0.0.1:1/123456789012/students");
        metrics.received(3);
        metrics.finished(Outcome::Applied, 1);
        metrics.finished(Outcome::Invalid, 3);
        metrics.count(&aws_error("ThrottlingException"));
        metrics.count(&aws_error("InternalServerError"));
        metrics.dlq_forwarded();
        metrics.write_latency(Duration::from_millis(12));
        let first = emitter.document(UNIX_EPOCH + Duration::from_secs(10));
        assert_eq!(first["_aws"]["Timestamp"], 10_000);
        assert_eq!(first["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Test");
        assert_eq!(first["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["QueueName"]]));
        assert_eq!(first["QueueName"], "students");
        for (name, value) in [
            ("MessagesReceived", 3),
            ("MessagesApplied", 1),
            ("MessagesInvalid", 1),
            ("MessagesStale", 0),
            ("WriteRetries", 2),
            ("Throttles", 1),
            ("DlqForwards", 1),
            ("MessagesInFlight", 1),
            ("ConcurrencyLevel", 32),
        ] {
            assert_eq!(first[name], value, "{name}");
        }
        assert_eq!(first["WriteLatency"], json!([12.0]));
        for name in metric_names(&first) {
            assert!(first.get(&name).is_some(), "{name} is declared but has no value");
        }

        metrics.finished(Outcome::Applied, 1);
        let second = emitter.document(SystemTime::now());
        assert_eq!(second["MessagesApplied"], 1, "a delta, not a total");
        assert_eq!(second["MessagesReceived"], 0);
        assert_eq!(second["MessagesInFlight"], 0, "a gauge: received minus finished");
        assert!(second.get("WriteLatency").is_none(), "no latency sample: no WriteLatency");
        assert!(!metric_names(&second).contains(&"WriteLatency".to_owned()));
    }

    #[test]
    fn throttles_are_counted_by_reason_in_their_own_documents() {
        let metrics = Arc::new(Metrics::new());
        let mut emitter = Emitter::new(Arc::clone(&metrics), "Test", "http://127.0.0.1:1/123456789012/students");
        let mut hot = aws_error("ProvisionedThroughputExceededException");
        hot.throttling_reasons = ThrottlingReasons::new(vec!["TableWriteKeyRangeThroughputExceeded".into()]);
        metrics.count(&hot);
        metrics.count(&hot);
        metrics.count(&aws_error("ThrottlingException"));
        metrics.count(&aws_error("InternalServerError"));
        let now = UNIX_EPOCH + Duration::from_secs(10);
        assert_eq!(emitter.document(now)["Throttles"], 3);
        let by_reason: Vec<(String, u64)> = emitter
            .reason_documents(now)
            .iter()
            .map(|d| {
                assert_eq!(d["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["QueueName", "Reason"]]));
                assert_eq!(metric_names(d), ["Throttles"]);
                (d["Reason"].as_str().expect("Reason").to_owned(), d["Throttles"].as_u64().expect("count"))
            })
            .collect();
        assert_eq!(
            by_reason,
            [("TableWriteKeyRangeThroughputExceeded".to_owned(), 2), (UNSPECIFIED_REASON.to_owned(), 1)]
        );
        assert!(emitter.reason_documents(now).is_empty(), "a delta: nothing new, no document");
    }

    #[test]
    fn latencies_are_a_bounded_uniform_sample() {
        let metrics = Metrics::new();
        for ms in 0..10_000u64 {
            metrics.write_latency(Duration::from_millis(ms));
        }
        let sample = metrics.take_latencies();
        assert_eq!(sample.len(), MAX_EMF_VALUES);
        // A uniform sample of 0..10000 has values from both halves.
        assert!(sample.iter().any(|&v| v < 5000.0) && sample.iter().any(|&v| v >= 5000.0), "{sample:?}");
        assert!(metrics.take_latencies().is_empty(), "taking empties the reservoir");
    }

    #[test]
    fn a_flush_is_one_json_line() {
        let metrics = Arc::new(Metrics::new());
        let mut out = Vec::new();
        Emitter::new(metrics, DEFAULT_NAMESPACE, "https://sqs.ap-northeast-2.amazonaws.com/1/q")
            .flush(&mut out)
            .expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(text.lines().count(), 1);
        assert!(text.ends_with('\n'));
        let parsed: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(parsed["QueueName"], "q");
    }
}
