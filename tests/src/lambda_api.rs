//! A small Lambda Runtime API for tests (the official emulator is not
//! installable here): `GET /runtime/invocation/next` hands out the events
//! queued with [`RuntimeApi::invoke`], and `POST .../response`,
//! `.../error` and `/runtime/init/error` are recorded. [`RuntimeApi::env`]
//! is what Lambda sets for a function process.
//!
//! [`receive_event`] builds an SQS event the way an event source mapping
//! does, from messages really received from the emulator (real receipt
//! handles, so the function's visibility changes are real), and
//! [`delete_unreported`] finishes a response as the mapping does.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::emulator::REGION;

/// The account moto uses (its queue ARNs name it).
pub const ACCOUNT: &str = "123456789012";
/// The function name the tests' Lambda environment gives.
pub const FUNCTION_NAME: &str = "student-worker-test";

/// What the function answered for one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `POST /runtime/invocation/{id}/response`: the body.
    Response(Value),
    /// `POST /runtime/invocation/{id}/error`: the body (`errorType`, `errorMessage`).
    Error(Value),
}

impl Answer {
    /// The reported `batchItemFailures` ids of a response.
    ///
    /// # Panics
    /// If the answer is an error or has no `batchItemFailures` list.
    #[must_use]
    pub fn failures(&self) -> Vec<String> {
        let Answer::Response(body) = self else { panic!("expected a response, got {self:?}") };
        body["batchItemFailures"]
            .as_array()
            .unwrap_or_else(|| panic!("no batchItemFailures list: {body}"))
            .iter()
            .map(|f| f["itemIdentifier"].as_str().expect("itemIdentifier is a string").to_owned())
            .collect()
    }
}

struct Invocation {
    id: String,
    event: Value,
    deadline_ms: u64,
}

struct State {
    next: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    answers: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    init_errors: Mutex<Vec<Value>>,
}

/// A running Runtime API on `127.0.0.1`.
pub struct RuntimeApi {
    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub address: String,
    queue: mpsc::UnboundedSender<Invocation>,
    state: Arc<State>,
    counter: Mutex<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RuntimeApi {
    /// Starts the server on a free port.
    ///
    /// # Panics
    /// If no port can be bound.
    pub async fn start() -> RuntimeApi {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await.expect("bind 127.0.0.1:0");
        let address = listener.local_addr().expect("address").to_string();
        let (queue, next) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            next: tokio::sync::Mutex::new(next),
            answers: Mutex::default(),
            init_errors: Mutex::default(),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        RuntimeApi { address, queue, state, counter: Mutex::new(0), task }
    }

    /// What Lambda sets for the function's process.
    #[must_use]
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_LAMBDA_RUNTIME_API", self.address.clone()),
            ("AWS_LAMBDA_FUNCTION_NAME", FUNCTION_NAME.into()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "test-stream".into()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{FUNCTION_NAME}")),
        ]
    }

    /// Hands `event` to the function with `budget` until its deadline and
    /// waits for its answer (a response or an error).
    ///
    /// # Panics
    /// If no answer comes within `budget` plus 30 s.
    pub async fn invoke(&self, event: Value, budget: Duration) -> Answer {
        let id = {
            let mut n = self.counter.lock().expect("lock");
            *n += 1;
            format!("request-{n}")
        };
        let (tx, rx) = oneshot::channel();
        self.state.answers.lock().expect("lock").insert(id.clone(), tx);
        let deadline_ms = unix_ms() + u64::try_from(budget.as_millis()).expect("budget");
        self.queue.send(Invocation { id: id.clone(), event, deadline_ms }).expect("the server is running");
        match tokio::time::timeout(budget + Duration::from_secs(30), rx).await {
            Ok(Ok(answer)) => answer,
            _ => panic!("no answer to {id} within {budget:?} + 30 s"),
        }
    }

    /// The init errors posted so far.
    #[must_use]
    pub fn init_errors(&self) -> Vec<Value> {
        self.state.init_errors.lock().expect("lock").clone()
    }
}

