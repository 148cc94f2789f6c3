//! `run`'s configuration: defaults, ranges and the error that stops start-up
//! naming the variable and what is allowed.

use std::time::Duration;

use crate::cli::RunArgs;
use crate::observe::ObserveConfig;

/// SQS returns at most 10 messages per receive.
pub const MAX_BATCH_SIZE: i32 = 10;
/// SQS long polls wait at most 20 s.
pub const MAX_WAIT_TIME_SECONDS: i32 = 20;
/// SQS's largest visibility timeout: 12 hours.
pub const MAX_VISIBILITY_TIMEOUT_SECONDS: i32 = 43_200;
/// Smallest visibility timeout: room for the 5 s deadline margin, one 5 s
/// write attempt and the delete.
pub const MIN_VISIBILITY_TIMEOUT_SECONDS: i32 = 15;
/// Default for how long the heartbeat may keep a message after its receive: 5 minutes.
pub const DEFAULT_MAX_VISIBILITY_EXTENSION_SECONDS: i32 = 300;
/// Default cap of the deferral ladder (15 minutes): see `process::defer_seconds`.
pub const DEFAULT_MAX_DEFER_SECONDS: i32 = 900;
/// Upper bound on concurrency: far above what one task's connection pool uses well.
pub const MAX_CONCURRENCY: usize = 4096;

/// Validated configuration of `run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunConfig {
    /// Source queue URL (`SQS_QUEUE_URL`).
    pub queue_url: String,
    /// Table name (`DYNAMODB_TABLE_NAME`).
    pub table_name: String,
    /// Where invalid messages are forwarded at once (`SQS_DLQ_URL`); unset: left for redrive.
    pub dlq_url: Option<String>,
    /// Messages processed at once (`WORKER_CONCURRENCY`).
    pub concurrency: usize,
    /// Long-poll wait (`SQS_WAIT_TIME_SECONDS`), 0–20.
    pub wait_time_seconds: i32,
    /// Messages per receive (`SQS_BATCH_SIZE`), 1–10.
    pub batch_size: i32,
    /// Visibility asked for on each receive (`SQS_VISIBILITY_TIMEOUT_SECONDS`).
    pub visibility_timeout_seconds: i32,
    /// The heartbeat keeps a message invisible at most this long after its
    /// receive (`WORKER_MAX_VISIBILITY_EXTENSION_SECONDS`); 0: no heartbeat.
    pub max_visibility_extension_seconds: i32,
    /// Longest a deferred patch is hidden before it comes back
    /// (`WORKER_MAX_DEFER_SECONDS`): the cap of the deferral ladder.
    pub max_defer_seconds: i32,
    /// Drain budget after SIGTERM (`WORKER_SHUTDOWN_GRACE_SECONDS`).
    pub shutdown_grace_seconds: u64,
    /// Stop when the queue is empty and nothing is in flight (`WORKER_EXIT_WHEN_EMPTY`).
    pub exit_when_empty: bool,
    /// EMF metrics and the health file (`WORKER_METRICS_*`, `WORKER_HEALTH_*`); off in [`RunConfig::new`].
    pub observe: ObserveConfig,
}

/// A configuration value that stops start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable} (--{flag}) {problem}; {fix}")]
pub struct ConfigError {
    /// The environment variable.
    pub variable: &'static str,
    /// The equivalent flag, without dashes.
    pub flag: &'static str,
    /// What is wrong.
    pub problem: String,
    /// What to do.
    pub fix: String,
}

impl RunConfig {
    /// A configuration with the defaults of DESIGN.md.
    pub fn new(queue_url: impl Into<String>, table_name: impl Into<String>) -> Self {
        Self {
            queue_url: queue_url.into(),
            table_name: table_name.into(),
            dlq_url: None,
            concurrency: 32,
            wait_time_seconds: MAX_WAIT_TIME_SECONDS,
            batch_size: MAX_BATCH_SIZE,
            visibility_timeout_seconds: 60,
            max_visibility_extension_seconds: DEFAULT_MAX_VISIBILITY_EXTENSION_SECONDS,
            max_defer_seconds: DEFAULT_MAX_DEFER_SECONDS,
            shutdown_grace_seconds: 25,
            exit_when_empty: false,
            observe: ObserveConfig::off(),
        }
    }

