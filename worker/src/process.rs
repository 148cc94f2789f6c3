//! Turns a received batch into outcomes: decodes every body, groups it and
//! works through each group one message after the other, writes, and hands
//! each message's fate to the acker. One JSON log line per message.
//!
//! Standard queues: one group per student, in version order (so a burst of
//! patches does not defer itself), all groups at once. FIFO queues: one group
//! per `MessageGroupId`, in receive order; when a message of a group does not
//! finish (retry, deferred, released), the later ones of that group are
//! released unprocessed, so SQS hands them out again after it, in order.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use student_shared::outcome::ConditionFailure;
use student_shared::{ContractError, Decoded, ErrorCode, Outcome, decode};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use crate::ack::{Ack, AckSender};
use crate::deadletter::DeadLetter;
use crate::error::{Action, AwsError};
use crate::heartbeat::Lease;
use crate::poll::Received;
use crate::write::{WriteError, Writer, Written};

/// A deferred patch first comes back after this long...
pub const DEFER_BASE_SECONDS: i32 = 2;
/// ...four times longer with each receive, up to `WORKER_MAX_DEFER_SECONDS`
/// (default 15 minutes), so that within maxReceiveCount 5 a patch waits
/// 2 + 8 + 32 + 128 + 512 s ≈ 11 min for its predecessor: longer than a
/// predecessor held through a whole heartbeat period (5 min by default).
pub const DEFER_GROWTH: i32 = 4;

/// One message with its decoded event (or why it has none) and its lease.
#[derive(Debug)]
pub struct Work {
    /// The message.
    pub message: Received,
    /// The event, or the refusal.
    pub decoded: Result<Decoded, ContractError>,
    /// Its visibility, kept extended by the heartbeat until it is finished.
    pub lease: Arc<Lease>,
}

impl Work {
    /// Decodes `message`; `lease` tracks its visibility.
    pub fn new(message: Received, lease: Arc<Lease>) -> Self {
        let decoded = decode(message.body.as_bytes());
        Self { message, decoded, lease }
    }

    fn student_id(&self) -> Option<&str> {
        self.decoded.as_ref().ok().map(|d| d.event.student_id.as_str())
    }

    fn version(&self) -> u64 {
        self.decoded.as_ref().map_or(0, |d| d.event.version)
    }
}

/// How a batch is split into groups, each worked through in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    /// Standard queue: by student, in version order; a failure does not hold the group.
    ByStudent,
    /// FIFO queue: by `MessageGroupId`, in receive order; a failure releases the rest.
    ByMessageGroup,
}

impl Grouping {
    /// FIFO for a queue URL ending in `.fifo`.
    pub fn for_queue(queue_url: &str) -> Self {
        if queue_url.ends_with(".fifo") { Self::ByMessageGroup } else { Self::ByStudent }
    }

    /// Splits a batch into groups (keeping the batch's order of groups).
    pub fn group(self, batch: Vec<Work>) -> Vec<Vec<Work>> {
        match self {
            Self::ByStudent => group_by_student(batch),
            Self::ByMessageGroup => group_by(batch, |w| w.message.group_id.clone()),
        }
    }
}

/// One group per student, sorted by version; each undecodable message alone.
pub fn group_by_student(batch: Vec<Work>) -> Vec<Vec<Work>> {
    let mut groups = group_by(batch, |w| w.student_id().map(str::to_owned));
    for group in &mut groups {
        group.sort_by_key(Work::version);
    }
    groups
}

/// Groups by `key` in arrival order; a message without a key is alone.
fn group_by(batch: Vec<Work>, key: impl Fn(&Work) -> Option<String>) -> Vec<Vec<Work>> {
    let mut groups: Vec<(Option<String>, Vec<Work>)> = Vec::new();
    for work in batch {
        let k = key(&work);
        match groups.iter_mut().find(|(g, _)| k.is_some() && *g == k) {
            Some((_, group)) => group.push(work),
            None => groups.push((k, vec![work])),
        }
    }
    groups.into_iter().map(|(_, group)| group).collect()
}

/// How long a deferred patch stays invisible: grows with each receive, up to `max_seconds`.
pub fn defer_seconds(receive_count: u32, max_seconds: i32) -> i32 {
    let steps = receive_count.saturating_sub(1).min(16);
    (0..steps).fold(DEFER_BASE_SECONDS, |s, _| s.saturating_mul(DEFER_GROWTH)).min(max_seconds)
}

