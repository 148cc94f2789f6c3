//! `student-worker lambda`: the same handler as a Lambda function behind an
//! SQS event source mapping. Checks the Lambda environment and the
//! configuration before the first invocation; a bad setting is reported to
//! the Runtime API as the function's init error (with the message `run`
//! would print) and the process exits non-zero.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::aws;
use crate::commands::error::CommandError;
use crate::config::{ConfigError, LambdaArgs, LambdaConfig};
use crate::handler::Handler;
use crate::observe::Metrics;
use crate::runtime::lambda::{self, Function, api};

/// `lambda --help`'s examples.
pub const EXAMPLES: &str = "\
  student-worker lambda     # inside Lambda: the container image's command
  bootstrap                 # the same binary as a zip's bootstrap (provided.al2023), no subcommand
  scripts/package-lambda    # builds that zip (bootstrap at its root)";

/// The `errorType` of an init error caused by a setting.
const CONFIG_ERROR_TYPE: &str = "StudentWorker.ConfigError";

/// Serves invocations until Lambda stops the process.
pub async fn lambda(args: &LambdaArgs) -> Result<(), CommandError> {
    let runtime_api = api::runtime_api()?;
    let function = match function(args).await {
        Ok(function) => function,
        Err(error) => {
            if let Err(e) = api::post_init_error(&runtime_api, CONFIG_ERROR_TYPE, &error.to_string()).await {
                tracing::warn!(error = %e, "could not report the init error to the Runtime API");
            }
            return Err(error.into());
        }
    };
    lambda::serve(function).await.map_err(|e| CommandError::Lambda(e.to_string()))
}

/// The function's handler and clients, from validated settings.
async fn function(args: &LambdaArgs) -> Result<Function, ConfigError> {
    let config = LambdaConfig::from_args(args)?;
    let sdk = aws::load_sdk_config().await?;
    let clients = aws::Clients::new(&sdk, Duration::ZERO);
    let metrics = Arc::new(Metrics::new());
    let handler = config.handler;
    tracing::info!(
        table = %handler.table_name,
        dlq = handler.dlq_url.as_deref().unwrap_or("(none: invalid messages go through redrive)"),
        region = %clients.region,
        concurrency = handler.concurrency,
        "lambda function starting"
    );
    Ok(Function {
        handler: Handler::new(
            clients.dynamodb,
            &handler.table_name,
            &clients.region,
            handler.concurrency,
            handler.max_defer_seconds,
            metrics,
        ),
        sqs: clients.sqs,
        dlq_url: handler.dlq_url,
        region: clients.region,
        metrics_namespace: config.metrics_namespace,
        emitter: Mutex::new(None),
    })
}
