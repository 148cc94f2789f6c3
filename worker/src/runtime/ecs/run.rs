//! The `run` loop: receive ahead while earlier batches are still being
//! written (`WORKER_CONCURRENCY` messages written at once, as many more
//! received ahead, several receives under way), give every message a lease
//! the heartbeat keeps extended, hand each batch to the processor, and on
//! shutdown or a fatal error stop receiving at once, drain or release
//! in-flight messages, flush the acker and return.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use student_shared::Outcome;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::ack::{self, Ack, AckStats};
use super::heartbeat::{self, Heartbeat, HeartbeatStats, Policy, Target};
use super::poll::{Poller, Received};
use super::settle::{Deferrals, Settler};
use crate::aws::queue::Counts;
use crate::aws::{Action, AwsError, Clients, Resource};
use crate::config::RunConfig;
use crate::handler::group::Grouping;
use crate::handler::{Handler, Work};
use crate::limits::{ACK_FLUSH_INTERVAL, LATE_ARRIVAL_WINDOW};
use crate::observe::logging::{self, LogFormat};
use crate::observe::{Metrics, Observer};
use crate::runtime::deadletter::DeadLetterQueue;
use crate::runtime::fatal::FatalSlot;

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
    /// Visibility extensions by the heartbeat.
    pub heartbeat: HeartbeatStats,
    /// Times the write concurrency was lowered after throttling.
    pub concurrency_decreases: u64,
    /// Times it was raised again after successes.
    pub concurrency_increases: u64,
    /// The lowest write concurrency reached.
    pub min_concurrency: usize,
    /// The write concurrency at the end.
    pub final_concurrency: usize,
}

/// Why a run ended in failure.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Setup is broken: the message says the cause and the fix.
    #[error(transparent)]
    Fatal(#[from] AwsError),
}

/// What the processing tasks share.
#[derive(Debug)]
struct Context {
    /// Decides what becomes of each message.
    handler: Handler,
    /// Carries the decisions out on the queue.
    settler: Settler,
    /// Cancelled when in-flight work must be released now (grace over, or fatal).
    abort: CancellationToken,
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
        max_visibility_extension_seconds = config.max_visibility_extension_seconds,
        fifo = config.queue_url.ends_with(".fifo"),
        "worker starting"
    );
    if config.exit_when_empty {
        tracing::info!(
            wait_time_seconds = config.wait_time_seconds,
            "exit-when-empty: exits once the queue is empty and nothing is in flight; an empty queue shows after one long poll of up to {} s",
            config.wait_time_seconds
        );
    }
    let started = std::time::Instant::now();
    let metrics = Arc::new(Metrics::new());
    let observer = Observer::start(&config.observe, &metrics, &config.queue_url);
    let stop = shutdown.child_token();
    let abort = CancellationToken::new();
    let fatal = FatalSlot::new(stop.clone(), abort.clone());
    let sqs = &clients.sqs;
    let (acks, acker) =
        ack::spawn(sqs.clone(), &config.queue_url, &clients.region, fatal.clone(), Arc::clone(&metrics));
    let target = Target {
        sqs: sqs.clone(),
        queue_url: config.queue_url.clone(),
        resource: Resource::queue(&config.queue_url, &clients.region),
        metrics: Arc::clone(&metrics),
    };
    let policy = Policy { visibility: config.visibility_timeout(), max_hold: config.max_visibility_extension() };
    let (heartbeat, beater) = heartbeat::spawn(target, policy, fatal.clone(), abort.clone());
    let dead_letter = DeadLetterQueue::new(
        sqs.clone(),
        config.dlq_url.as_deref(),
        &config.queue_url,
        &clients.region,
        Arc::clone(&metrics),
    );
    let ctx = Arc::new(Context {
        handler: Handler::new(
            clients.dynamodb.clone(),
            &config.table_name,
            &clients.region,
            config.concurrency,
            config.max_defer_seconds,
            Arc::clone(&metrics),
        ),
        settler: Settler { acks, dead_letter, fatal: fatal.clone(), deferrals: Deferrals::default() },
        abort: abort.clone(),
    });
    let poller = Poller::new(sqs.clone(), &config, &clients.region, Arc::clone(&metrics));
    let mut tasks = JoinSet::new();
    let mut summary = RunSummary::default();
    receive_loop(&config, &poller, &heartbeat, &ctx, &stop, &mut tasks, &mut summary).await;

    drain(&mut tasks, &abort, config.shutdown_grace(), &mut summary).await;
    summary.outcomes = ctx.handler.counts.snapshot();
    summary.heartbeat = beater.await.unwrap_or_default();
    let concurrency = ctx.handler.writer.limiter().stats();
    summary.concurrency_decreases = concurrency.decreases;
    summary.concurrency_increases = concurrency.increases;
    summary.min_concurrency = concurrency.min;
    summary.final_concurrency = concurrency.current;
    drop(ctx); // the last sender: the acker flushes and ends
    summary.acks = acker.await.unwrap_or_default();
    log_summary(&summary, started.elapsed(), config.dlq_url.is_some());
    let fatal_error = fatal.take();
    observer.finish(fatal_error.as_ref()).await;
    match fatal_error {
        Some(error) => Err(RunError::Fatal(error)),
        None => Ok(summary),
    }
}

