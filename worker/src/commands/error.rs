//! Why a command failed, as one enum, and the exit code that says so: 2
//! when a setting is wrong (nothing was done; the message names the
//! variable and the fix), 1 for everything else (the message says the
//! cause and, where there is one, the fix).

use super::dlq::error::DlqError;
use super::doctor::error::{DoctorFailed, PreflightError};
use super::healthcheck::Unhealthy;
use super::output::Unwritten;
use crate::aws::AwsError;
use crate::config::ConfigError;
use crate::runtime::ecs::RunError;

/// A command's failure.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A flag or variable is wrong: fix it and start again.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An AWS call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// `run` refused to start: the pre-flight found what it cannot run with.
    #[error(transparent)]
    Refused(#[from] PreflightError),
    /// `run` stopped on a fatal error.
    #[error(transparent)]
    Run(#[from] RunError),
    /// `lambda` lost the Runtime API.
    #[error("the Lambda Runtime API failed: {0}")]
    Lambda(String),
    /// `doctor` found failed checks.
    #[error(transparent)]
    Doctor(#[from] DoctorFailed),
    /// A `dlq` command failed.
    #[error(transparent)]
    Dlq(#[from] DlqError),
    /// `healthcheck`: the worker is not healthy.
    #[error(transparent)]
    Unhealthy(#[from] Unhealthy),
    /// `publish` refused some lines or could not send them.
    #[error("{refused} line(s) refused and {unsent} not sent; see above")]
    NotPublished {
        /// Lines that break the event contract.
        refused: usize,
        /// Lines SQS did not take.
        unsent: usize,
    },
    /// `get`: the table has no item for the student, not even a tombstone.
    #[error("no item for StudentID {student_id:?} in table {table} ({region}): the student was never written")]
    NoItem {
        /// The id asked for.
        student_id: String,
        /// The table.
        table: String,
        /// Its region.
        region: String,
    },
    /// Stdout could not be written (or its reader has gone).
    #[error(transparent)]
    Output(#[from] Unwritten),
    /// Reading the input or writing the output failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being read or written.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl CommandError {
    /// The process's exit code: 2 for a bad setting, 0 when the reader
    /// closed stdout (it took what it wanted, as `| head` does), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => 2,
            _ if self.closed_pipe() => 0,
            _ => 1,
        }
    }

    /// Whether there is anything to tell a person (not after a closed pipe).
    pub fn is_reported(&self) -> bool {
        !self.closed_pipe()
    }

    fn closed_pipe(&self) -> bool {
        matches!(self, Self::Output(Unwritten::Closed) | Self::Dlq(DlqError::Output(Unwritten::Closed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_setting_exits_2_and_anything_else_1() {
        let config =
            ConfigError { variable: "AWS_REGION", flag: "region", problem: "is not set".into(), fix: "set it".into() };
        assert_eq!(CommandError::from(config).exit_code(), 2);
        assert_eq!(CommandError::NotPublished { refused: 1, unsent: 0 }.exit_code(), 1);
        let io = CommandError::Io { what: "reading stdin".into(), source: std::io::Error::other("closed") };
        assert_eq!(io.to_string(), "reading stdin: closed");
        let closed = CommandError::from(Unwritten::Closed);
        assert_eq!((closed.exit_code(), closed.is_reported()), (0, false), "a closed pipe ends quietly");
    }
}
