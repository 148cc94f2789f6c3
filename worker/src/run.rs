//! The `run` loop: receive ahead while earlier batches are still being
//! written (bounded by `WORKER_CONCURRENCY`), hand each batch to the
//! processor, and on shutdown or a fatal error stop receiving at once, drain
//! or release in-flight messages, flush the acker and return.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::ack::{self, Ack, AckStats};
use crate::aws::Clients;
use crate::config::RunConfig;
use crate::deadletter::DeadLetter;
use crate::error::{Action, AwsError};
use crate::poll::{Poller, Received};
use crate::process::{Context, FatalSlot, OutcomeCounts, group_by_student, process_group};
use crate::write::Writer;

/// How long a receive under way at shutdown may still deliver (then released).
const LATE_ARRIVAL_WINDOW: Duration = Duration::from_secs(1);
/// Pause after an empty short poll (`SQS_WAIT_TIME_SECONDS=0`).
const EMPTY_SHORT_POLL_PAUSE: Duration = Duration::from_secs(1);
/// Longest pause between failed receives.
const MAX_RECEIVE_PAUSE: Duration = Duration::from_secs(10);

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Messages received.
    pub received: u64,
    /// Messages per outcome (`applied`, `duplicate`, ...).
    pub outcomes: BTreeMap<&'static str, u64>,
    /// Processing tasks that panicked (their messages reappear on the queue).
    pub panicked: u64,
    /// Deletes and visibility changes.
    pub acks: AckStats,
}

/// Why a run ended in failure.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Setup is broken: the message says the cause and the fix.
    #[error(transparent)]
    Fatal(#[from] AwsError),
}

/// Runs the worker until `shutdown` is cancelled, a fatal error occurs, or
/// (with `exit_when_empty`) the queue is drained.
pub async fn run(config: RunConfig, clients: Clients, shutdown: CancellationToken) -> Result<RunSummary, RunError> {
    tracing::info!(
        queue_url = %config.queue_url,
        table = %config.table_name,
        dlq = config.dlq_url.as_deref().unwrap_or("(none: invalid messages go through redrive)"),
        region = %clients.region,
        concurrency = config.concurrency,
        batch_size = config.batch_size,
        wait_time_seconds = config.wait_time_seconds,
        visibility_timeout_seconds = config.visibility_timeout_seconds,
        "worker starting"
    );
    let observer = crate::observe::Observer::start(&config); // observe (issue 5): EMF metrics, health file
    let stop = shutdown.child_token();
    let abort = CancellationToken::new();
    let fatal = FatalSlot::new(stop.clone(), abort.clone());
    let (acks, acker) =
        ack::spawn(clients.sqs.clone(), config.queue_url.clone(), clients.region.clone(), fatal.clone());
    let ctx = Arc::new(Context {
        writer: Writer::new(clients.dynamodb.clone(), &config.table_name, &clients.region),
        dead_letter: DeadLetter::new(clients.sqs.clone(), config.dlq_url.clone(), &config.queue_url, &clients.region),
        acks,
        abort: abort.clone(),
        fatal: fatal.clone(),
        counts: OutcomeCounts::default(),
    });
    let poller = Poller::new(clients.sqs.clone(), &config, &clients.region);
    let mut tasks = JoinSet::new();
    let mut summary = RunSummary::default();
    receive_loop(&config, &poller, &ctx, &stop, &mut tasks, &mut summary).await;

    drain(&mut tasks, &abort, config.shutdown_grace(), &mut summary).await;
    summary.outcomes = ctx.counts.snapshot();
    drop(ctx); // the last sender: the acker flushes and ends
    summary.acks = acker.await.unwrap_or_default();
    tracing::info!(?summary, "worker stopped");
    let fatal_error = fatal.take();
    observer.finish(fatal_error.as_ref()).await; // observe (issue 5): last metrics line, final health state
    match fatal_error {
        Some(error) => Err(RunError::Fatal(error)),
        None => Ok(summary),
    }
}