    /// Validates flags and environment.
    pub fn from_args(args: &RunArgs) -> Result<Self, ConfigError> {
        let queue_url = required(&args.queue_url, "SQS_QUEUE_URL", "queue-url", "the source queue's URL")?;
        check_url(&queue_url, "SQS_QUEUE_URL", "queue-url")?;
        let table_name =
            required(&args.table_name, "DYNAMODB_TABLE_NAME", "table-name", "the table name, e.g. Students")?;
        check_table_name(&table_name)?;
        let dlq_url = args.dlq_url.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
        if let Some(url) = &dlq_url {
            check_url(url, "SQS_DLQ_URL", "dlq-url")?;
        }
        let mut c = Self::new(queue_url, table_name);
        c.dlq_url = dlq_url;
        c.concurrency = int(&args.concurrency, "WORKER_CONCURRENCY", "concurrency", 1, MAX_CONCURRENCY, c.concurrency)?;
        c.wait_time_seconds =
            int(&args.wait_time_seconds, "SQS_WAIT_TIME_SECONDS", "wait-time-seconds", 0, MAX_WAIT_TIME_SECONDS, 20)?;
        c.batch_size = int(&args.batch_size, "SQS_BATCH_SIZE", "batch-size", 1, MAX_BATCH_SIZE, MAX_BATCH_SIZE)?;
        c.visibility_timeout_seconds = int(
            &args.visibility_timeout_seconds,
            "SQS_VISIBILITY_TIMEOUT_SECONDS",
            "visibility-timeout-seconds",
            MIN_VISIBILITY_TIMEOUT_SECONDS,
            MAX_VISIBILITY_TIMEOUT_SECONDS,
            60,
        )?;
        c.max_visibility_extension_seconds = max_extension(args, c.visibility_timeout_seconds)?;
        c.max_defer_seconds = int(
            &args.max_defer_seconds,
            "WORKER_MAX_DEFER_SECONDS",
            "max-defer-seconds",
            1,
            MAX_VISIBILITY_TIMEOUT_SECONDS,
            DEFAULT_MAX_DEFER_SECONDS,
        )?;
        c.shutdown_grace_seconds =
            int(&args.shutdown_grace_seconds, "WORKER_SHUTDOWN_GRACE_SECONDS", "shutdown-grace-seconds", 0, 3600, 25)?;
        c.exit_when_empty = boolean(&args.exit_when_empty, "WORKER_EXIT_WHEN_EMPTY", "exit-when-empty")?;
        c.observe = ObserveConfig::from_args(args, &c)?;
        Ok(c)
    }

    /// The visibility timeout as a duration.
    pub fn visibility_timeout(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.visibility_timeout_seconds).unwrap_or(0))
    }

    /// How long after its receive the heartbeat may keep a message (zero: no heartbeat).
    pub fn max_visibility_extension(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.max_visibility_extension_seconds).unwrap_or(0))
    }

    /// The drain budget as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }
}

/// 0 (off), or from the visibility timeout to SQS's 12-hour limit; an unset
/// value never conflicts with a long visibility timeout.
fn max_extension(args: &RunArgs, visibility: i32) -> Result<i32, ConfigError> {
    let (variable, flag) = ("WORKER_MAX_VISIBILITY_EXTENSION_SECONDS", "max-visibility-extension-seconds");
    let default = DEFAULT_MAX_VISIBILITY_EXTENSION_SECONDS.max(visibility);
    let value =
        int(&args.max_visibility_extension_seconds, variable, flag, 0, MAX_VISIBILITY_TIMEOUT_SECONDS, default)?;
    if value != 0 && value < visibility {
        return Err(ConfigError {
            variable,
            flag,
            problem: format!("is \"{value}\", shorter than SQS_VISIBILITY_TIMEOUT_SECONDS ({visibility})"),
            fix: format!(
                "set 0 to turn the heartbeat off, or a value from {visibility} to {MAX_VISIBILITY_TIMEOUT_SECONDS} (default {default})"
            ),
        });
    }
    Ok(value)
}

fn required(
    value: &Option<String>,
    variable: &'static str,
    flag: &'static str,
    what: &str,
) -> Result<String, ConfigError> {
    match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v.to_owned()),
        _ => Err(ConfigError {
            variable,
            flag,
            problem: "is not set".into(),
            fix: format!("set {variable} (or --{flag}) to {what}"),
        }),
    }
}

fn check_url(url: &str, variable: &'static str, flag: &'static str) -> Result<(), ConfigError> {
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(());
    }
    Err(ConfigError {
        variable,
        flag,
        problem: format!("is {url:?}, not a queue URL"),
        fix: "use the URL `aws sqs get-queue-url` prints, e.g. https://sqs.ap-northeast-2.amazonaws.com/123456789012/students".into(),
    })
}

/// DynamoDB table names: 3–255 of `[A-Za-z0-9_.-]`.
fn check_table_name(name: &str) -> Result<(), ConfigError> {
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok_chars && (3..=255).contains(&name.len()) {
        return Ok(());
    }
    Err(ConfigError {
        variable: "DYNAMODB_TABLE_NAME",
        flag: "table-name",
        problem: format!("is {name:?}, not a valid table name"),
        fix: "use 3–255 characters of A-Z a-z 0-9 _ - . (the setup guide's table is Students)".into(),
    })
}

