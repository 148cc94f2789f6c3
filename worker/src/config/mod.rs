//! Configuration: the flags and variables of `run` and `lambda`, their defaults and
//! ranges, and the error that stops start-up naming the variable and the fix.

pub mod error;
pub mod handler;
pub mod lambda;
pub mod observe;
pub mod run;

pub use error::ConfigError;
pub use handler::{HandlerArgs, HandlerConfig};
pub use lambda::{LambdaArgs, LambdaConfig};
pub use observe::{ObserveArgs, ObserveConfig};
pub use run::{RunArgs, RunConfig};
