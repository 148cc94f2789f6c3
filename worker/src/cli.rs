//! The command line: one subcommand per user (the ECS service, dev accounts,
//! upstream publishers, the operator). Every `run` flag also reads an
//! environment variable (docs/design.md lists them), so the task definition
//! configures it with env alone.

use clap::{CommandFactory, Parser, Subcommand};

use crate::aws;
use crate::commands::error::CommandError;
use crate::commands::{dlq, doctor, generate, get, healthcheck, publish, run, setup};
use crate::config::RunArgs;
use crate::observe::logging::LogFormat;

/// SQS → DynamoDB worker for student-record events.
#[derive(Debug, Parser)]
#[command(name = "student-worker", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format: `text` (for a person) or `json` (one object a line, for CloudWatch) [default: text at a terminal, json otherwise].
    #[arg(long, env = "LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<LogFormat>,
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
    /// Show one student's stored record (plain values; a tombstone shows as deleted).
    Get(get::GetArgs),
    /// Print a shell completion script.
    Completions(generate::CompletionsArgs),
    /// Print the man page (every subcommand included) to stdout.
    Man(generate::ManArgs),
}

/// Runs the chosen subcommand.
pub async fn dispatch(cli: Cli) -> Result<(), CommandError> {
    match cli.command {
        Command::Run(args) => run::run(&args).await,
        Command::Setup(args) => setup::setup(&aws::load_sdk_config().await?, &args).await,
        Command::Publish(args) => publish::publish(&args).await,
        Command::Healthcheck(args) => Ok(healthcheck::healthcheck(&args)?),
        Command::Doctor(args) => doctor::doctor(&args).await,
        Command::Dlq(args) => dlq::dlq(&aws::load_sdk_config().await?, &args).await,
        Command::Get(args) => get::get(&aws::load_sdk_config().await?, &args).await,
        Command::Completions(args) => generate::completions(args.shell, &mut Cli::command()),
        Command::Man(_) => generate::man(&Cli::command()),
    }
}