fn unix_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis()).expect("ms")
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(Arc::clone(&state), req));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let parts: Vec<&str> = path.trim_start_matches("/2018-06-01/runtime/").split('/').collect();
    Ok(match (method.as_str(), parts.as_slice()) {
        ("GET", ["invocation", "next"]) => next(&state).await,
        ("POST", ["invocation", id, kind @ ("response" | "error")]) => {
            let value: Value = serde_json::from_slice(&body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&body)));
            let answer = if *kind == "response" { Answer::Response(value) } else { Answer::Error(value) };
            match state.answers.lock().expect("lock").remove(*id) {
                Some(tx) => {
                    let _ = tx.send(answer);
                    status(StatusCode::ACCEPTED, "{\"status\":\"OK\"}")
                }
                None => status(StatusCode::BAD_REQUEST, "{\"errorMessage\":\"unknown or answered request id\"}"),
            }
        }
        ("POST", ["init", "error"]) => {
            let value: Value = serde_json::from_slice(&body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&body)));
            state.init_errors.lock().expect("lock").push(value);
            status(StatusCode::ACCEPTED, "{\"status\":\"OK\"}")
        }
        _ => status(StatusCode::NOT_FOUND, "{\"errorMessage\":\"no such path\"}"),
    })
}

async fn next(state: &State) -> Response<Full<Bytes>> {
    let Some(invocation) = state.next.lock().await.recv().await else {
        return status(StatusCode::INTERNAL_SERVER_ERROR, "{}");
    };
    let mut resp = Response::new(Full::new(Bytes::from(invocation.event.to_string())));
    let headers = resp.headers_mut();
    headers.insert("content-type", "application/json".parse().expect("header"));
    headers.insert("lambda-runtime-aws-request-id", invocation.id.parse().expect("header"));
    headers.insert("lambda-runtime-deadline-ms", invocation.deadline_ms.to_string().parse().expect("header"));
    let arn = format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FUNCTION_NAME}");
    headers.insert("lambda-runtime-invoked-function-arn", arn.parse().expect("header"));
    headers.insert(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000;Sampled=0".parse().expect("header"),
    );
    resp
}

fn status(code: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = code;
    resp
}

/// A received message as the test keeps it: its id and receipt handle.
#[derive(Debug, Clone)]
pub struct Received {
    /// `messageId`.
    pub message_id: String,
    /// The receipt handle of this receive.
    pub receipt_handle: String,
    /// The body.
    pub body: String,
}

/// The queue's ARN in the emulator's account (what a mapping's records name).
#[must_use]
pub fn queue_arn(queue_url: &str) -> String {
    let name = queue_url.rsplit('/').next().expect("a queue URL");
    format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")
}

/// The URL the function builds from [`queue_arn`].
#[must_use]
pub fn queue_url_in_aws_form(queue_url: &str) -> String {
    let name = queue_url.rsplit('/').next().expect("a queue URL");
    format!("https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}")
}

/// Receives up to `max` messages (several receives, as a mapping's batching
/// window does) with `visibility_seconds`, and builds the SQS event the
/// mapping would send.
///
/// # Panics
/// If a receive fails.
pub async fn receive_event(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    max: usize,
    visibility_seconds: i32,
) -> (Value, Vec<Received>) {
    let mut records = Vec::new();
    let mut received = Vec::new();
    while received.len() < max {
        let want = i32::try_from((max - received.len()).min(10)).expect("count");
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(want)
            .visibility_timeout(visibility_seconds)
            .wait_time_seconds(0)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_system_attribute_names(MessageSystemAttributeName::AwsTraceHeader)
            .send()
            .await
            .expect("receive");
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for m in messages {
            let attributes: serde_json::Map<String, Value> = m
                .attributes
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.as_str().to_owned(), json!(v)))
                .collect();
            let message_attributes: serde_json::Map<String, Value> = m
                .message_attributes
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| {
                    (k, json!({"stringValue": v.string_value, "dataType": v.data_type, "stringListValues": [], "binaryListValues": []}))
                })
                .collect();
            let r = Received {
                message_id: m.message_id.clone().expect("messageId"),
                receipt_handle: m.receipt_handle.clone().expect("receipt handle"),
                body: m.body.clone().unwrap_or_default(),
            };
            records.push(json!({
                "messageId": r.message_id,
                "receiptHandle": r.receipt_handle,
                "body": r.body,
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": m.md5_of_body,
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn(queue_url),
                "awsRegion": REGION,
            }));
            received.push(r);
        }
    }
    (json!({ "Records": records }), received)
}

