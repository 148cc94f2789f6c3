//! The HTTP server: answers the awsJson1_0 calls the worker (and the Python
//! baseline) make, names the operation from `X-Amz-Target`
//! (`AmazonSQS.ReceiveMessage`, `DynamoDB_20120810.PutItem`), sleeps the
//! configured latency before answering, optionally throttles writes, and
//! counts calls per operation.
//!
//! Control routes for the benchmark driver: `GET /stats` (JSON) and
//! `POST /reset?messages=N&latency_ms=L&throttle_rate=P&students=S&concurrency=C`.
//!
//! Plain HTTP, or HTTPS when started with a [`Tls`] (control routes too).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::delay::Delay;
use crate::events;
use crate::queue::Queue;
use crate::slots::Slots;
use crate::tls::Tls;

/// SQS returns at most 10 messages per receive.
const SQS_MAX_MESSAGES: usize = 10;
/// SQS's default visibility timeout, when a receive names none.
const DEFAULT_VISIBILITY_SECONDS: u64 = 30;
/// Long polls re-check for expired visibility this often.
const LONG_POLL_TICK: Duration = Duration::from_millis(100);
/// The awsJson1_0 content type both SDKs send and expect.
const CONTENT_TYPE: &str = "application/x-amz-json-1.0";
/// DynamoDB's throttling error, as the SDKs parse it.
const THROTTLE_TYPE: &str = "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException";

/// What a run serves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Messages in the queue; receives come back empty once all are deleted.
    pub messages: u64,
    /// Added to every AWS call before it is answered.
    pub latency: Duration,
    /// Share of PutItem/UpdateItem calls answered with a throttling error (0–1).
    pub throttle_rate: f64,
    /// Distinct student ids the stream cycles through.
    pub students: u64,
    /// Writes the client may have in flight, for the idle-slot accounting.
    pub concurrency: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self { messages: 0, latency: Duration::ZERO, throttle_rate: 0.0, students: 10_000, concurrency: 32 }
    }
}

/// One run's counters.
#[derive(Debug, Default)]
struct Stats {
    calls: BTreeMap<String, u64>,
    throttled: u64,
    first_receive: Option<SystemTime>,
    finished: Option<SystemTime>,
}

#[derive(Debug)]
struct State {
    settings: Settings,
    queue: Queue,
    stats: Stats,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes long polls when messages become visible or the queue is finished.
    wake: Notify,
    writes: AtomicU64,
    /// Time writes spent here, arrival to answer, summed (nanoseconds): over
    /// the run's length it is the mean number of writes in flight.
    write_busy_nanos: AtomicU64,
    /// The client's idle write slots, by whether a message was waiting.
    slots: Slots,
    /// Adds the configured latency precisely (tokio's timer rounds up to whole ms).
    delay: Delay,
    /// Connections whose first request was an AWS call (not the driver's).
    connections: AtomicU64,
    /// Completed handshakes of those connections.
    tls_handshakes: AtomicU64,
    /// Failed handshakes, whoever the client (they never get to a request).
    tls_handshake_failures: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent counters: keep going.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running endpoint; it stops when dropped.
#[derive(Debug)]
pub struct Endpoint {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Endpoint {
    /// Listens on `addr` (port 0: any free port) and serves `settings`.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start(addr: SocketAddr, settings: Settings) -> std::io::Result<Self> {
        Self::listen(addr, settings, None).await
    }

    /// Like [`Endpoint::start`], but serves HTTPS with `tls`'s certificate.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start_tls(addr: SocketAddr, settings: Settings, tls: &Tls) -> std::io::Result<Self> {
        Self::listen(addr, settings, Some(tls.clone())).await
    }

