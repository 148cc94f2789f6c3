//! What SQS sends are built from, in one place: the entries of the batch
//! calls (each entry's id is its index in the call, so an answer's
//! `successful` and `failed` lists map back to what was sent), and the trace
//! header a moved message keeps.

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, MessageSystemAttributeValue,
};

/// `ChangeMessageVisibilityBatch` entries: each receipt handle with its new
/// visibility timeout in seconds (0: visible at once).
pub fn visibility_entries<'a>(
    changes: impl IntoIterator<Item = (&'a str, i32)>,
) -> Vec<ChangeMessageVisibilityBatchRequestEntry> {
    changes
        .into_iter()
        .enumerate()
        .filter_map(|(i, (receipt_handle, seconds))| {
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(receipt_handle)
                .visibility_timeout(seconds)
                .build()
                .ok()
        })
        .collect()
}

/// `DeleteMessageBatch` entries, one per receipt handle.
pub fn delete_entries<'a>(receipt_handles: impl IntoIterator<Item = &'a str>) -> Vec<DeleteMessageBatchRequestEntry> {
    receipt_handles
        .into_iter()
        .enumerate()
        .filter_map(|(i, receipt_handle)| {
            DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(receipt_handle).build().ok()
        })
        .collect()
}

/// An `AWSTraceHeader` as the system attribute a send carries, so a message
/// moved to another queue (a dead letter, a replay) stays in its trace.
pub fn trace_header(header: &str) -> Option<MessageSystemAttributeValue> {
    MessageSystemAttributeValue::builder().data_type("String").string_value(header).build().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_index_in_the_call() {
        let v = visibility_entries([("a", 0), ("b", 30)]);
        let got: Vec<(&str, &str, i32)> =
            v.iter().map(|e| (e.id(), e.receipt_handle(), e.visibility_timeout().unwrap_or(-1))).collect();
        assert_eq!(got, [("0", "a", 0), ("1", "b", 30)]);
        let d = delete_entries(["x", "y", "z"]);
        assert_eq!(d.iter().map(|e| e.id()).collect::<Vec<_>>(), ["0", "1", "2"]);
        assert_eq!(d[2].receipt_handle(), "z");
    }
}
