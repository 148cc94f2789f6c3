//! Dead letters as the operator tools see them, and the few SQS calls they
//! need: receive with a hold (visibility), release (visibility 0), delete,
//! counts. Looking at a message in SQS means receiving it; every tool here
//! releases what it looked at, so nothing is lost or kept hidden.

use std::collections::{HashMap, HashSet};

use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName as S};
use serde_json::json;

use crate::aws::entries::visibility_entries;
use crate::aws::error::{AwsError, Resource};
use crate::aws::queue::{self, Counts};
use crate::handler::deadletter::ERROR_CODE;
use crate::limits::{MAX_BATCH_ENTRIES, MAX_BATCH_SIZE};

/// A receive waits this long for messages; an empty answer after it means
/// the queue has no visible message (long polls ask every SQS server).
const RECEIVE_WAIT_SECONDS: i32 = 1;

/// A message on the DLQ.
#[derive(Debug, Clone)]
pub struct Letter {
    /// SQS message id.
    pub message_id: String,
    /// Handle of this receive (delete, release).
    pub receipt_handle: String,
    /// The original body.
    pub body: String,
    /// Message attributes (`ErrorCode`, `ErrorMessage`, ..., and the producer's).
    pub attributes: HashMap<String, MessageAttributeValue>,
    /// `ApproximateReceiveCount` on the DLQ (every look counts one).
    pub receive_count: u32,
    /// `SentTimestamp`, milliseconds since the epoch.
    pub sent_at_ms: Option<i64>,
    /// `MessageGroupId` on FIFO queues.
    pub group_id: Option<String>,
    /// `AWSTraceHeader`, kept on a replay.
    pub trace_header: Option<String>,
}

impl Letter {
    /// A string or number message attribute.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).and_then(|v| v.string_value.as_deref())
    }

    /// Its `ErrorCode` attribute.
    pub fn error_code(&self) -> Option<&str> {
        self.attribute(ERROR_CODE)
    }

    /// The body's `studentId`, read leniently: a dead letter may break the contract.
    pub fn student_id(&self) -> Option<String> {
        let body: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        body.get("studentId")?.as_str().map(str::to_owned)
    }

    /// Everything about it, for `peek --json`.
    pub fn to_json(&self) -> serde_json::Value {
        let attributes: HashMap<&str, Option<&str>> =
            self.attributes.iter().map(|(k, v)| (k.as_str(), v.string_value.as_deref())).collect();
        json!({
            "message_id": self.message_id,
            "error_code": self.error_code(),
            "error_message": self.attribute("ErrorMessage"),
            "failed_at": self.attribute("FailedAt"),
            "source_queue": self.attribute("SourceQueue"),
            "receive_count": self.attribute("ReceiveCount"),
            "dlq_receive_count": self.receive_count,
            "sent_at_ms": self.sent_at_ms,
            "group_id": self.group_id,
            "attributes": attributes,
            "body": self.body,
        })
    }
}

/// One queue and the calls the tools make on it.
#[derive(Debug, Clone)]
pub struct Queue {
    sqs: aws_sdk_sqs::Client,
    /// Its URL.
    pub url: String,
    resource: Resource,
}

impl Queue {
    /// The queue at `url`.
    pub fn new(sqs: aws_sdk_sqs::Client, url: &str, region: &str) -> Self {
        Self { sqs, url: url.to_owned(), resource: Resource::queue(url, region) }
    }

    /// The region its calls go to.
    pub fn region(&self) -> &str {
        self.resource.region()
    }

    /// Whether it is a FIFO queue (their names end in `.fifo`).
    pub fn is_fifo(&self) -> bool {
        self.url.ends_with(".fifo")
    }