async fn receive_loop(
    config: &RunConfig,
    poller: &Poller,
    ctx: &Arc<Context>,
    stop: &CancellationToken,
    tasks: &mut JoinSet<()>,
    summary: &mut RunSummary,
) {
    let permits = Arc::new(Semaphore::new(config.concurrency));
    // Never hold more messages than can be worked on at once.
    let per_receive = config.concurrency.min(usize::try_from(config.batch_size).unwrap_or(1));
    let mut failures = 0;
    loop {
        let acquire = Arc::clone(&permits).acquire_many_owned(u32::try_from(per_receive).unwrap_or(1));
        let mut permit = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            permit = acquire => match permit { Ok(p) => p, Err(_) => return },
        };
        let receive = poller.receive(i32::try_from(per_receive).unwrap_or(1));
        tokio::pin!(receive);
        let batch = tokio::select! {
            biased;
            () = stop.cancelled() => return release_late_arrivals(receive, ctx).await,
            batch = &mut receive => batch,
        };
        reap(tasks, summary);
        if let Ok(received) = &batch {
            crate::metrics::global().received(received.len()); // observe (issue 5): loop progress
        }
        match batch {
            Err(e) if e.action() == Action::Stop => return ctx.fatal.set(e),
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, failures, "receive failed; retrying");
                let pause = Duration::from_millis(100 * 2u64.pow(failures.min(7))).min(MAX_RECEIVE_PAUSE);
                tokio::select! { () = stop.cancelled() => return, () = tokio::time::sleep(pause) => {} }
            }
            Ok(batch) if batch.is_empty() => {
                failures = 0;
                drop(permit);
                if config.exit_when_empty && is_idle(tasks, poller, summary).await {
                    tracing::info!("queue drained: exiting (exit-when-empty)");
                    return;
                }
                if config.wait_time_seconds == 0 {
                    // Short polling an empty queue: do not spin on receives.
                    tokio::select! { () = stop.cancelled() => return, () = tokio::time::sleep(EMPTY_SHORT_POLL_PAUSE) => {} }
                }
            }
            Ok(batch) => {
                failures = 0;
                summary.received += batch.len() as u64;
                for group in group_by_student(batch) {
                    let Some(share) = permit.split(group.len()) else { continue };
                    tasks.spawn(process_group(Arc::clone(ctx), group, share));
                }
            }
        }
    }
}

/// Stopping must not wait out a long poll, but a receive whose answer is
/// already on its way would hide its messages for a whole visibility timeout:
/// give it a moment, and hand back whatever it brings.
async fn release_late_arrivals(receive: impl Future<Output = Result<Vec<Received>, AwsError>>, ctx: &Context) {
    if let Ok(Ok(late)) = tokio::time::timeout(LATE_ARRIVAL_WINDOW, receive).await {
        for message in late {
            let _ = ctx.acks.send(Ack::Visibility(message.receipt_handle, 0));
        }
    }
}

/// Nothing in flight here and nothing left on the queue.
async fn is_idle(tasks: &mut JoinSet<()>, poller: &Poller, summary: &mut RunSummary) -> bool {
    reap(tasks, summary);
    if !tasks.is_empty() {
        return false;
    }
    // Let the acker's last batch reach SQS before counting in-flight messages.
    tokio::time::sleep(ack::FLUSH_INTERVAL * 3).await;
    match poller.is_drained().await {
        Ok(drained) => drained,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the queue's counts");
            false
        }
    }
}

/// Collects finished tasks without waiting.
fn reap(tasks: &mut JoinSet<()>, summary: &mut RunSummary) {
    while let Some(done) = tasks.try_join_next() {
        count_panic(done, summary);
    }
}

fn count_panic(done: Result<(), tokio::task::JoinError>, summary: &mut RunSummary) {
    if let Err(e) = done {
        summary.panicked += 1;
        tracing::error!(error = %e, "a processing task failed; its messages reappear on the queue");
    }
}

/// Lets in-flight work finish within `grace`, then releases the rest.
async fn drain(tasks: &mut JoinSet<()>, abort: &CancellationToken, grace: Duration, summary: &mut RunSummary) {
    if !tasks.is_empty() && !abort.is_cancelled() {
        tracing::info!(in_flight = tasks.len(), grace_seconds = grace.as_secs(), "draining");
        let finished = tokio::time::timeout(grace, join_all(tasks, summary)).await;
        if finished.is_err() {
            tracing::warn!(in_flight = tasks.len(), "grace period over: releasing unfinished messages");
        }
    }
    abort.cancel();
    join_all(tasks, summary).await;
}

async fn join_all(tasks: &mut JoinSet<()>, summary: &mut RunSummary) {
    while let Some(done) = tasks.join_next().await {
        count_panic(done, summary);
    }
}
