//! A small fault-injecting HTTP/1.1 proxy for tests, between AWS SDK clients
//! and the emulator.
//!
//! Point a client at [`FaultProxy::endpoint`] (for example with
//! [`sdk_config_with_endpoint`](crate::emulator::sdk_config_with_endpoint));
//! every request is forwarded to the upstream unchanged (method, path, query,
//! headers except `Host` and hop-by-hop ones, body) and the response relayed
//! unchanged, unless a [`FaultRule`] matching the request's operation fires.
//!
//! The operation is the part after the `.` in the `X-Amz-Target` header
//! (`DynamoDB_20120810.PutItem` → `PutItem`, `AmazonSQS.ReceiveMessage` →
//! `ReceiveMessage`); requests without that header count as operation `""`.
//!
//! Error bodies follow the awsJson protocols, so the Rust SDK parses them as
//! the named modeled or generic error (`code()` below):
//!
//! | fault | DynamoDB (`DynamoDB_20120810.*`) | SQS (`AmazonSQS.*`, query-compatible) |
//! | --- | --- | --- |
//! | [`Fault::Throttle`] | 400 `ProvisionedThroughputExceededException` | (same body) |
//! | [`Fault::ThrottleWithReason`] | the same, with `ThrottlingReasons` | (same body) |
//! | [`Fault::ThrottlingException`] | 400 `ThrottlingException` | 400 `ThrottlingException` |
//! | [`Fault::AccessDenied`] | 400 `AccessDeniedException` | 403 `AccessDenied` |
//! | [`Fault::ServiceUnavailable`] | 503 `ServiceUnavailable` | 503 `ServiceUnavailable` |
//! | [`Fault::ValidationException`] | 400 `ValidationException` | 400 `ValidationError` |
//! | [`Fault::InternalError`] | 500 `InternalServerError` | 500 `InternalError` |
//! | [`Fault::InternalErrorAfterApply`] | 500 `InternalServerError` | 500 `InternalError` |
//! | [`Fault::OverLimit`] | 400 `LimitExceededException` | 403 `OverLimit` |
//! | [`Fault::PartialBatchFailure`] | (forwarded unchanged) | 200, first entry in `Failed` as `InternalError` |
//!
//! Two faults send no answer at all: [`Fault::DropBeforeForward`] closes the
//! client's connection without forwarding the request, and
//! [`Fault::DropAfterForward`] forwards it (so the write or receive happens)
//! and then closes the connection. The SDK sees an incomplete response (a
//! dispatch or response error, no service error code), as with a load
//! balancer or NAT gateway that resets a connection.
//!
//! One fault answers 200 and fails only part of the call:
//! [`Fault::PartialBatchFailure`], for the SQS batch operations
//! (`DeleteMessageBatch`, `ChangeMessageVisibilityBatch`,
//! `SendMessageBatch`). The proxy takes the FIRST entry out of the request's
//! `Entries`, forwards the rest to the upstream (which acts on them), and adds
//! the removed entry to the response's `Failed` list:
//!
//! ```json
//! {"Id": "<its Id>", "Code": "InternalError", "SenderFault": false,
//!  "Message": "injected by the test FaultProxy (PartialBatchFailure)"}
//! ```
//!
//! A batch of one entry is not forwarded at all; the answer is
//! `{"Successful": [], "Failed": [that entry]}`. A request without a
//! non-empty `Entries` list is forwarded unchanged (the injection still
//! counts).
//!
//! Rates are set per test: [`FaultRule::rate`] for one rule, or
//! [`FaultProxy::inject_mix`] for several faults on one operation with the
//! overall share of calls each should get.
//!
//! Because the proxy rewrites `Host` to the upstream's, URLs that moto builds
//! from it (SQS queue URLs) name the emulator, not the proxy. That is harmless
//! for the SDK: it sends every call to its configured endpoint.
//!
//! The proxy runs on the calling tokio runtime and stops when dropped.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// Seed of the RNG deciding [`FaultRule::rate`] draws, unless
/// [`FaultProxy::start_with_seed`] is used.
pub const DEFAULT_SEED: u64 = 0x5EED_CAFE;

/// Matches every operation in [`FaultRule::operation`].
pub const ANY_OPERATION: &str = "*";

