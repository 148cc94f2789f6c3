//! Configuration: the flags and variables of `run`, their defaults and
//! ranges, and the error that stops start-up naming the variable and the fix.

pub mod error;
pub mod observe;
pub mod run;

pub use error::ConfigError;
pub use observe::{ObserveArgs, ObserveConfig};
pub use run::{RunArgs, RunConfig};
