//! How `doctor` and `run`'s pre-flight end in failure.

use std::fmt;

use super::report::Check;

/// `doctor` found at least one failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("doctor: {failed} check(s) failed; each says its cause and fix above")]
pub struct DoctorFailed {
    /// How many checks failed.
    pub failed: usize,
}

/// The fatal subset of the checks failed: `run` refuses to start.
#[derive(Debug, Clone, thiserror::Error)]
pub struct PreflightError {
    /// The failed checks.
    pub failures: Vec<Check>,
}

impl fmt::Display for PreflightError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refusing to start: {} pre-flight check(s) failed (`student-worker doctor` runs them all)",
            self.failures.len()
        )?;
        for check in &self.failures {
            write!(f, "\n{check}")?;
        }
        Ok(())
    }
}
