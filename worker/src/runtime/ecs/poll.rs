//! Long-polls the source queue. Each receive asks for the configured
//! visibility timeout, so every message's deadline is known without a lookup
//! (the heartbeat moves it later, see `heartbeat.rs`).

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use tokio::time::Instant;

use crate::aws::queue::Counts;
use crate::aws::{AwsError, Resource, queue};
use crate::config::RunConfig;
use crate::handler::Message;
use crate::observe::Metrics;

/// A received message and when the visibility asked for on receive ends (at the earliest).
#[derive(Debug, Clone)]
pub struct Received {
    /// The message.
    pub message: Message,
    /// When its visibility ends unless extended.
    pub visible_until: Instant,
}

/// Receives from one queue.
#[derive(Debug, Clone)]
pub struct Poller {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    resource: Resource,
    wait_time_seconds: i32,
    visibility_timeout_seconds: i32,
    metrics: Arc<Metrics>,
}

impl Poller {
    /// A poller for `config.queue_url`; receives (empty ones too) count as
    /// progress in `metrics`.
    pub fn new(sqs: aws_sdk_sqs::Client, config: &RunConfig, region: &str, metrics: Arc<Metrics>) -> Self {
        Self {
            sqs,
            queue_url: config.queue_url.clone(),
            resource: Resource::queue(&config.queue_url, region),
            wait_time_seconds: config.wait_time_seconds,
            visibility_timeout_seconds: config.visibility_timeout_seconds,
            metrics,
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
            .message_system_attribute_names(MessageSystemAttributeName::AwsTraceHeader)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| self.metrics.failed(&self.resource, &e, "sqs:ReceiveMessage"))?;
        let received_at = Instant::now();
        let visibility = Duration::from_secs(u64::try_from(self.visibility_timeout_seconds).unwrap_or(0));
        let visible_until = received_at + visibility;
        let received: Vec<Received> = response
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let system = m.attributes.unwrap_or_default();
                let message = Message {
                    message_id: m.message_id.unwrap_or_default(),
                    receipt_handle: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                    receive_count: system
                        .get(&MessageSystemAttributeName::ApproximateReceiveCount)
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(1),
                    received_at,
                    group_id: system.get(&MessageSystemAttributeName::MessageGroupId).cloned(),
                    attributes: m.message_attributes.unwrap_or_default(),
                    trace_header: system.get(&MessageSystemAttributeName::AwsTraceHeader).cloned(),
                };
                Some(Received { message, visible_until })
            })
            .collect();
        // Progress for the health file, empty long polls included.
        self.metrics.received(received.len());
        Ok(received)
    }

    /// The queue's visible, in-flight and delayed messages.
    pub async fn counts(&self) -> Result<Counts, AwsError> {
        let counts = queue::counts(&self.sqs, &self.queue_url).await;
        counts.map_err(|e| self.metrics.failed(&self.resource, &e, queue::COUNTS_ACTION))
    }
}
