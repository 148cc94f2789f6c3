//! The subcommands besides `run`.

pub mod dlq;
pub mod doctor;
pub mod healthcheck;
pub mod publish;
pub mod setup;
