//! Carries the handler's decisions out for one invocation: what finished is
//! left out of the batch response (the event source mapping deletes it);
//! an invalid message goes to the DLQ first; a deferred one is hidden for
//! its deferral with its receipt handle; everything that did not finish is
//! reported in `batchItemFailures`, so the mapping leaves it on the queue.

use std::sync::{Arc, Mutex, PoisonError};

use student_shared::{ContractError, Outcome};
use tokio::time::Instant;

use crate::aws::Resource;
use crate::handler::{Decision, Settle, Work};
use crate::observe::Metrics;
use crate::runtime::deadletter::DeadLetterQueue;
use crate::runtime::fatal::FatalSlot;

/// What the Lambda runtime does with the messages of one batch.
#[derive(Debug)]
pub struct BatchSettler {
    /// For deferrals' visibility changes.
    pub sqs: aws_sdk_sqs::Client,
    /// The source queue (from the records' `eventSourceARN`).
    pub queue_url: String,
    /// The source queue, for error messages.
    pub queue: Resource,
    /// Forwards invalid messages.
    pub dead_letter: DeadLetterQueue,
    /// The first fatal error; setting it releases the rest of the batch.
    pub fatal: FatalSlot,
    /// Where failed calls are counted.
    pub metrics: Arc<Metrics>,
    /// Message ids to report in `batchItemFailures`, in the order they failed.
    failed: Mutex<Vec<String>>,
}

impl BatchSettler {
    /// A settler for a batch from `queue_url`.
    pub fn new(
        sqs: aws_sdk_sqs::Client,
        queue_url: String,
        queue: Resource,
        dead_letter: DeadLetterQueue,
        fatal: FatalSlot,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { sqs, queue_url, queue, dead_letter, fatal, metrics, failed: Mutex::default() }
    }

    /// The message ids to report, each once.
    pub fn into_failures(self) -> Vec<String> {
        let mut failed = self.failed.into_inner().unwrap_or_else(PoisonError::into_inner);
        let mut seen = std::collections::HashSet::new();
        failed.retain(|id| seen.insert(id.clone()));
        failed
    }

    fn report(&self, work: &Work<Instant>) {
        self.failed.lock().unwrap_or_else(PoisonError::into_inner).push(work.message.message_id.clone());
    }

    /// Hides a deferred patch for its deferral. If that fails it comes back
    /// after the queue's visibility timeout instead, which is only earlier.
    async fn hide(&self, work: &Work<Instant>, seconds: i32) {
        let sent = self
            .sqs
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(&work.message.receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await;
        if let Err(e) = sent {
            let error = self.metrics.failed(&self.queue, &e, "sqs:ChangeMessageVisibility");
            if !self.fatal.set_if_fatal(&error) {
                tracing::warn!(error = %error, message_id = %work.message.message_id, trace_id = work.message.trace_id(), "could not hide the deferred message; it comes back after the queue's visibility timeout");
            }
        }
    }

    /// Forwards an invalid message; the outcome it ends with.
    async fn dead_letter(&self, work: &Work<Instant>, refusal: &ContractError) -> Outcome {
        match self.dead_letter.forward(&work.message, refusal, work.student_id()).await {
            // The DLQ has it: the mapping may delete it.
            Ok(()) if self.dead_letter.is_enabled() => Outcome::Invalid,
            // No DLQ: reported, so the queue's redrive moves it.
            Ok(()) => {
                self.report(work);
                Outcome::Invalid
            }
            Err(e) if self.fatal.set_if_fatal(&e) => {
                self.report(work);
                Outcome::Released
            }
            Err(e) => {
                tracing::warn!(error = %e, message_id = %work.message.message_id, trace_id = work.message.trace_id(), "DLQ send failed: reporting the message as failed");
                self.report(work);
                Outcome::Retry
            }
        }
    }
}

impl Settle<Instant> for BatchSettler {
    async fn settle(&self, work: &Work<Instant>, decision: &Decision) -> Outcome {
        match decision {
            Decision::Done(outcome) => *outcome,
            Decision::DeadLetter(refusal) => self.dead_letter(work, refusal).await,
            Decision::Defer { seconds, .. } => {
                self.hide(work, *seconds).await;
                self.report(work);
                Outcome::Deferred
            }
            Decision::Fatal(e) => {
                self.fatal.set(e.clone());
                self.report(work);
                Outcome::Released
            }
            Decision::Retry | Decision::Release => {
                self.report(work);
                decision.outcome()
            }
        }
    }
}
