//! Turns a received batch into outcomes: decodes every body, groups the
//! events of one student and applies them one after the other in version
//! order (so a burst of patches does not defer itself), writes, and hands
//! each message's fate to the acker. One JSON log line per message.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use student_shared::outcome::ConditionFailure;
use student_shared::{ContractError, Decoded, ErrorCode, Outcome, decode};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use crate::ack::{Ack, AckSender};
use crate::deadletter::DeadLetter;
use crate::error::{Action, AwsError};
use crate::poll::Received;
use crate::write::{WriteError, Writer, Written};

/// A deferred patch first comes back after this long...
pub const DEFER_BASE_SECONDS: i32 = 2;
/// ...doubling with each receive, up to this.
pub const DEFER_MAX_SECONDS: i32 = 60;

/// One message with its decoded event (or why it has none).
#[derive(Debug)]
pub struct Work {
    /// The message.
    pub message: Received,
    /// The event, or the refusal.
    pub decoded: Result<Decoded, ContractError>,
}

impl Work {
    fn student_id(&self) -> Option<&str> {
        self.decoded.as_ref().ok().map(|d| d.event.student_id.as_str())
    }

    fn version(&self) -> u64 {
        self.decoded.as_ref().map_or(0, |d| d.event.version)
    }
}

/// Decodes a batch and groups it: one group per student, sorted by version;
/// each undecodable message alone. Groups keep the batch's order.
pub fn group_by_student(batch: Vec<Received>) -> Vec<Vec<Work>> {
    let mut groups: Vec<Vec<Work>> = Vec::new();
    for message in batch {
        let decoded = decode(message.body.as_bytes());
        let work = Work { message, decoded };
        let same = work.student_id().and_then(|id| groups.iter().position(|g| g[0].student_id() == Some(id)));
        match same {
            Some(i) => groups[i].push(work),
            None => groups.push(vec![work]),
        }
    }
    for group in &mut groups {
        group.sort_by_key(Work::version);
    }
    groups
}

/// How long a deferred patch stays invisible: grows with each receive.
pub fn defer_seconds(receive_count: u32) -> i32 {
    let doublings = receive_count.saturating_sub(1).min(16);
    DEFER_BASE_SECONDS.saturating_mul(1 << doublings).min(DEFER_MAX_SECONDS)
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
}

/// How many messages ended with each outcome.
#[derive(Debug, Default)]
pub struct OutcomeCounts([AtomicU64; Outcome::ALL.len()]);

impl OutcomeCounts {
    fn add(&self, outcome: Outcome) {
        self.0[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of the counts.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        Outcome::ALL.iter().map(|o| (o.as_str(), self.0[*o as usize].load(Ordering::Relaxed))).collect()
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

/// Processes one student's messages in version order; `_permit` holds this
/// group's share of the concurrency limit until it is done.
pub async fn process_group(ctx: Arc<Context>, group: Vec<Work>, _permit: OwnedSemaphorePermit) {
    for work in group {
        let handled = tokio::select! {
            biased;
            () = ctx.abort.cancelled() => released(&work),
            handled = handle(&ctx, &work) => handled,
        };
        log_outcome(&work, &handled);
        ctx.counts.add(handled.outcome);
        crate::metrics::global().finished(handled.outcome, handled.attempts); // observe (issue 5)
        if let Some(ack) = handled.ack {
            // The acker outlives every processing task; a send error means it is gone.
            let _ = ctx.acks.send(ack);
        }
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
    let written = ctx.writer.write(&decoded.event, work.message.deadline).await;
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
                let delay = defer_seconds(work.message.receive_count);
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
    use tokio::time::Instant;

    fn msg(body: &str) -> Received {
        Received {
            message_id: body.len().to_string(),
            receipt_handle: "r".into(),
            body: body.into(),
            receive_count: 1,
            received_at: Instant::now(),
            deadline: Instant::now(),
            group_id: None,
            attributes: Default::default(),
        }
    }

    fn ev(student: &str, version: u64) -> String {
        format!(
            r#"{{"type":"StudentDeleted","eventId":"{student}-{version}","studentId":"{student}","version":{version}}}"#
        )
    }

    #[test]
    fn groups_by_student_in_version_order() {
        let batch = vec![msg(&ev("a", 3)), msg(&ev("b", 1)), msg("not json"), msg(&ev("a", 1)), msg(&ev("a", 2))];
        let groups = group_by_student(batch);
        let shape: Vec<Vec<u64>> = groups.iter().map(|g| g.iter().map(Work::version).collect()).collect();
        assert_eq!(shape, vec![vec![1, 2, 3], vec![1], vec![0]]);
        assert!(groups[2][0].decoded.is_err());
    }

    #[test]
    fn deferral_grows_and_is_capped() {
        let delays: Vec<i32> = (1..=8).map(defer_seconds).collect();
        assert_eq!(delays, vec![2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(defer_seconds(u32::MAX), 60);
    }
}
