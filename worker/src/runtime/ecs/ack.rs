//! Finishes messages on the source queue: deletes what is done and changes
//! the visibility of what is deferred or released, in batches of up to 10
//! across messages, flushed when full or after a short pause; several batch
//! calls may be under way at once.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::aws::Resource;
use crate::aws::entries::{delete_entries, visibility_entries};
use crate::limits::{ACK_FLUSH_INTERVAL, MAX_BATCH_ENTRIES, MAX_CALLS_IN_FLIGHT};
use crate::observe::Metrics;
use crate::runtime::fatal::FatalSlot;

/// What to do with a message on the source queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    /// Done: delete it.
    Delete(String),
    /// Make it visible again after this many seconds (0: at once).
    Visibility(String, i32),
}

/// Counts of what the acker did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AckStats {
    /// Messages deleted.
    pub deleted: u64,
    /// Deletes SQS refused (the message will be received again: a duplicate, absorbed).
    pub delete_failed: u64,
    /// Visibility changes made.
    pub visibility_changed: u64,
    /// Visibility changes SQS refused (the message reappears when its visibility ends).
    pub visibility_failed: u64,
}

/// Sends acks to the acker task.
pub type AckSender = mpsc::UnboundedSender<Ack>;

/// Starts the acker for `queue_url`; it ends, after a final flush, when
/// every sender is dropped. A fatal error (e.g. the role may not delete)
/// is reported to `fatal`, which stops the worker: without deletes, applied
/// messages would come back until redrive moved them to the DLQ.
pub fn spawn(
    sqs: aws_sdk_sqs::Client,
    queue_url: &str,
    region: &str,
    fatal: FatalSlot,
    metrics: Arc<Metrics>,
) -> (AckSender, JoinHandle<AckStats>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let resource = Resource::queue(queue_url, region);
    let acker = Arc::new(Acker { sqs, queue_url: queue_url.to_owned(), resource, fatal, metrics });
    (tx, tokio::spawn(run(acker, rx)))
}

struct Acker {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    resource: Resource,
    fatal: FatalSlot,
    metrics: Arc<Metrics>,
}

/// Batch calls under way, each returning what it did.
type Calls = JoinSet<AckStats>;

async fn run(acker: Arc<Acker>, mut rx: mpsc::UnboundedReceiver<Ack>) -> AckStats {
    let mut deletes = Vec::new();
    let mut changes = Vec::new();
    let mut calls = Calls::new();
    let mut stats = AckStats::default();
    loop {
        let next = if deletes.is_empty() && changes.is_empty() {
            rx.recv().await
        } else {
            match tokio::time::timeout(ACK_FLUSH_INTERVAL, rx.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    flush(&acker, &mut deletes, &mut changes, &mut calls, &mut stats).await;
                    continue;
                }
            }
        };
        match next {
            Some(Ack::Delete(receipt)) => deletes.push(receipt),
            Some(Ack::Visibility(receipt, seconds)) => changes.push((receipt, seconds)),
            None => break,
        }
        if deletes.len() >= MAX_BATCH_ENTRIES || changes.len() >= MAX_BATCH_ENTRIES {
            flush(&acker, &mut deletes, &mut changes, &mut calls, &mut stats).await;
        }
        while let Some(done) = calls.try_join_next() {
            stats.add(done.unwrap_or_default());
        }
    }
    flush(&acker, &mut deletes, &mut changes, &mut calls, &mut stats).await;
    while let Some(done) = calls.join_next().await {
        stats.add(done.unwrap_or_default());
    }
    stats
}

/// Starts a batch call for everything pending, without waiting for it to
/// answer (so one round trip does not cap deletes at 10 per round trip),
/// but with at most [`MAX_CALLS_IN_FLIGHT`] under way.
async fn flush(
    acker: &Arc<Acker>,
    deletes: &mut Vec<String>,
    changes: &mut Vec<(String, i32)>,
    calls: &mut Calls,
    stats: &mut AckStats,
) {
    while !deletes.is_empty() || !changes.is_empty() {
        while calls.len() >= MAX_CALLS_IN_FLIGHT {
            if let Some(done) = calls.join_next().await {
                stats.add(done.unwrap_or_default());
            }
        }
        let acker = Arc::clone(acker);
        if deletes.is_empty() {
            let batch: Vec<_> = changes.drain(..changes.len().min(MAX_BATCH_ENTRIES)).collect();
            calls.spawn(async move { acker.change_visibility(batch).await });
        } else {
            let batch: Vec<_> = deletes.drain(..deletes.len().min(MAX_BATCH_ENTRIES)).collect();
            calls.spawn(async move { acker.delete(batch).await });
        }
    }
}

impl AckStats {
    fn add(&mut self, other: AckStats) {
        self.deleted += other.deleted;
        self.delete_failed += other.delete_failed;
        self.visibility_changed += other.visibility_changed;
        self.visibility_failed += other.visibility_failed;
    }
}

impl Acker {
    async fn delete(&self, receipts: Vec<String>) -> AckStats {
        let n = receipts.len() as u64;
        let mut stats = AckStats::default();
        let entries = delete_entries(receipts.iter().map(String::as_str));
        match self.sqs.delete_message_batch().queue_url(&self.queue_url).set_entries(Some(entries)).send().await {
            Ok(out) => {
                let failed = out.failed.len() as u64;
                for f in &out.failed {
                    tracing::warn!(code = %f.code, sender_fault = f.sender_fault, "delete refused: the message will be received again (a duplicate, absorbed by the version guard)");
                }
                stats.deleted += n - failed;
                stats.delete_failed += failed;
            }
            Err(e) => {
                let e = self.metrics.failed(&self.resource, &e, "sqs:DeleteMessageBatch");
                tracing::error!(error = %e, messages = n, "delete failed: these messages will be received again");
                stats.delete_failed += n;
                self.fatal.set_if_fatal(&e);
            }
        }
        stats
    }

    async fn change_visibility(&self, changes: Vec<(String, i32)>) -> AckStats {
        let n = changes.len() as u64;
        let mut stats = AckStats::default();
        let entries = visibility_entries(changes.iter().map(|(r, s)| (r.as_str(), *s)));
        let call = self.sqs.change_message_visibility_batch().queue_url(&self.queue_url).set_entries(Some(entries));
        match call.send().await {
            Ok(out) => {
                let failed = out.failed.len() as u64;
                for f in &out.failed {
                    tracing::warn!(code = %f.code, "visibility change refused: the message reappears when its visibility ends");
                }
                stats.visibility_changed += n - failed;
                stats.visibility_failed += failed;
            }
            Err(e) => {
                let e = self.metrics.failed(&self.resource, &e, "sqs:ChangeMessageVisibilityBatch");
                tracing::warn!(error = %e, messages = n, "visibility change failed: the messages reappear when their visibility ends");
                stats.visibility_failed += n;
                self.fatal.set_if_fatal(&e);
            }
        }
        stats
    }
}
