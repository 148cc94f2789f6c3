//! What the platform sees of the real binary: `healthcheck` following a
//! running, a frozen, a stopped and a fatally stopped worker (with no worker
//! configuration of its own, as ECS runs it), and the EMF metrics lines on
//! stdout, parsed as CloudWatch would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use student_worker_tests::proxy::{Fault, FaultProxy, FaultRule};
use student_worker_tests::world::{World, worker_binary};

/// Generous bound for conditions on a loaded 2-core machine (not a timing target).
const PATIENCE: Duration = Duration::from_secs(90);

fn health_file(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("student-worker-{name}-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

/// The worker as ECS starts it, pointed at the emulator.
fn worker(w: &World, health: &Path) -> Command {
    let mut cmd = w.task_command();
    cmd.env("SQS_WAIT_TIME_SECONDS", "1")
        .env("SQS_VISIBILITY_TIMEOUT_SECONDS", "30")
        .env("WORKER_HEALTH_FILE", health)
        .arg("run");
    cmd
}

/// `healthcheck` as ECS runs it: only the health file's path in its environment.
fn healthcheck(health: &Path) -> Output {
    Command::new(worker_binary())
        .env_clear()
        .env("WORKER_HEALTH_FILE", health)
        .arg("healthcheck")
        .stdin(Stdio::null())
        .output()
        .expect("run healthcheck")
}

fn describe(out: &Output) -> String {
    format!(
        "{:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Polls `healthcheck` until its exit code is `code`, returning that run.
async fn until_health(health: &Path, code: i32) -> Output {
    let started = Instant::now();
    loop {
        let path = health.to_path_buf();
        let out = tokio::task::spawn_blocking(move || healthcheck(&path)).await.expect("join");
        if out.status.code() == Some(code) {
            return out;
        }
        assert!(started.elapsed() < PATIENCE, "healthcheck never exited {code}: {}", describe(&out));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().expect("kill");
    assert!(status.success(), "kill -{name}");
}

async fn wait(child: Child) -> Output {
    tokio::task::spawn_blocking(move || child.wait_with_output()).await.expect("join").expect("wait")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_is_healthy_while_the_worker_runs_and_not_once_it_stopped() {
    let w = World::new().await;
    let health = health_file("health-running");
    let before = healthcheck(&health);
    assert_eq!(before.status.code(), Some(1), "no worker yet: {}", describe(&before));
    assert!(String::from_utf8_lossy(&before.stderr).contains("no health file"), "{}", describe(&before));

    let child = worker(&w, &health).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start worker");
    let healthy = until_health(&health, 0).await;
    assert!(String::from_utf8_lossy(&healthy.stdout).starts_with("healthy: the worker"), "{}", describe(&healthy));
    signal(&child, "TERM");
    let out = wait(child).await;
    assert!(out.status.success(), "{}", describe(&out));
    let after = healthcheck(&health);
    assert_eq!(after.status.code(), Some(1), "{}", describe(&after));
    assert!(String::from_utf8_lossy(&after.stderr).contains("has stopped"), "{}", describe(&after));
    let _ = std::fs::remove_file(health);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_unhealthy_at_once() {
    let w = World::new().await;
    let health = health_file("health-killed");
    let child = worker(&w, &health).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start worker");
    until_health(&health, 0).await;
    // SIGKILL leaves the record saying "running" with fresh progress; the
    // check must not wait out the progress age. Reaped first: a zombie is
    // not running either, but this is how a container's init leaves it.
    signal(&child, "KILL");
    let out = wait(child).await;
    assert!(!out.status.success());
    let check = healthcheck(&health);
    assert_eq!(check.status.code(), Some(1), "{}", describe(&check));
    assert!(String::from_utf8_lossy(&check.stderr).contains("is no longer running"), "{}", describe(&check));
    let _ = std::fs::remove_file(health);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_worker_turns_unhealthy_and_recovers_when_it_resumes() {
    let w = World::new().await;
    let health = health_file("health-frozen");
    // The smallest limit a 1 s long poll allows: 2 × 1 + 15 + 1 s.
    let child = worker(&w, &health)
        .env("WORKER_HEALTH_MAX_AGE_SECONDS", "18")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start worker");
    until_health(&health, 0).await;
    signal(&child, "STOP");
    let stale = until_health(&health, 1).await;
    assert!(String::from_utf8_lossy(&stale.stderr).contains("made no progress for"), "{}", describe(&stale));
    signal(&child, "CONT");
    until_health(&health, 0).await;
    signal(&child, "TERM");
    assert!(wait(child).await.status.success());
    let _ = std::fs::remove_file(health);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_reports_a_fatal_stop_with_its_cause() {
    let w = World::new().await;
    w.send(&[r#"{"type":"StudentDeleted","eventId":"e","studentId":"1","version":1}"#.to_owned()]).await;
    let health = health_file("health-fatal");
    let out = worker(&w, &health).env("DYNAMODB_TABLE_NAME", "Studnets").stdin(Stdio::null()).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "a missing table is fatal: {}", describe(&out));
    let check = healthcheck(&health);
    assert_eq!(check.status.code(), Some(1), "{}", describe(&check));
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(stderr.contains("fatal error") && stderr.contains("ResourceNotFoundException"), "{stderr}");
    assert!(stderr.contains("refusing to start"), "run's pre-flight refused: {stderr}");
    assert!(stderr.contains("check DYNAMODB_TABLE_NAME and AWS_REGION"), "docs/setup.md's fix: {stderr}");
    let _ = std::fs::remove_file(health);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_health_file_stops_start_up_with_the_fix() {
    let w = World::new().await;
    let out = worker(&w, Path::new("/proc/student-worker/health.json")).stdin(Stdio::null()).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WORKER_HEALTH_FILE (--health-file)") && stderr.contains("mount a writable volume"),
        "{stderr}"
    );
}

/// Every EMF document on stdout, checked against the format CloudWatch
/// extracts metrics from.
fn emf_documents(stdout: &[u8]) -> Vec<Value> {
    let mut documents = Vec::new();
    for line in String::from_utf8_lossy(stdout).lines() {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        let Some(aws) = value.get("_aws") else { continue };
        assert!(aws["Timestamp"].as_u64().is_some_and(|t| t > 1_600_000_000_000), "epoch milliseconds: {line}");
        let directives = aws["CloudWatchMetrics"].as_array().expect("CloudWatchMetrics");
        assert_eq!(directives.len(), 1, "{line}");
        let directive = &directives[0];
        assert_eq!(directive["Namespace"], "StudentWorker");
        for dimension in directive["Dimensions"][0].as_array().expect("a dimension set") {
            let name = dimension.as_str().expect("dimension name");
            assert!(value[name].as_str().is_some_and(|v| !v.is_empty()), "dimension {name} has no value: {line}");
        }
        for metric in directive["Metrics"].as_array().expect("Metrics") {
            let name = metric["Name"].as_str().expect("Name");
            assert!(metric["Unit"].as_str().is_some(), "{name} has no unit");
            let ok = match &value[name] {
                Value::Number(_) => true,
                Value::Array(values) => {
                    !values.is_empty() && values.len() <= 100 && values.iter().all(Value::is_number)
                }
                _ => false,
            };
            assert!(ok, "{name} has no numeric value: {line}");
        }
        documents.push(value);
    }
    documents
}

/// The sum of `metric` over the documents by `QueueName` alone (the
/// per-reason `Throttles` documents count the same throttles again).
fn sum(documents: &[Value], metric: &str) -> u64 {
    documents.iter().filter(|d| d.get("Reason").is_none()).map(|d| d[metric].as_u64().unwrap_or(0)).sum()
}

/// `Throttles` by `Reason`, summed over the per-reason documents.
fn throttles_by_reason(documents: &[Value]) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for d in documents.iter().filter(|d| d.get("Reason").is_some()) {
        assert_eq!(d["_aws"]["CloudWatchMetrics"][0]["Dimensions"], serde_json::json!([["QueueName", "Reason"]]));
        *out.entry(d["Reason"].as_str().expect("Reason").to_owned()).or_default() +=
            d["Throttles"].as_u64().expect("Throttles");
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_writes_emf_metrics_to_stdout_that_add_up_to_its_outcomes() {
    let w = World::new().await;
    let events = [
        r#"{"type":"StudentUpserted","eventId":"e1","studentId":"101","version":1,"student":{"name":"Alice"}}"#,
        r#"{"type":"StudentUpserted","eventId":"e1","studentId":"101","version":1,"student":{"name":"Alice"}}"#,
        r#"{"type":"StudentDeleted","eventId":"e2","studentId":"102","version":1}"#,
        "not json",
    ];
    w.send(&events.map(str::to_owned)).await;
    let health = health_file("metrics");
    let out = worker(&w, &health)
        .env("WORKER_EXIT_WHEN_EMPTY", "true")
        .env("WORKER_METRICS_INTERVAL_SECONDS", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", describe(&out));
    let documents = emf_documents(&out.stdout);
    assert!(!documents.is_empty(), "no EMF line: {}", describe(&out));
    assert!(documents.iter().all(|d| d["QueueName"] == "students"));
    assert_eq!(sum(&documents, "MessagesReceived"), 4);
    assert_eq!(sum(&documents, "MessagesApplied"), 2);
    assert_eq!(sum(&documents, "MessagesDuplicate") + sum(&documents, "MessagesStale"), 1);
    assert_eq!(sum(&documents, "MessagesInvalid"), 1);
    assert_eq!(sum(&documents, "DlqForwards"), 1);
    let last = documents.last().expect("a last line, flushed at shutdown");
    assert_eq!(last["MessagesInFlight"], 0);
    assert_eq!(last["ConcurrencyLevel"], 32);
    let latencies: usize = documents.iter().filter_map(|d| d["WriteLatency"].as_array()).map(Vec::len).sum();
    assert_eq!(latencies, 3, "one write latency per decodable message");
    let _ = std::fs::remove_file(health);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttles_are_counted_by_reason_and_logged_with_the_message_as_they_happen() {
    let w = World::new().await;
    let proxy = FaultProxy::start(&w.emulator.endpoint).await;
    let health = health_file("metrics-throttles");
    let child = worker(&w, &health)
        .env("AWS_ENDPOINT_URL", &proxy.endpoint)
        .env("WORKER_METRICS_INTERVAL_SECONDS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start worker");
    // The throttles go to the loop's write, not to the pre-flight's probes:
    // once a receive is under way, the pre-flight is over.
    let started = Instant::now();
    while proxy.calls("ReceiveMessage") == 0 {
        assert!(started.elapsed() < PATIENCE, "the worker never received");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A hot key twice (DynamoDB names the reason), then a throttle that names none.
    proxy.inject(FaultRule::new("PutItem", Fault::ThrottleWithReason("TableWriteKeyRangeThroughputExceeded")).times(2));
    proxy.inject(FaultRule::new("PutItem", Fault::Throttle).times(1));
    w.send(&[r#"{"type":"StudentUpserted","eventId":"e1","studentId":"101","version":1,"student":{"name":"Alice"}}"#
        .to_owned()])
        .await;
    while w.table().await.is_empty() {
        assert!(started.elapsed() < PATIENCE, "the event was never written");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    signal(&child, "TERM");
    let out = wait(child).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(proxy.faults_injected("PutItem"), 3);
    let documents = emf_documents(&out.stdout);
    assert_eq!(sum(&documents, "Throttles"), 3, "DynamoDB has no SDK retries: the worker sees each throttle");
    assert_eq!(sum(&documents, "WriteRetries"), 3);
    assert_eq!(sum(&documents, "MessagesApplied"), 1);
    let by_reason = throttles_by_reason(&documents);
    assert_eq!(by_reason.get("TableWriteKeyRangeThroughputExceeded"), Some(&2), "{by_reason:?}");
    assert_eq!(by_reason.get("Unspecified"), Some(&1), "{by_reason:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let outcome = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l.get("outcome").is_some())
        .expect("an outcome line");
    assert_eq!(outcome["outcome"], "applied");
    assert_eq!(outcome["throttle_reasons"], "TableWriteKeyRangeThroughputExceeded,Unspecified", "{outcome}");
    let _ = std::fs::remove_file(health);
}