/// What to do to a matching request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// DynamoDB throttling: HTTP 400
    /// `ProvisionedThroughputExceededException`. Not forwarded.
    Throttle,
    /// DynamoDB throttling with its cause: HTTP 400
    /// `ProvisionedThroughputExceededException` whose body lists the reason
    /// in `ThrottlingReasons` (e.g. `TableWriteKeyRangeThroughputExceeded`
    /// for a hot partition). Not forwarded.
    ThrottleWithReason(&'static str),
    /// Generic throttling: HTTP 400 `ThrottlingException` (for SQS with the
    /// `x-amzn-query-error: ThrottlingException;Sender` header). Not forwarded.
    ThrottlingException,
    /// HTTP 400 `AccessDeniedException` (SQS: 403, query code
    /// `AccessDenied`). Not forwarded.
    AccessDenied,
    /// HTTP 503 `ServiceUnavailable`. Not forwarded.
    ServiceUnavailable,
    /// HTTP 400 `ValidationException`: the request is refused as such (e.g.
    /// an item over 400 KB). Not forwarded.
    ValidationException,
    /// HTTP 500 `InternalServerError` (SQS: `InternalError`). Not forwarded.
    InternalError,
    /// The ambiguous case: the request IS forwarded (so the write happens),
    /// then moto's reply is replaced by HTTP 500 `InternalServerError`
    /// (SQS: `InternalError`).
    InternalErrorAfterApply,
    /// SQS: HTTP 403 `OverLimit` (too many in-flight messages, or a batch
    /// over a limit); DynamoDB: HTTP 400 `LimitExceededException`. Not
    /// forwarded.
    OverLimit,
    /// Closes the client's connection without an answer; the request never
    /// reaches the upstream.
    DropBeforeForward,
    /// Forwards the request (it takes effect), then closes the client's
    /// connection without an answer: the client cannot know it worked.
    DropAfterForward,
    /// Waits this long, then forwards normally.
    Latency(Duration),
    /// SQS batch calls: the first entry is not forwarded and comes back in
    /// the 200 answer's `Failed` list (`InternalError`, not the sender's
    /// fault); the other entries are forwarded and take effect.
    PartialBatchFailure,
}

impl Fault {
    /// A stable name for counters and reports (`Latency` whatever its delay).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Throttle => "Throttle",
            Fault::ThrottleWithReason(_) => "ThrottleWithReason",
            Fault::ThrottlingException => "ThrottlingException",
            Fault::AccessDenied => "AccessDenied",
            Fault::ServiceUnavailable => "ServiceUnavailable",
            Fault::ValidationException => "ValidationException",
            Fault::InternalError => "InternalError",
            Fault::InternalErrorAfterApply => "InternalErrorAfterApply",
            Fault::OverLimit => "OverLimit",
            Fault::DropBeforeForward => "DropBeforeForward",
            Fault::DropAfterForward => "DropAfterForward",
            Fault::Latency(_) => "Latency",
            Fault::PartialBatchFailure => "PartialBatchFailure",
        }
    }
}

/// A fault-injection rule; the first rule (in insertion order) that matches a
/// request's operation, still has budget and wins its `rate` draw applies.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// Operation name, e.g. `PutItem`, `UpdateItem`, `ReceiveMessage`, or
    /// [`ANY_OPERATION`].
    pub operation: String,
    /// What to inject.
    pub fault: Fault,
    /// Inject at most this many times, then the rule is spent; `None` = no
    /// limit. With `rate: 1.0` this is "the first N matching calls".
    pub times: Option<u64>,
    /// Probability (0..=1) that a matching call gets the fault; 1.0 = every
    /// call. Drawn from the proxy's seeded RNG.
    pub rate: f64,
}

impl FaultRule {
    /// A rule injecting `fault` into every call of `operation`.
    #[must_use]
    pub fn new(operation: impl Into<String>, fault: Fault) -> FaultRule {
        FaultRule { operation: operation.into(), fault, times: None, rate: 1.0 }
    }

    /// Limits the rule to `n` injections.
    #[must_use]
    pub fn times(mut self, n: u64) -> FaultRule {
        self.times = Some(n);
        self
    }