/// At most this many receives are under way at once, however high the
/// concurrency (each brings up to 10 messages).
const MAX_RECEIVES_IN_FLIGHT: usize = 16;

/// While throttling holds the writes back, receive-ahead waits this long
/// before it looks again whether messages have been written.
const HOLD_RECHECK: Duration = Duration::from_millis(50);

/// Receives under way at once for `writes` writes in flight: enough to bring
/// twice that many messages (a receive round trip is often longer than a
/// write's), at most [`MAX_RECEIVES_IN_FLIGHT`].
fn receives_for(writes: usize, per_receive: usize) -> usize {
    writes.saturating_mul(2).div_ceil(per_receive).clamp(1, MAX_RECEIVES_IN_FLIGHT)
}

/// Messages held (being received, waiting for a slot or written) for
/// `writes` writes in flight: the writes plus what the receives may bring.
fn hold_limit(writes: usize, per_receive: usize) -> usize {
    writes + receives_for(writes, per_receive) * per_receive
}

/// A receive under way, with the permits for the messages it may bring.
type Receiving = JoinSet<(OwnedSemaphorePermit, Result<Vec<Received>, AwsError>)>;

/// Keeps the pipe full: several receives under way at once while earlier
/// messages are written, so a receive's round trip is not paid by every
/// batch. Limits: `concurrency` messages are written at once; receives under
/// way bring up to twice that (a receive round trip is often longer than a
/// write's), and the messages they bring may wait for a write slot (their
/// deadlines run from the receive, so waiting is safe), but no new receive
/// starts while that many are waiting. Those limits follow the adaptive
/// write concurrency: when throttling lowers it, fewer messages are held, so
/// they are not kept waiting (and extended) for slots that will not come.
/// After an empty receive, one receive at a time until messages come back
/// (an idle worker keeps a single long poll open).
async fn receive_loop(
    config: &RunConfig,
    poller: &Poller,
    heartbeat: &Heartbeat,
    ctx: &Arc<Context>,
    stop: &CancellationToken,
    tasks: &mut JoinSet<()>,
    summary: &mut RunSummary,
) {
    let grouping = Grouping::for_queue(&config.queue_url);
    let writing = Arc::new(Semaphore::new(config.concurrency));
    let per_receive = config.concurrency.min(usize::try_from(config.batch_size).unwrap_or(1));
    let most_receives = receives_for(config.concurrency, per_receive);
    // Messages held (being received, waiting or written).
    let most_held = hold_limit(config.concurrency, per_receive);
    let held = Arc::new(Semaphore::new(most_held));
    let limiter = ctx.handler.writer.limiter();
    let mut receives = Receiving::new();
    // Start as if idle: nothing is known to be waiting yet. One receive takes
    // what is there (up to a batch), and the first non-empty batch opens the
    // pipe; several receives at once would split a burst of one student's
    // events across batches and defer the later ones for no reason.
    let mut idle = true;
    let mut failures = 0;
    // What an exit-when-empty run last said it waits for.
    let mut waiting = None;
    loop {
        // Only below full write concurrency; at full, `held` alone decides.
        let writes = limiter.current();
        let in_use = most_held - held.available_permits();
        let held_back = writes < config.concurrency && in_use + per_receive > hold_limit(writes, per_receive);
        let room = !held_back && receives.len() < if idle { 1 } else { most_receives };
        let acquire = Arc::clone(&held).acquire_many_owned(u32::try_from(per_receive).unwrap_or(1));
        let (mut permit, batch) = tokio::select! {
            biased;
            () = stop.cancelled() => return release_late_arrivals(receives, ctx).await,
            Some(done) = receives.join_next() => match done {
                Ok(done) => done,
                Err(_) => continue, // a receive task cannot panic; its messages would reappear anyway
            },
            permit = acquire, if room => {
                let Ok(permit) = permit else { return };
                let poller = poller.clone();
                let max = i32::try_from(per_receive).unwrap_or(1);
                receives.spawn(async move { (permit, poller.receive(max).await) });
                continue;
            }
            () = tokio::time::sleep(HOLD_RECHECK), if held_back => continue,
        };
        reap(tasks, summary);
        match batch {
            Err(e) if e.action() == Action::Stop => return ctx.settler.fatal.set(e),
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, failures, "receive failed; retrying");
                let pause = Duration::from_millis(100 * 2u64.pow(failures.min(7))).min(MAX_RECEIVE_PAUSE);
                tokio::select! { () = stop.cancelled() => return, () = tokio::time::sleep(pause) => {} }
            }
            Ok(batch) if batch.is_empty() => {
                failures = 0;
                idle = true;
                drop(permit);
                if config.exit_when_empty && receives.is_empty() {
                    match waiting_on(tasks, poller, ctx, summary).await {
                        None => {
                            tracing::info!("queue drained: exiting (exit-when-empty)");
                            return;
                        }
                        Some(now) => say_waiting(&mut waiting, now, config.wait_time_seconds),
                    }
                }
                if config.wait_time_seconds == 0 {
                    // Short polling an empty queue: do not spin on receives.
                    tokio::select! { () = stop.cancelled() => return, () = tokio::time::sleep(EMPTY_SHORT_POLL_PAUSE) => {} }
                }
            }
            Ok(batch) => {
                failures = 0;
                idle = false;
                summary.received += batch.len() as u64;
                let works = batch.into_iter().map(|received| {
                    let lease = heartbeat.track(&received);
                    Work::new(received.message, lease)
                });
                for group in grouping.group(works.collect()) {
                    let Some(share) = permit.split(group.len()) else { continue };
                    let (ctx, writing) = (Arc::clone(ctx), Arc::clone(&writing));
                    let slots = u32::try_from(group.len().min(config.concurrency)).unwrap_or(1);
                    tasks.spawn(async move {
                        // `writing` is never closed, so acquiring cannot fail.
                        let Ok(_writing) = writing.acquire_many_owned(slots).await else { return };
                        ctx.handler.process_group(&ctx.settler, group, grouping, &ctx.abort).await;
                        // The group's share of the messages held is free now.
                        drop(share);
                    });
                }
            }
        }
    }
}

