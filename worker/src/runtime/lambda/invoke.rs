//! One invocation: an SQS batch in, a partial batch response out. The batch
//! is decoded, grouped (by student in version order; FIFO: by message group
//! in the order received) and written by the same handler as `run`, until
//! the invocation's deadline less the time to answer; the messages that did
//! not finish are the response's `batchItemFailures`. A fatal error fails
//! the invocation instead, so the mapping returns the whole batch.

use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures_util::future::join_all;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::event::{self, EventError};
use super::settle::BatchSettler;
use crate::aws::{AwsError, Resource};
use crate::handler::group::Grouping;
use crate::handler::{Handler, Work};
use crate::limits::LAMBDA_ANSWER_MARGIN;
use crate::observe::logging::{self, LogFormat};
use crate::observe::metrics::{Emitter, unix_ms};
use crate::runtime::deadletter::DeadLetterQueue;
use crate::runtime::fatal::FatalSlot;

/// Why an invocation failed as a whole (reported through the Runtime API's
/// error call; the mapping then returns every message of the batch).
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    /// Setup is broken: the message says the cause and the fix.
    #[error(transparent)]
    Fatal(#[from] AwsError),
    /// The event is not an SQS batch the handler can report on.
    #[error(transparent)]
    Event(#[from] EventError),
}

impl InvocationError {
    /// The `errorType` the Runtime API gets.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Fatal(_) => "StudentWorker.Fatal",
            Self::Event(_) => "StudentWorker.InvalidEvent",
        }
    }
}

impl From<InvocationError> for lambda_runtime::Diagnostic {
    fn from(error: InvocationError) -> Self {
        Self { error_type: error.error_type().to_owned(), error_message: error.to_string() }
    }
}

/// What every invocation of one function instance shares.
#[derive(Debug)]
pub struct Function {
    /// Decodes, writes, decides.
    pub handler: Handler,
    /// For visibility changes and DLQ sends.
    pub sqs: aws_sdk_sqs::Client,
    /// `SQS_DLQ_URL`.
    pub dlq_url: Option<String>,
    /// The region, for error messages.
    pub region: String,
    /// The metrics' CloudWatch namespace.
    pub metrics_namespace: String,
    /// Writes one EMF line after each invocation; made at the first one,
    /// whose records name the queue (the metrics' `QueueName`, as on ECS).
    pub emitter: Mutex<Option<Emitter>>,
}

impl Function {
    /// Handles one batch, which must be done by `deadline_ms` (ms since the
    /// Unix epoch, from the Runtime API).
    pub async fn invoke(&self, batch: SqsEvent, deadline_ms: u64) -> Result<SqsBatchResponse, InvocationError> {
        let started = Instant::now();
        // Work ends by then (the writer starts no attempt that could not end
        // before it); what is still under way is released.
        let answer_by = started + until(deadline_ms).saturating_sub(LAMBDA_ANSWER_MARGIN);
        let Some(queue_url) = event::source_queue(&batch.records)? else {
            return Ok(SqsBatchResponse::default());
        };
        let metrics = &self.handler.metrics;
        self.emitter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(|| Emitter::new(Arc::clone(metrics), &self.metrics_namespace, &queue_url));
        metrics.received(batch.records.len());
        let works: Vec<Work<Instant>> =
            batch.records.into_iter().map(|record| Work::new(event::message(record, started), answer_by)).collect();
        let abort = CancellationToken::new();
        let settler = BatchSettler::new(
            self.sqs.clone(),
            queue_url.clone(),
            Resource::queue(&queue_url, &self.region),
            DeadLetterQueue::new(
                self.sqs.clone(),
                self.dlq_url.as_deref(),
                &queue_url,
                &self.region,
                Arc::clone(metrics),
            ),
            FatalSlot::new(abort.clone(), abort.clone()),
            Arc::clone(metrics),
        );
        let grouping = Grouping::for_queue(&queue_url);
        let groups = grouping.group(works);
        {
            let handler = &self.handler;
            let all =
                join_all(groups.into_iter().map(|group| handler.process_group(&settler, group, grouping, &abort)));
            let mut all = pin!(all);
            tokio::select! {
                _ = &mut all => {}
                () = tokio::time::sleep_until(answer_by) => {
                    tracing::warn!("the invocation's deadline is near: reporting unfinished messages as failed");
                    abort.cancel();
                    all.await;
                }
            }
        }
        self.flush_metrics();
        if let Some(error) = settler.fatal.take() {
            return Err(error.into());
        }
        Ok(response(settler.into_failures()))
    }

    /// The EMF line of this invocation (Lambda sends stdout to CloudWatch
    /// Logs), with JSON logs only, as on ECS.
    fn flush_metrics(&self) {
        if logging::format() != LogFormat::Json {
            return;
        }
        let mut emitter = self.emitter.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(emitter) = emitter.as_mut() else { return };
        if let Err(e) = emitter.flush(&mut std::io::stdout()) {
            tracing::warn!(error = %e, "could not write the metrics line");
        }
    }
}

/// Time left until `deadline_ms`.
fn until(deadline_ms: u64) -> Duration {
    Duration::from_millis(deadline_ms.saturating_sub(unix_ms(SystemTime::now())))
}

/// A partial batch response reporting `failed` message ids.
fn response(failed: Vec<String>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}
