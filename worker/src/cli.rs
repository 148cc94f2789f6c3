//! The command line: one subcommand per user (the ECS service, dev accounts,
//! upstream publishers, the operator). Every `run` flag also reads an
//! environment variable (docs/design.md lists them), so the task definition
//! configures it with env alone.

use std::ffi::OsString;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};

use crate::aws;
use crate::commands::error::CommandError;
use crate::commands::{dlq, doctor, healthcheck, lambda, publish, run, setup};
use crate::config::{LambdaArgs, RunArgs};
use crate::observe::logging::LogFormat;
use crate::runtime::lambda::api;

/// SQS → DynamoDB worker for student-record events.
#[derive(Debug, Parser)]
#[command(name = "student-worker", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format: `json` (one object a line, for CloudWatch) or `text`.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json, global = true)]
    pub log_format: LogFormat,
    /// What to do (inside AWS Lambda, with none: `lambda`).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// A parsed command line: how to log and what to do.
#[derive(Debug)]
pub struct Invocation {
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
    /// The subcommand.
    pub command: Command,
}

impl Cli {
    /// Parses the command line. Started with no subcommand inside Lambda
    /// (`AWS_LAMBDA_RUNTIME_API` set), the binary serves invocations, so it
    /// can be a zip's `bootstrap` as well as a container image's command.
    pub fn parse_args() -> Invocation {
        let mut cli = Self::parse();
        if cli.command.is_none() && api::in_lambda() {
            cli = Self::parse_from(std::env::args_os().chain([OsString::from("lambda")]));
        }
        match cli.command {
            Some(command) => Invocation { log_format: cli.log_format, command },
            None => Self::command().error(ErrorKind::MissingSubcommand, "a subcommand is required").exit(),
        }
    }
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
    /// Serve AWS Lambda invocations from an SQS event source mapping with partial batch responses.
    Lambda(Box<LambdaArgs>),
}

/// Runs the chosen subcommand.
pub async fn dispatch(command: Command) -> Result<(), CommandError> {
    match command {
        Command::Run(args) => run::run(&args).await,
        Command::Setup(args) => setup::setup(&aws::load_sdk_config().await?, &args).await,
        Command::Publish(args) => publish::publish(&aws::load_sdk_config().await?, &args).await,
        Command::Healthcheck(args) => Ok(healthcheck::healthcheck(&args)?),
        Command::Doctor(args) => doctor::doctor(&args).await,
        Command::Dlq(args) => dlq::dlq(&aws::load_sdk_config().await?, &args).await,
        Command::Lambda(args) => lambda::lambda(&args).await,
    }
}