/// Whether a group's next message may go ahead after this outcome: the
/// message is done with (deleted or dead-lettered), not left to come back.
fn is_settled(outcome: Outcome) -> bool {
    matches!(outcome, Outcome::Applied | Outcome::Duplicate | Outcome::Stale | Outcome::Invalid)
}

/// What the processing tasks share.
#[derive(Debug)]
pub struct Context {
    /// Applies events.
    pub writer: Writer,
    /// Forwards invalid messages.
    pub dead_letter: DeadLetter,
    /// Finishes messages on the queue.
    pub acks: AckSender,
    /// Cancelled when in-flight work must be released now (grace over, or fatal).
    pub abort: CancellationToken,
    /// The first fatal error; setting it stops the worker.
    pub fatal: FatalSlot,
    /// Outcomes so far.
    pub counts: OutcomeCounts,
    /// The cap of the deferral ladder (`WORKER_MAX_DEFER_SECONDS`).
    pub max_defer_seconds: i32,
}

/// How many messages ended with each outcome.
#[derive(Debug, Default)]
pub struct OutcomeCounts([AtomicU64; Outcome::ALL.len()]);

impl OutcomeCounts {
    fn add(&self, outcome: Outcome) {
        self.0[outcome as usize].fetch_add(1, Relaxed);
    }

    /// A copy of the counts.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        Outcome::ALL.iter().map(|o| (o.as_str(), self.0[*o as usize].load(Relaxed))).collect()
    }
}

/// Holds the first fatal error and stops the worker when one is recorded.
#[derive(Debug, Clone)]
pub struct FatalSlot {
    error: Arc<Mutex<Option<AwsError>>>,
    stop: CancellationToken,
    abort: CancellationToken,
}

impl FatalSlot {
    /// A slot that cancels `stop` (no new receives) and `abort` (release in-flight work).
    pub fn new(stop: CancellationToken, abort: CancellationToken) -> Self {
        Self { error: Arc::default(), stop, abort }
    }

    /// Records `error` (the first one wins) and stops the worker.
    pub fn set(&self, error: AwsError) {
        if let Ok(mut slot) = self.error.lock()
            && slot.is_none()
        {
            tracing::error!(error = %error, "fatal: stopping; in-flight messages are released");
            *slot = Some(error);
        }
        self.stop.cancel();
        self.abort.cancel();
    }

