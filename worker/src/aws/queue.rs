//! A queue's approximate counts, read the same way by the worker (is the
//! queue drained?) and the operator tools (`dlq stats`).

use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesError;
use aws_sdk_sqs::types::QueueAttributeName as Q;

/// The IAM action [`counts`] calls.
pub const COUNTS_ACTION: &str = "sqs:GetQueueAttributes";

/// Approximate counts of a queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Visible (`ApproximateNumberOfMessages`).
    pub visible: u64,
    /// In flight (`ApproximateNumberOfMessagesNotVisible`).
    pub in_flight: u64,
    /// Delayed (`ApproximateNumberOfMessagesDelayed`).
    pub delayed: u64,
}

impl Counts {
    /// No visible, in-flight or delayed message.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The counts of the queue at `url`.
pub async fn counts(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
) -> Result<Counts, SdkError<GetQueueAttributesError, aws_sdk_sqs::config::http::HttpResponse>> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(Q::ApproximateNumberOfMessages)
        .attribute_names(Q::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(Q::ApproximateNumberOfMessagesDelayed)
        .send()
        .await?;
    let attrs = out.attributes.unwrap_or_default();
    let n = |k: &Q| attrs.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
    Ok(Counts {
        visible: n(&Q::ApproximateNumberOfMessages),
        in_flight: n(&Q::ApproximateNumberOfMessagesNotVisible),
        delayed: n(&Q::ApproximateNumberOfMessagesDelayed),
    })
}
