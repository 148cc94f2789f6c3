//! The runtimes that drive the handler and carry its decisions out on SQS:
//! the ECS poller (`ecs`), and what they share (`deadletter`).

pub mod deadletter;
pub mod ecs;
