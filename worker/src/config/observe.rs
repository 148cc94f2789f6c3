//! `run`'s metrics and health settings (`WORKER_METRICS_*`, `WORKER_HEALTH_*`)
//! and their defaults.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::error::{ConfigError, given, int};
use crate::limits::SQS_ATTEMPT_SLACK;

/// Where the health file goes unless `WORKER_HEALTH_FILE` says otherwise.
pub const DEFAULT_HEALTH_FILE: &str = "/tmp/student-worker-health.json";
/// `WORKER_HEALTH_FILE` value that turns the health file off.
pub const OFF: &str = "off";
/// Default EMF flush interval: CloudWatch's standard one-minute resolution.
pub const DEFAULT_METRICS_INTERVAL_SECONDS: u64 = 60;
/// Longest EMF flush interval accepted.
pub const MAX_METRICS_INTERVAL_SECONDS: u64 = 3600;
/// The metric namespace unless `WORKER_METRICS_NAMESPACE` says otherwise.
pub const DEFAULT_NAMESPACE: &str = "StudentWorker";
/// CloudWatch namespaces are 1–255 characters.
pub const MAX_NAMESPACE_LEN: usize = 255;
/// Added to the slowest normal gap between two progress marks for the default health limit.
pub const HEALTH_MARGIN_SECONDS: u64 = 30;
/// Longest health limit accepted: a day.
pub const MAX_HEALTH_MAX_AGE_SECONDS: u64 = 86_400;

/// The metrics and health flags of `run`, read as text like its others.
#[derive(Debug, Clone, Default, Args)]
pub struct ObserveArgs {
    /// Health file for `healthcheck`, or `off`.
    #[arg(long, env = "WORKER_HEALTH_FILE", value_name = "PATH")]
    pub health_file: Option<String>,
    /// Seconds without progress before `healthcheck` fails.
    #[arg(long, env = "WORKER_HEALTH_MAX_AGE_SECONDS", value_name = "SECONDS")]
    pub health_max_age_seconds: Option<String>,
    /// EMF metrics line every this many seconds, 0 for none.
    #[arg(long, env = "WORKER_METRICS_INTERVAL_SECONDS", value_name = "SECONDS")]
    pub metrics_interval_seconds: Option<String>,
    /// CloudWatch namespace of the metrics.
    #[arg(long, env = "WORKER_METRICS_NAMESPACE", value_name = "NAMESPACE")]
    pub metrics_namespace: Option<String>,
}

/// The metrics and health flags in `cmd` with their ranges and defaults,
/// written from the constants above and, for the health limit, `run`'s
/// default wait and visibility.
pub fn describe(cmd: clap::Command, wait_seconds: i32, visibility_seconds: i32) -> clap::Command {
    let default_age = default_max_age(wait_seconds, visibility_seconds);
    let help = [
        ("health_file", format!("Health file for `healthcheck`, or `{OFF}` [default: {DEFAULT_HEALTH_FILE}]")),
        (
            "health_max_age_seconds",
            format!(
                "Seconds without progress before `healthcheck` fails: at least 2 × wait + {}, at most {MAX_HEALTH_MAX_AGE_SECONDS} [default: the larger of that and the visibility timeout, + {HEALTH_MARGIN_SECONDS}: {default_age} with the other defaults]",
                SQS_ATTEMPT_SLACK.as_secs() + 1
            ),
        ),
        (
            "metrics_interval_seconds",
            format!(
                "One EMF metrics line every this many seconds, 0 for none, at most {MAX_METRICS_INTERVAL_SECONDS}; with JSON logs only [default: {DEFAULT_METRICS_INTERVAL_SECONDS}]"
            ),
        ),
    ];
    let cmd = help.into_iter().fold(cmd, |cmd, (flag, text)| cmd.mut_arg(flag, |a| a.help(text)));
    describe_namespace(cmd)
}

