//! Works through one group of a batch, one message after the other: write
//! the decoded event, [`decide`] what becomes of the message, let the
//! runtime carry the decision out ([`Settle`]), then log, count and record
//! the outcome. The one JSON log line per message is written here, for
//! every runtime alike.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant as StdInstant;

use student_shared::outcome::ConditionFailure;
use student_shared::{Decoded, Outcome};
use tokio_util::sync::CancellationToken;

use super::concurrency::Limiter;
use super::decide::{Decision, decide};
use super::group::Grouping;
use super::message::{Deadline, Work};
use super::retry::Retried;
use super::write::{WriteError, WriteReport, Writer, Written};
use crate::observe::Metrics;

/// How a runtime carries out a decision: the ECS poller with deletes,
/// visibility changes and DLQ sends; a Lambda function with its batch
/// response. This is where the handler meets SQS, so it is a trait.
pub trait Settle<L> {
    /// Carries out `decision` for `work` and returns the outcome the message
    /// ended with (a dead letter whose send failed is not `invalid` but `retry`).
    fn settle(&self, work: &Work<L>, decision: &Decision) -> impl Future<Output = Outcome> + Send;
}

/// What the handler needs for every message, whatever the runtime.
#[derive(Debug)]
pub struct Handler {
    /// Applies events.
    pub writer: Writer,
    /// Where outcomes, write latencies and throttles are recorded.
    pub metrics: Arc<Metrics>,
    /// Outcomes so far.
    pub counts: OutcomeCounts,
    /// The cap of the deferral ladder (`WORKER_MAX_DEFER_SECONDS`).
    pub max_defer_seconds: i32,
}

/// A decision and the write attempts it took.
#[derive(Debug)]
pub struct Handled {
    /// What becomes of the message.
    pub decision: Decision,
    /// DynamoDB write attempts made.
    pub attempts: u32,
    /// Why DynamoDB throttled them, each reason once (empty: never throttled).
    pub throttle_reasons: Vec<String>,
}

impl Handled {
    /// A decision taken without a write.
    pub fn without_write(decision: Decision) -> Self {
        Self { decision, attempts: 0, throttle_reasons: Vec::new() }
    }
}

impl Handler {
    /// A handler that writes to `table` with at most `concurrency` writes
    /// in flight (fewer while DynamoDB throttles), recording into `metrics`;
    /// the `dynamodb` client should have SDK retries off.
    pub fn new(
        dynamodb: aws_sdk_dynamodb::Client,
        table: &str,
        region: &str,
        concurrency: usize,
        max_defer_seconds: i32,
        metrics: Arc<Metrics>,
    ) -> Self {
        let limiter = Limiter::new(concurrency, Arc::clone(&metrics));
        let writer = Writer::new(dynamodb, table, region, limiter, Arc::clone(&metrics));
        Self { writer, metrics, counts: OutcomeCounts::default(), max_defer_seconds }
    }

    /// Works through `group` in order. When `abort` is cancelled, the
    /// message in hand and the rest are released; with FIFO grouping, a
    /// message that does not finish releases the rest of its group.
    pub async fn process_group<L, S>(
        &self,
        settler: &S,
        group: Vec<Work<L>>,
        grouping: Grouping,
        abort: &CancellationToken,
    ) where
        L: Deadline + Sync,
        S: Settle<L> + Sync,
    {
        let mut works = group.into_iter();
        while let Some(work) = works.next() {
            let handled = tokio::select! {
                biased;
                () = abort.cancelled() => Handled::without_write(Decision::Release),
                handled = self.handle(&work) => handled,
            };
            let outcome = self.finish(settler, &work, handled).await;
            if grouping.holds_after(outcome) {
                let rest: Vec<Work<L>> = works.by_ref().collect();
                if !rest.is_empty() {
                    tracing::info!(message_id = %work.message.message_id, trace_id = work.message.trace_id(), group_id = work.message.group_id.as_deref().unwrap_or(""), released = rest.len(), "FIFO group held: its later messages are released to keep their order");
                }
                for later in rest {
                    self.finish(settler, &later, Handled::without_write(Decision::Release)).await;
                }
            }
        }
    }

