//! `student-worker dlq` against the emulator: `stats` and `peek` lose
//! nothing; `replay` honours its filters, `--dry-run`, `--max`, `--rate`,
//! FIFO groups with fresh deduplication ids, and an interruption in the
//! middle leaves every message in the DLQ or in the source queue; replayed
//! events processed by `run` end in the table.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
use serde_json::Value;
use student_worker::commands::dlq::args::ReplayArgs;
use student_worker::commands::dlq::letter::Queue;
use student_worker::commands::dlq::run_replay;
use student_worker::commands::setup::{SetupArgs, ensure};
use student_worker_tests::emulator::REGION;
use student_worker_tests::proxy::{Fault, FaultProxy, FaultRule};
use student_worker_tests::world::{World, queue_counts, worker_binary};
use tokio_util::sync::CancellationToken;

fn upsert(id: &str, v: u64) -> String {
    format!(
        r#"{{"type":"StudentUpserted","eventId":"e-{id}-{v}","studentId":"{id}","version":{v},"student":{{"name":"S {id}"}}}}"#
    )
}

fn string(v: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder().data_type("String").string_value(v).build().expect("attribute")
}

/// Puts a dead letter on `dlq` as the worker forwards one, plus a producer attribute.
async fn dead_letter(w: &World, dlq: &str, body: &str, code: &str) {
    w.sqs
        .send_message()
        .queue_url(dlq)
        .message_body(body)
        .message_attributes("ErrorCode", string(code))
        .message_attributes("ErrorMessage", string("why"))
        .message_attributes("FailedAt", string("2026-11-24T10:00:00Z"))
        .message_attributes("SourceQueue", string(&w.queue_url))
        .message_attributes("TraceId", string("t-1"))
        .send()
        .await
        .expect("send a dead letter");
}

fn dlq_command(w: &World) -> Command {
    let mut cmd = Command::new(worker_binary());
    cmd.env_clear().envs(w.emulator.env_vars()).env("SQS_DLQ_URL", &w.dlq_url).arg("dlq");
    cmd
}

fn output(mut cmd: Command) -> (Output, String) {
    let out = cmd.stdin(Stdio::null()).output().expect("run student-worker dlq");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, stdout)
}

/// (visible, in flight) on `url`.
async fn counts(w: &World, url: &str) -> (u64, u64) {
    queue_counts(&w.sqs, url).await
}

/// A message as found on a queue.
#[derive(Debug)]
struct Found {
    body: String,
    attributes: BTreeMap<String, String>,
    group: Option<String>,
    dedup: Option<String>,
}

/// Every message on `url` (received and hidden, not deleted).
async fn drain(w: &World, url: &str) -> Vec<Found> {
    let mut out = Vec::new();
    loop {
        let got = w
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(300)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive");
        let messages = got.messages.unwrap_or_default();
        if messages.is_empty() {
            return out;
        }
        for m in messages {
            let system = m.attributes.clone().unwrap_or_default();
            let attrs = m
                .message_attributes
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.string_value.unwrap_or_default()))
                .collect();
            out.push(Found {
                body: m.body.unwrap_or_default(),
                attributes: attrs,
                group: system.get(&MessageSystemAttributeName::MessageGroupId).cloned(),
                dedup: system.get(&MessageSystemAttributeName::MessageDeduplicationId).cloned(),
            });
        }
    }
}

