//! Why a command failed, as one enum, and the exit code that says so: 2
//! when a setting is wrong (nothing was done; the message names the
//! variable and the fix), 1 for everything else (the message says the
//! cause and, where there is one, the fix).

use super::dlq::error::DlqError;
use super::doctor::error::{DoctorFailed, PreflightError};
use super::healthcheck::Unhealthy;
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
    /// The process's exit code: 2 for a bad setting, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => 2,
            _ => 1,
        }
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
    }
}