    /// The recorded error, if any.
    pub fn take(&self) -> Option<AwsError> {
        self.error.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// What became of one message.
struct Handled {
    outcome: Outcome,
    ack: Option<Ack>,
    attempts: u32,
    refusal: Option<ContractError>,
}

impl Handled {
    fn new(outcome: Outcome, ack: Option<Ack>, attempts: u32) -> Self {
        Self { outcome, ack, attempts, refusal: None }
    }
}

/// Works through one group in order; `_permit` holds this group's share of
/// the message limit until it is done.
pub async fn process_group(ctx: Arc<Context>, group: Vec<Work>, grouping: Grouping, _permit: OwnedSemaphorePermit) {
    let mut works = group.into_iter();
    while let Some(work) = works.next() {
        let handled = tokio::select! {
            biased;
            () = ctx.abort.cancelled() => released(&work),
            handled = handle(&ctx, &work) => handled,
        };
        let holds_the_group = grouping == Grouping::ByMessageGroup && !is_settled(handled.outcome);
        finish(&ctx, &work, handled).await;
        if holds_the_group {
            let rest: Vec<Work> = works.by_ref().collect();
            if !rest.is_empty() {
                tracing::info!(message_id = %work.message.message_id, group_id = work.message.group_id.as_deref().unwrap_or(""), released = rest.len(), "FIFO group held: its later messages are released to keep their order");
            }
            for later in rest {
                finish(&ctx, &later, released(&later)).await;
            }
        }
    }
}

/// Stops the heartbeat for the message, then logs, counts and acks it.
async fn finish(ctx: &Context, work: &Work, handled: Handled) {
    work.lease.finish().await;
    log_outcome(work, &handled);
    ctx.counts.add(handled.outcome);
    crate::metrics::global().finished(handled.outcome, handled.attempts); // observe (issue 5)
    if let Some(ack) = handled.ack {
        // The acker outlives every processing task; a send error means it is gone.
        let _ = ctx.acks.send(ack);
    }
}

async fn handle(ctx: &Context, work: &Work) -> Handled {
    let decoded = match &work.decoded {
        Ok(decoded) => decoded,
        Err(refusal) => return dead_letter(ctx, work, refusal.clone(), 0).await,
    };
    if !decoded.unknown_fields.is_empty() {
        tracing::debug!(message_id = %work.message.message_id, count = decoded.unknown_fields.len(), fields = ?decoded.unknown_fields, "unknown fields ignored");
    }
    let started = std::time::Instant::now(); // observe (issue 5): write latency
    let written = ctx.writer.write(&decoded.event, &work.lease).await;
    crate::metrics::global().write_latency(started.elapsed()); // observe (issue 5)
    let attempts = written.attempts;
    let receipt = work.message.receipt_handle.clone();
    match written.result {
        Ok(Written::Applied) => Handled::new(Outcome::Applied, Some(Ack::Delete(receipt)), attempts),
        Ok(Written::NotApplied(why)) => match why {
            ConditionFailure::Duplicate => Handled::new(Outcome::Duplicate, Some(Ack::Delete(receipt)), attempts),
            ConditionFailure::Stale { stored_version } => {
                if stored_version == decoded.event.version {
                    tracing::warn!(message_id = %work.message.message_id, student_id = %decoded.event.student_id, version = stored_version, "stale: another event with the same version is stored (upstream reused a version)");
                }
                Handled::new(Outcome::Stale, Some(Ack::Delete(receipt)), attempts)
            }
            ConditionFailure::Deferred { .. } => {
                let delay = defer_seconds(work.message.receive_count, ctx.max_defer_seconds);
                Handled::new(Outcome::Deferred, Some(Ack::Visibility(receipt, delay)), attempts)
            }
            ConditionFailure::PatchOnDeleted => {
                let refusal = ContractError::new(
                    ErrorCode::PatchOnDeleted,
                    "type",
                    format!("StudentPatched version {} follows a StudentDeleted tombstone", decoded.event.version),
                );
                dead_letter(ctx, work, refusal, attempts).await
            }
            // Leave it: the next delivery tries again.
            ConditionFailure::Unexplained => {
                tracing::warn!(message_id = %work.message.message_id, student_id = %decoded.event.student_id, "condition failed but the stored item does not say why (malformed Version?); leaving the message for another try");
                Handled::new(Outcome::Retry, None, attempts)
            }
        },
        Err(error) => match error.action() {
            Action::Retry => Handled::new(Outcome::Retry, None, attempts),
            Action::DeadLetter => dead_letter(ctx, work, refusal_of(error), attempts).await,
            Action::Stop => {
                if let WriteError::Aws(e) = error {
                    ctx.fatal.set(e);
                }
                released(work)
            }
        },
    }
}

/// DynamoDB's refusal of the item as a dead-letter reason.
fn refusal_of(error: WriteError) -> ContractError {
    match error {
        WriteError::Plan(refusal) => refusal,
        WriteError::Aws(e) => ContractError::new(ErrorCode::ItemRejected, "item", e.message),
        WriteError::OutOfTime => ContractError::new(ErrorCode::ItemRejected, "item", "out of time"),
    }
}

/// Forwards to the DLQ (when configured), then deletes; without a DLQ the
/// message stays for the queue's redrive policy.
async fn dead_letter(ctx: &Context, work: &Work, refusal: ContractError, attempts: u32) -> Handled {
    let receipt = work.message.receipt_handle.clone();
    let ack = match ctx.dead_letter.forward(&work.message, &refusal, work.student_id()).await {
        Ok(()) if ctx.dead_letter.is_enabled() => Some(Ack::Delete(receipt)),
        Ok(()) => None,
        Err(e) if e.action() == Action::Stop => {
            ctx.fatal.set(e);
            return released(work);
        }
        Err(e) => {
            tracing::warn!(error = %e, message_id = %work.message.message_id, "DLQ send failed: leaving the message on the queue");
            return Handled::new(Outcome::Retry, None, attempts);
        }
    };
    Handled { outcome: Outcome::Invalid, ack, attempts, refusal: Some(refusal) }
}

/// Gives the message back to the queue at once.
fn released(work: &Work) -> Handled {
    Handled::new(Outcome::Released, Some(Ack::Visibility(work.message.receipt_handle.clone(), 0)), 0)
}

/// The one line per message outcome (no personal fields).
fn log_outcome(work: &Work, handled: &Handled) {
    let event = work.decoded.as_ref().ok().map(|d| &d.event);
    let elapsed_ms = u64::try_from(work.message.received_at.elapsed().as_millis()).unwrap_or(u64::MAX);
    let code = handled.refusal.as_ref().map(|r| r.code().as_str());
    let reason = handled.refusal.as_ref().map(ToString::to_string);
    tracing::info!(
        message_id = %work.message.message_id,
        student_id = event.map_or("", |e| e.student_id.as_str()),
        event_id = event.map_or("", |e| e.event_id.as_str()),
        version = event.map_or(0, |e| e.version),
        outcome = handled.outcome.as_str(),
        attempts = handled.attempts,
        elapsed_ms,
        receive_count = work.message.receive_count,
        error_code = code,
        reason = reason.as_deref(),
        "message"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_MAX_DEFER_SECONDS;
    use tokio::time::Instant;

    fn work(body: &str, group: Option<&str>) -> Work {
        let message = Received {
            message_id: body.len().to_string(),
            receipt_handle: "r".into(),
            body: body.into(),
            receive_count: 1,
            received_at: Instant::now(),
            visible_until: Instant::now(),
            group_id: group.map(str::to_owned),
            attributes: Default::default(),
        };
        let lease = Lease::new(&message);
        Work::new(message, lease)
    }

    fn ev(student: &str, version: u64) -> String {
        format!(
            r#"{{"type":"StudentDeleted","eventId":"{student}-{version}","studentId":"{student}","version":{version}}}"#
        )
    }

    fn shape(groups: &[Vec<Work>]) -> Vec<Vec<u64>> {
        groups.iter().map(|g| g.iter().map(Work::version).collect()).collect()
    }

    #[test]
    fn groups_by_student_in_version_order() {
        let batch = [ev("a", 3), ev("b", 1), "not json".into(), ev("a", 1), ev("a", 2), "{".into()];
        let groups = Grouping::ByStudent.group(batch.iter().map(|b| work(b, None)).collect());
        assert_eq!(shape(&groups), vec![vec![1, 2, 3], vec![1], vec![0], vec![0]]);
        assert!(groups[2][0].decoded.is_err());
    }

    #[test]
    fn fifo_groups_by_message_group_in_receive_order() {
        let batch = vec![
            work(&ev("a", 3), Some("g1")),
            work(&ev("b", 1), Some("g2")),
            work("not json", Some("g1")),
            work(&ev("a", 1), Some("g1")),
        ];
        let groups = Grouping::for_queue("https://sqs.x/1/students.fifo").group(batch);
        assert_eq!(shape(&groups), vec![vec![3, 0, 1], vec![1]], "receive order kept, never re-sorted");
        assert_eq!(Grouping::for_queue("https://sqs.x/1/students"), Grouping::ByStudent);
    }

    #[test]
    fn deferral_grows_and_is_capped() {
        let default = |n| defer_seconds(n, DEFAULT_MAX_DEFER_SECONDS);
        let delays: Vec<i32> = (1..=8).map(default).collect();
        assert_eq!(delays, vec![2, 8, 32, 128, 512, 900, 900, 900]);
        assert_eq!(default(u32::MAX), 900);
        // Within maxReceiveCount 5 a deferred patch waits longer than the default heartbeat period.
        assert!((1..=5).map(default).sum::<i32>() > 600);
        // A smaller cap (WORKER_MAX_DEFER_SECONDS) holds from where the ladder reaches it.
        let capped: Vec<i32> = (1..=4).map(|n| defer_seconds(n, 10)).collect();
        assert_eq!(capped, vec![2, 8, 10, 10]);
        // SQS's 12-hour limit is the largest cap; the ladder never overflows on the way.
        assert_eq!(defer_seconds(u32::MAX, 43_200), 43_200);
    }

    #[test]
    fn only_finished_messages_let_a_fifo_group_go_on() {
        assert!(is_settled(Outcome::Applied) && is_settled(Outcome::Invalid) && is_settled(Outcome::Stale));
        assert!(!is_settled(Outcome::Retry) && !is_settled(Outcome::Deferred) && !is_settled(Outcome::Released));
    }
}
