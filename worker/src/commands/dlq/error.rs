//! Why a `dlq` command ended in failure, and what to do about it.

use super::replay::ReplaySummary;
use crate::error::{Action, AwsError};

/// A `dlq` command's failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DlqError {
    /// An SQS call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// No queue redrives to this DLQ, so there is no default target.
    #[error("no queue's redrive policy points at {0}; pass --to URL")]
    NoSource(String),
    /// Several queues redrive here: the target is ambiguous.
    #[error("{} queues redrive to {dlq} ({}); pass --to URL to choose", .sources.len(), .sources.join(", "))]
    ManySources {
        /// The DLQ.
        dlq: String,
        /// The queues.
        sources: Vec<String>,
    },
    /// Replay stopped on SIGINT/SIGTERM after the message in hand.
    #[error("interrupted: {0}; the rest is still in the DLQ")]
    Interrupted(ReplaySummary),
    /// Some messages could not be moved; they are still in the DLQ.
    #[error("{0}: the failed ones are still in the DLQ (see the lines above)")]
    SomeFailed(ReplaySummary),
}

impl DlqError {
    /// Retry (run the command again), or stop and fix something first.
    pub fn action(&self) -> Action {
        match self {
            Self::Aws(e) => e.action(),
            Self::SomeFailed(_) => Action::Retry,
            Self::NoSource(_) | Self::ManySources { .. } | Self::Interrupted(_) => Action::Stop,
        }
    }
}