    /// Sets the probability that a matching call gets the fault.
    #[must_use]
    pub fn rate(mut self, rate: f64) -> FaultRule {
        self.rate = rate;
        self
    }
}

/// A fault-injecting proxy listening on `127.0.0.1`; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    /// Where clients connect: `http://127.0.0.1:PORT`.
    pub endpoint: String,
    state: Arc<State>,
    accept_task: JoinHandle<()>,
}

#[derive(Debug)]
struct State {
    upstream: Uri,
    client: Client<HttpConnector, Full<Bytes>>,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    rules: Vec<ActiveRule>,
    rng: SmallRng,
    calls: HashMap<String, u64>,
    faults: HashMap<String, u64>,
    /// (operation, fault name) → injections.
    by_kind: BTreeMap<(String, &'static str), u64>,
}

#[derive(Debug)]
struct ActiveRule {
    rule: FaultRule,
    injected: u64,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (e.g. `http://127.0.0.1:5000`) on a free
    /// 127.0.0.1 port, with the RNG seeded by [`DEFAULT_SEED`].
    ///
    /// # Panics
    /// If `upstream` is not an `http://host:port` URL or no port can be bound.
    pub async fn start(upstream: &str) -> FaultProxy {
        FaultProxy::start_with_seed(upstream, DEFAULT_SEED).await
    }

    /// Like [`FaultProxy::start`] with a chosen RNG seed.
    ///
    /// # Panics
    /// If `upstream` is not an `http://host:port` URL or no port can be bound.
    pub async fn start_with_seed(upstream: &str, seed: u64) -> FaultProxy {
        let upstream: Uri =
            upstream.trim_end_matches('/').parse().expect("upstream must be a URL like http://127.0.0.1:PORT");
        assert_eq!(upstream.scheme_str(), Some("http"), "the proxy forwards plain http only");
        assert!(upstream.authority().is_some(), "upstream needs host:port");
        let listener =
            TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await.expect("bind the proxy to 127.0.0.1:0");
        let addr = listener.local_addr().expect("proxy listener address");
        let state = Arc::new(State {
            upstream,
            client: Client::builder(TokioExecutor::new()).build_http(),
            inner: Mutex::new(Inner {
                rules: Vec::new(),
                rng: SmallRng::seed_from_u64(seed),
                calls: HashMap::new(),
                faults: HashMap::new(),
                by_kind: BTreeMap::new(),
            }),
        });
        let accept_task = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        FaultProxy { endpoint: format!("http://{addr}"), state, accept_task }
    }

    /// Adds a rule (after the existing ones); takes effect for the next
    /// request.
    ///
    /// # Panics
    /// If `rule.rate` is not within 0..=1.
    pub fn inject(&self, rule: FaultRule) {
        assert!((0.0..=1.0).contains(&rule.rate), "FaultRule::rate must be within 0..=1, got {}", rule.rate);
        self.state.lock().rules.push(ActiveRule { rule, injected: 0 });
    }

    /// Injects several faults into `operation`, each into the given overall
    /// share of its calls (e.g. `[(Throttle, 0.1), (InternalErrorAfterApply,
    /// 0.05)]`: 10 % and 5 % of all calls). Rules are tried in order, so each
    /// gets the conditional rate that yields its overall share.
    ///
    /// # Panics
    /// If the shares add up to more than 1.
    pub fn inject_mix(&self, operation: &str, mix: &[(Fault, f64)]) {
        let total: f64 = mix.iter().map(|(_, share)| share).sum();
        assert!(total <= 1.0 + f64::EPSILON, "the shares of {operation}'s faults add up to {total} > 1");
        let mut left = 1.0;
        for (fault, share) in mix {
            let rate = if left > 0.0 { (share / left).clamp(0.0, 1.0) } else { 0.0 };
            self.inject(FaultRule::new(operation, fault.clone()).rate(rate));
            left -= share;
        }
    }

    /// Removes all rules (counters are kept).
    pub fn clear(&self) {
        self.state.lock().rules.clear();
    }

    /// Requests seen for `operation` (faulted or not); [`ANY_OPERATION`] for
    /// all.
    #[must_use]
    pub fn calls(&self, operation: &str) -> u64 {
        count(&self.state.lock().calls, operation)
    }

