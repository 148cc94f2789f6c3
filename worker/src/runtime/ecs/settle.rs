//! Carries the handler's decisions out on the source queue: finished
//! messages are deleted, deferred ones hidden for their delay, released ones
//! made visible at once, invalid ones forwarded to the DLQ and then deleted.
//! A fatal error stops the worker and releases the message. Each message's
//! heartbeat is stopped first, so an extension never follows its delete or
//! release.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use student_shared::{ContractError, Outcome};
use tokio::time::Instant;

use super::ack::{Ack, AckSender};
use super::heartbeat::Lease;
use crate::handler::{Decision, Settle, Work};
use crate::runtime::deadletter::DeadLetterQueue;
use crate::runtime::fatal::FatalSlot;

/// What the ECS runtime does with a message once the handler has decided.
#[derive(Debug)]
pub struct Settler {
    /// Finishes messages on the source queue.
    pub acks: AckSender,
    /// Forwards invalid messages.
    pub dead_letter: DeadLetterQueue,
    /// The first fatal error; setting it stops the worker.
    pub fatal: FatalSlot,
    /// When the patches deferred so far come back.
    pub deferrals: Deferrals,
}

/// The deferred messages and when each is visible again, so a run that
/// waits for them (exit-when-empty) can say what it waits for.
#[derive(Debug, Default)]
pub struct Deferrals(Mutex<HashMap<String, Instant>>);

impl Deferrals {
    fn record(&self, message_id: &str, seconds: i32) {
        let now = Instant::now();
        let due = now + Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
        if let Ok(mut due_at) = self.0.lock() {
            // Those already back are forgotten, so a service that runs for
            // months keeps only the deferrals still pending.
            due_at.retain(|_, due| *due > now);
            due_at.insert(message_id.to_owned(), due);
        }
    }

    /// How many deferred messages are still hidden, and how soon the first
    /// comes back; `None` when none is.
    pub fn pending(&self) -> Option<(usize, Duration)> {
        let now = Instant::now();
        let mut due_at = self.0.lock().ok()?;
        due_at.retain(|_, due| *due > now);
        let next = due_at.values().min()?;
        Some((due_at.len(), next.saturating_duration_since(now)))
    }
}

/// What to do on the queue for a decision, and the outcome it gives.
fn ack_for(decision: &Decision, receipt: &str) -> (Option<Ack>, Outcome) {
    let receipt = receipt.to_owned();
    let ack = match decision {
        Decision::Done(_) => Some(Ack::Delete(receipt)),
        Decision::Defer { seconds, .. } => Some(Ack::Visibility(receipt, *seconds)),
        Decision::Release | Decision::Fatal(_) => Some(Ack::Visibility(receipt, 0)),
        // Left as it is: the next delivery tries again.
        Decision::Retry => None,
        // Once the DLQ has it.
        Decision::DeadLetter(_) => Some(Ack::Delete(receipt)),
    };
    (ack, decision.outcome())
}

impl Settle<Arc<Lease>> for Settler {
    async fn settle(&self, work: &Work<Arc<Lease>>, decision: &Decision) -> Outcome {
        let (ack, outcome) = match decision {
            Decision::DeadLetter(refusal) => match self.dead_letter(work, refusal).await {
                Forwarded::Yes => ack_for(decision, &work.message.receipt_handle),
                Forwarded::NoDlq => (None, Outcome::Invalid),
                Forwarded::Fatal => ack_for(&Decision::Release, &work.message.receipt_handle),
                Forwarded::Later => (None, Outcome::Retry),
            },
            Decision::Fatal(e) => {
                self.fatal.set(e.clone());
                ack_for(decision, &work.message.receipt_handle)
            }
            _ => ack_for(decision, &work.message.receipt_handle),
        };
        work.lease.finish().await;
        if let (Decision::Defer { seconds, .. }, Outcome::Deferred) = (decision, outcome) {
            self.deferrals.record(&work.message.message_id, *seconds);
        }
        if let Some(ack) = ack {
            // The acker outlives every processing task; a send error means it is gone.
            let _ = self.acks.send(ack);
        }
        outcome
    }
}

impl Settler {
    /// Forwards to the DLQ when one is configured; without one the message
    /// stays for the queue's redrive policy.
    async fn dead_letter(&self, work: &Work<Arc<Lease>>, refusal: &ContractError) -> Forwarded {
        match self.dead_letter.forward(&work.message, refusal, work.student_id()).await {
            Ok(()) if self.dead_letter.is_enabled() => Forwarded::Yes,
            Ok(()) => Forwarded::NoDlq,
            Err(e) if self.fatal.set_if_fatal(&e) => Forwarded::Fatal,
            Err(e) => {
                tracing::warn!(error = %e, message_id = %work.message.message_id, trace_id = work.message.trace_id(), "DLQ send failed: leaving the message on the queue");
                Forwarded::Later
            }
        }
    }
}

/// What became of a dead letter's forward.
enum Forwarded {
    /// The DLQ has it: delete it from the source.
    Yes,
    /// No DLQ is configured: the source queue's redrive moves it.
    NoDlq,
    /// Fatal (the role may not send): the worker stops, the message is released.
    Fatal,
    /// The send failed for now: left for another delivery.
    Later,
}

#[cfg(test)]
mod tests {
    use student_shared::ErrorCode;

    use super::*;
    use crate::aws::{AwsError, Kind};

    #[test]
    fn each_decision_becomes_its_queue_action() {
        let ack = |d: Decision| ack_for(&d, "r");
        assert_eq!(ack(Decision::Done(Outcome::Stale)), (Some(Ack::Delete("r".into())), Outcome::Stale));
        assert_eq!(
            ack(Decision::Defer { seconds: 32, waits_for_version: 2 }),
            (Some(Ack::Visibility("r".into(), 32)), Outcome::Deferred)
        );
        assert_eq!(ack(Decision::Release), (Some(Ack::Visibility("r".into(), 0)), Outcome::Released));
        assert_eq!(ack(Decision::Retry), (None, Outcome::Retry), "a retry is left to its visibility timeout");
        let fatal = AwsError {
            throttling_reasons: crate::aws::error::ThrottlingReasons::default(),
            kind: Kind::AccessDenied,
            action: "dynamodb:PutItem",
            resource: "table Students".into(),
            region: "ap-northeast-2".into(),
            code: None,
            message: "no".into(),
        };
        assert_eq!(ack(Decision::Fatal(fatal)), (Some(Ack::Visibility("r".into(), 0)), Outcome::Released));
        let refusal = ContractError::new(ErrorCode::MalformedJson, "body", "not JSON");
        assert_eq!(ack(Decision::DeadLetter(refusal)).1, Outcome::Invalid);
    }

    #[test]
    fn deferrals_keep_only_what_is_still_hidden() {
        let d = Deferrals::default();
        assert_eq!(d.pending(), None);
        d.record("back already", 0);
        d.record("later", 30);
        d.record("soon", 8);
        let (n, next) = d.pending().expect("two pending");
        assert_eq!(n, 2);
        assert!(next <= Duration::from_secs(8) && next > Duration::from_secs(5), "{next:?}");
        assert_eq!(d.0.lock().expect("lock").len(), 2, "the one already back is forgotten");
    }
}
