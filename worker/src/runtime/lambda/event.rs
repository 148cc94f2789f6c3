//! An SQS event from the event source mapping, as the handler sees it: each
//! record becomes a [`Message`], and the source queue's URL is built from the
//! records' `eventSourceARN` (so the function needs no `GetQueueUrl` call and
//! no permission for it).

use std::collections::HashMap;

use aws_lambda_events::event::sqs::{SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::MessageAttributeValue;
use tokio::time::Instant;

use crate::handler::Message;
use crate::handler::trace::AWS_TRACE_HEADER;

/// Why an event cannot be handled at all. The invocation fails and the
/// mapping returns the whole batch to the queue: nothing is lost.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// A record has no `messageId`: it could not be reported as failed.
    #[error("record {index} of the event has no messageId; is the function's trigger an SQS event source mapping?")]
    NoMessageId {
        /// The record's position in the batch.
        index: usize,
    },
    /// A record's `eventSourceARN` is missing or not an SQS queue's ARN.
    #[error("record {message_id} has eventSourceARN {arn:?}, not an SQS queue's ARN (arn:aws:sqs:REGION:ACCOUNT:NAME)")]
    NotAQueue {
        /// The record's message id.
        message_id: String,
        /// What it said.
        arn: String,
    },
    /// The records come from two queues; one mapping reads one queue.
    #[error("the batch holds records of two queues, {first} and {other}; an event source mapping reads one queue")]
    TwoQueues {
        /// The first record's queue.
        first: String,
        /// Another record's queue.
        other: String,
    },
}

/// The queue URL of an SQS ARN: `arn:aws:sqs:REGION:ACCOUNT:NAME` →
/// `https://sqs.REGION.amazonaws.com/ACCOUNT/NAME` (in partitions other than
/// `aws` the host ends in that partition's domain).
pub fn queue_url_from_arn(arn: &str) -> Option<String> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("sqs"), Some(region), Some(account), Some(name)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let valid = |s: &str| !s.is_empty() && !s.contains(['/', ':', '?', '#']);
    if ![partition, region, account, name].into_iter().all(valid) {
        return None;
    }
    let domain = match partition {
        "aws-cn" => "amazonaws.com.cn",
        _ => "amazonaws.com",
    };
    Some(format!("https://sqs.{region}.{domain}/{account}/{name}"))
}

/// The one source queue of `records`, as a URL.
pub fn source_queue(records: &[SqsMessage]) -> Result<Option<String>, EventError> {
    let mut queue: Option<String> = None;
    for (index, record) in records.iter().enumerate() {
        // An empty id would fail the whole batch response: refuse it here, once.
        let message_id =
            record.message_id.clone().filter(|id| !id.is_empty()).ok_or(EventError::NoMessageId { index })?;
        let arn = record.event_source_arn.clone().unwrap_or_default();
        let url = queue_url_from_arn(&arn).ok_or(EventError::NotAQueue { message_id, arn })?;
        match &queue {
            Some(first) if *first != url => return Err(EventError::TwoQueues { first: first.clone(), other: url }),
            Some(_) => {}
            None => queue = Some(url),
        }
    }
    Ok(queue)
}

/// The handler's view of `record` (whose `messageId` [`source_queue`] checked).
pub fn message(record: SqsMessage, received_at: Instant) -> Message {
    let receive_count = record.attributes.get("ApproximateReceiveCount").and_then(|n| n.parse().ok()).unwrap_or(1);
    let group_id = record.attributes.get("MessageGroupId").cloned();
    let trace_header = record.attributes.get(AWS_TRACE_HEADER).cloned();
    let attributes = record
        .message_attributes
        .into_iter()
        .filter_map(|(name, value)| attribute(value).map(|value| (name, value)))
        .collect::<HashMap<_, _>>();
    Message {
        message_id: record.message_id.unwrap_or_default(),
        receipt_handle: record.receipt_handle.unwrap_or_default(),
        body: record.body.unwrap_or_default(),
        receive_count,
        received_at,
        group_id,
        attributes,
        trace_header,
    }
}