/// Stopping must not wait out a long poll, but a receive whose answer is
/// already on its way would hide its messages for a whole visibility timeout:
/// give the receives under way a moment, and hand back whatever they bring.
async fn release_late_arrivals(mut receives: Receiving, ctx: &Context) {
    let late = async {
        while let Some(done) = receives.join_next().await {
            for received in done.ok().and_then(|(_, batch)| batch.ok()).unwrap_or_default() {
                let _ = ctx.settler.acks.send(Ack::Visibility(received.message.receipt_handle, 0));
            }
        }
    };
    // Receives still waiting after the window are abandoned (dropped with the set).
    let _ = tokio::time::timeout(LATE_ARRIVAL_WINDOW, late).await;
}

/// What keeps an exit-when-empty run from exiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// Messages still being worked on here.
    Working(usize),
    /// Patches this run deferred: how many, and when the first is back.
    Deferred(usize, Duration),
    /// The queue still counts messages (another consumer's, or delayed ones).
    Queue(Counts),
    /// The queue's counts could not be read.
    Unknown,
}

impl Waiting {
    /// Whether `self` says something `other` did not (a new due time alone is not news).
    fn differs(self, other: Option<Self>) -> bool {
        match (self, other) {
            (Self::Deferred(n, _), Some(Self::Deferred(m, _))) => n != m,
            (this, other) => Some(this) != other,
        }
    }
}

/// `None` when nothing is in flight here and nothing is left on the queue;
/// otherwise what there is to wait for.
async fn waiting_on(
    tasks: &mut JoinSet<()>,
    poller: &Poller,
    ctx: &Context,
    summary: &mut RunSummary,
) -> Option<Waiting> {
    reap(tasks, summary);
    if !tasks.is_empty() {
        return Some(Waiting::Working(tasks.len()));
    }
    // Let the acker's last batch reach SQS before counting in-flight messages.
    tokio::time::sleep(ACK_FLUSH_INTERVAL * 3).await;
    match poller.counts().await {
        Ok(counts) if counts.is_empty() => None,
        Ok(counts) => Some(match ctx.settler.deferrals.pending() {
            Some((n, next)) => Waiting::Deferred(n, next),
            None => Waiting::Queue(counts),
        }),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the queue's counts");
            Some(Waiting::Unknown)
        }
    }
}

