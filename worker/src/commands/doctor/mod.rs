//! `student-worker doctor` and `run`'s pre-flight: the checklist of
//! docs/setup.md (region, credentials, table and key, queue and redrive,
//! visibility, permissions) with a cause and a fix for every failure.

mod command;
pub mod error;
pub mod identity;
pub mod probes;
pub mod report;
pub mod resources;

pub use command::{DoctorArgs, EXAMPLES, describe, diagnose, doctor, preflight};
pub use error::{DoctorFailed, PreflightError};