/// A producer's attribute in the SQS API's shape (kept when dead-lettering).
fn attribute(value: SqsMessageAttribute) -> Option<MessageAttributeValue> {
    MessageAttributeValue::builder()
        .set_data_type(value.data_type)
        .set_string_value(value.string_value)
        .set_binary_value(value.binary_value.map(|b| Blob::new(b.0)))
        .build()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sqs_arn_becomes_its_queue_url() {
        assert_eq!(
            queue_url_from_arn("arn:aws:sqs:ap-northeast-2:123456789012:students").as_deref(),
            Some("https://sqs.ap-northeast-2.amazonaws.com/123456789012/students")
        );
        assert_eq!(
            queue_url_from_arn("arn:aws:sqs:us-east-1:123456789012:students.fifo").as_deref(),
            Some("https://sqs.us-east-1.amazonaws.com/123456789012/students.fifo")
        );
        assert_eq!(
            queue_url_from_arn("arn:aws-cn:sqs:cn-north-1:123456789012:q").as_deref(),
            Some("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q")
        );
        for bad in
            ["", "arn:aws:sns:us-east-1:123456789012:t", "arn:aws:sqs:us-east-1:123456789012", "arn:aws:sqs::1:q"]
        {
            assert_eq!(queue_url_from_arn(bad), None, "{bad}");
        }
    }

    fn record(id: Option<&str>, arn: &str) -> SqsMessage {
        let mut r = SqsMessage::default();
        r.message_id = id.map(Into::into);
        r.event_source_arn = Some(arn.into());
        r
    }

    #[test]
    fn a_batch_has_one_source_queue_and_every_record_an_id() {
        let a = "arn:aws:sqs:ap-northeast-2:123456789012:a";
        let b = "arn:aws:sqs:ap-northeast-2:123456789012:b";
        assert_eq!(source_queue(&[]), Ok(None));
        let one = source_queue(&[record(Some("1"), a), record(Some("2"), a)]).expect("one queue");
        assert_eq!(one.as_deref(), Some("https://sqs.ap-northeast-2.amazonaws.com/123456789012/a"));
        assert!(matches!(
            source_queue(&[record(Some("1"), a), record(Some("2"), b)]),
            Err(EventError::TwoQueues { .. })
        ));
        assert_eq!(source_queue(&[record(None, a)]), Err(EventError::NoMessageId { index: 0 }));
        assert_eq!(
            source_queue(&[record(Some("1"), a), record(Some(""), a)]),
            Err(EventError::NoMessageId { index: 1 })
        );
        assert!(matches!(source_queue(&[record(Some("1"), "x")]), Err(EventError::NotAQueue { .. })));
    }

    #[test]
    fn a_record_keeps_its_receive_count_group_and_attributes() {
        let mut r = record(Some("m1"), "arn:aws:sqs:ap-northeast-2:123456789012:a.fifo");
        r.receipt_handle = Some("rh".into());
        r.body = Some("{}".into());
        r.attributes.insert("ApproximateReceiveCount".into(), "3".into());
        r.attributes.insert("MessageGroupId".into(), "g1".into());
        r.attributes.insert("AWSTraceHeader".into(), "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1".into());
        let mut attr = SqsMessageAttribute::default();
        attr.data_type = Some("String".into());
        attr.string_value = Some("upstream".into());
        r.message_attributes.insert("source".into(), attr);
        let m = message(r, Instant::now());
        assert_eq!((m.message_id.as_str(), m.receipt_handle.as_str(), m.body.as_str()), ("m1", "rh", "{}"));
        assert_eq!((m.receive_count, m.group_id.as_deref()), (3, Some("g1")));
        assert_eq!(m.attributes["source"].string_value(), Some("upstream"));
        assert_eq!(m.trace_id(), Some("1-5759e988-bd862e3fe1be46a994272793"));
    }
}