    /// Decodes, writes and decides, touching no queue.
    pub async fn handle<L: Deadline>(&self, work: &Work<L>) -> Handled {
        let decoded = match &work.decoded {
            Ok(decoded) => decoded,
            Err(refusal) => return Handled::without_write(Decision::DeadLetter(refusal.clone())),
        };
        if !decoded.unknown_fields.is_empty() {
            tracing::debug!(message_id = %work.message.message_id, trace_id = work.message.trace_id(), count = decoded.unknown_fields.len(), fields = ?decoded.unknown_fields, "unknown fields ignored");
        }
        let started = StdInstant::now();
        let WriteReport { retried, throttle_reasons } = self.writer.write(&decoded.event, &work.lease).await;
        self.metrics.write_latency(started.elapsed());
        warn_if_unusual(work, decoded, &retried);
        let Retried { result, attempts } = retried;
        let decision = decide(&decoded.event, result, work.message.receive_count, self.max_defer_seconds);
        Handled { decision, attempts, throttle_reasons }
    }

    /// Has the runtime carry the decision out, then logs, counts and records the outcome.
    async fn finish<L, S: Settle<L>>(&self, settler: &S, work: &Work<L>, handled: Handled) -> Outcome {
        let outcome = settler.settle(work, &handled.decision).await;
        log_outcome(work, &handled, outcome);
        self.counts.add(outcome);
        self.metrics.finished(outcome, handled.attempts);
        outcome
    }
}

/// Warns about the two results an operator should hear of: upstream reused
/// a version, or a failed condition the stored item does not explain.
fn warn_if_unusual<L>(work: &Work<L>, decoded: &Decoded, written: &Retried<Written, WriteError>) {
    let event = &decoded.event;
    match &written.result {
        Ok(Written::NotApplied(ConditionFailure::Stale { stored_version })) if *stored_version == event.version => {
            tracing::warn!(message_id = %work.message.message_id, trace_id = work.message.trace_id(), student_id = %event.student_id, version = stored_version, "stale: another event with the same version is stored (upstream reused a version)");
        }
        Ok(Written::NotApplied(ConditionFailure::Unexplained)) => {
            tracing::warn!(message_id = %work.message.message_id, trace_id = work.message.trace_id(), student_id = %event.student_id, "condition failed but the stored item does not say why (malformed Version?); leaving the message for another try");
        }
        _ => {}
    }
}

/// How many messages ended with each outcome.
#[derive(Debug, Default)]
pub struct OutcomeCounts([AtomicU64; Outcome::ALL.len()]);

impl OutcomeCounts {
    fn add(&self, outcome: Outcome) {
        self.0[outcome as usize].fetch_add(1, Relaxed);
    }

    /// A copy of the counts.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        Outcome::ALL.iter().map(|o| (o.as_str(), self.0[*o as usize].load(Relaxed))).collect()
    }
}

