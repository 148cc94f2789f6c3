//! `run`'s configuration: its flags and variables, the defaults (each
//! written once, here), the ranges, and the validated [`RunConfig`].

use std::time::Duration;

use clap::Args;

use super::error::{ConfigError, boolean, check_url, int, required};
use super::handler::{DEFAULT_CONCURRENCY, DEFAULT_MAX_DEFER_SECONDS, HandlerArgs, HandlerConfig};
use super::observe::{ObserveArgs, ObserveConfig};
use crate::limits::{
    MAX_BATCH_SIZE, MAX_VISIBILITY_TIMEOUT_SECONDS, MAX_WAIT_TIME_SECONDS, MIN_VISIBILITY_TIMEOUT_SECONDS,
};

/// `SQS_WAIT_TIME_SECONDS`'s default: the longest long poll, so an idle worker makes the fewest calls.
pub const DEFAULT_WAIT_TIME_SECONDS: i32 = MAX_WAIT_TIME_SECONDS;
/// `SQS_BATCH_SIZE`'s default: as many as a receive returns.
pub const DEFAULT_BATCH_SIZE: i32 = MAX_BATCH_SIZE;
/// `SQS_VISIBILITY_TIMEOUT_SECONDS`'s default.
pub const DEFAULT_VISIBILITY_TIMEOUT_SECONDS: i32 = 60;
/// `WORKER_SHUTDOWN_GRACE_SECONDS`'s default: below ECS's 30 s `stopTimeout`.
pub const DEFAULT_SHUTDOWN_GRACE_SECONDS: u64 = 25;
/// Longest drain budget accepted.
pub const MAX_SHUTDOWN_GRACE_SECONDS: u64 = 3600;
/// Default for how long the heartbeat may keep a message after its receive: 5 minutes.
pub const DEFAULT_MAX_VISIBILITY_EXTENSION_SECONDS: i32 = 300;

/// `run`'s flags, read as text and validated by [`RunConfig::from_args`] so
/// that every refusal names the environment variable and what is allowed.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// Source queue URL.
    #[arg(long, env = "SQS_QUEUE_URL", value_name = "URL")]
    pub queue_url: Option<String>,
    /// The table, the DLQ, concurrency and the deferral cap (shared with `lambda`).
    #[command(flatten)]
    pub handler: HandlerArgs,
    /// Long-poll wait.
    #[arg(long, env = "SQS_WAIT_TIME_SECONDS", value_name = "SECONDS")]
    pub wait_time_seconds: Option<String>,
    /// Messages per receive.
    #[arg(long, env = "SQS_BATCH_SIZE", value_name = "N")]
    pub batch_size: Option<String>,
    /// Visibility timeout asked for on each receive.
    #[arg(long, env = "SQS_VISIBILITY_TIMEOUT_SECONDS", value_name = "SECONDS")]
    pub visibility_timeout_seconds: Option<String>,
    /// The visibility heartbeat keeps a message invisible at most this long after its receive.
    #[arg(long, env = "WORKER_MAX_VISIBILITY_EXTENSION_SECONDS", value_name = "SECONDS")]
    pub max_visibility_extension_seconds: Option<String>,
    /// Drain budget after SIGTERM.
    #[arg(long, env = "WORKER_SHUTDOWN_GRACE_SECONDS", value_name = "SECONDS")]
    pub shutdown_grace_seconds: Option<String>,
    /// Exit 0 once the queue is empty and nothing is in flight (demos, batch jobs).
    #[arg(long, env = "WORKER_EXIT_WHEN_EMPTY", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub exit_when_empty: Option<String>,
    /// Metrics and health.
    #[command(flatten)]
    pub observe: ObserveArgs,
}

impl RunArgs {
    /// `run`'s flags in `cmd` with their ranges and defaults, written from
    /// the constants above so the help never drifts from what is enforced.
    pub fn describe_flags(cmd: clap::Command) -> clap::Command {
        describe(cmd)
    }
}

fn describe(cmd: clap::Command) -> clap::Command {
    let help = [
        (
            "wait_time_seconds",
            format!("Long-poll wait, 0–{MAX_WAIT_TIME_SECONDS} [default: {DEFAULT_WAIT_TIME_SECONDS}]"),
        ),
        ("batch_size", format!("Messages per receive, 1–{MAX_BATCH_SIZE} [default: {DEFAULT_BATCH_SIZE}]")),
        (
            "visibility_timeout_seconds",
            format!(
                "Visibility timeout asked for on each receive, {MIN_VISIBILITY_TIMEOUT_SECONDS}–{MAX_VISIBILITY_TIMEOUT_SECONDS} [default: {DEFAULT_VISIBILITY_TIMEOUT_SECONDS}]"
            ),
        ),
        (
            "max_visibility_extension_seconds",
            format!(
                "The visibility heartbeat keeps a message invisible at most this long after its receive: 0 (off) or from the visibility timeout to {MAX_VISIBILITY_TIMEOUT_SECONDS} [default: {DEFAULT_MAX_VISIBILITY_EXTENSION_SECONDS}]"
            ),
        ),
        (
            "shutdown_grace_seconds",
            format!(
                "Drain budget after SIGTERM, below ECS `stopTimeout`, 0–{MAX_SHUTDOWN_GRACE_SECONDS} [default: {DEFAULT_SHUTDOWN_GRACE_SECONDS}]"
            ),
        ),
    ];
    let cmd = help.into_iter().fold(cmd, |cmd, (flag, text)| cmd.mut_arg(flag, |a| a.help(text)));
    let cmd = super::handler::describe(cmd);
    super::observe::describe(cmd, DEFAULT_WAIT_TIME_SECONDS, DEFAULT_VISIBILITY_TIMEOUT_SECONDS)
}

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

