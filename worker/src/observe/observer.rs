//! What `run` shows the platform besides its logs: EMF metrics on stdout
//! ([`crate::metrics`]) and the health file `healthcheck` reads
//! ([`crate::health`]). Configured by `WORKER_METRICS_*` and
//! `WORKER_HEALTH_*`; started and stopped by `run` with two marked lines.

use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::aws::SQS_ATTEMPT_SLACK;
use crate::cli::RunArgs;
use crate::config::{ConfigError, MAX_WAIT_TIME_SECONDS, RunConfig, int};
use crate::error::AwsError;
use crate::health::{self, DEFAULT_HEALTH_FILE, Reporter};
use crate::metrics::{self, DEFAULT_NAMESPACE, Emitter};

/// Default EMF flush interval: CloudWatch's standard one-minute resolution.
pub const DEFAULT_METRICS_INTERVAL_SECONDS: u64 = 60;
/// Longest EMF flush interval accepted.
pub const MAX_METRICS_INTERVAL_SECONDS: u64 = 3600;
/// Added to the slowest normal gap between two progress marks for the default health limit.
pub const HEALTH_MARGIN_SECONDS: u64 = 30;
/// Longest health limit accepted: a day.
pub const MAX_HEALTH_MAX_AGE_SECONDS: u64 = 86_400;
/// CloudWatch namespaces are 1–255 characters.
pub const MAX_NAMESPACE_LEN: usize = 255;
/// `SQS_VISIBILITY_TIMEOUT_SECONDS`'s default (DESIGN.md).
const DEFAULT_VISIBILITY_TIMEOUT_SECONDS: i32 = 60;
/// `WORKER_HEALTH_FILE` value that turns the health file off.
pub const OFF: &str = "off";

/// Metrics and health settings of `run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObserveConfig {
    /// Health file (`WORKER_HEALTH_FILE`); `None`: not written.
    pub health_file: Option<PathBuf>,
    /// How old the last progress may be while healthy (`WORKER_HEALTH_MAX_AGE_SECONDS`).
    pub health_max_age_seconds: u64,
    /// EMF flush interval (`WORKER_METRICS_INTERVAL_SECONDS`); `None`: no metrics.
    pub metrics_interval: Option<Duration>,
    /// CloudWatch namespace (`WORKER_METRICS_NAMESPACE`).
    pub metrics_namespace: String,
}

impl ObserveConfig {
    /// Nothing written: for the worker used as a library (and tests that run
    /// several workers in one process). The command line turns both on.
    pub fn off() -> Self {
        Self {
            health_file: None,
            health_max_age_seconds: default_max_age(MAX_WAIT_TIME_SECONDS, DEFAULT_VISIBILITY_TIMEOUT_SECONDS),
            metrics_interval: None,
            metrics_namespace: DEFAULT_NAMESPACE.to_owned(),
        }
    }

    /// Validates the flags and environment; defaults: health file
    /// [`DEFAULT_HEALTH_FILE`], metrics every 60 s.
    pub fn from_args(args: &RunArgs, config: &RunConfig) -> Result<Self, ConfigError> {
        let health_file = match args.health_file.as_deref().map(str::trim) {
            None | Some("") => Some(PathBuf::from(DEFAULT_HEALTH_FILE)),
            Some(OFF) => None,
            Some(path) => Some(PathBuf::from(path)),
        };
        let min = min_max_age(config.wait_time_seconds);
        let default = default_max_age(config.wait_time_seconds, config.visibility_timeout_seconds);
        let health_max_age_seconds = int(
            &args.health_max_age_seconds,
            "WORKER_HEALTH_MAX_AGE_SECONDS",
            "health-max-age-seconds",
            min,
            MAX_HEALTH_MAX_AGE_SECONDS,
            default,
        )?;
        let interval = int(
            &args.metrics_interval_seconds,
            "WORKER_METRICS_INTERVAL_SECONDS",
            "metrics-interval-seconds",
            0,
            MAX_METRICS_INTERVAL_SECONDS,
            DEFAULT_METRICS_INTERVAL_SECONDS,
        )?;
        let metrics_namespace = namespace(args.metrics_namespace.as_deref())?;
        Ok(Self {
            health_file,
            health_max_age_seconds,
            metrics_interval: (interval > 0).then(|| Duration::from_secs(interval)),
            metrics_namespace,
        })
    }

