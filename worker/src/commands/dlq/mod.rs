//! `student-worker dlq`: the operator's dead-letter tools: `stats`, `peek`,
//! `replay` (dry run, filters, rate limit, progress, send-then-delete).

pub mod args;
mod command;
pub mod error;
pub mod letter;
pub mod peek;
pub mod progress;
pub mod replay;
pub mod stats;

pub use args::DlqArgs;
pub use command::{dlq, run_replay};
