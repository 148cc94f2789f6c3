//! The message-handling core, with no SQS client in it: decode a message,
//! group a batch, apply each event with its conditional write and backoff
//! (bounded by a deadline the runtime supplies), and decide what becomes of
//! each message. The runtimes (`crate::runtime`) carry the decisions out.

pub mod concurrency;
pub mod deadletter;
pub mod decide;
pub mod group;
pub mod message;
pub mod process;
pub mod retry;
pub mod trace;
pub mod write;

pub use decide::Decision;
pub use message::{Deadline, Message, Work};
pub use process::{Handled, Handler, Settle};