    /// Records that `run` stopped before its loop started (the pre-flight
    /// refused), with the cause `healthcheck` then reports.
    pub fn refused(&self, cause: &str) {
        if let Some(path) = &self.health_file {
            health::record_fatal(path, self.health_max_age_seconds, cause.to_owned());
        }
    }

    /// Writes the first health record, so an unwritable path stops start-up
    /// (exit 2) instead of failing every health check later.
    pub fn preflight(&self) -> Result<(), ConfigError> {
        let Some(path) = &self.health_file else { return Ok(()) };
        Reporter::probe(path, self.health_max_age_seconds).map_err(|e| ConfigError {
            variable: "WORKER_HEALTH_FILE",
            flag: "health-file",
            problem: format!("is {}, which cannot be written ({e})", path.display()),
            fix: format!(
                "mount a writable volume there (the task definition's /tmp volume when readonlyRootFilesystem is on), point it at a writable path, or set it to `{OFF}`"
            ),
        })
    }
}

/// A receive may take the long-poll wait plus its attempt timeout (wait +
/// [`SQS_ATTEMPT_SLACK`]); the limit must be above that, or one slow receive
/// would fail the check.
fn min_max_age(wait_seconds: i32) -> u64 {
    let wait = u64::try_from(wait_seconds).unwrap_or(0);
    2 * wait + SQS_ATTEMPT_SLACK.as_secs() + 1
}

/// Above a slow receive and above a whole visibility timeout (every message
/// in flight may take that long when DynamoDB throttles), plus a margin.
fn default_max_age(wait_seconds: i32, visibility_seconds: i32) -> u64 {
    let visibility = u64::try_from(visibility_seconds).unwrap_or(0);
    min_max_age(wait_seconds).max(visibility) + HEALTH_MARGIN_SECONDS
}

fn namespace(value: Option<&str>) -> Result<String, ConfigError> {
    match value.map(str::trim) {
        None | Some("") => Ok(DEFAULT_NAMESPACE.to_owned()),
        Some(ns) if ns.len() <= MAX_NAMESPACE_LEN && !ns.starts_with(':') && ns.is_ascii() => Ok(ns.to_owned()),
        Some(ns) => Err(ConfigError {
            variable: "WORKER_METRICS_NAMESPACE",
            flag: "metrics-namespace",
            problem: format!("is {ns:?}"),
            fix: format!(
                "use 1–{MAX_NAMESPACE_LEN} ASCII characters, not starting with ':' (default {DEFAULT_NAMESPACE})"
            ),
        }),
    }
}

/// The running metrics emitter and health reporter of one `run`.
#[derive(Debug)]
pub struct Observer {
    stop: CancellationToken,
    emitter: Option<JoinHandle<()>>,
    health: Option<Reporter>,
}