/// The metrics namespace flag in `cmd` with its limit and default (`run` and `lambda`).
pub fn describe_namespace(cmd: clap::Command) -> clap::Command {
    cmd.mut_arg("metrics_namespace", |a| {
        a.help(format!(
            "CloudWatch namespace of the metrics, 1–{MAX_NAMESPACE_LEN} characters [default: {DEFAULT_NAMESPACE}]"
        ))
    })
}

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
    pub fn off(wait_time_seconds: i32, visibility_timeout_seconds: i32) -> Self {
        Self {
            health_file: None,
            health_max_age_seconds: default_max_age(wait_time_seconds, visibility_timeout_seconds),
            metrics_interval: None,
            metrics_namespace: DEFAULT_NAMESPACE.to_owned(),
        }
    }

    /// Validates the flags and environment for a worker that long-polls
    /// `wait_time_seconds` with `visibility_timeout_seconds`; defaults: health
    /// file [`DEFAULT_HEALTH_FILE`], metrics every 60 s.
    pub fn from_args(
        args: &ObserveArgs,
        wait_time_seconds: i32,
        visibility_timeout_seconds: i32,
    ) -> Result<Self, ConfigError> {
        let health_file = match args.health_file.as_deref().map(str::trim) {
            Some(OFF) => None,
            _ => Some(health_file_or_default(args.health_file.as_deref())),
        };
        let min = min_max_age(wait_time_seconds);
        let default = default_max_age(wait_time_seconds, visibility_timeout_seconds);
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
        let metrics_namespace = namespace(&args.metrics_namespace)?;
        Ok(Self {
            health_file,
            health_max_age_seconds,
            metrics_interval: (interval > 0).then(|| Duration::from_secs(interval)),
            metrics_namespace,
        })
    }
}

/// The health file path: `WORKER_HEALTH_FILE` or the default.
pub fn health_file_or_default(value: Option<&str>) -> PathBuf {
    match value.map(str::trim) {
        None | Some("") => PathBuf::from(DEFAULT_HEALTH_FILE),
        Some(path) => PathBuf::from(path),
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

pub(super) fn namespace(value: &Option<String>) -> Result<String, ConfigError> {
    match given(value) {
        None => Ok(DEFAULT_NAMESPACE.to_owned()),
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

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: i32 = 20;
    const VISIBILITY: i32 = 60;

    fn from(args: &ObserveArgs) -> Result<ObserveConfig, ConfigError> {
        ObserveConfig::from_args(args, WAIT, VISIBILITY)
    }

    #[test]
    fn defaults_turn_both_on_with_a_limit_above_a_slow_receive_and_a_visibility() {
        let c = from(&ObserveArgs::default()).expect("defaults");
        assert_eq!(c.health_file, Some(PathBuf::from(DEFAULT_HEALTH_FILE)));
        assert_eq!(c.metrics_interval, Some(Duration::from_secs(60)));
        assert_eq!(c.metrics_namespace, "StudentWorker");
        // wait 20 + receive attempt (20 + 15) = 55 < visibility 60; + 30 margin.
        assert_eq!(c.health_max_age_seconds, 90);
        assert!(c.health_max_age_seconds > 20 + 20 + SQS_ATTEMPT_SLACK.as_secs());
        assert_eq!(ObserveConfig::off(WAIT, VISIBILITY).health_max_age_seconds, 90);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let args = ObserveArgs { health_max_age_seconds: Some("30".into()), ..ObserveArgs::default() };
        let e = from(&args).expect_err("30 s is below a slow receive");
        assert_eq!(e.variable, "WORKER_HEALTH_MAX_AGE_SECONDS");
        assert!(e.to_string().contains("expected an integer from 56 to 86400"), "{e}");
        let args = ObserveArgs { metrics_interval_seconds: Some("soon".into()), ..ObserveArgs::default() };
        let e = from(&args).expect_err("not a number");
        assert_eq!(e.variable, "WORKER_METRICS_INTERVAL_SECONDS");
        let args = ObserveArgs { metrics_namespace: Some(":x".into()), ..ObserveArgs::default() };
        assert_eq!(from(&args).expect_err("colon").variable, "WORKER_METRICS_NAMESPACE");
    }

    #[test]
    fn zero_and_off_turn_them_off() {
        let args = ObserveArgs {
            health_file: Some("off".into()),
            metrics_interval_seconds: Some("0".into()),
            ..ObserveArgs::default()
        };
        let c = from(&args).expect("valid");
        assert_eq!((c.health_file, c.metrics_interval), (None, None));
    }
}
