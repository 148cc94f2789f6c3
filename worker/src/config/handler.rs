//! The settings every runtime of the handler shares (`run` on ECS and
//! `lambda`): the table, the DLQ, write concurrency and the deferral cap,
//! with their defaults and ranges, written once.

use clap::Args;

use super::error::{ConfigError, check_url, given, int, required};
use crate::limits::MAX_VISIBILITY_TIMEOUT_SECONDS;

/// `WORKER_CONCURRENCY`'s default.
pub const DEFAULT_CONCURRENCY: usize = 32;
/// Upper bound on concurrency: far above what one task's connection pool uses well.
pub const MAX_CONCURRENCY: usize = 4096;
/// Default cap of the deferral ladder (15 minutes): see `handler::decide::defer_seconds`.
pub const DEFAULT_MAX_DEFER_SECONDS: i32 = 900;

/// The handler's flags, read as text and validated by
/// [`HandlerConfig::from_args`] so that every refusal names the environment
/// variable and what is allowed.
#[derive(Debug, Clone, Default, Args)]
pub struct HandlerArgs {
    /// DynamoDB table name, e.g. `Students` (docs/setup.md).
    #[arg(long, env = "DYNAMODB_TABLE_NAME", value_name = "NAME")]
    pub table_name: Option<String>,
    /// Dead-letter queue URL: invalid messages are forwarded here at once.
    #[arg(long, env = "SQS_DLQ_URL", value_name = "URL")]
    pub dlq_url: Option<String>,
    /// Messages processed at once.
    #[arg(long, env = "WORKER_CONCURRENCY", value_name = "N")]
    pub concurrency: Option<String>,
    /// Longest a deferred patch is hidden before it comes back.
    #[arg(long, env = "WORKER_MAX_DEFER_SECONDS", value_name = "SECONDS")]
    pub max_defer_seconds: Option<String>,
}

/// The handler's flags in `cmd` with their ranges and defaults, written from
/// the constants above so the help never drifts from what is enforced.
pub fn describe(cmd: clap::Command) -> clap::Command {
    let help = [
        ("concurrency", format!("Messages processed at once, 1–{MAX_CONCURRENCY} [default: {DEFAULT_CONCURRENCY}]")),
        (
            "max_defer_seconds",
            format!(
                "Longest a deferred patch is hidden before it comes back, 1–{MAX_VISIBILITY_TIMEOUT_SECONDS} [default: {DEFAULT_MAX_DEFER_SECONDS}]"
            ),
        ),
    ];
    help.into_iter().fold(cmd, |cmd, (flag, text)| cmd.mut_arg(flag, |a| a.help(text)))
}

/// The validated handler settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerConfig {
    /// Table name (`DYNAMODB_TABLE_NAME`).
    pub table_name: String,
    /// Where invalid messages are forwarded at once (`SQS_DLQ_URL`); unset: left for redrive.
    pub dlq_url: Option<String>,
    /// Messages processed at once (`WORKER_CONCURRENCY`).
    pub concurrency: usize,
    /// Longest a deferred patch is hidden before it comes back
    /// (`WORKER_MAX_DEFER_SECONDS`): the cap of the deferral ladder.
    pub max_defer_seconds: i32,
}

impl HandlerConfig {
    /// Validates flags and environment.
    pub fn from_args(args: &HandlerArgs) -> Result<Self, ConfigError> {
        let table_name =
            required(&args.table_name, "DYNAMODB_TABLE_NAME", "table-name", "the table name, e.g. Students")?;
        check_table_name(&table_name)?;
        let dlq_url = given(&args.dlq_url).map(str::to_owned);
        if let Some(url) = &dlq_url {
            check_url(url, "SQS_DLQ_URL", "dlq-url")?;
        }
        let concurrency =
            int(&args.concurrency, "WORKER_CONCURRENCY", "concurrency", 1, MAX_CONCURRENCY, DEFAULT_CONCURRENCY)?;
        let max_defer_seconds = int(
            &args.max_defer_seconds,
            "WORKER_MAX_DEFER_SECONDS",
            "max-defer-seconds",
            1,
            MAX_VISIBILITY_TIMEOUT_SECONDS,
            DEFAULT_MAX_DEFER_SECONDS,
        )?;
        Ok(Self { table_name, dlq_url, concurrency, max_defer_seconds })
    }
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
        fix: "use 3–255 characters of A-Z a-z 0-9 _ - . (docs/setup.md creates Students)".into(),
    })
}
