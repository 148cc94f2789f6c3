//! The worker's core reliability loop against moto, with faults from the
//! proxy: the visibility heartbeat (slow writes keep their message without a
//! second delivery; extensions stop at the maximum; a refused extension is
//! fatal), FIFO ordering per message group (a failed message holds only its
//! own group), adaptive write concurrency under throttling, and fatal errors
//! on FIFO queues that dead-letter nothing and release everything.

use std::time::Duration;

use serde_json::json;
use student_worker::aws::Kind;
use student_worker::runtime::ecs::RunError;
use student_worker_tests::proxy::{Fault, FaultProxy, FaultRule};
use student_worker_tests::world::World;

fn upsert(id: &str, v: u64, grade: u64) -> String {
    json!({"type": "StudentUpserted", "eventId": format!("{id}-v{v}"), "studentId": id, "version": v,
           "student": {"name": format!("Student {id}"), "grade": grade}})
    .to_string()
}

fn patch(id: &str, v: u64, grade: u64) -> String {
    json!({"type": "StudentPatched", "eventId": format!("{id}-v{v}"), "studentId": id, "version": v,
           "student": {"grade": grade}})
    .to_string()
}

fn number(item: &student_worker_tests::world::Item, name: &str) -> String {
    item[name].as_n().unwrap_or_else(|_| panic!("{name} is not N: {item:?}")).clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_keeps_slow_writes_on_their_first_delivery() {
    let w = World::new().await;
    let proxy = FaultProxy::start(&w.emulator.endpoint).await;
    // Five writes of one student, one after the other, 3 s each: 15 s of work
    // for messages whose visibility is 15 s and whose first deadline leaves
    // room for writes only in the first 5 s.
    proxy.inject(FaultRule::new("PutItem", Fault::Latency(Duration::from_secs(3))));
    proxy.inject(FaultRule::new("UpdateItem", Fault::Latency(Duration::from_secs(3))));
    let mut bodies = vec![upsert("1", 1, 1)];
    bodies.extend((2..=5).map(|v| patch("1", v, v)));
    w.send(&bodies).await;
    let mut config = w.config();
    config.visibility_timeout_seconds = 15;
    let summary = w.run_via(&proxy.endpoint, config).await.expect("run");
    assert_eq!(summary.outcomes["applied"], 5, "{summary:?}");
    assert_eq!(summary.outcomes["retry"], 0, "no write ran out of time: {summary:?}");
    assert_eq!(summary.received, 5, "no message was delivered twice: {summary:?}");
    assert!(summary.heartbeat.extended >= 1, "{summary:?}");
    assert!(proxy.calls("ChangeMessageVisibilityBatch") >= 1);
    // No extension was sent for a message already deleted (moto would refuse its receipt).
    assert_eq!(summary.heartbeat.failed, 0, "{summary:?}");
    assert_eq!(number(&w.table().await["1"], "Version"), "5");
    assert!(w.dead_letters().await.is_empty());
    assert_eq!(w.queue_counts().await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extensions_stop_at_the_maximum_and_the_write_gives_up_in_time() {
    let w = World::new().await;
    let proxy = FaultProxy::start(&w.emulator.endpoint).await;
    proxy.inject(FaultRule::new("PutItem", Fault::Throttle));
    w.send(&[upsert("1", 1, 1)]).await;
    let mut config = w.config();
    config.visibility_timeout_seconds = 15;
    // Kept at most 20 s: the deadline ends at 15 s, the last attempt starts by 10 s.
    config.max_visibility_extension_seconds = 20;
    config.exit_when_empty = false;
    config.shutdown_grace_seconds = 0;
    let summary = w.run_stopped_after(&proxy.endpoint, config, Duration::from_secs(14)).await.expect("run");
    // Still retrying at the 14 s stop would make it `released`: the extensions stopped.
    assert_eq!(summary.outcomes["retry"], 1, "{summary:?}");
    assert_eq!(summary.outcomes["released"], 0, "{summary:?}");
    assert!(summary.heartbeat.extended >= 1, "the first deadline (5 s) was moved: {summary:?}");
    assert_eq!(summary.heartbeat.failed, 0, "{summary:?}");
    assert!(w.table().await.is_empty());
    assert!(w.dead_letters().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_may_not_extend_visibility_stops_the_worker_and_loses_nothing() {
    let w = World::new().await;
    let proxy = FaultProxy::start(&w.emulator.endpoint).await;
    // Slow writes make the heartbeat due 2 s after the receive; its first call
    // is refused. The release afterwards (a later call) goes through.
    proxy.inject(FaultRule::new("PutItem", Fault::Latency(Duration::from_secs(4))));
    proxy.inject(FaultRule::new("ChangeMessageVisibilityBatch", Fault::AccessDenied).times(1));
    let bodies: Vec<String> = (1..=4).map(|i| upsert(&i.to_string(), 1, i)).collect();
    w.send(&bodies).await;
    let mut config = w.config();
    config.visibility_timeout_seconds = 15;
    let Err(RunError::Fatal(e)) = w.run_via(&proxy.endpoint, config).await else { panic!("expected a fatal error") };
    assert_eq!(e.kind, Kind::AccessDenied, "{e}");
    assert!(
        e.to_string().starts_with("AccessDenied on sqs:ChangeMessageVisibilityBatch for queue http://127.0.0.1:")
            && e.to_string().contains("the role lacks sqs:ChangeMessageVisibilityBatch on queue http://127.0.0.1:"),
        "{e}"
    );
    assert!(w.dead_letters().await.is_empty(), "a permission problem must not dead-letter messages");
    assert_eq!(w.leftovers().await.len(), bodies.len(), "every message released back to the queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_groups_keep_their_order_and_a_failed_message_holds_only_its_group() {
    let w = World::fifo().await;
    assert!(w.queue_url.ends_with("students.fifo"), "{}", w.queue_url);
    // B and C already have version 1; their patches are UpdateItems. Only A's
    // first message is a PutItem, and that one write is made slower than an
    // attempt may take (5 s), so it ends as `retry` on its first delivery.
    for id in ["B", "C"] {
        w.dynamodb
            .put_item()
            .table_name(&w.table)
            .item("StudentID", aws_sdk_dynamodb::types::AttributeValue::S(id.into()))
            .item("Name", aws_sdk_dynamodb::types::AttributeValue::S(format!("Student {id}")))
            .item("Version", aws_sdk_dynamodb::types::AttributeValue::N("1".into()))
            .send()
            .await
            .expect("seed");
    }
    let proxy = FaultProxy::start(&w.emulator.endpoint).await;
    proxy.inject(FaultRule::new("PutItem", Fault::Latency(Duration::from_secs(6))).times(1));
    let mut messages = Vec::new();
    for v in 1..=3u64 {
        messages.push(("A", if v == 1 { upsert("A", 1, 1) } else { patch("A", v, v) }));
        messages.push(("B", patch("B", v + 1, v + 1)));
        messages.push(("C", patch("C", v + 1, v + 1)));
    }
    w.send_grouped(&messages).await;
    let mut config = w.config();
    config.visibility_timeout_seconds = 15;
    config.max_visibility_extension_seconds = 0; // no heartbeat: A's slow write runs out of time
    let summary = w.run_via(&proxy.endpoint, config).await.expect("run");

    assert_eq!(summary.outcomes["retry"], 1, "A's first message: {summary:?}");
    assert_eq!(summary.outcomes["released"], 2, "A's later messages, unprocessed: {summary:?}");
    assert_eq!(summary.outcomes["deferred"], 0, "no patch ran before its predecessor: {summary:?}");
    assert_eq!(summary.outcomes["applied"] + summary.outcomes["duplicate"], 9, "{summary:?}");
    // B's and C's messages were delivered once; A's three came back after A's first.
    assert_eq!(summary.received, 12, "{summary:?}");
    let table = w.table().await;
    assert_eq!((number(&table["A"], "Version"), number(&table["A"], "Grade")), ("3".into(), "3".into()));
    for id in ["B", "C"] {
        assert_eq!((number(&table[id], "Version"), number(&table[id], "Grade")), ("4".into(), "4".into()), "{id}");
    }
    assert!(w.dead_letters().await.is_empty());
    assert_eq!(w.queue_counts().await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_on_a_fifo_queue_dead_letters_nothing_and_releases_everything() {
    let w = World::fifo().await;
    let proxy = FaultProxy::start(&w.emulator.endpoint).await;
    proxy.inject(FaultRule::new("PutItem", Fault::AccessDenied));
    let messages: Vec<(&str, String)> =
        ["A", "B", "C"].iter().flat_map(|g| (1..=3).map(move |v| (*g, upsert(g, v, v)))).collect();
    w.send_grouped(&messages).await;
    let Err(RunError::Fatal(e)) = w.run_via(&proxy.endpoint, w.config()).await else {
        panic!("expected a fatal error")
    };
    assert_eq!(e.kind, Kind::AccessDenied, "{e}");
    assert!(w.table().await.is_empty());
    assert!(w.dead_letters().await.is_empty(), "DLQ stays empty");
    assert_eq!(w.queue_counts().await, (messages.len() as u64, 0), "every message is back on the queue, visible");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_lowers_the_write_concurrency_and_successes_raise_it_again() {
    let w = World::new().await;
    let proxy = FaultProxy::start(&w.emulator.endpoint).await;
    // The first dozen writes are throttled, then DynamoDB keeps up.
    proxy.inject(FaultRule::new("PutItem", Fault::Throttle).times(12));
    let bodies: Vec<String> = (1..=60).map(|i| upsert(&format!("s{i}"), 1, i % 100)).collect();
    w.send(&bodies).await;
    let mut config = w.config();
    config.concurrency = 8;
    let summary = w.run_via(&proxy.endpoint, config).await.expect("run");
    assert!(summary.concurrency_decreases >= 1, "{summary:?}");
    assert!(summary.min_concurrency < 8, "{summary:?}");
    assert!(summary.concurrency_increases >= 1, "{summary:?}");
    assert_eq!(summary.final_concurrency, 8, "back at WORKER_CONCURRENCY after the throttling: {summary:?}");
    assert_eq!(summary.outcomes["applied"], 60, "nothing lost: {summary:?}");
    assert_eq!(proxy.faults_injected("PutItem"), 12);
    assert_eq!(w.table().await.len(), 60);
    assert!(w.dead_letters().await.is_empty());
    assert_eq!(w.queue_counts().await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_messages_are_not_hidden_again_by_the_heartbeat() {
    let w = World::new().await;
    let proxy = FaultProxy::start(&w.emulator.endpoint).await;
    // Writes slower than an attempt may take, so none ends: the heartbeat
    // extends every message (due 2 s after the receive) before the stop at
    // 4 s releases them.
    proxy.inject(FaultRule::new("PutItem", Fault::Latency(Duration::from_secs(6))));
    let bodies: Vec<String> = (1..=3).map(|i| upsert(&format!("r{i}"), 1, i)).collect();
    w.send(&bodies).await;
    let mut config = w.config();
    config.visibility_timeout_seconds = 15;
    config.exit_when_empty = false;
    config.shutdown_grace_seconds = 0;
    let summary = w.run_stopped_after(&proxy.endpoint, config, Duration::from_secs(4)).await.expect("run");
    assert!(summary.heartbeat.extended >= 1, "{summary:?}");
    assert_eq!(summary.outcomes["released"], 3, "{summary:?}");
    // Released means visible now, not after another visibility timeout.
    assert_eq!(w.queue_counts().await, (3, 0), "a released message was hidden again: {summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_table_is_not_fed_more_messages_than_it_takes() {
    // Half the writes throttled all along: the write concurrency stays near
    // its floor, so the worker holds (receives ahead) only what that level
    // can write, not the 102 messages it holds at its full concurrency of 32
    // (which would wait, extended by the heartbeat, for slots that do not come).
    let w = World::new().await;
    let proxy = FaultProxy::start(&w.emulator.endpoint).await;
    proxy.inject(FaultRule::new("PutItem", Fault::Throttle).rate(0.5));
    let bodies: Vec<String> = (1..=300).map(|i| upsert(&format!("s{i}"), 1, i % 100)).collect();
    w.send(&bodies).await;
    let config = w.config();
    assert_eq!(config.concurrency, 32);
    let sample_in_flight = async {
        // What was received before the first throttles lowered the level drains first.
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        let mut samples = Vec::new();
        loop {
            let (visible, in_flight) = w.queue_counts().await;
            if visible == 0 {
                return samples;
            }
            samples.push(in_flight);
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    };
    let (summary, mut samples) = tokio::join!(w.run_via(&proxy.endpoint, config), sample_in_flight);
    let summary = summary.expect("run");
    assert_eq!(summary.outcomes["applied"], 300, "nothing lost: {summary:?}");
    assert!(summary.min_concurrency <= 4, "the throttling kept the level low: {summary:?}");
    assert!(samples.len() >= 3, "the run was too short to sample: {samples:?}");
    samples.sort_unstable();
    let median = samples[samples.len() / 2];
    assert!(median <= 50, "messages held under throttling: median {median} (102 at full concurrency): {samples:?}");
    assert_eq!(w.queue_counts().await, (0, 0));
}
