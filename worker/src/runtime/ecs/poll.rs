//! Long-polls the source queue. Each receive asks for the configured
//! visibility timeout, so every message's deadline is known without a lookup
//! (the heartbeat moves it later, see `heartbeat.rs`).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use tokio::time::Instant;

use crate::config::RunConfig;
use crate::error::AwsError;

/// Work on a message stops this long before its visibility ends, leaving time
/// to delete it before another consumer may receive it.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(5);

/// A received message and what the worker needs to finish it.
#[derive(Debug, Clone)]
pub struct Received {
    /// SQS message id (logged).
    pub message_id: String,
    /// Handle for delete and visibility changes.
    pub receipt_handle: String,
    /// The event body.
    pub body: String,
    /// `ApproximateReceiveCount` (1 on the first delivery).
    pub receive_count: u32,
    /// When the receive returned.
    pub received_at: Instant,
    /// When the visibility asked for on receive ends (at the earliest).
    pub visible_until: Instant,
    /// `MessageGroupId` on FIFO queues.
    pub group_id: Option<String>,
    /// The producer's message attributes (kept when dead-lettering).
    pub attributes: HashMap<String, MessageAttributeValue>,
}

/// Receives from one queue.
#[derive(Debug, Clone)]
pub struct Poller {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    region: String,
    wait_time_seconds: i32,
    visibility_timeout_seconds: i32,
}

impl Poller {
    /// A poller for `config.queue_url`.
    pub fn new(sqs: aws_sdk_sqs::Client, config: &RunConfig, region: &str) -> Self {
        Self {
            sqs,
            queue_url: config.queue_url.clone(),
            region: region.to_owned(),
            wait_time_seconds: config.wait_time_seconds,
            visibility_timeout_seconds: config.visibility_timeout_seconds,
        }
    }

    /// One long poll for up to `max` messages (1–10).
    pub async fn receive(&self, max: i32) -> Result<Vec<Received>, AwsError> {
        let response = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max)
            .wait_time_seconds(self.wait_time_seconds)
            .visibility_timeout(self.visibility_timeout_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| self.error(&e, "sqs:ReceiveMessage"))?;
        let received_at = Instant::now();
        let visibility = Duration::from_secs(u64::try_from(self.visibility_timeout_seconds).unwrap_or(0));
        let visible_until = received_at + visibility;
        Ok(response
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let system = m.attributes.unwrap_or_default();
                Some(Received {
                    message_id: m.message_id.unwrap_or_default(),
                    receipt_handle: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                    receive_count: system
                        .get(&MessageSystemAttributeName::ApproximateReceiveCount)
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(1),
                    received_at,
                    visible_until,
                    group_id: system.get(&MessageSystemAttributeName::MessageGroupId).cloned(),
                    attributes: m.message_attributes.unwrap_or_default(),
                })
            })
            .collect())
    }

    /// Whether the queue holds no visible, in-flight or delayed messages.
    pub async fn is_drained(&self) -> Result<bool, AwsError> {
        let response = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| self.error(&e, "sqs:GetQueueAttributes"))?;
        let attributes = response.attributes.unwrap_or_default();
        Ok(attributes.values().all(|count| count == "0"))
    }

    fn error<E, R>(&self, e: &aws_sdk_sqs::error::SdkError<E, R>, action: &'static str) -> AwsError
    where
        E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        AwsError::from_sdk(e, action, &format!("queue {}", self.queue_url), &self.region)
    }
}
