//! Forwards a message that can never apply to the dead-letter queue
//! (`SQS_DLQ_URL`), with its reason in message attributes (built by
//! `handler::deadletter`). The caller deletes it from the source only after
//! this send succeeded: never lost, at worst duplicated.

use std::sync::Arc;

use student_shared::ContractError;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use aws_sdk_sqs::types::MessageSystemAttributeNameForSends;

use crate::aws::{AwsError, Resource, entries};
use crate::handler::Message;
use crate::handler::deadletter::{attributes, fifo_group};
use crate::observe::Metrics;

/// The DLQ, if one is configured.
#[derive(Debug, Clone)]
pub struct DeadLetterQueue {
    sqs: aws_sdk_sqs::Client,
    dlq: Option<(String, Resource)>,
    source_queue: String,
    metrics: Arc<Metrics>,
}

impl DeadLetterQueue {
    /// Forwards to `dlq_url` when set; otherwise invalid messages are left
    /// for the source queue's redrive. Dead letters name `source_queue`.
    pub fn new(
        sqs: aws_sdk_sqs::Client,
        dlq_url: Option<&str>,
        source_queue: &str,
        region: &str,
        metrics: Arc<Metrics>,
    ) -> Self {
        let dlq = dlq_url.map(|url| (url.to_owned(), Resource::queue(url, region)));
        Self { sqs, dlq, source_queue: source_queue.to_owned(), metrics }
    }

    /// Whether a DLQ is configured.
    pub fn is_enabled(&self) -> bool {
        self.dlq.is_some()
    }

    /// Sends `message` to the DLQ with the reason it failed (nothing when
    /// none is configured).
    pub async fn forward(
        &self,
        message: &Message,
        error: &ContractError,
        student_id: Option<&str>,
    ) -> Result<(), AwsError> {
        let Some((dlq_url, resource)) = &self.dlq else { return Ok(()) };
        let failed_at = OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default();
        let mut send = self
            .sqs
            .send_message()
            .queue_url(dlq_url)
            .message_body(&message.body)
            .set_message_attributes(Some(attributes(message, error, &self.source_queue, &failed_at)));
        if let Some(header) = message.trace_header.as_deref().and_then(entries::trace_header) {
            // The trace goes on with the message (and with a replay).
            send = send.message_system_attributes(MessageSystemAttributeNameForSends::AwsTraceHeader, header);
        }
        if dlq_url.ends_with(".fifo") {
            // FIFO DLQs need a group; keep the source's, and dedupe on the message id.
            send = send.message_group_id(fifo_group(message, student_id)).message_deduplication_id(&message.message_id);
        }
        match send.send().await {
            Ok(_) => {
                self.metrics.dlq_forwarded();
                Ok(())
            }
            Err(e) => Err(self.metrics.failed(resource, &e, "sqs:SendMessage")),
        }
    }
}
