//! The small commands people reach for, run as the real binary against the
//! emulator: `get` (plain values, a tombstone, no item), `completions`,
//! `man`, and `publish` reading one pretty-printed event, an array of
//! events or JSON Lines, with `--dry-run` sending nothing.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use student_worker_tests::world::{World, worker_binary};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn binary(w: &World, args: &[&str]) -> Output {
    w.task_command().args(args).stdin(Stdio::null()).output().expect("run the binary")
}

/// `publish` with `input` on stdin.
fn publish(w: &World, args: &[&str], input: &str) -> Output {
    let mut child = w
        .task_command()
        .arg("publish")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start publish");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write the input");
    child.wait_with_output().expect("wait for publish")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_shows_a_record_plainly_a_tombstone_as_deleted_and_no_item_as_an_error() {
    let w = World::new().await;
    w.send(&[
        r#"{"type":"StudentUpserted","eventId":"e1","studentId":"101","version":1,"student":{"name":"Alice","grade":3,"courses":["MATH101","CS100"]}}"#.to_owned(),
        r#"{"type":"StudentDeleted","eventId":"e2","studentId":"102","version":4}"#.to_owned(),
    ])
    .await;
    w.run(w.config()).await.expect("run");

    let out = binary(&w, &["get", "101"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = |name: &str| text.lines().find(|l| l.starts_with(name)).map(|l| l[name.len()..].trim().to_owned());
    assert_eq!(line("StudentID").as_deref(), Some("101"), "{text}");
    assert_eq!(line("Name").as_deref(), Some("Alice"), "{text}");
    assert_eq!(line("Courses").as_deref(), Some("MATH101, CS100"), "{text}");
    assert_eq!(line("Version").as_deref(), Some("1"), "{text}");

    let out = binary(&w, &["get", "101", "--json"]);
    let record: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!((&record["Name"], &record["Grade"], &record["Version"]), (&"Alice".into(), &3.into(), &1.into()));

    let out = binary(&w, &["get", "102"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("deleted at version 4"), "{}", stdout(&out));

    let out = binary(&w, &["get", "999"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("no item for StudentID \"999\" in table Students"), "{}", stderr(&out));
}

#[test]
fn completions_and_the_man_page_come_from_the_command_line() {
    let run = |args: &[&str]| Command::new(worker_binary()).env_clear().args(args).output().expect("run the binary");
    let bash = run(&["completions", "bash"]);
    assert!(bash.status.success() && stdout(&bash).contains("_student__worker()"), "{}", stderr(&bash));
    assert!(stdout(&bash).contains("--exit-when-empty"), "the subcommands' flags complete too");
    let zsh = run(&["completions", "zsh"]);
    assert!(stdout(&zsh).starts_with("#compdef student-worker"), "{}", stdout(&zsh));
    let bad = run(&["completions", "cmd.exe"]);
    assert_eq!(bad.status.code(), Some(2), "an unknown shell is a usage error");

    let man = run(&["man"]);
    let page = stdout(&man);
    assert!(man.status.success(), "{}", stderr(&man));
    assert!(page.contains(".TH student-worker 1"), "{page}");
    for sub in ["run", "setup", "publish", "doctor", "dlq", "dlq-replay", "get", "healthcheck"] {
        assert!(page.contains(&format!(".TH student-worker-{sub} 1")), "no page for {sub}");
    }
    assert!(page.contains(r"\-\-exit\-when\-empty"), "every subcommand's flags are in it");
}

const PRETTY: &str = r#"{
  "type": "StudentUpserted",
  "eventId": "e-1",
  "studentId": "301",
  "version": 1,
  "student": { "name": "Pat" }
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reads_one_pretty_event_an_array_or_json_lines_and_dry_run_sends_nothing() {
    let w = World::new().await;
    let out = publish(&w, &[], PRETTY);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("published 1 of 1 events"), "{}", stderr(&out));

    let array = r#"[{"type":"StudentDeleted","eventId":"e-2","studentId":"302","version":1},
                    {"type":"StudentDeleted","eventId":"e-3","studentId":"303","version":1}]"#;
    let out = publish(&w, &[], array);
    assert!(stderr(&out).contains("published 2 of 2 events"), "{}", stderr(&out));
    assert_eq!(w.queue_counts().await.0, 3);

    // A refusal names the event by its place in the array; a dry run sends nothing.
    let mixed = r#"[{"type":"StudentDeleted","eventId":"e-4","studentId":"304","version":1},
                    {"type":"StudentDeleted","eventId":"e-5","studentId":"305","version":0}]"#;
    let out = publish(&w, &["--dry-run"], mixed);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("event 2: refused: version"), "{}", stderr(&out));
    assert!(stderr(&out).contains("dry run: 1 of 2 events valid; nothing sent"), "{}", stderr(&out));
    assert_eq!(w.queue_counts().await.0, 3, "nothing sent");

    // A dry run needs no queue and no AWS at all.
    let mut cmd = Command::new(worker_binary());
    cmd.env_clear()
        .args(["publish", "--dry-run", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start publish");
    child.stdin.take().expect("stdin").write_all(PRETTY.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", stderr(&out));

    // Neither JSON Lines nor one JSON value: a hint says so, with where it broke.
    let out = publish(&w, &["--dry-run"], "{\"type\": \"StudentDeleted\",\n\"eventId\": }\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("hint: the input is neither JSON Lines"), "{}", stderr(&out));
    assert!(stderr(&out).contains("line 2, column"), "{}", stderr(&out));
}

#[test]
fn every_help_has_examples_names_the_aws_variables_and_shows_ranges_once() {
    let help = |path: &[&str]| {
        let out = Command::new(worker_binary()).env_clear().args(path).arg("--help").output().expect("run --help");
        assert!(out.status.success(), "{path:?}: {}", stderr(&out));
        stdout(&out)
    };
    let no_aws: [&[&str]; 3] = [&["healthcheck"], &["completions"], &["man"]];
    let aws: [&[&str]; 9] = [
        &["run"],
        &["setup"],
        &["publish"],
        &["doctor"],
        &["dlq"],
        &["dlq", "stats"],
        &["dlq", "peek"],
        &["dlq", "replay"],
        &["get"],
    ];
    for path in no_aws {
        assert!(help(path).contains("\nEXAMPLES:\n  student-worker "), "{path:?}");
    }
    for path in aws {
        let text = help(path);
        assert!(text.contains("\nEXAMPLES:\n  "), "{path:?}: {text}");
        for variable in ["AWS_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL"] {
            assert!(text.contains(variable), "{path:?} does not name {variable}");
        }
    }
    let run = help(&["run"]);
    assert!(run.contains("Messages processed at once, 1–4096 [default: 32]"), "{run}");
    assert!(run.contains("Visibility timeout asked for on each receive, 15–43200 [default: 60]"), "{run}");
    assert_eq!(run.matches("[default: 20]").count(), 1, "each default once: {run}");
    let doctor = help(&["doctor"]);
    for used in ["--queue-url", "--table-name", "--dlq-url", "--visibility-timeout-seconds", "--json"] {
        assert!(doctor.contains(used), "doctor uses {used}");
    }
    for unused in ["--concurrency", "--exit-when-empty", "--health-file", "--metrics-interval-seconds", "--batch-size"]
    {
        assert!(!doctor.contains(unused), "doctor --help lists {unused}, which doctor ignores");
    }
}
