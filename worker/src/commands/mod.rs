//! The subcommands, one file (or folder) each.

pub mod dlq;
pub mod doctor;
pub mod error;
pub mod generate;
pub mod get;
pub mod healthcheck;
pub mod lambda;
pub mod output;
pub mod publish;
pub mod run;
pub mod setup;
