//! The command line: one subcommand per user (the ECS service, dev accounts,
//! upstream publishers). Every `run` flag also reads the environment variable
//! named in DESIGN.md, so the task definition configures it with env alone.

use clap::{Args, Parser, Subcommand};

use crate::commands::{dlq, doctor, healthcheck, publish, setup};
use crate::config::RunConfig;
use crate::logging::LogFormat;
use crate::{aws, run, shutdown};

/// SQS → DynamoDB worker for student-record events.
#[derive(Debug, Parser)]
#[command(name = "student-worker", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format: `json` (one object a line, for CloudWatch) or `text`.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Long-poll the queue, write events to DynamoDB, delete what finished (the ECS service).
    Run(Box<RunArgs>),
    /// Create the table, the queue and its DLQ with redrive, idempotently (dev and test accounts).
    Setup(setup::SetupArgs),
    /// Send events from a JSONL file or stdin to the queue, in batches.
    Publish(publish::PublishArgs),
    /// Exit 0 when the worker running in this container is healthy (the ECS container health check).
    Healthcheck(healthcheck::HealthcheckArgs),
    /// Check region, credentials, table, queue, redrive and permissions; print cause and fix per failure.
    Doctor(Box<doctor::DoctorArgs>),
    /// Inspect the dead-letter queue and replay its messages to the source queue.
    Dlq(dlq::DlqArgs),
}

/// `run`'s flags, read as text and validated by [`RunConfig::from_args`] so
/// that every refusal names the environment variable and what is allowed.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// Source queue URL.
    #[arg(long, env = "SQS_QUEUE_URL", value_name = "URL")]
    pub queue_url: Option<String>,
    /// DynamoDB table name (the setup guide's `Students`).
    #[arg(long, env = "DYNAMODB_TABLE_NAME", value_name = "NAME")]
    pub table_name: Option<String>,
    /// Dead-letter queue URL: invalid messages are forwarded here at once.
    #[arg(long, env = "SQS_DLQ_URL", value_name = "URL")]
    pub dlq_url: Option<String>,
    /// Messages processed at once [default: 32].
    #[arg(long, env = "WORKER_CONCURRENCY", value_name = "N")]
    pub concurrency: Option<String>,
    /// Long-poll wait, 0–20 [default: 20].
    #[arg(long, env = "SQS_WAIT_TIME_SECONDS", value_name = "SECONDS")]
    pub wait_time_seconds: Option<String>,
    /// Messages per receive, 1–10 [default: 10].
    #[arg(long, env = "SQS_BATCH_SIZE", value_name = "N")]
    pub batch_size: Option<String>,
    /// Visibility timeout asked for on each receive [default: 60].
    #[arg(long, env = "SQS_VISIBILITY_TIMEOUT_SECONDS", value_name = "SECONDS")]
    pub visibility_timeout_seconds: Option<String>,
    /// The visibility heartbeat keeps a message invisible at most this long after its receive; 0: off [default: 300].
    #[arg(long, env = "WORKER_MAX_VISIBILITY_EXTENSION_SECONDS", value_name = "SECONDS")]
    pub max_visibility_extension_seconds: Option<String>,
    /// Longest a deferred patch is hidden before it comes back, 1–43200 [default: 900].
    #[arg(long, env = "WORKER_MAX_DEFER_SECONDS", value_name = "SECONDS")]
    pub max_defer_seconds: Option<String>,
    /// Drain budget after SIGTERM, below ECS `stopTimeout` [default: 25].
    #[arg(long, env = "WORKER_SHUTDOWN_GRACE_SECONDS", value_name = "SECONDS")]
    pub shutdown_grace_seconds: Option<String>,
    /// Exit 0 once the queue is empty and nothing is in flight (demos, batch jobs).
    #[arg(long, env = "WORKER_EXIT_WHEN_EMPTY", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub exit_when_empty: Option<String>,
    /// Health file for `healthcheck`, or `off` [default: /tmp/student-worker-health.json].
    #[arg(long, env = "WORKER_HEALTH_FILE", value_name = "PATH")]
    pub health_file: Option<String>,
    /// Seconds without progress before `healthcheck` fails [default: 90, from the wait and visibility].
    #[arg(long, env = "WORKER_HEALTH_MAX_AGE_SECONDS", value_name = "SECONDS")]
    pub health_max_age_seconds: Option<String>,
    /// EMF metrics line every this many seconds, 0 for none [default: 60].
    #[arg(long, env = "WORKER_METRICS_INTERVAL_SECONDS", value_name = "SECONDS")]
    pub metrics_interval_seconds: Option<String>,
    /// CloudWatch namespace of the metrics [default: StudentWorker].
    #[arg(long, env = "WORKER_METRICS_NAMESPACE", value_name = "NAMESPACE")]
    pub metrics_namespace: Option<String>,
}

/// Runs the chosen subcommand.
pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => {
            let config = RunConfig::from_args(&args)?;
            // Signals first: once the health file says healthy, ECS may stop the task.
            let shutdown = shutdown::on_signals();
            config.observe.preflight()?;
            let sdk = aws::load_sdk_config().await?;
            // The fatal subset of `doctor`, before the first receive.
            if let Err(refused) = doctor::preflight(&sdk, &config).await {
                config.observe.refused(&refused.to_string());
                return Err(refused.into());
            }
            let clients = aws::Clients::for_worker(&sdk, &config);
            run::run(config, clients, shutdown).await?;
            Ok(())
        }
        Command::Setup(args) => setup::setup(&aws::load_sdk_config().await?, &args).await,
        Command::Publish(args) => publish::publish(&aws::load_sdk_config().await?, &args).await,
        Command::Healthcheck(args) => Ok(healthcheck::healthcheck(&args)?),
        Command::Doctor(args) => doctor::doctor(&args).await,
        Command::Dlq(args) => dlq::dlq(&aws::load_sdk_config().await?, &args).await,
    }
}
