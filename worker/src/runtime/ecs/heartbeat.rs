//! The visibility heartbeat: while a message is still being worked on (a slow
//! write, backoff after throttling, waiting behind its group), its visibility
//! is extended with `ChangeMessageVisibilityBatch` (10 entries a call) before
//! it runs out, up to `WORKER_MAX_VISIBILITY_EXTENSION_SECONDS` after its
//! receive. Each message carries a [`Lease`]: its deadline moves only when an
//! extension succeeded (counted from when the call was sent, never later than
//! SQS's own), so a failed extension can never lead to a write after the real
//! visibility end. [`Lease::finish`] stops the extensions before the message
//! is deleted or released, so a released message is never hidden again.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::poll::Received;
use crate::aws::entries::visibility_entries;
use crate::aws::{Action, AwsError, Resource};
use crate::handler::Deadline;
use crate::limits::{
    DEADLINE_MARGIN, EXTEND_LEAD, HEARTBEAT_CALL_TIMEOUT, HEARTBEAT_TICK, MAX_BATCH_ENTRIES, MAX_CALLS_IN_FLIGHT,
};
use crate::observe::Metrics;
use crate::runtime::fatal::FatalSlot;

/// One received message's visibility, as this worker knows it.
#[derive(Debug)]
pub struct Lease {
    receipt_handle: String,
    received_at: Instant,
    visible_until: Mutex<Instant>,
    /// Held by the heartbeat while it extends; `true` once the message is done.
    finished: tokio::sync::Mutex<bool>,
}

impl Lease {
    /// A lease on `message`, visible until its receive's visibility ends.
    pub fn new(received: &Received) -> Arc<Self> {
        Arc::new(Self {
            receipt_handle: received.message.receipt_handle.clone(),
            received_at: received.message.received_at,
            visible_until: Mutex::new(received.visible_until),
            finished: tokio::sync::Mutex::new(false),
        })
    }

    /// When the message may become visible to other consumers (at the earliest).
    pub fn visible_until(&self) -> Instant {
        *self.visible_until.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops the extensions; waits for one under way, so that what the caller
    /// does next (delete, release) comes after it.
    pub async fn finish(&self) {
        *self.finished.lock().await = true;
    }

    fn extended_to(&self, until: Instant) {
        let mut visible_until = self.visible_until.lock().unwrap_or_else(PoisonError::into_inner);
        *visible_until = (*visible_until).max(until);
    }
}

impl Deadline for Lease {
    /// Work on the message must be done by then: [`DEADLINE_MARGIN`] before
    /// the visibility ends, leaving time to delete it.
    fn deadline(&self) -> Instant {
        self.visible_until().checked_sub(DEADLINE_MARGIN).unwrap_or(self.received_at)
    }
}

/// What the heartbeat did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeartbeatStats {
    /// Visibility extensions SQS accepted.
    pub extended: u64,
    /// Extensions refused or failed (those messages keep their old deadline).
    pub failed: u64,
}

/// When and how far to extend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The visibility asked for on each receive, and on each extension.
    pub visibility: Duration,
    /// How long after its receive a message may be kept at most; zero: no heartbeat.
    pub max_hold: Duration,
}

impl Policy {
    /// Whether the heartbeat runs at all.
    pub fn is_enabled(&self) -> bool {
        self.max_hold > self.visibility
    }

    /// The visibility timeout (seconds from now) to set on a lease now, if it
    /// is due for an extension and may still be extended.
    pub fn extension(&self, now: Instant, received_at: Instant, visible_until: Instant) -> Option<i32> {
        let lead = EXTEND_LEAD.max(self.visibility / 2);
        if visible_until.saturating_duration_since(now) > lead {
            return None;
        }
        let room = (received_at + self.max_hold).saturating_duration_since(now);
        let seconds = self.visibility.min(room).as_secs();
        let new_end = now + Duration::from_secs(seconds);
        (new_end > visible_until).then(|| i32::try_from(seconds).unwrap_or(i32::MAX))
    }
}

