//! Why a `dlq` command ended in failure, and what to do about it.

use std::fmt;

use crate::aws::error::{Action, AwsError};
use crate::commands::output::Unwritten;

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplaySummary {
    /// Moved to the target (in a dry run: would have been).
    pub moved: u64,
    /// Left in the DLQ: no match for the filters (or behind such a message in its FIFO group).
    pub skipped: u64,
    /// Not moved (still in the DLQ), or sent but not deleted (then in both queues).
    pub failed: u64,
    /// Nothing was moved: `--dry-run`.
    pub dry_run: bool,
}

impl fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.dry_run {
            true => write!(f, "dry run: would move {}, skipped {}; nothing moved", self.moved, self.skipped),
            false => write!(f, "moved {}, skipped {}, failed {}", self.moved, self.skipped, self.failed),
        }
    }
}

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
    /// Stdout could not be written (or its reader has gone).
    #[error(transparent)]
    Output(#[from] Unwritten),
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
            Self::NoSource(_) | Self::ManySources { .. } | Self::Interrupted(_) | Self::Output(_) => Action::Stop,
        }
    }
}