impl RunConfig {
    /// A configuration with the defaults above (what `run` does with only the two required values set).
    pub fn new(queue_url: impl Into<String>, table_name: impl Into<String>) -> Self {
        Self {
            queue_url: queue_url.into(),
            table_name: table_name.into(),
            dlq_url: None,
            concurrency: DEFAULT_CONCURRENCY,
            wait_time_seconds: DEFAULT_WAIT_TIME_SECONDS,
            batch_size: DEFAULT_BATCH_SIZE,
            visibility_timeout_seconds: DEFAULT_VISIBILITY_TIMEOUT_SECONDS,
            max_visibility_extension_seconds: DEFAULT_MAX_VISIBILITY_EXTENSION_SECONDS,
            max_defer_seconds: DEFAULT_MAX_DEFER_SECONDS,
            shutdown_grace_seconds: DEFAULT_SHUTDOWN_GRACE_SECONDS,
            exit_when_empty: false,
            observe: ObserveConfig::off(DEFAULT_WAIT_TIME_SECONDS, DEFAULT_VISIBILITY_TIMEOUT_SECONDS),
        }
    }

    /// Validates flags and environment.
    pub fn from_args(args: &RunArgs) -> Result<Self, ConfigError> {
        let queue_url = required(&args.queue_url, "SQS_QUEUE_URL", "queue-url", "the source queue's URL")?;
        check_url(&queue_url, "SQS_QUEUE_URL", "queue-url")?;
        let handler = HandlerConfig::from_args(&args.handler)?;
        let mut c = Self::new(queue_url, handler.table_name);
        c.dlq_url = handler.dlq_url;
        c.concurrency = handler.concurrency;
        c.max_defer_seconds = handler.max_defer_seconds;
        c.wait_time_seconds = int(
            &args.wait_time_seconds,
            "SQS_WAIT_TIME_SECONDS",
            "wait-time-seconds",
            0,
            MAX_WAIT_TIME_SECONDS,
            DEFAULT_WAIT_TIME_SECONDS,
        )?;
        c.batch_size = int(&args.batch_size, "SQS_BATCH_SIZE", "batch-size", 1, MAX_BATCH_SIZE, DEFAULT_BATCH_SIZE)?;
        c.visibility_timeout_seconds = int(
            &args.visibility_timeout_seconds,
            "SQS_VISIBILITY_TIMEOUT_SECONDS",
            "visibility-timeout-seconds",
            MIN_VISIBILITY_TIMEOUT_SECONDS,
            MAX_VISIBILITY_TIMEOUT_SECONDS,
            DEFAULT_VISIBILITY_TIMEOUT_SECONDS,
        )?;
        c.max_visibility_extension_seconds = max_extension(args, c.visibility_timeout_seconds)?;
        c.shutdown_grace_seconds = int(
            &args.shutdown_grace_seconds,
            "WORKER_SHUTDOWN_GRACE_SECONDS",
            "shutdown-grace-seconds",
            0,
            MAX_SHUTDOWN_GRACE_SECONDS,
            DEFAULT_SHUTDOWN_GRACE_SECONDS,
        )?;
        c.exit_when_empty = boolean(&args.exit_when_empty, "WORKER_EXIT_WHEN_EMPTY", "exit-when-empty")?;
        c.observe = ObserveConfig::from_args(&args.observe, c.wait_time_seconds, c.visibility_timeout_seconds)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> RunArgs {
        RunArgs {
            queue_url: Some("http://127.0.0.1:5000/123456789012/students".into()),
            handler: HandlerArgs { table_name: Some("Students".into()), ..HandlerArgs::default() },
            ..RunArgs::default()
        }
    }

    #[test]
    fn the_help_shows_the_defaults_the_code_uses() {
        use clap::Args as _;
        let help =
            RunArgs::describe_flags(RunArgs::augment_args(clap::Command::new("run"))).render_long_help().to_string();
        for (flag, default) in [
            ("concurrency", DEFAULT_CONCURRENCY.to_string()),
            ("wait-time-seconds", DEFAULT_WAIT_TIME_SECONDS.to_string()),
            ("batch-size", DEFAULT_BATCH_SIZE.to_string()),
            ("visibility-timeout-seconds", DEFAULT_VISIBILITY_TIMEOUT_SECONDS.to_string()),
            ("max-visibility-extension-seconds", DEFAULT_MAX_VISIBILITY_EXTENSION_SECONDS.to_string()),
            ("max-defer-seconds", DEFAULT_MAX_DEFER_SECONDS.to_string()),
            ("shutdown-grace-seconds", DEFAULT_SHUTDOWN_GRACE_SECONDS.to_string()),
        ] {
            let at = help.find(&format!("--{flag} ")).unwrap_or_else(|| panic!("--{flag} in the help"));
            let entry = &help[at..];
            let end = entry[2..].find("\n  -").map_or(entry.len(), |i| i + 2);
            assert!(entry[..end].contains(&format!("[default: {default}]")), "--{flag}: {}", &entry[..end]);
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
        a.handler.table_name = Some("x".into());
        assert_eq!(RunConfig::from_args(&a).expect_err("short").variable, "DYNAMODB_TABLE_NAME");
        let mut a = args();
        a.handler.concurrency = Some("0".into());
        assert_eq!(RunConfig::from_args(&a).expect_err("zero").variable, "WORKER_CONCURRENCY");
        let mut a = args();
        a.handler.max_defer_seconds = Some("0".into());
        let e = RunConfig::from_args(&a).expect_err("a deferral hides the patch");
        assert_eq!(
            e.to_string(),
            r#"WORKER_MAX_DEFER_SECONDS (--max-defer-seconds) is "0"; expected an integer from 1 to 43200 (default 900)"#
        );
        a.handler.max_defer_seconds = Some("16".into());
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
