//! `student-worker healthcheck`: the ECS container health check. Reads the
//! health file the running worker keeps (see [`crate::observe::health`]) and exits 0
//! when its loop made progress recently and it is not in a fatal state, 1
//! otherwise with the reason. Needs no shell, no AWS access and no worker
//! configuration besides `WORKER_HEALTH_FILE`.

use clap::Args;

use crate::commands::output;
use crate::config::observe::{DEFAULT_HEALTH_FILE, OFF, health_file_or_default};
use crate::observe::health::{self, Verdict};

/// `healthcheck`'s flags.
#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// The health file `run` writes (the same `WORKER_HEALTH_FILE`).
    #[arg(long, env = "WORKER_HEALTH_FILE", value_name = "PATH")]
    pub health_file: Option<String>,
}

/// `healthcheck --help`'s examples.
pub const EXAMPLES: &str = "\
  student-worker healthcheck
  WORKER_HEALTH_FILE=/data/health.json student-worker healthcheck
  (task definition) \"healthCheck\": {\"command\": [\"CMD\", \"/student-worker\", \"healthcheck\"]}";

/// `healthcheck`'s flag with its default, written from the constant.
pub fn describe(cmd: clap::Command) -> clap::Command {
    cmd.mut_arg("health_file", |a| {
        a.help(format!("The health file `run` writes (the same `WORKER_HEALTH_FILE`) [default: {DEFAULT_HEALTH_FILE}]"))
    })
}

/// The worker is not healthy; the message says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unhealthy: {0}")]
pub struct Unhealthy(pub String);

/// Prints `healthy: …` and returns `Ok` when healthy.
pub fn healthcheck(args: &HealthcheckArgs) -> Result<(), Unhealthy> {
    if args.health_file.as_deref().map(str::trim) == Some(OFF) {
        return Err(Unhealthy(format!(
            "WORKER_HEALTH_FILE is `{OFF}`: the worker keeps no health file to check; unset it (or name a path) for both run and healthcheck"
        )));
    }
    let path = health_file_or_default(args.health_file.as_deref());
    match health::check(&path, std::time::SystemTime::now()) {
        Verdict::Healthy(why) => {
            // A health check's reader never closes early; if it did, the verdict stands.
            let _ = output::line(format_args!("healthy: {why}"));
            Ok(())
        }
        Verdict::Unhealthy(why) => Err(Unhealthy(why)),
    }
}