/// Tells what an exit-when-empty run waits for, when that changed.
fn say_waiting(last: &mut Option<Waiting>, now: Waiting, wait_time_seconds: i32) {
    if !now.differs(*last) {
        return;
    }
    *last = Some(now);
    let poll = format!("long-polling up to {wait_time_seconds} s at a time");
    match now {
        // Their outcome lines show the progress.
        Waiting::Working(_) => {}
        Waiting::Deferred(n, next) => tracing::info!(
            deferred = n,
            next_due_seconds = next.as_secs(),
            "exit-when-empty: waiting for {n} deferred message(s), the first due back in {} s; {poll}",
            next.as_secs()
        ),
        Waiting::Queue(c) => tracing::info!(
            in_flight = c.in_flight,
            delayed = c.delayed,
            visible = c.visible,
            "exit-when-empty: the queue still counts {} in flight, {} delayed, {} visible; {poll}",
            c.in_flight,
            c.delayed,
            c.visible
        ),
        Waiting::Unknown => tracing::info!("exit-when-empty: waiting until the queue's counts can be read; {poll}"),
    }
}

/// The end-of-run summary: one line a person reads at a terminal, numeric
/// fields Logs Insights can query in JSON.
fn log_summary(summary: &RunSummary, elapsed: Duration, dlq: bool) {
    if logging::format() == LogFormat::Text {
        tracing::info!("{}", summary.to_line(elapsed, dlq));
        return;
    }
    let n = |o: Outcome| summary.outcomes.get(o.as_str()).copied().unwrap_or(0);
    tracing::info!(
        received = summary.received,
        applied = n(Outcome::Applied),
        duplicate = n(Outcome::Duplicate),
        stale = n(Outcome::Stale),
        deferred = n(Outcome::Deferred),
        invalid = n(Outcome::Invalid),
        retry = n(Outcome::Retry),
        released = n(Outcome::Released),
        panicked = summary.panicked,
        deleted = summary.acks.deleted,
        delete_failed = summary.acks.delete_failed,
        visibility_changed = summary.acks.visibility_changed,
        visibility_failed = summary.acks.visibility_failed,
        heartbeat_extended = summary.heartbeat.extended,
        heartbeat_failed = summary.heartbeat.failed,
        concurrency_decreases = summary.concurrency_decreases,
        concurrency_increases = summary.concurrency_increases,
        min_concurrency = summary.min_concurrency,
        final_concurrency = summary.final_concurrency,
        elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        "worker stopped"
    );
}

impl RunSummary {
    /// The run in one line for a person, e.g.
    /// `42 received: 40 applied, 1 duplicate, 1 invalid → DLQ in 1.3 s`
    /// (outcomes that did not happen are left out).
    pub fn to_line(&self, elapsed: Duration, dlq: bool) -> String {
        let outcomes: Vec<String> = Outcome::ALL
            .iter()
            .filter_map(|o| {
                let count = self.outcomes.get(o.as_str()).copied().filter(|c| *c > 0)?;
                let to = match (o, dlq) {
                    (Outcome::Invalid, true) => " → DLQ",
                    (Outcome::Invalid, false) => " (left for the redrive policy)",
                    _ => "",
                };
                Some(format!("{count} {o}{to}"))
            })
            .chain((self.panicked > 0).then(|| format!("{} processing task(s) panicked", self.panicked)))
            .collect();
        let seconds = elapsed.as_secs_f64();
        match outcomes.is_empty() {
            true => format!("{} received in {seconds:.1} s", self.received),
            false => format!("{} received: {} in {seconds:.1} s", self.received, outcomes.join(", ")),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_messages_held_follow_the_write_concurrency() {
        // Default concurrency 32, 10 per receive: 7 receives' worth ahead.
        assert_eq!((receives_for(32, 10), hold_limit(32, 10)), (7, 102));
        // Throttled down to 3 writes: one receive ahead.
        assert_eq!((receives_for(3, 10), hold_limit(3, 10)), (1, 13));
        // Batch size 1: two receives per write slot, at most 16.
        assert_eq!((receives_for(1, 1), hold_limit(1, 1)), (2, 3));
        assert_eq!(hold_limit(4096, 10), 4096 + 16 * 10);
    }

    #[test]
    fn the_summary_reads_as_one_line() {
        let mut s = RunSummary { received: 42, ..RunSummary::default() };
        s.outcomes = [("applied", 40), ("duplicate", 1), ("stale", 0), ("invalid", 1)].into_iter().collect();
        let elapsed = Duration::from_millis(1300);
        assert_eq!(s.to_line(elapsed, true), "42 received: 40 applied, 1 duplicate, 1 invalid → DLQ in 1.3 s");
        assert!(s.to_line(elapsed, false).contains("1 invalid (left for the redrive policy)"));
        assert_eq!(RunSummary::default().to_line(elapsed, true), "0 received in 1.3 s");
    }

    #[test]
    fn a_new_due_time_alone_is_not_worth_another_line() {
        let deferred = |n, s| Waiting::Deferred(n, Duration::from_secs(s));
        assert!(!deferred(2, 8).differs(Some(deferred(2, 30))));
        assert!(deferred(1, 8).differs(Some(deferred(2, 30))));
        assert!(deferred(1, 8).differs(None));
    }
}
