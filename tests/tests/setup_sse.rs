//! `setup` asks for SQS-managed server-side encryption itself when it creates
//! a queue, rather than relying on the account's default. moto reports SSE on
//! every new queue whatever the request says, so the queues' attributes prove
//! nothing: this test reads the CreateQueue requests themselves, from moto's
//! request recorder. The emulator here is this test's own, with its own
//! recording file (`MOTO_RECORDER_FILEPATH`), so no other test's recording
//! can reset or mix with it.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use student_worker::commands::setup::{SetupArgs, ensure};
use student_worker_tests::emulator::{sdk_config_with_endpoint, workspace_root};

/// A moto_server recording to its own file; killed on drop.
struct RecordingMoto {
    endpoint: String,
    recording: PathBuf,
    child: Child,
}

impl RecordingMoto {
    fn start() -> RecordingMoto {
        let exe = workspace_root().join(".venv/bin/moto_server");
        assert!(exe.exists(), "\n\n*** {} is missing: run `scripts/emulator install` ***\n", exe.display());
        let port =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).expect("a free port").port();
        let recording = std::env::temp_dir().join(format!("student-worker-setup-sse-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&recording);
        let child = Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_RECORDER_FILEPATH", &recording)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", exe.display()));
        let moto = RecordingMoto { endpoint: format!("http://127.0.0.1:{port}"), recording, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while moto.post("/moto-api/").is_none() {
            assert!(Instant::now() < deadline, "moto_server did not answer on {} within 30 s", moto.endpoint);
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// POSTs nothing to `path`; the status line and the rest, or None if nobody answers.
    fn post(&self, path: &str) -> Option<String> {
        let mut stream = TcpStream::connect(self.endpoint.trim_start_matches("http://")).ok()?;
        let request =
            format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        answer.starts_with("HTTP/1.").then_some(answer)
    }

    fn recorder(&self, action: &str) {
        let answer = self.post(&format!("/moto-api/recorder/{action}")).expect("moto answers");
        assert!(answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"), "{action}: {answer}");
    }

    /// The recorded requests, one JSON object each.
    fn recorded(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.recording).unwrap_or_default();
        text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
    }
}

impl Drop for RecordingMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.recording);
    }
}

fn decode_base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut bits, mut count, mut out) = (0u32, 0, Vec::new());
    for byte in text.bytes().filter(|b| *b != b'=' && !b.is_ascii_whitespace()) {
        let value = ALPHABET.iter().position(|a| *a == byte).expect("base64");
        bits = (bits << 6) | u32::try_from(value).expect("6 bits");
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push(u8::try_from(bits >> count).expect("a byte"));
            bits &= (1 << count) - 1;
        }
    }
    out
}

/// The JSON bodies of the recorded requests for `operation` (`AmazonSQS.CreateQueue`).
fn bodies(requests: &[Value], operation: &str) -> Vec<Value> {
    requests
        .iter()
        .filter(|r| {
            let headers = &r["headers"];
            headers["X-Amz-Target"].as_str().or(headers["x-amz-target"].as_str()) == Some(operation)
        })
        .map(|r| {
            let body = r["body"].as_str().unwrap_or("");
            let body = if r["body_encoded"] == true { decode_base64(body) } else { body.as_bytes().to_vec() };
            serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("{operation} body ({e}): {}", String::from_utf8_lossy(&body)))
        })
        .collect()
}

fn args(queue_name: &str) -> SetupArgs {
    SetupArgs {
        table_name: "Students".into(),
        queue_name: queue_name.into(),
        dlq_name: None,
        max_receive_count: 5,
        visibility_timeout_seconds: 60,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_asks_for_sqs_managed_sse_on_every_queue_it_creates_and_creates_none_when_they_exist() {
    let moto = RecordingMoto::start();
    let sdk = sdk_config_with_endpoint(&moto.endpoint).await;
    moto.recorder("start-recording");
    for queue in ["students", "students.fifo"] {
        ensure(&sdk, &args(queue)).await.unwrap_or_else(|e| panic!("setup {queue}: {e}"));
    }
    moto.recorder("stop-recording");

    let created = bodies(&moto.recorded(), "AmazonSQS.CreateQueue");
    let mut names: Vec<&str> = created.iter().map(|b| b["QueueName"].as_str().expect("QueueName")).collect();
    names.sort_unstable();
    assert_eq!(names, ["students", "students-dlq", "students-dlq.fifo", "students.fifo"], "one CreateQueue per queue");
    for body in &created {
        let name = body["QueueName"].as_str().expect("QueueName");
        let attributes = &body["Attributes"];
        assert_eq!(attributes["SqsManagedSseEnabled"], "true", "{name}: SSE-SQS asked for explicitly: {body}");
        assert!(attributes.get("KmsMasterKeyId").is_none(), "{name}: no KMS key from setup: {body}");
        let fifo = name.ends_with(".fifo");
        assert_eq!(attributes.get("FifoQueue").and_then(Value::as_str), fifo.then_some("true"), "{name}: {body}");
    }

    // Run again: the queues exist, so no CreateQueue at all.
    moto.recorder("reset-recording");
    moto.recorder("start-recording");
    for queue in ["students", "students.fifo"] {
        ensure(&sdk, &args(queue)).await.unwrap_or_else(|e| panic!("setup {queue} again: {e}"));
    }
    moto.recorder("stop-recording");
    let requests = moto.recorded();
    assert!(!bodies(&requests, "AmazonSQS.GetQueueUrl").is_empty(), "the second run was recorded");
    assert!(bodies(&requests, "AmazonSQS.CreateQueue").is_empty(), "setup creates no queue that exists");
}
