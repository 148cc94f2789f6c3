//! The real `student-worker` binary as ECS runs it: configured by environment
//! only, fed by an independent boto3 publisher, stopped by SIGTERM, refusing
//! bad configuration and missing credentials with a cause and a fix.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use student_worker_tests::emulator::python;
use student_worker_tests::history::scenario;
use student_worker_tests::model::{assert_tables_equal, expected_table, without_clock};
use student_worker_tests::world::{World, worker_binary};

/// The environment ECS would give the task, pointed at the emulator.
fn worker_command(w: &World) -> Command {
    let mut cmd = w.task_command();
    cmd.env("SQS_WAIT_TIME_SECONDS", "1").env("SQS_VISIBILITY_TIMEOUT_SECONDS", "30").arg("run");
    cmd
}

fn run_to_completion(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("start the worker binary")
}

fn sigterm(pid: u32) {
    let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill");
    assert!(status.success());
}

fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_publisher_to_binary_converges_with_poison_in_the_dlq() {
    let w = World::with_max_receive_count(50).await;
    let s = scenario(42, 20, 6);
    let file = std::env::temp_dir().join(format!("student-worker-e2e-{}.jsonl", std::process::id()));
    std::fs::write(&file, s.deliveries.join("\n")).expect("write events");
    let published = Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/publish_boto3.py"))
        .arg(&w.queue_url)
        .arg(&file)
        .envs(w.emulator.env_vars())
        .output()
        .expect("run the boto3 publisher");
    assert!(published.status.success(), "boto3 publisher: {}", String::from_utf8_lossy(&published.stderr));

    let out = run_to_completion({
        let mut cmd = worker_command(&w);
        cmd.env("WORKER_EXIT_WHEN_EMPTY", "true");
        cmd
    });
    assert!(out.status.success(), "worker failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_tables_equal(&without_clock(w.table().await), &expected_table(&s.events));
    let dead = w.dead_letters().await;
    assert_eq!(dead.len(), s.poison.len());
    for (body, code) in &s.poison {
        let d = dead.iter().find(|d| &d.body == body).unwrap_or_else(|| panic!("{body} not dead-lettered"));
        assert_eq!(d.attributes["ErrorCode"], *code, "{body}");
    }

    // One JSON line per outcome with the fields docs/design.md lists, and no personal data.
    let lines = json_lines(&out.stdout);
    let outcomes: Vec<_> = lines.iter().filter(|l| l.get("outcome").is_some()).collect();
    assert!(
        outcomes.len() >= s.deliveries.len(),
        "{} outcome lines for {} deliveries",
        outcomes.len(),
        s.deliveries.len()
    );
    // An invalid body's ids are there when it has them; what it lacks is
    // left out, never logged as "" or 0.
    for line in &outcomes {
        let fields: &[&str] = match line["outcome"].as_str() {
            Some("invalid") => &["message_id", "outcome", "attempts", "elapsed_ms", "error_code", "reason"],
            _ => &["message_id", "student_id", "event_id", "version", "outcome", "attempts", "elapsed_ms"],
        };
        for field in fields {
            assert!(line.get(field).is_some(), "missing {field}: {line}");
        }
        assert!(line["student_id"] != "" && line["event_id"] != "" && line["version"] != 0, "{line}");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("@example.edu") && !text.contains("Student s42"), "personal fields leaked into the logs");
    let _ = std::fs::remove_file(file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_work_loses_nothing() {
    let w = World::new().await;
    let s = scenario(7, 60, 4);
    let events: Vec<String> = s.events.iter().map(ToString::to_string).collect();
    w.send(&events).await;
    let child = worker_command(&w)
        .env("WORKER_CONCURRENCY", "4")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start worker");
    // Stop it while it is working through the queue.
    let started = Instant::now();
    while w.table().await.len() < 5 {
        assert!(started.elapsed() < Duration::from_secs(60), "the worker made no progress");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sigterm(child.id());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await.expect("join").expect("wait");
    assert!(out.status.success(), "SIGTERM must exit 0: {:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    // Released messages are visible at once; a patch deferred just before the
    // stop stays hidden for its deferral (2 s, then 8 s), never for the 30 s
    // visibility timeout a stranded message would keep.
    let released_by = Instant::now() + Duration::from_secs(12);
    let (visible, in_flight) = loop {
        let (visible, in_flight) = w.queue_counts().await;
        if in_flight == 0 || Instant::now() > released_by {
            break (visible, in_flight);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(in_flight, 0, "every unfinished message was released, none left invisible");
    assert!(visible > 0, "the test should stop the worker mid-queue (raise the event count)");

    // Everything left is still there: a second run finishes the job.
    let out = run_to_completion({
        let mut cmd = worker_command(&w);
        cmd.env("WORKER_EXIT_WHEN_EMPTY", "1");
        cmd
    });
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_tables_equal(&without_clock(w.table().await), &expected_table(&s.events));
    assert!(w.dead_letters().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_does_not_wait_out_a_long_poll() {
    let w = World::new().await;
    let child = worker_command(&w)
        .env("SQS_WAIT_TIME_SECONDS", "20")
        .env("LOG_FORMAT", "text")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start worker");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stopped_at = Instant::now();
    sigterm(child.id());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await.expect("join").expect("wait");
    assert!(out.status.success(), "{:?}", out.status);
    // Far below the 20 s poll it interrupted; generous for a loaded machine.
    assert!(stopped_at.elapsed() < Duration::from_secs(10), "took {:?} to stop", stopped_at.elapsed());
    // LOG_FORMAT=text: log lines for people, even into a pipe, and no EMF
    // metric lines among them (those go with JSON logs only).
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().any(|l| l.contains("INFO") && l.contains("worker starting")), "{stdout}");
    assert!(stdout.lines().all(|l| !l.starts_with('{')), "{stdout}");
    assert!(!stdout.contains("CloudWatchMetrics"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_names_the_variable_and_the_fix() {
    let w = World::new().await;
    for (variable, value, expected) in [
        (
            "SQS_WAIT_TIME_SECONDS",
            "30",
            "SQS_WAIT_TIME_SECONDS (--wait-time-seconds) is \"30\"; expected an integer from 0 to 20",
        ),
        ("SQS_BATCH_SIZE", "11", "SQS_BATCH_SIZE (--batch-size) is \"11\"; expected an integer from 1 to 10"),
        ("WORKER_CONCURRENCY", "many", "WORKER_CONCURRENCY (--concurrency) is \"many\""),
        ("SQS_QUEUE_URL", "", "SQS_QUEUE_URL (--queue-url) is not set; set SQS_QUEUE_URL"),
        ("DYNAMODB_TABLE_NAME", "", "DYNAMODB_TABLE_NAME (--table-name) is not set"),
    ] {
        let mut cmd = worker_command(&w);
        cmd.env(variable, value);
        let out = run_to_completion(cmd);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{variable}={value}: {stderr}");
        assert!(stderr.contains(expected), "{variable}={value}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_stop_the_worker_with_the_setup_guides_fix() {
    let w = World::new().await;
    w.send(&[r#"{"type":"StudentDeleted","eventId":"e","studentId":"1","version":1}"#.to_owned()]).await;
    let mut cmd = worker_command(&w);
    cmd.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY").env("HOME", std::env::temp_dir());
    let out = run_to_completion(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Unable to locate credentials"), "{stderr}");
    assert!(stderr.contains("attach a task role"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_is_idempotent_and_wires_the_redrive_policy() {
    let w = World::new().await; // ran setup once, in-process
    let out = Command::new(worker_binary())
        .env_clear()
        .envs(w.emulator.env_vars())
        .args(["setup", "--max-receive-count", "7"])
        .output()
        .expect("run setup");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "DYNAMODB_TABLE_NAME=Students".to_owned(),
            format!("SQS_QUEUE_URL={}", w.queue_url),
            format!("SQS_DLQ_URL={}", w.dlq_url)
        ],
        "the same resources again, and nothing else on stdout"
    );
    let attrs = w
        .sqs
        .get_queue_attributes()
        .queue_url(&w.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .expect("attributes")
        .attributes
        .unwrap_or_default();
    let redrive: serde_json::Value =
        serde_json::from_str(&attrs[&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy]).expect("redrive JSON");
    assert_eq!(redrive["maxReceiveCount"].to_string().trim_matches('"'), "7");
    assert!(redrive["deadLetterTargetArn"].as_str().is_some_and(|a| a.ends_with(":students-dlq")), "{redrive}");
    let table = w.dynamodb.describe_table().table_name("Students").send().await.expect("table").table.expect("table");
    let key = &table.key_schema()[0];
    assert_eq!((key.attribute_name(), key.key_type().as_str()), ("StudentID", "HASH"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_refuses_invalid_lines_unless_asked_and_reports_them_by_line() {
    let w = World::new().await;
    let file = std::env::temp_dir().join(format!("student-worker-publish-{}.jsonl", std::process::id()));
    let lines = [
        r#"{"type":"StudentUpserted","eventId":"e1","studentId":"101","version":1,"student":{"name":"Alice"}}"#,
        r#"{"type":"StudentUpserted","eventId":"e2","studentId":"102","version":0,"student":{"name":"B"}}"#,
        "",
        r#"{"type":"StudentDeleted","eventId":"e3","studentId":"103","version":1}"#,
    ];
    std::fs::write(&file, lines.join("\n")).expect("write");
    let publish = |extra: &[&str]| {
        Command::new(worker_binary())
            .env_clear()
            .envs(w.emulator.env_vars())
            .env("SQS_QUEUE_URL", &w.queue_url)
            .arg("publish")
            .args(extra)
            .arg(&file)
            .output()
            .expect("run publish")
    };
    let out = publish(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("line 2: refused: version: expected integer"), "{stderr}");
    assert_eq!(w.queue_counts().await.0, 2, "the two valid lines were sent");
    let out = publish(&["--allow-invalid"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(w.queue_counts().await.0, 5);
    let _ = std::fs::remove_file(file);
}
