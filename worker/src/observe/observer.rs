//! What `run` shows the platform besides its logs: EMF metrics on stdout
//! ([`super::metrics`], with JSON logs only) and the health file
//! `healthcheck` reads ([`super::health`]), as `ObserveConfig` turns them on.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::health::{self, Reporter};
use super::logging::{self, LogFormat};
use super::metrics::{Emitter, Metrics};
use crate::aws::AwsError;
use crate::config::ConfigError;
use crate::config::observe::{OFF, ObserveConfig};

/// The running metrics emitter and health reporter of one `run`.
#[derive(Debug)]
pub struct Observer {
    stop: CancellationToken,
    emitter: Option<JoinHandle<()>>,
    health: Option<Reporter>,
}

impl Observer {
    /// Starts what `observe` turns on, reporting from `metrics`; the
    /// metrics' dimension is `queue_url`'s queue name.
    pub fn start(observe: &ObserveConfig, metrics: &Arc<Metrics>, queue_url: &str) -> Self {
        let stop = CancellationToken::new();
        // EMF lines are JSON for CloudWatch; they go with JSON logs only, not
        // into a person's terminal between text lines.
        let emf = logging::format() == LogFormat::Json;
        let emitter = observe.metrics_interval.filter(|_| emf).map(|interval| {
            let emitter = Emitter::new(Arc::clone(metrics), &observe.metrics_namespace, queue_url);
            tokio::spawn(emit(emitter, interval, stop.clone()))
        });
        let health = observe.health_file.as_ref().and_then(|path| {
            Reporter::start(path.clone(), observe.health_max_age_seconds, Arc::clone(metrics))
                .inspect_err(|e| tracing::warn!(error = %e, path = %path.display(), "could not write the health file"))
                .ok()
        });
        Self { stop, emitter, health }
    }

    /// Flushes the last metrics and records how the run ended.
    pub async fn finish(self, fatal: Option<&AwsError>) {
        self.stop.cancel();
        if let Some(emitter) = self.emitter {
            let _ = emitter.await;
        }
        if let Some(health) = self.health {
            health.finish(fatal.map(ToString::to_string)).await;
        }
    }
}

/// Writes a first health record (progress now), so an unwritable path
/// stops start-up (exit 2) instead of failing every health check later.
pub fn preflight(observe: &ObserveConfig) -> Result<(), ConfigError> {
    let Some(path) = &observe.health_file else { return Ok(()) };
    Reporter::probe(path, observe.health_max_age_seconds).map_err(|e| ConfigError {
        variable: "WORKER_HEALTH_FILE",
        flag: "health-file",
        problem: format!("is {}, which cannot be written ({e})", path.display()),
        fix: format!(
            "mount a writable volume there (the task definition's /tmp volume when readonlyRootFilesystem is on), point it at a writable path, or set it to `{OFF}`"
        ),
    })
}

/// Records that `run` stopped before its loop started (the pre-flight
/// refused), with the cause `healthcheck` then reports.
pub fn refused(observe: &ObserveConfig, cause: &str) {
    if let Some(path) = &observe.health_file {
        health::record_fatal(path, observe.health_max_age_seconds, cause.to_owned());
    }
}

/// Writes one EMF line every `interval`, and a last one when stopped.
async fn emit(mut emitter: Emitter, interval: Duration, stop: CancellationToken) {
    loop {
        let stopped = tokio::select! {
            () = stop.cancelled() => true,
            () = tokio::time::sleep(interval) => false,
        };
        if let Err(e) = logging::watch(emitter.flush(&mut std::io::stdout().lock())) {
            tracing::warn!(error = %e, "could not write the metrics line");
        }
        if stopped {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::observe::ObserveArgs;

    #[test]
    fn an_unwritable_health_file_stops_start_up_naming_the_variable() {
        let args =
            ObserveArgs { health_file: Some("/proc/student-worker/health.json".into()), ..ObserveArgs::default() };
        let c = ObserveConfig::from_args(&args, 20, 60).expect("valid");
        let e = preflight(&c).expect_err("not writable");
        assert_eq!(e.variable, "WORKER_HEALTH_FILE");
        assert!(e.fix.contains("mount a writable volume"), "{e}");
    }
}
