//! Forwards a message that can never apply to the dead-letter queue, with its
//! reason in message attributes. The caller deletes it from the source only
//! after this send succeeded: never lost, at worst duplicated.

use std::collections::HashMap;

use aws_sdk_sqs::types::MessageAttributeValue;
use student_shared::ContractError;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::AwsError;
use crate::poll::Received;

/// SQS allows at most 10 message attributes per message.
pub const MAX_MESSAGE_ATTRIBUTES: usize = 10;
/// The attributes this module adds.
pub const ERROR_ATTRIBUTES: [&str; 5] = ["ErrorCode", "ErrorMessage", "FailedAt", "SourceQueue", "ReceiveCount"];

/// The DLQ, if one is configured.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    sqs: aws_sdk_sqs::Client,
    dlq_url: Option<String>,
    source_queue: String,
    region: String,
}

impl DeadLetter {
    /// Forwards to `dlq_url` when set; otherwise invalid messages are left for the queue's redrive.
    pub fn new(sqs: aws_sdk_sqs::Client, dlq_url: Option<String>, source_queue: &str, region: &str) -> Self {
        Self { sqs, dlq_url, source_queue: source_queue.to_owned(), region: region.to_owned() }
    }

    /// Whether a DLQ is configured.
    pub fn is_enabled(&self) -> bool {
        self.dlq_url.is_some()
    }

    /// Sends `message` to the DLQ with the reason it failed.
    pub async fn forward(
        &self,
        message: &Received,
        error: &ContractError,
        student_id: Option<&str>,
    ) -> Result<(), AwsError> {
        let Some(dlq_url) = &self.dlq_url else { return Ok(()) };
        let mut send = self
            .sqs
            .send_message()
            .queue_url(dlq_url)
            .message_body(&message.body)
            .set_message_attributes(Some(self.attributes(message, error)));
        if dlq_url.ends_with(".fifo") {
            // FIFO DLQs need a group; keep the source's, and dedupe on the message id.
            let group = message.group_id.as_deref().or(student_id).unwrap_or("invalid");
            send = send.message_group_id(group).message_deduplication_id(&message.message_id);
        }
        send.send()
            .await
            .map(|_| crate::metrics::global().dlq_forwarded()) // observe (issue 5)
            .map_err(|e| AwsError::from_sdk(&e, "sqs:SendMessage", &format!("queue {dlq_url}"), &self.region))
    }

    fn attributes(&self, message: &Received, error: &ContractError) -> HashMap<String, MessageAttributeValue> {
        let failed_at = OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default();
        let ours = [
            ("ErrorCode", "String", error.code().as_str().to_owned()),
            ("ErrorMessage", "String", error.dlq_message()),
            ("FailedAt", "String", failed_at),
            ("SourceQueue", "String", self.source_queue.clone()),
            ("ReceiveCount", "Number", message.receive_count.to_string()),
        ];
        // Keep the producer's attributes while they fit beside ours.
        let mut attributes: HashMap<String, MessageAttributeValue> = message
            .attributes
            .iter()
            .filter(|(name, _)| !ERROR_ATTRIBUTES.contains(&name.as_str()))
            .take(MAX_MESSAGE_ATTRIBUTES - ours.len())
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        for (name, data_type, value) in ours {
            if let Ok(v) = MessageAttributeValue::builder().data_type(data_type).string_value(value).build() {
                attributes.insert(name.to_owned(), v);
            }
        }
        attributes
    }
}
