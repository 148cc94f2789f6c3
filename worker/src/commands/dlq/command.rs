//! `student-worker dlq`: resolves the queues and runs `stats`, `peek` or
//! `replay` with the same SDK chain as `run`.

use aws_config::SdkConfig;

use super::args::{DlqArgs, DlqCommand, ReplayArgs};
use super::error::{DlqError, ReplaySummary};
use super::letter::Queue;
use super::{peek, replay, stats};
use crate::aws::region_of;
use crate::commands::error::CommandError;
use crate::config::ConfigError;
use crate::config::error::NOT_SET;
use crate::shutdown;

/// Runs the chosen `dlq` subcommand.
pub async fn dlq(sdk: &SdkConfig, args: &DlqArgs) -> Result<(), CommandError> {
    let dlq_url = dlq_url(args)?;
    let region = region_of(sdk);
    let dlq = Queue::new(aws_sdk_sqs::Client::new(sdk), &dlq_url, &region);
    match &args.command {
        DlqCommand::Stats(a) => {
            // The DLQ's real sources, as SQS knows them; a queue asked for
            // besides them is counted but not called a source.
            let sources = dlq.redrive_sources().await?;
            let asked =
                a.queue_url.as_deref().map(str::trim).filter(|u| !u.is_empty() && !sources.iter().any(|s| s == u));
            let queue = |u: &str| Queue::new(dlq.sqs().clone(), u, &region);
            let counted: Vec<(Queue, bool)> =
                sources.iter().map(|u| (queue(u), true)).chain(asked.map(|u| (queue(u), false))).collect();
            stats::stats(&dlq, &counted, a.scan, a.json).await?;
        }
        DlqCommand::Peek(a) => peek::peek(&dlq, a.max, a.error_code.as_deref(), a.json).await?,
        DlqCommand::Replay(a) => {
            run_replay(&dlq, a, &shutdown::on_signals()).await?;
        }
    }
    Ok(())
}

/// Replays to `--to`, or to the one queue whose redrive policy points at the DLQ.
pub async fn run_replay(
    dlq: &Queue,
    args: &ReplayArgs,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<ReplaySummary, DlqError> {
    let to = target(dlq, args).await?;
    tracing::info!(dlq = %dlq.url, to = %to, dry_run = args.dry_run, "replaying dead letters");
    replay::replay(dlq, &to, args, stop).await
}

async fn target(dlq: &Queue, args: &ReplayArgs) -> Result<String, DlqError> {
    if let Some(to) = args.to.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        return Ok(to.to_owned());
    }
    let mut sources = dlq.redrive_sources().await?;
    match sources.len() {
        0 => Err(DlqError::NoSource(dlq.url.clone())),
        1 => Ok(sources.remove(0)),
        _ => Err(DlqError::ManySources { dlq: dlq.url.clone(), sources }),
    }
}

fn dlq_url(args: &DlqArgs) -> Result<String, ConfigError> {
    match args.dlq_url.as_deref().map(str::trim) {
        Some(url) if url.starts_with("https://") || url.starts_with("http://") => Ok(url.to_owned()),
        Some(url) if !url.is_empty() => Err(ConfigError {
            variable: "SQS_DLQ_URL",
            flag: "dlq-url",
            problem: format!("is {url:?}, not a queue URL"),
            fix: "use the DLQ's URL, e.g. the SQS_DLQ_URL line `student-worker setup` prints".into(),
        }),
        _ => Err(ConfigError {
            variable: "SQS_DLQ_URL",
            flag: "dlq-url",
            problem: NOT_SET.into(),
            fix: "set SQS_DLQ_URL (or --dlq-url) to the dead-letter queue's URL".into(),
        }),
    }
}
