//! The ECS runtime: a long-running poller. Receive ahead ([`poll`]), keep
//! each message's visibility extended while it is worked on ([`heartbeat`]),
//! hand batches to the handler, carry its decisions out ([`settle`]) as
//! batched deletes and visibility changes ([`ack`]) and DLQ sends, stop on a
//! fatal error, and drain on shutdown ([`run`]).

pub mod ack;
pub mod heartbeat;
pub mod poll;
pub mod run;
pub mod settle;

pub use run::{RunError, RunSummary, run};
