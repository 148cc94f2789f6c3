//! A message as the handler sees it, whichever runtime received it (the ECS
//! poller's receive, or a Lambda event record), and the deadline its work
//! must end by, which the runtime supplies.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_sqs::types::MessageAttributeValue;
use student_shared::limits::{MAX_EVENT_ID_CHARS, MAX_STUDENT_ID_CHARS, MAX_VERSION};
use student_shared::{ContractError, Decoded, decode};

use super::trace;
use tokio::time::Instant;

/// One SQS message and what the handler needs to know about it.
#[derive(Debug, Clone)]
pub struct Message {
    /// SQS message id (logged).
    pub message_id: String,
    /// Handle for deletes and visibility changes (opaque to the handler).
    pub receipt_handle: String,
    /// The event body.
    pub body: String,
    /// `ApproximateReceiveCount` (1 on the first delivery).
    pub receive_count: u32,
    /// When it was received (for `elapsed_ms`).
    pub received_at: Instant,
    /// `MessageGroupId` on FIFO queues.
    pub group_id: Option<String>,
    /// The producer's message attributes (kept when dead-lettering).
    pub attributes: HashMap<String, MessageAttributeValue>,
    /// The `AWSTraceHeader` system attribute (kept when dead-lettering).
    pub trace_header: Option<String>,
}

impl Message {
    /// The trace this message belongs to, for its log lines: the X-Ray
    /// trace id of `AWSTraceHeader`, else the trace id of a `traceparent`
    /// message attribute.
    pub fn trace_id(&self) -> Option<&str> {
        let xray = self.trace_header.as_deref().and_then(trace::xray_trace_id);
        xray.or_else(|| {
            let traceparent = self.attributes.get(trace::TRACEPARENT)?.string_value()?;
            trace::w3c_trace_id(traceparent)
        })
    }
}

/// When work on a message must be done by: the ECS runtime's lease, which
/// its heartbeat moves later, or a Lambda invocation's fixed deadline.
pub trait Deadline {
    /// The last moment work may end and still leave time to settle the message.
    fn deadline(&self) -> Instant;
}

impl Deadline for Instant {
    fn deadline(&self) -> Instant {
        *self
    }
}

impl<D: Deadline + ?Sized> Deadline for Arc<D> {
    fn deadline(&self) -> Instant {
        (**self).deadline()
    }
}

/// Who a message is about, as far as its body tells.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ids {
    /// `studentId`.
    pub student_id: Option<String>,
    /// `eventId`.
    pub event_id: Option<String>,
    /// `version`, when it is a valid one.
    pub version: Option<u64>,
}

/// One message with its decoded event (or why it has none) and its deadline.
#[derive(Debug)]
pub struct Work<L> {
    /// The message.
    pub message: Message,
    /// The event, or the refusal.
    pub decoded: Result<Decoded, ContractError>,
    /// Its deadline (and whatever else the runtime keeps per message).
    pub lease: L,
}

impl<L> Work<L> {
    /// Decodes `message`; `lease` says until when it may be worked on.
    pub fn new(message: Message, lease: L) -> Self {
        let decoded = decode(message.body.as_bytes());
        Self { message, decoded, lease }
    }

    /// The event's `studentId`, when it decoded.
    pub fn student_id(&self) -> Option<&str> {
        self.decoded.as_ref().ok().map(|d| d.event.student_id.as_str())
    }

    /// What the body says of itself, for the log: the decoded event's ids,
    /// or for a refused body whose JSON parsed, whichever of `studentId`,
    /// `eventId` and a valid `version` it has (a version out of range is
    /// left out rather than logged as something it is not).
    pub fn ids(&self) -> Ids {
        if let Ok(d) = &self.decoded {
            let e = &d.event;
            return Ids {
                student_id: Some(e.student_id.clone()),
                event_id: Some(e.event_id.clone()),
                version: Some(e.version),
            };
        }
        let Ok(serde_json::Value::Object(body)) = serde_json::from_str(&self.message.body) else {
            return Ids::default();
        };
        // Only what fits the contract's limits: a refused body may carry anything.
        let text = |name: &str, most: usize| {
            let value = body.get(name).and_then(serde_json::Value::as_str)?;
            let fits = (1..=most).contains(&value.chars().count()) && !value.chars().any(char::is_control);
            fits.then(|| value.to_owned())
        };
        let version = body.get("version").and_then(serde_json::Value::as_u64).filter(|v| (1..=MAX_VERSION).contains(v));
        Ids {
            student_id: text("studentId", MAX_STUDENT_ID_CHARS),
            event_id: text("eventId", MAX_EVENT_ID_CHARS),
            version,
        }
    }

    /// The event's `version`, when it decoded (0 sorts an undecodable message first).
    pub fn version(&self) -> u64 {
        self.decoded.as_ref().map_or(0, |d| d.event.version)
    }
}