/// The one line per message outcome (no personal fields). Its message is the
/// outcome, so a person reads `applied` or `deferred` first; the fields name
/// the message, and for an invalid body whose JSON parsed, the ids it has.
fn log_outcome<L>(work: &Work<L>, handled: &Handled, outcome: Outcome) {
    let ids = work.ids();
    let elapsed_ms = u64::try_from(work.message.received_at.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (error_code, reason, defer_seconds) = match &handled.decision {
        Decision::DeadLetter(refusal) if outcome == Outcome::Invalid => {
            (Some(refusal.code().as_str()), Some(refusal.to_string()), None)
        }
        Decision::Defer { seconds, waits_for_version } => {
            (None, Some(format!("its predecessor, version {waits_for_version}, is not stored yet")), Some(*seconds))
        }
        _ => (None, None, None),
    };
    let throttled_by = (!handled.throttle_reasons.is_empty()).then(|| handled.throttle_reasons.join(","));
    tracing::info!(
        message_id = %work.message.message_id,
        student_id = ids.student_id.as_deref(),
        event_id = ids.event_id.as_deref(),
        version = ids.version,
        outcome = outcome.as_str(),
        attempts = handled.attempts,
        elapsed_ms,
        receive_count = work.message.receive_count,
        error_code,
        reason = reason.as_deref(),
        defer_seconds,
        trace_id = work.message.trace_id(),
        throttle_reasons = throttled_by.as_deref(),
        "{}",
        outcome.as_str()
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use aws_sdk_dynamodb::config::{BehaviorVersion, Region};
    use tokio::time::Instant;

    use super::*;
    use crate::handler::message::Message;

    /// A runtime that records what it was asked to do, and answers
    /// `retry` for the dead letters it is told cannot be sent.
    #[derive(Default)]
    struct Recorder {
        settled: Mutex<Vec<(String, &'static str)>>,
        unsendable: Vec<&'static str>,
    }

    impl Settle<Instant> for Recorder {
        async fn settle(&self, work: &Work<Instant>, decision: &Decision) -> Outcome {
            let id = work.message.message_id.clone();
            let outcome = match decision {
                Decision::DeadLetter(_) if self.unsendable.contains(&id.as_str()) => Outcome::Retry,
                other => other.outcome(),
            };
            self.settled.lock().expect("lock").push((id, outcome.as_str()));
            outcome
        }
    }

    /// A handler whose writer is never called: every message here fails to decode.
    fn handler() -> Handler {
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("ap-northeast-2"))
            .build();
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(config);
        Handler::new(dynamodb, "Students", "ap-northeast-2", 1, 900, Arc::new(Metrics::new()))
    }

    fn poison(id: &str) -> Work<Instant> {
        let message = Message {
            message_id: id.into(),
            receipt_handle: format!("r-{id}"),
            body: "not json".into(),
            receive_count: 1,
            received_at: Instant::now(),
            group_id: Some("g".into()),
            attributes: Default::default(),
            trace_header: None,
        };
        Work::new(message, Instant::now())
    }

    fn settled(r: &Recorder) -> Vec<(String, &'static str)> {
        r.settled.lock().expect("lock").clone()
    }

    #[tokio::test]
    async fn a_fifo_message_that_does_not_finish_releases_the_rest_of_its_group() {
        let h = handler();
        let r = Recorder { unsendable: vec!["2"], ..Recorder::default() };
        let group = vec![poison("1"), poison("2"), poison("3"), poison("4")];
        h.process_group(&r, group, Grouping::ByMessageGroup, &CancellationToken::new()).await;
        let want = [("1", "invalid"), ("2", "retry"), ("3", "released"), ("4", "released")];
        assert_eq!(settled(&r), want.map(|(id, o)| (id.to_owned(), o)));
        let counts = h.counts.snapshot();
        assert_eq!((counts["invalid"], counts["retry"], counts["released"]), (1, 1, 2));
    }

    #[tokio::test]
    async fn a_student_group_goes_on_after_a_message_that_does_not_finish() {
        let r = Recorder { unsendable: vec!["1"], ..Recorder::default() };
        handler()
            .process_group(&r, vec![poison("1"), poison("2")], Grouping::ByStudent, &CancellationToken::new())
            .await;
        assert_eq!(settled(&r), [("1".to_owned(), "retry"), ("2".to_owned(), "invalid")]);
    }

    #[tokio::test]
    async fn after_the_abort_every_message_is_released_undecided() {
        let abort = CancellationToken::new();
        abort.cancel();
        let r = Recorder::default();
        handler().process_group(&r, vec![poison("1"), poison("2")], Grouping::ByStudent, &abort).await;
        assert_eq!(settled(&r), [("1".to_owned(), "released"), ("2".to_owned(), "released")]);
    }

    #[tokio::test]
    async fn an_undecodable_message_is_dead_lettered_with_its_code_without_a_write() {
        let h = handler();
        let Handled { decision, attempts, .. } = h.handle(&poison("1")).await;
        assert!(matches!(decision, Decision::DeadLetter(r) if r.code() == student_shared::ErrorCode::MalformedJson));
        assert_eq!(attempts, 0);
    }
}