    /// Faults injected into `operation` (including [`Fault::Latency`]);
    /// [`ANY_OPERATION`] for all.
    #[must_use]
    pub fn faults_injected(&self, operation: &str) -> u64 {
        count(&self.state.lock().faults, operation)
    }

    /// Injections of the fault named `fault` (see [`Fault::name`]) into
    /// `operation`; [`ANY_OPERATION`] for all operations.
    #[must_use]
    pub fn faults_of(&self, operation: &str, fault: &str) -> u64 {
        self.state
            .lock()
            .by_kind
            .iter()
            .filter(|((op, name), _)| *name == fault && (operation == ANY_OPERATION || op == operation))
            .map(|(_, n)| n)
            .sum()
    }

    /// Every injection so far: (operation, fault name) → count.
    #[must_use]
    pub fn fault_counts(&self) -> BTreeMap<(String, &'static str), u64> {
        self.state.lock().by_kind.clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept task owns the connection tasks (a JoinSet), so this also
        // closes open connections.
        self.accept_task.abort();
    }
}

fn count(map: &HashMap<String, u64>, operation: &str) -> u64 {
    if operation == ANY_OPERATION { map.values().sum() } else { map.get(operation).copied().unwrap_or(0) }
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the counters or rules
        // inconsistent, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts the call and picks the fault to inject, if any.
    fn decide(&self, operation: &str) -> Option<Fault> {
        let mut inner = self.lock();
        *inner.calls.entry(operation.to_owned()).or_default() += 1;
        let Inner { rules, rng, .. } = &mut *inner;
        let fault = rules.iter_mut().find_map(|active| {
            let rule = &active.rule;
            let matches = rule.operation == ANY_OPERATION || rule.operation == operation;
            let has_budget = rule.times.is_none_or(|n| active.injected < n);
            if matches && has_budget && rng.random_bool(rule.rate) {
                active.injected += 1;
                Some(rule.fault.clone())
            } else {
                None
            }
        })?;
        *inner.faults.entry(operation.to_owned()).or_default() += 1;
        *inner.by_kind.entry((operation.to_owned(), fault.name())).or_default() += 1;
        Some(fault)
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        // Reap finished connection tasks so the set does not grow.
        while connections.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            // E.g. out of file descriptors: do not spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let state = Arc::clone(&state);
        connections.spawn(async move {
            let service = service_fn(move |req| handle(Arc::clone(&state), req));
            // A client hanging up mid-request is not an error worth reporting,
            // and a dropped-connection fault ends the connection on purpose.
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// The operation named by `X-Amz-Target`: the part after the last `.`.
fn operation_of(headers: &HeaderMap) -> String {
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(|target| target.rsplit('.').next().unwrap_or(target).to_owned())
        .unwrap_or_default()
}

/// Whether the request is for SQS (query-compatible awsJson errors).
fn is_sqs(headers: &HeaderMap) -> bool {
    headers.get("x-amz-target").and_then(|v| v.to_str().ok()).is_some_and(|target| target.starts_with("AmazonSQS."))
}

/// Returned by the service to make hyper close the connection without
/// writing a response (a service error ends an HTTP/1 connection as is).
#[derive(Debug)]
struct DroppedConnection;

impl std::fmt::Display for DroppedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the test FaultProxy")
    }
}

impl std::error::Error for DroppedConnection {}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, DroppedConnection> {
    let operation = operation_of(req.headers());
    let sqs = is_sqs(req.headers());
    let response = match state.decide(&operation) {
        None => forward(&state, req).await,
        Some(Fault::Latency(delay)) => {
            tokio::time::sleep(delay).await;
            forward(&state, req).await
        }
        Some(Fault::InternalErrorAfterApply) => {
            // Let the write happen; throw the real answer away.
            let _applied = forward(&state, req).await;
            error_response(&Fault::InternalErrorAfterApply, sqs, &operation)
        }
        Some(Fault::PartialBatchFailure) => partial_batch_failure(&state, req).await,
        Some(Fault::DropBeforeForward) => return Err(DroppedConnection),
        Some(Fault::DropAfterForward) => {
            let _applied = forward(&state, req).await;
            return Err(DroppedConnection);
        }
        Some(fault) => error_response(&fault, sqs, &operation),
    };
    Ok(response)
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and framing, not forwarded either way.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
    )
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !is_hop_by_hop(name) && name != header::HOST {
            to.append(name.clone(), value.clone());
        }
    }
}

async fn forward(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match collect(req).await {
        Ok((parts, body)) => send_upstream(state, parts, body).await,
        Err(refusal) => refusal,
    }
}

/// The request's head and whole body; a body that cannot be read is answered 400.
async fn collect(req: Request<Incoming>) -> Result<(hyper::http::request::Parts, Bytes), Response<Full<Bytes>>> {
    let (parts, body) = req.into_parts();
    match body.collect().await {
        Ok(collected) => Ok((parts, collected.to_bytes())),
        Err(e) => Err(plain(StatusCode::BAD_REQUEST, format!("proxy: reading request body: {e}"))),
    }
}

/// Sends a request (its body possibly rewritten) to the upstream; hyper sets
/// `Content-Length` from the body, so a shorter body needs nothing else.
async fn send_upstream(state: &State, parts: hyper::http::request::Parts, body: Bytes) -> Response<Full<Bytes>> {
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri = match Uri::builder()
        .scheme("http")
        .authority(state.upstream.authority().map_or("", |a| a.as_str()))
        .path_and_query(path_and_query)
        .build()
    {
        Ok(uri) => uri,
        Err(e) => return plain(StatusCode::BAD_GATEWAY, format!("proxy: bad upstream URI: {e}")),
    };
    let mut upstream_req = Request::new(Full::new(body));
    *upstream_req.method_mut() = parts.method;
    *upstream_req.uri_mut() = uri;
    // The client sets Host from the URI.
    copy_headers(&parts.headers, upstream_req.headers_mut());

    let upstream_resp = match state.client.request(upstream_req).await {
        Ok(resp) => resp,
        Err(e) => return plain(StatusCode::BAD_GATEWAY, format!("proxy: upstream request failed: {e}")),
    };
    let (parts, body) = upstream_resp.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return plain(StatusCode::BAD_GATEWAY, format!("proxy: reading upstream body: {e}")),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = parts.status;
    copy_headers(&parts.headers, resp.headers_mut());
    resp
}

/// [`Fault::PartialBatchFailure`]: fail the first entry, forward the others.
async fn partial_batch_failure(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = match collect(req).await {
        Ok(collected) => collected,
        Err(refusal) => return refusal,
    };
    let Some((failed, rest)) = split_first_entry(&body) else {
        return send_upstream(state, parts, body).await;
    };
    match rest {
        Some(rest) => with_failed_entry(send_upstream(state, parts, rest).await, failed).await,
        None => json_response(StatusCode::OK, &serde_json::json!({"Successful": [], "Failed": [failed]})),
    }
}

/// Takes the first of the request's `Entries` out: its `Failed` entry, and
/// the body to forward (`None` when no entry is left). `None` when the body
/// has no non-empty `Entries` list.
fn split_first_entry(body: &[u8]) -> Option<(serde_json::Value, Option<Bytes>)> {
    let mut request: serde_json::Value = serde_json::from_slice(body).ok()?;
    let entries = request.get_mut("Entries")?.as_array_mut().filter(|e| !e.is_empty())?;
    let first = entries.remove(0);
    let failed = serde_json::json!({
        "Id": first.get("Id").cloned().unwrap_or_default(),
        "Code": "InternalError",
        "Message": "injected by the test FaultProxy (PartialBatchFailure)",
        "SenderFault": false,
    });
    let rest = (!entries.is_empty()).then(|| Bytes::from(request.to_string()));
    Some((failed, rest))
}

/// Adds `failed` to a successful batch answer's `Failed` list; any other
/// answer (an error for the whole call) is relayed as it is.
async fn with_failed_entry(resp: Response<Full<Bytes>>, failed: serde_json::Value) -> Response<Full<Bytes>> {
    if resp.status() != StatusCode::OK {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    // A `Full` body is one in-memory chunk: its error type is `Infallible`.
    let Ok(collected) = body.collect().await;
    let bytes = collected.to_bytes();
    let mut answer: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(serde_json::Value::Object(answer)) => serde_json::Value::Object(answer),
        _ => return Response::from_parts(parts, Full::new(bytes)),
    };
    match answer.get_mut("Failed").and_then(serde_json::Value::as_array_mut) {
        Some(list) => list.push(failed),
        None => answer["Failed"] = serde_json::json!([failed]),
    }
    Response::from_parts(parts, Full::new(Bytes::from(answer.to_string())))
}

/// An awsJson answer the proxy makes up, as the service would send it.
fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-amz-json-1.0"));
    headers.insert("x-amzn-requestid", HeaderValue::from_static("fault-proxy-injected"));
    resp
}