fn bodies(messages: &[Found]) -> BTreeSet<String> {
    messages.iter().map(|m| m.body.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_peek_show_dead_letters_and_lose_none() {
    let w = World::new().await;
    for id in ["101", "102", "103"] {
        dead_letter(&w, &w.dlq_url, &upsert(id, 1), "ItemRejected").await;
    }
    let mut cmd = dlq_command(&w);
    cmd.args(["peek", "--json", "--max", "10"]);
    let (out, stdout) = output(cmd);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(shown.len(), 3, "{stdout}");
    for s in &shown {
        assert_eq!(s["error_code"], "ItemRejected");
        assert_eq!(s["error_message"], "why");
        assert!(s["body"].as_str().is_some_and(|b| b.contains("StudentUpserted")), "{s}");
        assert!(s["dlq_receive_count"].as_u64().is_some_and(|n| n >= 1), "{s}");
    }
    assert_eq!(counts(&w, &w.dlq_url).await, (3, 0), "peek released what it looked at");

    let mut cmd = dlq_command(&w);
    cmd.args(["stats", "--json"]);
    let (out, stdout) = output(cmd);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats: Value = serde_json::from_str(stdout.trim()).expect("stats JSON");
    assert_eq!(stats["dlq"]["counts"]["visible"], 3, "{stats}");
    assert_eq!(stats["sources"][0]["url"], w.queue_url.as_str(), "the redrive source, found by itself");
    assert_eq!(stats["sources"][0]["redrives_here"], true, "{stats}");
    assert!(stats["oldest_age_seconds"].as_i64().is_some_and(|a| a >= 0), "{stats}");
    assert_eq!(stats["scan_complete"], true);
    assert_eq!(counts(&w, &w.dlq_url).await, (3, 0), "stats released what it looked at");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_moves_only_what_matches_and_rewrites_the_attributes() {
    let w = World::new().await;
    let letters = [("101", "ItemRejected"), ("102", "ItemRejected"), ("103", "InvalidEvent"), ("101", "InvalidEvent")];
    for (n, (id, code)) in letters.iter().enumerate() {
        dead_letter(&w, &w.dlq_url, &upsert(id, n as u64 + 1), code).await;
    }
    let mut cmd = dlq_command(&w);
    cmd.args(["replay", "--error-code", "ItemRejected", "--student-id", "101"]);
    let (out, stdout) = output(cmd);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("replay: moved 1, skipped 3, failed 0"), "{stdout}");

    let moved = drain(&w, &w.queue_url).await;
    assert_eq!(bodies(&moved), BTreeSet::from([upsert("101", 1)]));
    let attrs = &moved[0].attributes;
    assert_eq!(attrs.keys().map(String::as_str).collect::<Vec<_>>(), ["ReplayCount", "TraceId"], "{attrs:?}");
    assert_eq!(attrs["ReplayCount"], "1");
    let left = drain(&w, &w.dlq_url).await;
    assert_eq!(bodies(&left), BTreeSet::from([upsert("102", 2), upsert("103", 3), upsert("101", 4)]));
    assert!(left.iter().all(|m| m.attributes.contains_key("ErrorCode")), "skipped messages are untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_moves_nothing_and_max_stops_early() {
    let w = World::new().await;
    for v in 1..=7 {
        dead_letter(&w, &w.dlq_url, &upsert("200", v), "ItemRejected").await;
    }
    let mut cmd = dlq_command(&w);
    cmd.args(["replay", "--dry-run"]);
    let (out, stdout) = output(cmd);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(stdout.lines().filter(|l| l.starts_with("would move ")).count(), 7, "{stdout}");
    assert!(stdout.contains("dry run: would move 7, skipped 0; nothing moved"), "{stdout}");
    assert_eq!(counts(&w, &w.queue_url).await, (0, 0));
    assert_eq!(counts(&w, &w.dlq_url).await, (7, 0), "all released, none hidden");

    let mut cmd = dlq_command(&w);
    cmd.args(["replay", "--max", "3"]);
    let (out, stdout) = output(cmd);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("replay: moved 3, skipped 0, failed 0"), "{stdout}");
    assert_eq!(counts(&w, &w.queue_url).await, (3, 0));
    assert_eq!(counts(&w, &w.dlq_url).await, (4, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_spaces_the_sends() {
    let w = World::new().await;
    for v in 1..=5 {
        dead_letter(&w, &w.dlq_url, &upsert("300", v), "ItemRejected").await;
    }
    let mut cmd = dlq_command(&w);
    cmd.args(["replay", "--rate", "5/s"]);
    let started = Instant::now();
    let (out, stdout) = output(cmd);
    let elapsed = started.elapsed();
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("replay: moved 5, skipped 0, failed 0"), "{stdout}");
    // 5 sends at 5/s are 4 gaps of 0.2 s: a lower bound only.
    assert!(elapsed >= Duration::from_millis(800), "5 messages at 5/s took only {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_replay_keeps_groups_and_uses_fresh_deduplication_ids() {
    let w = World::new().await;
    let args = SetupArgs {
        table_name: "Students".into(),
        queue_name: "students.fifo".into(),
        dlq_name: None,
        max_receive_count: 5,
        visibility_timeout_seconds: 60,
    };
    let fifo = ensure(&w.sdk, &args).await.expect("FIFO setup");
    // A message still on the source with the deduplication id the dead letter had there.
    w.sqs
        .send_message()
        .queue_url(&fifo.queue_url)
        .message_body(upsert("400", 2))
        .message_group_id("400")
        .message_deduplication_id("same-id")
        .send()
        .await
        .expect("send");
    for (body, group, dedup) in [(upsert("400", 1), "400", "same-id"), (upsert("401", 1), "401", "other-id")] {
        w.sqs
            .send_message()
            .queue_url(&fifo.dlq_url)
            .message_body(body)
            .message_group_id(group)
            .message_deduplication_id(dedup)
            .message_attributes("ErrorCode", string("ItemRejected"))
            .send()
            .await
            .expect("dead letter");
    }
    let dlq = Queue::new(w.sqs.clone(), &fifo.dlq_url, REGION);
    let summary = run_replay(&dlq, &ReplayArgs::default(), &CancellationToken::new()).await.expect("replay");
    assert_eq!((summary.moved, summary.failed), (2, 0));

    let on_source = drain(&w, &fifo.queue_url).await;
    assert_eq!(on_source.len(), 3, "a replayed message was swallowed by deduplication: {on_source:?}");
    let replayed: Vec<&Found> = on_source.iter().filter(|m| m.attributes.contains_key("ReplayCount")).collect();
    assert_eq!(replayed.len(), 2, "{on_source:?}");
    for m in replayed {
        let student: Value = serde_json::from_str(&m.body).expect("body");
        assert_eq!(m.group.as_deref(), student["studentId"].as_str(), "its group is kept: {m:?}");
        assert!(m.dedup.as_deref().is_some_and(|d| d.starts_with("replay-")), "fresh dedup id: {m:?}");
    }
    assert_eq!(counts(&w, &fifo.dlq_url).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_replay_loses_nothing() {
    let w = World::new().await;
    let all: BTreeSet<String> = (1..=20).map(|v| upsert("500", v)).collect();
    for body in &all {
        dead_letter(&w, &w.dlq_url, body, "ItemRejected").await;
    }
    let child = dlq_command(&w)
        .args(["replay", "--rate", "4/s"])
        .env("LOG_FORMAT", "text")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start replay");
    let started = Instant::now();
    while counts(&w, &w.queue_url).await.0 < 3 {
        assert!(started.elapsed() < Duration::from_secs(120), "replay made no progress");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await.expect("join").expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("interrupted: moved"), "{stderr}");
    assert_eq!(counts(&w, &w.dlq_url).await.1, 0, "nothing left hidden in the DLQ");

    let on_source = bodies(&drain(&w, &w.queue_url).await);
    let in_dlq = bodies(&drain(&w, &w.dlq_url).await);
    assert!(!on_source.is_empty() && on_source.len() < all.len(), "stopped mid-way: {} moved", on_source.len());
    let everywhere: BTreeSet<String> = on_source.union(&in_dlq).cloned().collect();
    assert_eq!(everywhere, all, "every message is in the DLQ or the source queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_events_processed_by_run_end_in_the_table() {
    let w = World::new().await;
    let events: Vec<String> = ["601", "602", "603"].iter().map(|id| upsert(id, 1)).collect();
    w.send(&events).await;
    // DynamoDB refuses the items for a while: the worker dead-letters them as ItemRejected.
    let proxy = FaultProxy::start(&w.emulator.endpoint).await;
    proxy.inject(FaultRule::new("PutItem", Fault::ValidationException));
    w.run_via(&proxy.endpoint, w.config()).await.expect("run through the proxy");
    assert!(w.table().await.is_empty());
    assert_eq!(counts(&w, &w.dlq_url).await, (3, 0));

    // The problem is fixed: replay them and run again.
    let dlq = Queue::new(w.sqs.clone(), &w.dlq_url, REGION);
    let args = ReplayArgs { error_code: Some("ItemRejected".into()), ..ReplayArgs::default() };
    let summary = run_replay(&dlq, &args, &CancellationToken::new()).await.expect("replay");
    assert_eq!((summary.moved, summary.skipped, summary.failed), (3, 0, 0));
    w.run(w.config()).await.expect("run");
    let table = w.table().await;
    assert_eq!(table.keys().map(String::as_str).collect::<Vec<_>>(), ["601", "602", "603"]);
    assert_eq!(counts(&w, &w.dlq_url).await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_names_only_real_sources_whatever_sqs_queue_url_says() {
    let w = World::new().await;
    // Another DLQ, with a source queue of its own; SQS_QUEUE_URL still names the first world's queue.
    let other = ensure(
        &w.sdk,
        &SetupArgs {
            table_name: w.table.clone(),
            queue_name: "others".into(),
            dlq_name: None,
            max_receive_count: 5,
            visibility_timeout_seconds: 60,
        },
    )
    .await
    .expect("setup of a second queue");
    let mut cmd = dlq_command(&w);
    cmd.env("SQS_QUEUE_URL", &w.queue_url).args(["--dlq-url", &other.dlq_url, "stats", "--json"]);
    let (out, stdout) = output(cmd);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats: Value = serde_json::from_str(stdout.trim()).expect("stats JSON");
    let sources = stats["sources"].as_array().expect("sources");
    assert_eq!(sources.len(), 1, "{stats}");
    assert_eq!((&sources[0]["url"], &sources[0]["redrives_here"]), (&other.queue_url.as_str().into(), &true.into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_counts_by_error_code_peek_filters_by_it_and_replay_leaves_what_cannot_succeed() {
    let w = World::new().await;
    for (id, code) in
        [("701", "ItemRejected"), ("702", "ItemRejected"), ("703", "InvalidEvent"), ("704", "PatchOnDeleted")]
    {
        dead_letter(&w, &w.dlq_url, &upsert(id, 1), code).await;
    }
    let mut cmd = dlq_command(&w);
    cmd.args(["stats", "--json"]);
    let (out, stdout) = output(cmd);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats: Value = serde_json::from_str(stdout.trim()).expect("stats JSON");
    let by_code = &stats["by_error_code"];
    assert_eq!(
        (&by_code["ItemRejected"], &by_code["InvalidEvent"], &by_code["PatchOnDeleted"]),
        (&2.into(), &1.into(), &1.into())
    );
    let mut cmd = dlq_command(&w);
    cmd.arg("stats");
    let (_, stdout) = output(cmd);
    assert!(stdout.contains("by ErrorCode: InvalidEvent 1, ItemRejected 2, PatchOnDeleted 1"), "{stdout}");

    // Any case matches; an unknown code is refused with the list.
    let mut cmd = dlq_command(&w);
    cmd.args(["peek", "--json", "--error-code", "invalidevent"]);
    let (out, stdout) = output(cmd);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    assert_eq!(shown.len(), 1, "{stdout}");
    assert_eq!(shown[0]["error_code"], "InvalidEvent");
    let mut cmd = dlq_command(&w);
    cmd.args(["peek", "--error-code", "Oops"]);
    let (out, _) = output(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("one of BodyTooLarge, MalformedJson, InvalidEvent, PatchOnDeleted, ItemRejected"),
        "{stderr}"
    );

    // Replay moves what can succeed, says where, and leaves the rest unless --force.
    let mut cmd = dlq_command(&w);
    cmd.arg("replay");
    let (out, stdout) = output(cmd);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with(&format!("replaying dead letters from {} to {}", w.dlq_url, w.queue_url)), "{stdout}");
    assert!(stdout.contains("replay: moved 2, skipped 2, failed 0"), "{stdout}");
    assert!(stdout.contains("2 left in the DLQ: their ErrorCode cannot succeed on replay"), "{stdout}");
    assert_eq!(counts(&w, &w.queue_url).await.0, 2);
    assert_eq!(counts(&w, &w.dlq_url).await, (2, 0), "the hopeless ones stay, released");
    let mut cmd = dlq_command(&w);
    cmd.args(["replay", "--force"]);
    let (out, stdout) = output(cmd);
    assert!(out.status.success() && stdout.contains("replay: moved 2, skipped 0"), "{stdout}");
    assert_eq!(counts(&w, &w.queue_url).await.0, 4);
}
