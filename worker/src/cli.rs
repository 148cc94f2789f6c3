//! The command line: one subcommand per user (the ECS service, dev accounts,
//! upstream publishers, the operator). Every `run` flag also reads an
//! environment variable (docs/design.md lists them), so the task definition
//! configures it with env alone.

use std::ffi::OsString;

use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::aws;
use crate::commands::error::CommandError;
use crate::commands::{dlq, doctor, generate, get, healthcheck, lambda, publish, run, setup};
use crate::config::{LambdaArgs, RunArgs};
use crate::observe::logging::LogFormat;
use crate::runtime::lambda::api;

/// SQS → DynamoDB worker for student-record events.
#[derive(Debug, Parser)]
#[command(name = "student-worker", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format: `text` (for a person) or `json` (one object a line, for CloudWatch) [default: text at a terminal, json otherwise].
    #[arg(long, env = "LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<LogFormat>,
    /// What to do (inside AWS Lambda, with none: `lambda`).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// A parsed command line: how to log and what to do.
#[derive(Debug)]
pub struct Invocation {
    /// `LOG_FORMAT`, once chosen.
    pub log_format: Option<LogFormat>,
    /// The subcommand.
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
    /// Serve AWS Lambda invocations from an SQS event source mapping, with partial batch responses.
    Lambda(Box<LambdaArgs>),
}

/// What every subcommand that calls AWS says of the SDK's own variables.
const AWS_VARIABLES: &str = "AWS: region, credentials and endpoint come from the SDK's default chain: AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL (a local emulator), the ECS task role; no keys in flags.";

/// Each subcommand's examples, and whether it calls AWS; `dlq`'s own after it.
const HELP: [(&str, &str, bool); 10] = [
    ("run", run::EXAMPLES, true),
    ("setup", setup::EXAMPLES, true),
    ("publish", publish::EXAMPLES, true),
    ("healthcheck", healthcheck::EXAMPLES, false),
    ("doctor", doctor::EXAMPLES, true),
    ("dlq", dlq::args::EXAMPLES, true),
    ("get", get::EXAMPLES, true),
    ("completions", generate::COMPLETIONS_EXAMPLES, false),
    ("man", generate::MAN_EXAMPLES, false),
    ("lambda", lambda::EXAMPLES, true),
];
const DLQ_HELP: [(&str, &str); 3] =
    [("stats", dlq::args::STATS_EXAMPLES), ("peek", dlq::args::PEEK_EXAMPLES), ("replay", dlq::args::REPLAY_EXAMPLES)];

fn after_help(examples: &str, aws: bool) -> String {
    let examples: Vec<String> = examples.lines().map(|l| format!("  {}", l.trim_start())).collect();
    let examples = examples.join("\n");
    match aws {
        true => format!("EXAMPLES:\n{examples}\n\n{AWS_VARIABLES}"),
        false => format!("EXAMPLES:\n{examples}"),
    }
}

/// The command line as people see it: [`Cli`] with each subcommand's
/// examples, the ranges and defaults written from their constants, and
/// `doctor`'s help cut to the flags it uses. Parsing, completions and the
/// man page all use this one.
pub fn command() -> clap::Command {
    let mut cmd = Cli::command()
        .mut_subcommand("run", RunArgs::describe_flags)
        .mut_subcommand("doctor", |c| doctor::describe(RunArgs::describe_flags(c)))
        .mut_subcommand("lambda", LambdaArgs::describe_flags)
        .mut_subcommand("setup", setup::describe)
        .mut_subcommand("healthcheck", healthcheck::describe)
        .mut_subcommand("dlq", dlq::args::describe);
    for (name, examples, aws) in HELP {
        cmd = cmd.mut_subcommand(name, |c| c.after_help(after_help(examples, aws)));
    }
    cmd.mut_subcommand("dlq", |mut d| {
        for (name, examples) in DLQ_HELP {
            d = d.mut_subcommand(name, |c| c.after_help(after_help(examples, true)));
        }
        d
    })
}

/// Parses the process's arguments with [`command`]; a usage error exits 2
/// with clap's message. Started with no subcommand inside Lambda
/// (`AWS_LAMBDA_RUNTIME_API` set), the binary serves invocations, so it can
/// be a zip's `bootstrap` as well as a container image's command.
pub fn parse() -> Invocation {
    let parse = |matches: clap::ArgMatches| Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let mut cli = parse(command().get_matches());
    if cli.command.is_none() && api::in_lambda() {
        cli = parse(command().get_matches_from(std::env::args_os().chain([OsString::from("lambda")])));
    }
    match cli.command {
        Some(chosen) => Invocation { log_format: cli.log_format, command: chosen },
        None => command().error(ErrorKind::MissingSubcommand, "a subcommand is required").exit(),
    }
}

/// Runs the chosen subcommand.
pub async fn dispatch(invocation: Invocation) -> Result<(), CommandError> {
    match invocation.command {
        Command::Run(args) => run::run(&args).await,
        Command::Setup(args) => setup::setup(&aws::load_sdk_config().await?, &args).await,
        Command::Publish(args) => publish::publish(&args).await,
        Command::Healthcheck(args) => Ok(healthcheck::healthcheck(&args)?),
        Command::Doctor(args) => doctor::doctor(&args).await,
        Command::Dlq(args) => dlq::dlq(&aws::load_sdk_config().await?, &args).await,
        Command::Get(args) => get::get(&aws::load_sdk_config().await?, &args).await,
        Command::Completions(args) => generate::completions(args.shell, &mut command()),
        Command::Man(_) => generate::man(&command()),
        Command::Lambda(args) => lambda::lambda(&args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        command().debug_assert();
    }
}
