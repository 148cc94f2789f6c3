//! A fast local endpoint for benchmarking `student-worker`: one HTTP (or,
//! with `--tls`, HTTPS) server on 127.0.0.1 that answers the SQS and
//! DynamoDB JSON-protocol calls the worker makes, from a generated stream of
//! valid events, with an added latency per call, optional write throttling,
//! and counts of calls per operation, of connections and handshakes, and
//! of the client's idle write slots.
//! For measuring only: it applies no conditions and stores nothing, so it is
//! never a correctness backend (the tests use moto).

pub mod delay;
pub mod events;
pub mod queue;
pub mod server;
pub mod slots;
pub mod tls;

pub use server::{Endpoint, Settings};
pub use tls::Tls;