/// Deletes what a response did not report, as the event source mapping
/// does; an error answer deletes nothing. Returns the ids deleted.
///
/// # Panics
/// If the delete fails.
pub async fn delete_unreported(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    received: &[Received],
    answer: &Answer,
) -> BTreeSet<String> {
    let Answer::Response(_) = answer else { return BTreeSet::new() };
    let failed: BTreeSet<String> = answer.failures().into_iter().collect();
    let done: Vec<&Received> = received.iter().filter(|r| !failed.contains(&r.message_id)).collect();
    for chunk in done.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, r)| {
                DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(&r.receipt_handle).build()
            })
            .collect::<Result<Vec<_>, _>>()
            .expect("entries");
        let out =
            sqs.delete_message_batch().queue_url(queue_url).set_entries(Some(entries)).send().await.expect("delete");
        assert!(out.failed.is_empty(), "delete failed: {:?}", out.failed);
    }
    done.iter().map(|r| r.message_id.clone()).collect()
}

/// `student-worker lambda` as Lambda would start it, its output kept in files.
pub struct FunctionProcess {
    child: tokio::process::Child,
    stdout: std::path::PathBuf,
    stderr: std::path::PathBuf,
}

/// A function process that has ended, with its output.
#[derive(Debug)]
pub struct Ended {
    /// Its exit status (a kill's, when it was still serving).
    pub status: std::process::ExitStatus,
    /// Everything it wrote to stdout (JSON log and metric lines).
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl Ended {
    /// The JSON lines of stdout.
    ///
    /// # Panics
    /// On a line that is not JSON.
    #[must_use]
    pub fn log_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
            .collect()
    }

    /// The outcome line of `message_id`.
    ///
    /// # Panics
    /// If there is none.
    #[must_use]
    pub fn outcome_of(&self, message_id: &str) -> Value {
        self.log_lines()
            .into_iter()
            .rfind(|l| l.get("outcome").is_some() && l["message_id"] == message_id)
            .unwrap_or_else(|| panic!("no outcome line for {message_id}:\n{}", self.stdout))
    }
}

impl FunctionProcess {
    /// Starts the binary with `args` (e.g. `["lambda"]`, or none) for `api`,
    /// every AWS call sent to `endpoint`, plus `env`.
    ///
    /// # Panics
    /// If the binary cannot be built or started.
    #[must_use]
    pub fn spawn(api: &RuntimeApi, endpoint: &str, args: &[&str], env: &[(&str, &str)]) -> FunctionProcess {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = std::env::temp_dir().join(format!("student-worker-lambda-{}-{n}", std::process::id()));
        let (stdout, stderr) = (base.with_extension("out"), base.with_extension("err"));
        let mut cmd = tokio::process::Command::new(crate::world::worker_binary());
        cmd.env_clear()
            .envs(crate::emulator::env_vars_for_endpoint(endpoint))
            .envs(api.env())
            .env("LOG_FORMAT", "json")
            .envs(env.iter().copied())
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("create the function's stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("create the function's stderr file"))
            .kill_on_drop(true);
        FunctionProcess { child: cmd.spawn().expect("start the worker binary"), stdout, stderr }
    }

    /// Waits up to `timeout` for the process to exit by itself.
    ///
    /// # Panics
    /// If it is still running then.
    pub async fn exited(mut self, timeout: Duration) -> Ended {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the function did not exit within {timeout:?}"))
            .expect("wait");
        self.collect(status)
    }

    /// Stops the process (Lambda's freeze-then-kill), and collects its output.
    ///
    /// # Panics
    /// If it cannot be killed.
    pub async fn stop(mut self) -> Ended {
        self.child.kill().await.expect("kill the function");
        let status = self.child.wait().await.expect("wait");
        self.collect(status)
    }

    fn collect(&self, status: std::process::ExitStatus) -> Ended {
        let read = |path: &std::path::PathBuf| {
            let text = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
            let _ = std::fs::remove_file(path);
            text
        };
        Ended { status, stdout: read(&self.stdout), stderr: read(&self.stderr) }
    }
}
