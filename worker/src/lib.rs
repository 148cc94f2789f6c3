//! student-worker: consumes student-record events from SQS and writes them to
//! DynamoDB with idempotent, version-guarded conditional writes.
//!
//! The pipeline, one file a stage: [`config`] → [`poll`] (long-poll SQS) →
//! [`process`] (decode, order, dispatch) → [`write`] (conditional DynamoDB
//! writes) → [`ack`] (batched deletes and visibility changes), with
//! [`deadletter`] forwarding, [`heartbeat`] (visibility extensions),
//! [`concurrency`] (adaptive write limit), [`retry`] and [`shutdown`] on the side, and
//! [`error`] classifying every AWS failure in one place. [`run::run`] wires
//! them together; [`commands`] holds the other subcommands.

pub mod ack;
pub mod aws;
pub mod cli;
pub mod commands;
pub mod concurrency;
pub mod config;
pub mod deadletter;
pub mod error;
pub mod health;
pub mod heartbeat;
pub mod logging;
pub mod metrics;
pub mod observe;
pub mod poll;
pub mod process;
pub mod retry;
pub mod run;
pub mod shutdown;
pub mod write;
