//! student-worker: consumes student-record events from SQS and writes them to
//! DynamoDB with idempotent, version-guarded conditional writes.
//!
//! Layers, lowest first; a module imports only from layers below it (a test,
//! `tests/tests/layers.rs`, fails on any import cycle between files):
//!
//! | layer | what |
//! | --- | --- |
//! | [`limits`], [`shutdown`] | AWS limits and the timing budget; SIGTERM/SIGINT as a token |
//! | [`config`] | flags and variables, defaults, ranges, `ConfigError` |
//! | [`aws`] | clients, `AwsError` (retry / dead-letter / stop, the one throttling list), batch entries |
//! | [`observe`] | logging, metrics (a handle passed down), the health file |
//! | [`handler`] | the message-handling core, no SQS client: decode, group, write with backoff until a deadline the runtime supplies, decide |
//! | [`runtime`] | what drives the handler and carries its decisions out: the ECS poller (poll → process → write → ack), the Lambda function (batch → partial batch response) |
//! | [`commands`] | `run`, `lambda`, `setup`, `publish`, `doctor`, `dlq`, `healthcheck` |
//! | [`cli`] | the command line |
//!
//! Below all of them, `student_shared`: the event contract, event → item,
//! write plans and outcomes, pure. docs/design.md describes the layers, the
//! contract and the timing budget.

pub mod aws;
pub mod cli;
pub mod commands;
pub mod config;
pub mod handler;
pub mod limits;
pub mod observe;
pub mod runtime;
pub mod shutdown;
