//! The Lambda runtime: the same handler behind an SQS event source mapping.
//! Each invocation's batch becomes [`Work`](crate::handler::Work) ([`event`]),
//! the handler processes it ([`invoke`]), and its decisions become a partial
//! batch response ([`settle`]); [`serve`] runs the Runtime API loop and
//! [`api`] holds what `lambda_runtime` does not.

pub mod api;
pub mod event;
pub mod invoke;
pub mod serve;
pub mod settle;

pub use invoke::{Function, InvocationError};
pub use serve::serve;