/// An integer setting from `min` to `max`, `default` when unset.
pub(crate) fn int<T>(
    value: &Option<String>,
    variable: &'static str,
    flag: &'static str,
    min: T,
    max: T,
    default: T,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(raw) = value.as_deref().map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(default);
    };
    match raw.parse::<T>() {
        Ok(v) if v >= min && v <= max => Ok(v),
        _ => Err(ConfigError {
            variable,
            flag,
            problem: format!("is {raw:?}"),
            fix: format!("expected an integer from {min} to {max} (default {default})"),
        }),
    }
}

fn boolean(value: &Option<String>, variable: &'static str, flag: &'static str) -> Result<bool, ConfigError> {
    match value.as_deref().map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "false" | "0" | "no") => Ok(false),
        Some("true" | "1" | "yes") => Ok(true),
        Some(other) => {
            Err(ConfigError { variable, flag, problem: format!("is {other:?}"), fix: "expected true or false".into() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> RunArgs {
        RunArgs {
            queue_url: Some("http://127.0.0.1:5000/123456789012/students".into()),
            table_name: Some("Students".into()),
            ..RunArgs::default()
        }
    }

    #[test]
    fn defaults_follow_the_design() {
        let c = RunConfig::from_args(&args()).expect("valid");
        assert_eq!((c.concurrency, c.wait_time_seconds, c.batch_size), (32, 20, 10));
        assert_eq!((c.visibility_timeout_seconds, c.shutdown_grace_seconds), (60, 25));
        assert_eq!(c.max_visibility_extension_seconds, 300);
        assert_eq!(c.max_defer_seconds, 900);
        assert_eq!(c.dlq_url, None);
        assert!(!c.exit_when_empty);
    }

    #[test]
    fn bad_values_name_the_variable_and_the_range() {
        let mut a = args();
        a.wait_time_seconds = Some("30".into());
        let e = RunConfig::from_args(&a).expect_err("30 > 20");
        assert_eq!(
            e.to_string(),
            r#"SQS_WAIT_TIME_SECONDS (--wait-time-seconds) is "30"; expected an integer from 0 to 20 (default 20)"#
        );
        let mut a = args();
        a.batch_size = Some("ten".into());
        assert_eq!(RunConfig::from_args(&a).expect_err("not a number").variable, "SQS_BATCH_SIZE");
        let mut a = args();
        a.queue_url = None;
        let e = RunConfig::from_args(&a).expect_err("required");
        assert!(e.to_string().starts_with("SQS_QUEUE_URL (--queue-url) is not set; set SQS_QUEUE_URL"), "{e}");
        let mut a = args();
        a.table_name = Some("x".into());
        assert_eq!(RunConfig::from_args(&a).expect_err("short").variable, "DYNAMODB_TABLE_NAME");
        let mut a = args();
        a.concurrency = Some("0".into());
        assert_eq!(RunConfig::from_args(&a).expect_err("zero").variable, "WORKER_CONCURRENCY");
        let mut a = args();
        a.max_defer_seconds = Some("0".into());
        let e = RunConfig::from_args(&a).expect_err("a deferral hides the patch");
        assert_eq!(
            e.to_string(),
            r#"WORKER_MAX_DEFER_SECONDS (--max-defer-seconds) is "0"; expected an integer from 1 to 43200 (default 900)"#
        );
        a.max_defer_seconds = Some("16".into());
        assert_eq!(RunConfig::from_args(&a).expect("in range").max_defer_seconds, 16);
    }

    #[test]
    fn the_heartbeat_maximum_is_off_or_at_least_the_visibility() {
        let mut a = args();
        a.max_visibility_extension_seconds = Some("0".into());
        assert_eq!(RunConfig::from_args(&a).expect("off").max_visibility_extension_seconds, 0);
        a.max_visibility_extension_seconds = Some("30".into());
        let e = RunConfig::from_args(&a).expect_err("30 < 60");
        assert_eq!(
            e.to_string(),
            r#"WORKER_MAX_VISIBILITY_EXTENSION_SECONDS (--max-visibility-extension-seconds) is "30", shorter than SQS_VISIBILITY_TIMEOUT_SECONDS (60); set 0 to turn the heartbeat off, or a value from 60 to 43200 (default 300)"#
        );
        a.max_visibility_extension_seconds = Some("43201".into());
        assert!(RunConfig::from_args(&a).is_err());
        let mut a = args();
        a.visibility_timeout_seconds = Some("900".into());
        assert_eq!(RunConfig::from_args(&a).expect("unset follows").max_visibility_extension_seconds, 900);
    }
}