    async fn listen(addr: SocketAddr, settings: Settings, tls: Option<Tls>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State { settings, queue: Queue::new(settings.messages), stats: Stats::default() }),
            wake: Notify::new(),
            writes: AtomicU64::new(0),
            write_busy_nanos: AtomicU64::new(0),
            slots: Slots::default(),
            delay: Delay::start(),
            connections: AtomicU64::new(0),
            tls_handshakes: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
        });
        let tls_on = tls.is_some();
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared), tls));
        Ok(Self { addr, tls: tls_on, shared, accept })
    }

    /// `http://127.0.0.1:PORT`, or `https://…` when serving TLS.
    #[must_use]
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }

    /// The counters of the current run, as `GET /stats` shows them.
    #[must_use]
    pub fn stats(&self) -> Value {
        stats_json(&self.shared)
    }

    /// Starts a new run with `settings`: a full queue, zeroed counters.
    pub fn reset(&self, settings: Settings) {
        reset(&self.shared, settings);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tls: Option<Tls>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        // Small request/response pairs: never wait for Nagle.
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        let Some(tls) = &tls else {
            tokio::spawn(serve(stream, shared, false));
            continue;
        };
        // The handshake runs in the connection's task, not the accept loop.
        let handshake = tls.acceptor().accept(stream);
        tokio::spawn(async move {
            match handshake.await {
                Ok(stream) => serve(stream, shared, true).await,
                Err(_) => {
                    shared.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

/// Serves one kept-alive HTTP/1.1 connection. It is counted (with its
/// handshake, if `tls`) at its first request, and only if that is an AWS
/// call, so the driver's `/reset` and `/stats` connections stay out of the
/// counts; after that, a request costs one flag test more.
async fn serve(io: impl AsyncRead + AsyncWrite + Send + Unpin + 'static, shared: Arc<Shared>, tls: bool) {
    let first = Cell::new(true);
    let service = service_fn(move |req: Request<Incoming>| {
        if first.replace(false) && req.headers().contains_key("x-amz-target") {
            shared.connections.fetch_add(1, Ordering::Relaxed);
            if tls {
                shared.tls_handshakes.fetch_add(1, Ordering::Relaxed);
            }
        }
        handle(Arc::clone(&shared), req)
    });
    let _ =
        hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(io), service).await;
}

fn reset(shared: &Shared, settings: Settings) {
    {
        let mut state = shared.lock();
        *state = State { settings, queue: Queue::new(settings.messages), stats: Stats::default() };
    }
    shared.writes.store(0, Ordering::Relaxed);
    shared.write_busy_nanos.store(0, Ordering::Relaxed);
    shared.slots.reset(settings.concurrency);
    shared.connections.store(0, Ordering::Relaxed);
    shared.tls_handshakes.store(0, Ordering::Relaxed);
    shared.tls_handshake_failures.store(0, Ordering::Relaxed);
    shared.wake.notify_waiters();
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let target = req.headers().get("x-amz-target").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    Ok(match (target, &method, path.as_str()) {
        (Some(target), &Method::POST, _) => aws_call(&shared, &target, &body).await,
        (None, &Method::GET, "/stats") => respond(StatusCode::OK, &stats_json(&shared)),
        (None, &Method::POST, "/reset") => match parse_settings(&query) {
            Ok(settings) => {
                reset(&shared, settings);
                respond(StatusCode::OK, &json!({"reset": true}))
            }
            Err(problem) => respond(StatusCode::BAD_REQUEST, &json!({"error": problem})),
        },
        _ => respond(StatusCode::NOT_FOUND, &json!({"error": "use an AWS JSON call, GET /stats or POST /reset"})),
    })
}

async fn aws_call(shared: &Shared, target: &str, body: &[u8]) -> Response<Full<Bytes>> {
    let arrived = Instant::now();
    let operation = target.rsplit('.').next().unwrap_or(target);
    let is_write = matches!(operation, "PutItem" | "UpdateItem");
    if is_write {
        shared.slots.write_arrived();
    }
    let latency = {
        let mut state = shared.lock();
        *state.stats.calls.entry(operation.to_owned()).or_default() += 1;
        if operation == "ReceiveMessage" && state.stats.first_receive.is_none() {
            state.stats.first_receive = Some(SystemTime::now());
        }
        state.settings.latency
    };
    if !latency.is_zero() {
        shared.delay.until(arrived + latency).await;
    }
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match operation {
        "ReceiveMessage" => receive(shared, &request).await,
        "DeleteMessageBatch" => batch(shared, &request, |state, entry, now| {
            delete(state, entry["ReceiptHandle"].as_str().unwrap_or_default(), now);
        }),
        "DeleteMessage" => {
            let mut state = shared.lock();
            delete(&mut state, request["ReceiptHandle"].as_str().unwrap_or_default(), SystemTime::now());
            drop(state);
            wake_if_finished(shared);
            respond(StatusCode::OK, &json!({}))
        }
        "ChangeMessageVisibilityBatch" => batch(shared, &request, |state, entry, _| change_visibility(state, entry)),
        "ChangeMessageVisibility" => {
            change_visibility(&mut shared.lock(), &request);
            shared.wake.notify_waiters();
            respond(StatusCode::OK, &json!({}))
        }
        "GetQueueAttributes" => queue_attributes(shared),
        "PutItem" | "UpdateItem" => {
            let response = write(shared);
            shared.slots.write_answered();
            let busy = u64::try_from(arrived.elapsed().as_nanos()).unwrap_or(u64::MAX);
            shared.write_busy_nanos.fetch_add(busy, Ordering::Relaxed);
            response
        }
        _ => respond(StatusCode::BAD_REQUEST, &json!({"__type": "UnknownOperationException", "message": target})),
    }
}

/// A long poll: messages at once if any are visible, else wait up to
/// `WaitTimeSeconds` (empty at once when the whole queue is deleted).
async fn receive(shared: &Shared, request: &Value) -> Response<Full<Bytes>> {
    let max = request["MaxNumberOfMessages"].as_u64().map_or(1, |n| usize::try_from(n).unwrap_or(1));
    let max = max.clamp(1, SQS_MAX_MESSAGES);
    let visibility = Duration::from_secs(request["VisibilityTimeout"].as_u64().unwrap_or(DEFAULT_VISIBILITY_SECONDS));
    let wait = Duration::from_secs(request["WaitTimeSeconds"].as_u64().unwrap_or(0));
    let deadline = Instant::now() + wait;
    loop {
        let woken = shared.wake.notified();
        let (messages, finished) = {
            let mut state = shared.lock();
            let students = state.settings.students;
            let got = state.queue.take(max, visibility, Instant::now());
            (got.into_iter().map(|d| message_json(&d, students)).collect::<Vec<_>>(), state.queue.is_finished())
        };
        let now = Instant::now();
        if !messages.is_empty() {
            shared.slots.delivered(messages.len() as u64);
            return respond(StatusCode::OK, &json!({ "Messages": messages }));
        }
        if finished || now >= deadline {
            return respond(StatusCode::OK, &json!({}));
        }
        tokio::select! {
            () = woken => {}
            () = tokio::time::sleep((deadline - now).min(LONG_POLL_TICK)) => {}
        }
    }
}

fn message_json(delivery: &crate::queue::Delivery, students: u64) -> Value {
    json!({
        "MessageId": format!("m-{}", delivery.index),
        "ReceiptHandle": delivery.receipt,
        "Body": events::body(delivery.index, students),
        "Attributes": { "ApproximateReceiveCount": delivery.receive_count.to_string() },
    })
}

/// A `*Batch` call: applies `each` to every entry and reports all as successful.
fn batch(shared: &Shared, request: &Value, each: impl Fn(&mut State, &Value, SystemTime)) -> Response<Full<Bytes>> {
    let entries = request["Entries"].as_array().cloned().unwrap_or_default();
    let now = SystemTime::now();
    {
        let mut state = shared.lock();
        for entry in &entries {
            each(&mut state, entry, now);
        }
    }
    // Released messages and a finished queue both end long polls early.
    shared.wake.notify_waiters();
    let successful: Vec<Value> = entries.iter().map(|e| json!({ "Id": e["Id"] })).collect();
    respond(StatusCode::OK, &json!({ "Successful": successful, "Failed": [] }))
}

fn delete(state: &mut State, receipt: &str, now: SystemTime) {
    if state.queue.delete(receipt) && state.queue.is_finished() {
        state.stats.finished = Some(now);
    }
}

fn wake_if_finished(shared: &Shared) {
    if shared.lock().queue.is_finished() {
        shared.wake.notify_waiters();
    }
}

fn change_visibility(state: &mut State, entry: &Value) {
    let receipt = entry["ReceiptHandle"].as_str().unwrap_or_default();
    let seconds = entry["VisibilityTimeout"].as_u64().unwrap_or(0);
    state.queue.change_visibility(receipt, seconds, Instant::now());
}

fn queue_attributes(shared: &Shared) -> Response<Full<Bytes>> {
    let (visible, hidden) = shared.lock().queue.counts(Instant::now());
    respond(
        StatusCode::OK,
        &json!({ "Attributes": {
            "ApproximateNumberOfMessages": visible.to_string(),
            "ApproximateNumberOfMessagesNotVisible": hidden.to_string(),
            "ApproximateNumberOfMessagesDelayed": "0",
        }}),
    )
}

fn write(shared: &Shared) -> Response<Full<Bytes>> {
    let n = shared.writes.fetch_add(1, Ordering::Relaxed);
    let mut state = shared.lock();
    if throttled(n, state.settings.throttle_rate) {
        state.stats.throttled += 1;
        let error = json!({"__type": THROTTLE_TYPE, "message": "The level of configured provisioned throughput for the table was exceeded."});
        return respond(StatusCode::BAD_REQUEST, &error);
    }
    respond(StatusCode::OK, &json!({}))
}

/// Whether write number `n` is throttled: a fixed hash of `n` against the
/// rate, so runs are repeatable without a random number generator.
fn throttled(n: u64, rate: f64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    // splitmix64 finaliser
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    #[allow(clippy::cast_precision_loss)] // a share, not an exact count
    let draw = z as f64 / u64::MAX as f64;
    draw < rate
}

fn stats_json(shared: &Shared) -> Value {
    let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let idle = shared.slots.idle();
    let state = shared.lock();
    let seconds = |t: Option<SystemTime>| t.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_secs_f64());
    let elapsed = match (state.stats.first_receive, state.stats.finished) {
        (Some(first), Some(last)) => last.duration_since(first).ok().map(|d| d.as_secs_f64()),
        _ => None,
    };
    json!({
        "messages": state.settings.messages,
        "latency_ms": state.settings.latency.as_secs_f64() * 1000.0,
        "throttle_rate": state.settings.throttle_rate,
        "deleted": state.queue.deleted(),
        "deliveries": state.queue.deliveries(),
        "finished": state.queue.is_finished(),
        "calls": state.stats.calls,
        "throttled": state.stats.throttled,
        "first_receive_unix": seconds(state.stats.first_receive),
        "finished_unix": seconds(state.stats.finished),
        "elapsed_seconds": elapsed,
        "write_busy_seconds": count(&shared.write_busy_nanos) as f64 / 1e9,
        "concurrency": state.settings.concurrency,
        "idle_slot_seconds_starved": idle.starved_seconds,
        "idle_slot_seconds_ready": idle.ready_seconds,
        "connections": count(&shared.connections),
        "tls_handshakes": count(&shared.tls_handshakes),
        "tls_handshake_failures": count(&shared.tls_handshake_failures),
    })
}

/// Parses `/reset`'s query; absent values take the defaults.
fn parse_settings(query: &str) -> Result<Settings, String> {
    let mut settings = Settings::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = |e: &dyn std::fmt::Display| format!("{key}={value}: {e}");
        match key {
            "messages" => settings.messages = value.parse().map_err(|e| bad(&e))?,
            "latency_ms" => settings.latency = Duration::from_millis(value.parse().map_err(|e| bad(&e))?),
            "throttle_rate" => settings.throttle_rate = value.parse().map_err(|e| bad(&e))?,
            "students" => settings.students = value.parse().map_err(|e| bad(&e))?,
            "concurrency" => settings.concurrency = value.parse().map_err(|e| bad(&e))?,
            _ => {
                return Err(format!(
                    "unknown setting {key:?} (messages, latency_ms, throttle_rate, students, concurrency)"
                ));
            }
        }
    }
    Ok(settings)
}

fn respond(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(CONTENT_TYPE));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_about_the_asked_share() {
        let hits = (0..10_000).filter(|n| throttled(*n, 0.1)).count();
        assert!((800..1200).contains(&hits), "{hits} of 10000 throttled at 10 %");
        assert_eq!((0..1000).filter(|n| throttled(*n, 0.0)).count(), 0);
    }

    #[test]
    fn reset_query_is_parsed_and_checked() {
        let s = parse_settings("messages=50&latency_ms=5&throttle_rate=0.25&students=7").expect("valid");
        assert_eq!(
            s,
            Settings {
                messages: 50,
                latency: Duration::from_millis(5),
                throttle_rate: 0.25,
                students: 7,
                concurrency: 32
            }
        );
        assert!(parse_settings("messages=many").is_err());
        assert!(parse_settings("speed=9").is_err());
    }
}