fn plain(status: StatusCode, message: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(message)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// An awsJson error response the SDK parses as the fault's error code.
fn error_response(fault: &Fault, sqs: bool, operation: &str) -> Response<Full<Bytes>> {
    // (HTTP status, `__type`, SQS query-compatible "code;type" header)
    let (status, error_type, query_error) = match (fault, sqs) {
        (Fault::Throttle | Fault::ThrottleWithReason(_), _) => {
            (StatusCode::BAD_REQUEST, "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException", None)
        }
        (Fault::ThrottlingException, false) => {
            (StatusCode::BAD_REQUEST, "com.amazonaws.dynamodb.v20120810#ThrottlingException", None)
        }
        (Fault::ThrottlingException, true) => {
            (StatusCode::BAD_REQUEST, "com.amazonaws.sqs#ThrottlingException", Some("ThrottlingException;Sender"))
        }
        (Fault::AccessDenied, false) => {
            (StatusCode::BAD_REQUEST, "com.amazon.coral.service#AccessDeniedException", None)
        }
        (Fault::AccessDenied, true) => {
            (StatusCode::FORBIDDEN, "com.amazon.coral.service#AccessDeniedException", Some("AccessDenied;Sender"))
        }
        (Fault::ValidationException, false) => {
            (StatusCode::BAD_REQUEST, "com.amazon.coral.validate#ValidationException", None)
        }
        (Fault::ValidationException, true) => {
            (StatusCode::BAD_REQUEST, "com.amazon.coral.validate#ValidationException", Some("ValidationError;Sender"))
        }
        (Fault::ServiceUnavailable, false) => {
            (StatusCode::SERVICE_UNAVAILABLE, "com.amazonaws.dynamodb.v20120810#ServiceUnavailable", None)
        }
        (Fault::ServiceUnavailable, true) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "com.amazonaws.sqs#ServiceUnavailable",
            Some("ServiceUnavailable;Receiver"),
        ),
        (Fault::OverLimit, false) => {
            (StatusCode::BAD_REQUEST, "com.amazonaws.dynamodb.v20120810#LimitExceededException", None)
        }
        (Fault::OverLimit, true) => (StatusCode::FORBIDDEN, "com.amazonaws.sqs#OverLimit", Some("OverLimit;Sender")),
        // Latency, the drops and the partial failure never get here; a 500
        // is the safe answer.
        (Fault::InternalError | Fault::InternalErrorAfterApply | Fault::Latency(_), false)
        | (Fault::DropBeforeForward | Fault::DropAfterForward | Fault::PartialBatchFailure, false) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "com.amazonaws.dynamodb.v20120810#InternalServerError", None)
        }
        (Fault::InternalError | Fault::InternalErrorAfterApply | Fault::Latency(_), true)
        | (Fault::DropBeforeForward | Fault::DropAfterForward | Fault::PartialBatchFailure, true) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "com.amazonaws.sqs#InternalError", Some("InternalError;Receiver"))
        }
    };
    let mut body = serde_json::json!({
        "__type": error_type,
        "message": format!("injected by the test FaultProxy ({fault:?} on {operation})"),
    });
    if let Fault::ThrottleWithReason(reason) = fault {
        body["ThrottlingReasons"] = serde_json::json!([{"reason": reason, "resource": "arn:aws:dynamodb:ap-northeast-2:123456789012:table/Students"}]);
    }
    let mut resp = json_response(status, &body);
    if let Some(query_error) = query_error {
        resp.headers_mut().insert("x-amzn-query-error", HeaderValue::from_static(query_error));
    }
    resp
}
