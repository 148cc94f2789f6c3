//! A dead letter as the DLQ receives it: the original body, the producer's
//! message attributes, and ours saying why it failed (`ErrorCode`,
//! `ErrorMessage`, `FailedAt`, `SourceQueue`, `ReceiveCount`). Built here,
//! sent by the runtime (send first, delete from the source second).

use std::collections::HashMap;

use aws_sdk_sqs::types::MessageAttributeValue;
use student_shared::ContractError;

use super::message::Message;
use crate::limits::MAX_MESSAGE_ATTRIBUTES;

/// The attribute naming why a message was dead-lettered.
pub const ERROR_CODE: &str = "ErrorCode";
/// The attributes a dead letter gets.
pub const ERROR_ATTRIBUTES: [&str; 5] = [ERROR_CODE, "ErrorMessage", "FailedAt", "SourceQueue", "ReceiveCount"];
/// FIFO group of a dead letter with no group of its own and no `studentId`.
pub const FALLBACK_GROUP: &str = "invalid";

/// The message attributes of `message` dead-lettered for `error` at
/// `failed_at` (RFC 3339) from `source_queue`: ours, and the producer's while
/// they fit under SQS's limit beside ours.
pub fn attributes(
    message: &Message,
    error: &ContractError,
    source_queue: &str,
    failed_at: &str,
) -> HashMap<String, MessageAttributeValue> {
    let ours = [
        (ERROR_CODE, "String", error.code().as_str().to_owned()),
        ("ErrorMessage", "String", error.dlq_message()),
        ("FailedAt", "String", failed_at.to_owned()),
        ("SourceQueue", "String", source_queue.to_owned()),
        ("ReceiveCount", "Number", message.receive_count.to_string()),
    ];
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

/// The FIFO group a dead letter goes to: the source's, else the student's.
pub fn fifo_group<'a>(message: &'a Message, student_id: Option<&'a str>) -> &'a str {
    message.group_id.as_deref().or(student_id).unwrap_or(FALLBACK_GROUP)
}

#[cfg(test)]
mod tests {
    use student_shared::ErrorCode;
    use tokio::time::Instant;

    use super::*;

    fn value(v: &str) -> MessageAttributeValue {
        MessageAttributeValue::builder().data_type("String").string_value(v).build().expect("attribute")
    }

    fn message(producer_attributes: usize) -> Message {
        Message {
            message_id: "m".into(),
            receipt_handle: "r".into(),
            body: "{".into(),
            receive_count: 3,
            received_at: Instant::now(),
            group_id: None,
            attributes: (0..producer_attributes).map(|i| (format!("P{i}"), value("p"))).collect(),
            trace_header: None,
        }
    }

    #[test]
    fn ours_say_why_and_the_producers_fit_beside_them() {
        let error = ContractError::new(ErrorCode::MalformedJson, "body", "not JSON");
        let mut m = message(2);
        m.attributes.insert("ErrorCode".into(), value("stale"));
        let a = attributes(&m, &error, "https://sqs.x/1/students", "2026-12-03T00:00:00Z");
        assert_eq!(a["ErrorCode"].string_value.as_deref(), Some("MalformedJson"), "ours win over a producer's");
        assert_eq!(a["ReceiveCount"].data_type, "Number");
        assert_eq!(a["ReceiveCount"].string_value.as_deref(), Some("3"));
        assert_eq!(a["SourceQueue"].string_value.as_deref(), Some("https://sqs.x/1/students"));
        assert!(a.contains_key("P0") && a.contains_key("P1"));
        let crowded = attributes(&message(9), &error, "q", "t");
        assert_eq!(crowded.len(), MAX_MESSAGE_ATTRIBUTES, "never over SQS's limit");
        assert!(ERROR_ATTRIBUTES.iter().all(|name| crowded.contains_key(*name)));
    }

    #[test]
    fn fifo_dead_letters_keep_the_group() {
        let mut m = message(0);
        assert_eq!(fifo_group(&m, Some("101")), "101");
        assert_eq!(fifo_group(&m, None), FALLBACK_GROUP);
        m.group_id = Some("g".into());
        assert_eq!(fifo_group(&m, Some("101")), "g");
    }
}
