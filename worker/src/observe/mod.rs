//! What the worker tells people and the platform: log lines, EMF metrics
//! (a registry each run hands down, not a global) and the health file.

pub mod health;
pub mod logging;
pub mod metrics;
pub mod observer;

pub use metrics::Metrics;
pub use observer::Observer;
