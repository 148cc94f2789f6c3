//! The subcommands besides `run`.

pub mod healthcheck;
pub mod publish;
pub mod setup;