/// Hands out leases and keeps the live ones extended.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    policy: Policy,
    leases: Arc<Mutex<Vec<Weak<Lease>>>>,
}

impl Heartbeat {
    /// A lease on `message`, kept extended while it is alive and not finished.
    pub fn track(&self, message: &Received) -> Arc<Lease> {
        let lease = Lease::new(message);
        if self.policy.is_enabled() {
            self.leases.lock().unwrap_or_else(PoisonError::into_inner).push(Arc::downgrade(&lease));
        }
        lease
    }
}

/// Where the heartbeat sends its calls, and where it counts failed ones.
#[derive(Debug, Clone)]
pub struct Target {
    /// SQS client.
    pub sqs: aws_sdk_sqs::Client,
    /// The source queue.
    pub queue_url: String,
    /// The source queue, for errors.
    pub resource: Resource,
    /// Throttled calls are counted here.
    pub metrics: Arc<Metrics>,
}

/// Starts the heartbeat; it ends when `stop` is cancelled (everything left is
/// being released) and returns what it did. A fatal error (the role may not
/// change visibility) goes to `fatal`, which stops the worker.
pub fn spawn(
    target: Target,
    policy: Policy,
    fatal: FatalSlot,
    stop: CancellationToken,
) -> (Heartbeat, JoinHandle<HeartbeatStats>) {
    let heartbeat = Heartbeat { policy, leases: Arc::default() };
    let beater =
        Beater { target, policy, fatal, leases: Arc::clone(&heartbeat.leases), stats: HeartbeatStats::default() };
    let task = tokio::spawn(beater.run(stop));
    (heartbeat, task)
}

struct Beater {
    target: Target,
    policy: Policy,
    fatal: FatalSlot,
    leases: Arc<Mutex<Vec<Weak<Lease>>>>,
    stats: HeartbeatStats,
}

impl Beater {
    async fn run(mut self, stop: CancellationToken) -> HeartbeatStats {
        if !self.policy.is_enabled() {
            return self.stats;
        }
        loop {
            tokio::select! {
                () = stop.cancelled() => return self.stats,
                () = tokio::time::sleep(HEARTBEAT_TICK) => {}
            }
            let due = self.due();
            // Several calls at once: one slow answer (SQS under load, a
            // throttled call retried by the SDK) must not make the leases
            // behind it miss their extension.
            for wave in due.chunks(MAX_BATCH_ENTRIES * MAX_CALLS_IN_FLIGHT) {
                let calls = wave.chunks(MAX_BATCH_ENTRIES).map(|chunk| self.extend(chunk));
                for extended in futures_util::future::join_all(calls).await {
                    self.record(extended);
                }
            }
        }
    }

    fn record(&mut self, extended: Extended) {
        self.stats.extended += extended.extended;
        self.stats.failed += extended.failed;
        if let Some(e) = extended.fatal {
            self.fatal.set(e);
        }
    }