    /// Receives up to `max` (1–10) messages and hides them for `hold_seconds`.
    pub async fn receive(&self, max: i32, hold_seconds: i32) -> Result<Vec<Letter>, AwsError> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH_SIZE))
            .visibility_timeout(hold_seconds)
            .wait_time_seconds(RECEIVE_WAIT_SECONDS)
            .message_attribute_names("All")
            .message_system_attribute_names(S::ApproximateReceiveCount)
            .message_system_attribute_names(S::SentTimestamp)
            .message_system_attribute_names(S::MessageGroupId)
            .message_system_attribute_names(S::AwsTraceHeader)
            .send()
            .await
            .map_err(|e| self.resource.error(&e, "sqs:ReceiveMessage"))?;
        Ok(out.messages.unwrap_or_default().into_iter().filter_map(letter).collect())
    }

    /// Makes messages visible again at once. Best effort: a failure only
    /// means they reappear when their hold ends.
    pub async fn release(&self, handles: &[String]) {
        for chunk in handles.chunks(MAX_BATCH_ENTRIES) {
            let entries = visibility_entries(chunk.iter().map(|h| (h.as_str(), 0)));
            let sent =
                self.sqs.change_message_visibility_batch().queue_url(&self.url).set_entries(Some(entries)).send();
            if let Err(e) = sent.await {
                let e = self.resource.error(&e, "sqs:ChangeMessageVisibility");
                tracing::warn!(error = %e, "could not release messages; they reappear when their hold ends");
            }
        }
    }

    /// Deletes one message.
    pub async fn delete(&self, receipt_handle: &str) -> Result<(), AwsError> {
        self.sqs
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.resource.error(&e, "sqs:DeleteMessage"))
    }

    /// The client, for sending to another queue.
    pub fn sqs(&self) -> &aws_sdk_sqs::Client {
        &self.sqs
    }

    /// The approximate counts.
    pub async fn counts(&self) -> Result<Counts, AwsError> {
        queue::counts(&self.sqs, &self.url).await.map_err(|e| self.resource.error(&e, queue::COUNTS_ACTION))
    }

    /// The queues whose redrive policy points at this one.
    pub async fn redrive_sources(&self) -> Result<Vec<String>, AwsError> {
        let out = self
            .sqs
            .list_dead_letter_source_queues()
            .queue_url(&self.url)
            .send()
            .await
            .map_err(|e| self.resource.error(&e, "sqs:ListDeadLetterSourceQueues"))?;
        Ok(out.queue_urls)
    }

    /// Looks at up to `limit` distinct messages, each hidden for
    /// `hold_seconds`; the caller releases [`Scan::handles`].
    pub async fn scan(&self, limit: usize, hold_seconds: i32) -> Result<Scan, AwsError> {
        let mut seen = HashSet::new();
        let mut scan = Scan::default();
        while scan.letters.len() < limit {
            let want = i32::try_from(limit - scan.letters.len()).unwrap_or(MAX_BATCH_SIZE).min(MAX_BATCH_SIZE);
            let batch = self.receive(want, hold_seconds).await?;
            if batch.is_empty() {
                break;
            }
            for l in batch {
                scan.handles.push(l.receipt_handle.clone());
                // A message seen again after its hold ended stays hidden
                // (released at the end), so the scan moves on.
                if seen.insert(l.message_id.clone()) {
                    scan.letters.push(l);
                }
            }
        }
        Ok(scan)
    }
}

/// What a scan saw.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Distinct messages, in the order received.
    pub letters: Vec<Letter>,
    /// Every receipt handle taken, to release.
    pub handles: Vec<String>,
}

fn letter(m: aws_sdk_sqs::types::Message) -> Option<Letter> {
    let system = m.attributes.unwrap_or_default();
    Some(Letter {
        message_id: m.message_id.unwrap_or_default(),
        receipt_handle: m.receipt_handle?,
        body: m.body.unwrap_or_default(),
        attributes: m.message_attributes.unwrap_or_default(),
        receive_count: system.get(&S::ApproximateReceiveCount).and_then(|c| c.parse().ok()).unwrap_or(1),
        sent_at_ms: system.get(&S::SentTimestamp).and_then(|t| t.parse().ok()),
        group_id: system.get(&S::MessageGroupId).cloned(),
        trace_header: system.get(&S::AwsTraceHeader).cloned(),
    })
}
