//! `lambda`'s configuration: the handler's settings (as for `run`) and the
//! metrics namespace. No queue URL: each record names its source queue.

use clap::Args;

use super::error::ConfigError;
use super::handler::{HandlerArgs, HandlerConfig};
use super::observe::namespace;

/// `lambda`'s flags, read as text like `run`'s.
#[derive(Debug, Clone, Default, Args)]
pub struct LambdaArgs {
    /// The table, the DLQ, concurrency and the deferral cap (as for `run`).
    #[command(flatten)]
    pub handler: HandlerArgs,
    /// CloudWatch namespace of the metrics.
    #[arg(long, env = "WORKER_METRICS_NAMESPACE", value_name = "NAMESPACE")]
    pub metrics_namespace: Option<String>,
}

impl LambdaArgs {
    /// `lambda`'s flags in `cmd` with their ranges and defaults (as `run` shows them).
    pub fn describe_flags(cmd: clap::Command) -> clap::Command {
        super::observe::describe_namespace(super::handler::describe(cmd))
    }
}

/// Validated configuration of `lambda`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaConfig {
    /// The handler's settings.
    pub handler: HandlerConfig,
    /// CloudWatch namespace of the EMF line written after each invocation.
    pub metrics_namespace: String,
}

impl LambdaConfig {
    /// Validates flags and environment.
    pub fn from_args(args: &LambdaArgs) -> Result<Self, ConfigError> {
        Ok(Self {
            handler: HandlerConfig::from_args(&args.handler)?,
            metrics_namespace: namespace(&args.metrics_namespace)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_required_and_the_rest_has_run_s_defaults() {
        let e = LambdaConfig::from_args(&LambdaArgs::default()).expect_err("no table");
        assert!(e.to_string().starts_with("DYNAMODB_TABLE_NAME (--table-name) is not set"), "{e}");
        let args = LambdaArgs {
            handler: HandlerArgs { table_name: Some("Students".into()), ..HandlerArgs::default() },
            ..LambdaArgs::default()
        };
        let c = LambdaConfig::from_args(&args).expect("valid");
        assert_eq!((c.handler.concurrency, c.handler.max_defer_seconds, c.handler.dlq_url), (32, 900, None));
        assert_eq!(c.metrics_namespace, "StudentWorker");
    }
}