impl Observer {
    /// Starts what `config.observe` turns on.
    pub fn start(config: &RunConfig) -> Self {
        let observe = &config.observe;
        // The limiter (when one exists) updates this whenever it moves the limit.
        metrics::global().set_concurrency(config.concurrency);
        let stop = CancellationToken::new();
        let emitter = observe.metrics_interval.map(|interval| {
            tokio::spawn(emit(observe.metrics_namespace.clone(), config.queue_url.clone(), interval, stop.clone()))
        });
        let health = observe.health_file.as_ref().and_then(|path| {
            Reporter::start(path.clone(), observe.health_max_age_seconds)
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

/// Writes one EMF line every `interval`, and a last one when stopped.
async fn emit(namespace: String, queue_url: String, interval: Duration, stop: CancellationToken) {
    let mut emitter = Emitter::new(metrics::global(), &namespace, &queue_url);
    loop {
        let stopped = tokio::select! {
            () = stop.cancelled() => true,
            () = tokio::time::sleep(interval) => false,
        };
        if let Err(e) = emitter.flush(&mut std::io::stdout().lock()) {
            tracing::warn!(error = %e, "could not write the metrics line");
        }
        if stopped {
            return;
        }
    }
}

/// The health file path `healthcheck` reads: `WORKER_HEALTH_FILE` or the default.
pub fn health_file_or_default(value: Option<&str>) -> PathBuf {
    match value.map(str::trim) {
        None | Some("") => PathBuf::from(DEFAULT_HEALTH_FILE),
        Some(path) => PathBuf::from(path),
    }
}

/// Reads the health file for `healthcheck`.
pub fn check(path: &std::path::Path) -> health::Verdict {
    health::check(path, std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_config() -> RunConfig {
        RunConfig::new("http://127.0.0.1:1/123456789012/students", "Students")
    }

    #[test]
    fn defaults_turn_both_on_with_a_limit_above_a_slow_receive_and_a_visibility() {
        let c = ObserveConfig::from_args(&RunArgs::default(), &run_config()).expect("defaults");
        assert_eq!(c.health_file, Some(PathBuf::from(DEFAULT_HEALTH_FILE)));
        assert_eq!(c.metrics_interval, Some(Duration::from_secs(60)));
        assert_eq!(c.metrics_namespace, "StudentWorker");
        // wait 20 + receive attempt (20 + 15) = 55 < visibility 60; + 30 margin.
        assert_eq!(c.health_max_age_seconds, 90);
        assert!(c.health_max_age_seconds > 20 + 20 + SQS_ATTEMPT_SLACK.as_secs());
    }

    #[test]
    fn bad_values_name_the_variable() {
        let args = RunArgs { health_max_age_seconds: Some("30".into()), ..RunArgs::default() };
        let e = ObserveConfig::from_args(&args, &run_config()).expect_err("30 s is below a slow receive");
        assert_eq!(e.variable, "WORKER_HEALTH_MAX_AGE_SECONDS");
        assert!(e.to_string().contains("expected an integer from 56 to 86400"), "{e}");
        let args = RunArgs { metrics_interval_seconds: Some("soon".into()), ..RunArgs::default() };
        let e = ObserveConfig::from_args(&args, &run_config()).expect_err("not a number");
        assert_eq!(e.variable, "WORKER_METRICS_INTERVAL_SECONDS");
        let args = RunArgs { metrics_namespace: Some(":x".into()), ..RunArgs::default() };
        assert_eq!(
            ObserveConfig::from_args(&args, &run_config()).expect_err("colon").variable,
            "WORKER_METRICS_NAMESPACE"
        );
    }

    #[test]
    fn zero_and_off_turn_them_off() {
        let args = RunArgs {
            health_file: Some("off".into()),
            metrics_interval_seconds: Some("0".into()),
            ..RunArgs::default()
        };
        let c = ObserveConfig::from_args(&args, &run_config()).expect("valid");
        assert_eq!((c.health_file, c.metrics_interval), (None, None));
    }

    #[test]
    fn an_unwritable_health_file_stops_start_up_naming_the_variable() {
        let args = RunArgs { health_file: Some("/proc/student-worker/health.json".into()), ..RunArgs::default() };
        let c = ObserveConfig::from_args(&args, &run_config()).expect("valid");
        let e = c.preflight().expect_err("not writable");
        assert_eq!(e.variable, "WORKER_HEALTH_FILE");
        assert!(e.fix.contains("mount a writable volume"), "{e}");
    }
}
