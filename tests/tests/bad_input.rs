//! Bad input that gets past the decoder or never reaches it, against moto:
//! an item DynamoDB refuses (over 400 KB, which no valid event can build, so
//! it is made directly and written with the worker's own `Writer`), and
//! message bodies at the size limits end to end through SQS.
//!
//! What SQS does with big bodies: since 2025 SQS takes messages up to 1 MiB
//! (the queue's `MaximumMessageSize`, 1 MiB by default), and moto 5.2.5 does
//! the same, so a body over the contract's 256 KiB does reach the worker,
//! which dead-letters it as `BodyTooLarge`. moto counts only the body against
//! the limit; AWS counts the message attributes too, so on AWS a body within
//! a few hundred bytes of 1 MiB cannot be forwarded with the dead-letter
//! attributes: the last test shows where such a body ends (in the DLQ by
//! redrive, without an `ErrorCode`), using a DLQ with a smaller limit.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::json;
use student_shared::limits::{
    MAX_BODY_BYTES, MAX_COURSE_CHARS, MAX_COURSES, MAX_EMAIL_CHARS, MAX_EVENT_ID_CHARS, MAX_NAME_CHARS,
    MAX_STUDENT_ID_CHARS,
};
use student_shared::{Change, EventKind, StudentEvent, StudentPatch, StudentRecord, decode};
use student_worker::aws::Clients;
use student_worker::aws::{Action, Kind};
use student_worker::handler::concurrency::Limiter;
use student_worker::handler::write::{WriteError, Writer, Written};
use student_worker::observe::Metrics;
use student_worker_tests::world::World;
use tokio::time::Instant;

/// DynamoDB's item size limit.
const MAX_ITEM_BYTES: usize = 400 * 1024;
/// SQS's largest message (and moto's default `MaximumMessageSize`).
const SQS_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// A character of 4 UTF-8 bytes: the worst case for size per character.
const WIDE: char = '😀';

fn writer(w: &World) -> Writer {
    let clients = Clients::for_worker(&w.sdk, &w.config());
    let metrics = Arc::new(Metrics::new());
    let limiter = Limiter::new(w.config().concurrency, Arc::clone(&metrics));
    Writer::new(clients.dynamodb, &w.table, &clients.region, limiter, metrics)
}

fn upsert_event(student_id: &str, version: u64, record: StudentRecord) -> StudentEvent {
    StudentEvent {
        kind: EventKind::StudentUpserted,
        event_id: format!("{student_id}-v{version}"),
        student_id: student_id.to_owned(),
        version,
        occurred_at: None,
        change: Change::Upsert(record),
    }
}

/// A deadline a minute away: time for every attempt.
fn far_deadline() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

