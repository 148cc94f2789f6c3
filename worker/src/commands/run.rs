//! `student-worker run`: the ECS service. Validates the configuration,
//! installs the signal handlers, refuses to start on what `doctor` would
//! call fatal, then hands over to the ECS runtime until SIGTERM.

use crate::aws;
use crate::commands::doctor;
use crate::commands::error::CommandError;
use crate::config::{RunArgs, RunConfig};
use crate::observe::observer;
use crate::runtime::ecs;
use crate::shutdown;

/// `run --help`'s examples.
pub const EXAMPLES: &str = "\
  eval \"$(student-worker setup | sed 's/^/export /')\" && student-worker run
  SQS_WAIT_TIME_SECONDS=1 student-worker run --exit-when-empty
  LOG_FORMAT=json student-worker run | jq 'select(.outcome == \"invalid\")'";

/// Runs the worker with `args` until a signal, a fatal error or (with
/// `WORKER_EXIT_WHEN_EMPTY`) an empty queue.
pub async fn run(args: &RunArgs) -> Result<(), CommandError> {
    let config = RunConfig::from_args(args)?;
    // Signals first: once the health file says healthy, ECS may stop the task.
    let shutdown = shutdown::on_signals();
    observer::preflight(&config.observe)?;
    let sdk = aws::load_sdk_config().await?;
    // The fatal subset of `doctor`, before the first receive.
    if let Err(refused) = doctor::preflight(&sdk, &config).await {
        observer::refused(&config.observe, &refused.to_string());
        return Err(refused.into());
    }
    let clients = aws::Clients::for_worker(&sdk, &config);
    ecs::run(config, clients, shutdown).await?;
    Ok(())
}