    /// Live leases due for an extension; forgets the dropped ones.
    fn due(&self) -> Vec<Arc<Lease>> {
        let now = Instant::now();
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        leases.retain(|lease| lease.strong_count() > 0);
        leases
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|l| self.policy.extension(now, l.received_at, l.visible_until()).is_some())
            .collect()
    }

    async fn extend(&self, leases: &[Arc<Lease>]) -> Extended {
        // Hold each lease's lock through the call: a message that finishes
        // meanwhile waits, so its delete or release comes after the extension.
        let mut held = Vec::new();
        for lease in leases {
            let Ok(finished) = lease.finished.try_lock() else { continue };
            let extension = self.policy.extension(Instant::now(), lease.received_at, lease.visible_until());
            if let (false, Some(seconds)) = (*finished, extension) {
                held.push((lease, finished, seconds));
            }
        }
        if held.is_empty() {
            return Extended::default();
        }
        let entries =
            visibility_entries(held.iter().map(|(lease, _, seconds)| (lease.receipt_handle.as_str(), *seconds)));
        // SQS counts the new visibility from when it handles the call, which
        // is after this: our view of the deadline is never later than SQS's.
        let sent_at = Instant::now();
        let call = self.target.sqs.change_message_visibility_batch().queue_url(&self.target.queue_url);
        let Ok(answer) = tokio::time::timeout(HEARTBEAT_CALL_TIMEOUT, call.set_entries(Some(entries)).send()).await
        else {
            // Maybe applied, maybe not: the deadline stays where it was (safe).
            // At worst SQS applies it after a release and the message comes
            // back one visibility timeout later: late, never lost.
            tracing::warn!(messages = held.len(), "visibility extension timed out: the messages keep their deadlines");
            return Extended { failed: held.len() as u64, ..Extended::default() };
        };
        match answer {
            Ok(out) => {
                let mut extended = Extended::default();
                for ok in &out.successful {
                    if let Some((lease, _, seconds)) = ok.id.parse::<usize>().ok().and_then(|i| held.get(i)) {
                        lease.extended_to(sent_at + Duration::from_secs(u64::try_from(*seconds).unwrap_or(0)));
                        extended.extended += 1;
                    }
                }
                for f in &out.failed {
                    tracing::warn!(code = %f.code, "visibility extension refused: the message keeps its deadline");
                }
                extended.failed = out.failed.len() as u64;
                tracing::debug!(extended = out.successful.len(), failed = out.failed.len(), "heartbeat");
                extended
            }
            Err(e) => {
                let e = self.target.metrics.failed(&self.target.resource, &e, "sqs:ChangeMessageVisibilityBatch");
                let failed = held.len() as u64;
                if e.action() == Action::Stop {
                    return Extended { failed, fatal: Some(e), ..Extended::default() };
                }
                tracing::warn!(error = %e, messages = held.len(), "visibility extension failed: the messages keep their deadlines");
                Extended { failed, ..Extended::default() }
            }
        }
    }
}

/// What one extension call did.
#[derive(Debug, Default)]
struct Extended {
    extended: u64,
    failed: u64,
    /// The role may not change visibility: stops the worker.
    fatal: Option<AwsError>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn extends_ahead_of_the_write_budget_and_only_up_to_the_maximum() {
        let short = Policy { visibility: S(15), max_hold: S(40) };
        let t0 = Instant::now();
        // 15 s visibility: due once at most 13 s are left (2 s after the receive).
        assert_eq!(short.extension(t0 + S(1), t0, t0 + S(15)), None);
        assert_eq!(short.extension(t0 + S(2), t0, t0 + S(15)), Some(15));
        // Near the maximum, only what is left of it; at the maximum, nothing.
        assert_eq!(short.extension(t0 + S(30), t0, t0 + S(35)), Some(10));
        assert_eq!(short.extension(t0 + S(35), t0, t0 + S(40)), None);
        // A long visibility is extended at its half-life.
        let long = Policy { visibility: S(60), max_hold: S(300) };
        assert_eq!(long.extension(t0 + S(29), t0, t0 + S(60)), None);
        assert_eq!(long.extension(t0 + S(30), t0, t0 + S(60)), Some(60));
    }

    #[test]
    fn a_maximum_not_above_the_visibility_turns_it_off() {
        assert!(!Policy { visibility: S(60), max_hold: S(0) }.is_enabled());
        assert!(!Policy { visibility: S(60), max_hold: S(60) }.is_enabled());
        assert!(Policy { visibility: S(60), max_hold: S(61) }.is_enabled());
    }

    #[test]
    fn the_deadline_moves_only_forward() {
        let now = Instant::now();
        let message = crate::handler::Message {
            message_id: "m".into(),
            receipt_handle: "r".into(),
            body: String::new(),
            receive_count: 1,
            received_at: now,
            group_id: None,
            attributes: Default::default(),
            trace_header: None,
        };
        let lease = Lease::new(&Received { message, visible_until: now + S(15) });
        assert_eq!(lease.deadline(), now + S(10));
        lease.extended_to(now + S(30));
        assert_eq!(lease.deadline(), now + S(25));
        lease.extended_to(now + S(20));
        assert_eq!(lease.visible_until(), now + S(30), "a late answer never shortens it");
    }
}