/// Asserts a write was refused by DynamoDB as a bad item: dead-letter it
/// (`ItemRejected`), after one attempt: neither retried nor fatal.
fn assert_rejected(result: &Result<Written, WriteError>, attempts: u32) {
    let Err(WriteError::Aws(e)) = result else { panic!("expected DynamoDB to refuse the item: {result:?}") };
    assert_eq!(e.kind, Kind::Rejected, "{e}");
    assert_eq!(e.action(), Action::DeadLetter, "{e}");
    assert_eq!(e.code.as_deref(), Some("ValidationException"), "{e}");
    assert!(e.message.contains("Item size"), "{e}");
    assert_eq!(attempts, 1, "never retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_over_400_kb_is_rejected_once_not_retried_and_not_fatal() {
    let w = World::new().await;
    let writer = writer(&w);
    // Only a hand-made event can be this big: the contract caps `name` at 256 characters.
    let huge = StudentRecord { name: "x".repeat(MAX_ITEM_BYTES + 10_000), ..StudentRecord::default() };
    let put = writer.write(&upsert_event("big", 1, huge), &far_deadline()).await.retried;
    assert_rejected(&put.result, put.attempts);
    assert!(w.table().await.is_empty());

    // An UpdateItem that would grow a stored item past the limit: the same.
    let big = StudentRecord { name: "y".repeat(MAX_ITEM_BYTES / 2), ..StudentRecord::default() };
    let stored = writer.write(&upsert_event("grows", 1, big), &far_deadline()).await.retried;
    assert_eq!(stored.result.expect("half the limit fits"), Written::Applied);
    let patch = StudentEvent {
        kind: EventKind::StudentPatched,
        event_id: "grows-v2".into(),
        student_id: "grows".into(),
        version: 2,
        occurred_at: None,
        change: Change::Patch(StudentPatch { name: Some("z".repeat(MAX_ITEM_BYTES)), ..StudentPatch::default() }),
    };
    let update = writer.write(&patch, &far_deadline()).await.retried;
    assert_rejected(&update.result, update.attempts);
    // Not checked: the stored item afterwards. moto 5.2.5 applies the SET
    // actions before the one that overflows (Version 2 with the old Name);
    // DynamoDB refuses an UpdateItem as a whole.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_valid_event_fits_in_an_item() {
    let w = World::new().await;
    let wide = |n: usize| std::iter::repeat_n(WIDE, n).collect::<String>();
    let courses: Vec<String> = (0..MAX_COURSES).map(|i| format!("{i:03}{}", wide(MAX_COURSE_CHARS - 3))).collect();
    let body = json!({
        "type": "StudentUpserted",
        "eventId": wide(MAX_EVENT_ID_CHARS),
        "studentId": wide(MAX_STUDENT_ID_CHARS),
        "version": 1,
        "occurredAt": "2026-11-24T10:00:00.123456789+09:00",
        "student": {"name": wide(MAX_NAME_CHARS), "email": format!("@{}", wide(MAX_EMAIL_CHARS - 1)),
                    "grade": 99, "status": "withdrawn", "courses": courses},
    })
    .to_string();
    assert!(body.len() < MAX_ITEM_BYTES / 20, "{} bytes: the contract keeps items far below 400 KB", body.len());
    let event = decode(body.as_bytes()).expect("the largest valid event").event;
    let written = writer(&w).write(&event, &far_deadline()).await.retried;
    assert_eq!(written.result.expect("stored"), Written::Applied);
}

/// A valid upsert padded with an unknown field to exactly `len` bytes.
fn padded_upsert(student_id: &str, len: usize) -> String {
    let mut event = json!({"type": "StudentUpserted", "eventId": format!("{student_id}-v1"), "studentId": student_id,
                           "version": 1, "student": {"name": "Padded"}, "padding": ""});
    let base = event.to_string().len();
    event["padding"] = json!("p".repeat(len - base));
    let body = event.to_string();
    assert_eq!(body.len(), len);
    body
}

async fn send_one(w: &World, queue_url: &str, body: &str) -> Result<(), String> {
    w.sqs.send_message().queue_url(queue_url).message_body(body).send().await.map(|_| ()).map_err(|e| {
        let code = aws_sdk_sqs::error::ProvideErrorMetadata::code(&e).unwrap_or("none").to_owned();
        format!("{code}: {}", aws_sdk_sqs::error::ProvideErrorMetadata::message(&e).unwrap_or_default())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_up_to_what_sqs_carries_are_applied_or_dead_lettered_as_body_too_large() {
    let w = World::new().await;
    let at_limit = padded_upsert("at-limit", MAX_BODY_BYTES);
    let over = padded_upsert("over", MAX_BODY_BYTES + 1);
    let largest = padded_upsert("largest", SQS_MAX_MESSAGE_BYTES);
    for body in [&at_limit, &over, &largest] {
        send_one(&w, &w.queue_url, body).await.expect("SQS (and moto) take up to 1 MiB");
    }
    let refused = send_one(&w, &w.queue_url, &padded_upsert("too-big", SQS_MAX_MESSAGE_BYTES + 1)).await;
    let refusal = refused.expect_err("one byte over 1 MiB");
    assert!(refusal.starts_with("InvalidParameterValue"), "{refusal}");

    let summary = w.run(w.config()).await.expect("run");
    assert_eq!((summary.outcomes["applied"], summary.outcomes["invalid"]), (1, 2), "{summary:?}");
    assert!(w.table().await.contains_key("at-limit"));
    let dead = w.dead_letters().await;
    assert_eq!(dead.len(), 2);
    for (d, size) in [(&over, MAX_BODY_BYTES + 1), (&largest, SQS_MAX_MESSAGE_BYTES)] {
        let letter = dead.iter().find(|l| &l.body == d).expect("dead-lettered with the whole body");
        assert_eq!(letter.attributes["ErrorCode"], "BodyTooLarge");
        assert_eq!(
            letter.attributes["ErrorMessage"],
            format!("body: {size} bytes exceeds the 256 KiB limit ({MAX_BODY_BYTES} bytes)")
        );
    }
    assert_eq!(w.queue_counts().await, (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_the_dlq_cannot_take_is_retried_until_redrive_moves_it_without_a_reason() {
    // Redrive after 2 receives; 15 s visibility: about 30 s.
    let w = World::with_max_receive_count(2).await;
    // The DLQ takes less than the source queue: what AWS does to a ~1 MiB
    // body, whose attributes push the forwarded message over 1 MiB.
    w.sqs
        .set_queue_attributes()
        .queue_url(&w.dlq_url)
        .attributes(QueueAttributeName::MaximumMessageSize, MAX_BODY_BYTES.to_string())
        .send()
        .await
        .expect("shrink the DLQ's limit");
    let body = padded_upsert("stuck", MAX_BODY_BYTES + 1);
    send_one(&w, &w.queue_url, &body).await.expect("the source queue takes it");
    let mut config = w.config();
    config.visibility_timeout_seconds = 15;
    let summary = w.run(config).await.expect("run");
    // Each delivery tried the DLQ and left the message; then SQS moved it.
    assert_eq!(summary.outcomes["retry"], 2, "{summary:?}");
    assert_eq!(summary.outcomes["invalid"], 0, "{summary:?}");
    let dead = w.dead_letters().await;
    assert_eq!(dead.len(), 1, "not lost: redrive moved it");
    assert_eq!(dead[0].body, body);
    assert!(!dead[0].attributes.contains_key("ErrorCode"), "redrive forwards no reason: {:?}", dead[0].attributes);
    assert_eq!(w.queue_counts().await, (0, 0));
}
