//! Test support for the student-worker integration tests: a local AWS emulator (moto) and a fault-injecting HTTP proxy.

pub mod emulator;
pub mod history;
pub mod lambda_api;
pub mod model;
pub mod proxy;
pub mod terminal;
pub mod worker_process;
pub mod world;
