//! The runtimes that drive the handler and carry its decisions out on SQS:
//! the ECS poller (`ecs`), the Lambda function (`lambda`), and what they
//! share (`deadletter`, `fatal`).

pub mod deadletter;
pub mod ecs;
pub mod fatal;
pub mod lambda;
