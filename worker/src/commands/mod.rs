//! The subcommands besides `run`.

pub mod publish;
pub mod setup;
