//! What a person meets at the command line, as they meet it: `run` at a
//! pseudo-terminal logs text (coloured unless `NO_COLOR`) and ends with one
//! plain summary line, into a file or a pipe JSON lines with a structured
//! summary and EMF; outcome lines name the message (an invalid body's ids when its JSON
//! parsed, a deferral's delay and reason); an error is printed once; and a
//! reader that closes the pipe early (`| head`) ends a command quietly
//! (`run` drains and stops, as on SIGTERM).

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use student_worker_tests::terminal::at_terminal;
use student_worker_tests::worker_process::WorkerProcess;
use student_worker_tests::world::World;

fn upsert(id: &str, v: u64) -> String {
    format!(
        r#"{{"type":"StudentUpserted","eventId":"e-{id}-{v}","studentId":"{id}","version":{v},"student":{{"name":"S {id}"}}}}"#
    )
}

fn patch(id: &str, v: u64) -> String {
    format!(
        r#"{{"type":"StudentPatched","eventId":"e-{id}-{v}","studentId":"{id}","version":{v},"student":{{"grade":3}}}}"#
    )
}

/// Parses as JSON and has its ids, but breaks the contract (version 0).
const INVALID: &str =
    r#"{"type":"StudentUpserted","eventId":"e-bad-0","studentId":"bad","version":0,"student":{"name":"B"}}"#;

/// `run` until the queue is empty, with 1 s long polls.
fn run_until_empty(w: &World) -> Command {
    let mut cmd = w.task_command();
    cmd.env("SQS_WAIT_TIME_SECONDS", "1")
        .env("SQS_VISIBILITY_TIMEOUT_SECONDS", "30")
        .env("WORKER_EXIT_WHEN_EMPTY", "true")
        .arg("run");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_terminal_run_logs_text_in_colour_and_ends_with_one_summary_line() {
    let w = World::new().await;
    w.send(&[upsert("1", 1), upsert("2", 1), INVALID.to_owned()]).await;
    let screen = at_terminal(&run_until_empty(&w));
    let plain = screen.plain();
    assert!(screen.status.success(), "{plain}");
    assert!(screen.has_colour(), "a terminal gets colour: {plain}");
    assert!(plain.lines().all(|l| !l.trim_start().starts_with('{')), "text, no JSON (nor EMF): {plain}");
    assert!(plain.contains("exit-when-empty: exits once the queue is empty"), "says what it waits for: {plain}");
    let summary: Vec<&str> = plain.lines().filter(|l| l.contains(" received")).collect();
    assert_eq!(summary.len(), 1, "{plain}");
    assert!(summary[0].contains("3 received: 2 applied, 1 invalid → DLQ in "), "{plain}");
    assert!(!plain.contains("RunSummary") && !plain.contains("AckStats"), "no Debug dump: {plain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_color_turns_colour_off_at_a_terminal() {
    let w = World::new().await;
    let mut cmd = run_until_empty(&w);
    cmd.env("NO_COLOR", "1");
    let screen = at_terminal(&cmd);
    assert!(screen.status.success(), "{}", screen.text);
    assert!(!screen.has_colour(), "{}", screen.text);
    assert!(screen.text.contains("0 received in "), "{}", screen.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn away_from_a_terminal_run_logs_json_lines_that_name_each_message_and_a_structured_summary() {
    let w = World::new().await;
    // The patch comes alone and waits (deferred) for its predecessor, which
    // is sent only once the worker says it waits for the patch; the invalid
    // body parses and has its ids.
    w.send(&[patch("7", 2), INVALID.to_owned()]).await;
    let worker = WorkerProcess::spawn(&w, &w.emulator.endpoint, &[("WORKER_EXIT_WHEN_EMPTY", "true")]);
    worker.until_stdout_contains("waiting for 1 deferred message").await;
    w.send(&[upsert("7", 1)]).await;
    let out = worker.wait(Duration::from_secs(120)).await;
    assert!(out.ended_as_expected(), "{}", out.stderr);
    let lines = out.log_lines();

    let invalid = lines.iter().find(|l| l["outcome"] == "invalid").expect("an invalid line");
    assert_eq!((&invalid["student_id"], &invalid["event_id"]), (&"bad".into(), &"e-bad-0".into()), "{invalid}");
    assert!(invalid.get("version").is_none(), "version 0 is not logged as if it were one: {invalid}");
    assert_eq!(invalid["message"], "invalid", "the message says the outcome: {invalid}");

    let deferred = lines.iter().find(|l| l["outcome"] == "deferred").expect("a deferred line");
    assert!(deferred["defer_seconds"].as_u64().is_some_and(|s| s >= 2), "{deferred}");
    assert!(deferred["reason"].as_str().is_some_and(|r| r.contains("version 1")), "names the predecessor: {deferred}");

    let summary = lines.iter().find(|l| l["message"] == "worker stopped").expect("a summary line");
    assert_eq!(summary["received"].as_u64(), Some(lines.iter().filter(|l| l.get("outcome").is_some()).count() as u64));
    assert_eq!((summary["applied"].as_u64(), summary["invalid"].as_u64()), (Some(2), Some(1)), "{summary}");
    assert!(summary["deferred"].as_u64().is_some_and(|n| n >= 1), "{summary}");
    assert!(lines.iter().any(|l| l.get("_aws").is_some()), "EMF lines go with JSON logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_is_printed_once_at_a_terminal() {
    let w = World::new().await;
    let mut cmd = run_until_empty(&w);
    cmd.env("SQS_BATCH_SIZE", "11");
    let screen = at_terminal(&cmd);
    assert_eq!(screen.status.code(), Some(2), "{}", screen.text);
    assert_eq!(screen.plain().matches("SQS_BATCH_SIZE (--batch-size) is \"11\"").count(), 1, "{}", screen.text);
}

/// Runs `cmd` with a stdout whose reader has already gone, as `| head`
/// leaves it once it has its lines.
fn with_closed_stdout(mut cmd: Command) -> Output {
    let mut child =
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start the binary");
    drop(child.stdout.take());
    child.wait_with_output().expect("wait")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_each_command_quietly() {
    let w = World::new().await;
    w.sqs.send_message().queue_url(&w.dlq_url).message_body(upsert("9", 1)).send().await.expect("a dead letter");
    for args in [&["doctor"][..], &["dlq", "peek", "--json"], &["dlq", "stats"], &["dlq", "replay", "--dry-run"]] {
        let mut cmd = w.task_command();
        cmd.args(args);
        let out = with_closed_stdout(cmd);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        assert!(!stderr.contains("error:"), "{args:?}: nothing to tell a reader who has gone: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_stops_as_on_sigterm_when_its_log_stream_is_closed() {
    let w = World::new().await;
    let mut cmd = tokio::process::Command::from(w.task_command());
    let mut child = cmd
        .env("SQS_WAIT_TIME_SECONDS", "1")
        .arg("run")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the worker");
    drop(child.stdout.take());
    // A guard against a hang, not a timing target: without the fix it never exits.
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the worker stopped once nobody read its logs")
        .expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "no complaint per lost line, no panic: {stderr}");
}
