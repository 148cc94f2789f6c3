//! Adaptive concurrency for DynamoDB writes (AIMD): the number of write
//! attempts in flight halves when DynamoDB throttles and grows by one after
//! each window of successes (as many successes as the current limit), between
//! 1 and `WORKER_CONCURRENCY`. Backing off in width as well as in time lets a
//! throttled table recover instead of being hammered by every message at once.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::observe::Metrics;

/// The fewest writes in flight.
pub const FLOOR: usize = 1;

/// What the limiter has done, for the run summary and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConcurrencyStats {
    /// The limit now.
    pub current: usize,
    /// The lowest limit reached.
    pub min: usize,
    /// Times the limit was lowered (throttling).
    pub decreases: u64,
    /// Times the limit was raised (successes).
    pub increases: u64,
}

#[derive(Debug)]
struct State {
    limit: usize,
    in_flight: usize,
    /// Raised at each decrease: throttles of attempts started before it were
    /// already answered, so one burst halves the limit once, not once per write.
    epoch: u64,
    successes: usize,
    stats: ConcurrencyStats,
}

/// Limits DynamoDB write attempts in flight; shared by every processing task.
#[derive(Debug)]
pub struct Limiter {
    ceiling: usize,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
    freed: Notify,
}

/// How an attempt went, as far as the limiter cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The write went through (or was refused on its merits: the table kept up).
    Success,
    /// DynamoDB throttled it.
    Throttled,
    /// Neither (5xx, timeouts, fatal errors): no change.
    Neutral,
}

/// One write attempt's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<Limiter>,
    epoch: u64,
}

impl Limiter {
    /// A limiter starting (and capped) at `ceiling` writes in flight; its
    /// limit is the `ConcurrencyLevel` gauge of `metrics`.
    pub fn new(ceiling: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        let ceiling = ceiling.max(FLOOR);
        metrics.set_concurrency(ceiling);
        let stats = ConcurrencyStats { current: ceiling, min: ceiling, decreases: 0, increases: 0 };
        Arc::new(Self {
            ceiling,
            metrics,
            state: Mutex::new(State { limit: ceiling, in_flight: 0, epoch: 0, successes: 0, stats }),
            freed: Notify::new(),
        })
    }

    /// The current limit (for metrics).
    pub fn current(&self) -> usize {
        self.lock().limit
    }

    /// What the limiter has done so far.
    pub fn stats(&self) -> ConcurrencyStats {
        self.lock().stats
    }

    /// Waits for a free slot under the current limit.
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Register before checking, so a slot freed in between still wakes us.
            freed.as_mut().enable();
            if let Some(epoch) = self.try_take() {
                return Permit { limiter: Arc::clone(self), epoch };
            }
            freed.await;
        }
    }

    fn try_take(&self) -> Option<u64> {
        let mut state = self.lock();
        (state.in_flight < state.limit).then(|| {
            state.in_flight += 1;
            state.epoch
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain counters: still consistent after a panic elsewhere.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, signal: Signal, epoch: u64) {
        let mut state = self.lock();
        let old = state.limit;
        match signal {
            Signal::Throttled if epoch == state.epoch && old > FLOOR => {
                state.limit = (old / 2).max(FLOOR);
                state.epoch += 1;
                state.successes = 0;
                state.stats.decreases += 1;
                state.stats.min = state.stats.min.min(state.limit);
                tracing::info!(old, new = state.limit, reason = "throttled", "write concurrency lowered");
            }
            Signal::Success if old < self.ceiling => {
                state.successes += 1;
                if state.successes >= old {
                    state.limit = old + 1;
                    state.successes = 0;
                    state.stats.increases += 1;
                    tracing::info!(old, new = state.limit, reason = "writes succeeding", "write concurrency raised");
                }
            }
            _ => {}
        }
        state.stats.current = state.limit;
        if state.limit != old {
            self.metrics.set_concurrency(state.limit);
        }
    }
}

impl Permit {
    /// Reports how the attempt went and frees the slot.
    pub fn done(self, signal: Signal) {
        self.limiter.record(signal, self.epoch);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.lock().in_flight -= 1;
        self.limiter.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_burst_of_throttles_halves_once_and_successes_win_it_back() {
        let limiter = Limiter::new(8, Arc::default());
        let mut permits = Vec::new();
        for _ in 0..8 {
            permits.push(limiter.acquire().await);
        }
        // All eight were in flight when DynamoDB throttled them: one decrease.
        for p in permits {
            p.done(Signal::Throttled);
        }
        assert_eq!(limiter.current(), 4);
        // The next throttle is of an attempt started after the decrease.
        limiter.acquire().await.done(Signal::Throttled);
        assert_eq!(limiter.current(), 2);
        for _ in 0..(2 + 3 + 4 + 5 + 6 + 7) {
            limiter.acquire().await.done(Signal::Success);
        }
        let stats = limiter.stats();
        assert_eq!(stats, ConcurrencyStats { current: 8, min: 2, decreases: 2, increases: 6 });
        limiter.acquire().await.done(Signal::Success);
        assert_eq!(limiter.current(), 8, "never above the ceiling");
    }

    #[tokio::test]
    async fn never_below_one_and_waits_for_a_free_slot() {
        let limiter = Limiter::new(2, Arc::default());
        limiter.acquire().await.done(Signal::Throttled);
        limiter.acquire().await.done(Signal::Throttled);
        assert_eq!(limiter.current(), FLOOR);
        let held = limiter.acquire().await;
        let waiting = tokio::spawn({
            let limiter = Arc::clone(&limiter);
            async move { limiter.acquire().await.done(Signal::Neutral) }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "a second write must wait at limit 1");
        drop(held);
        waiting.await.expect("the waiter gets the freed slot");
        assert_eq!(limiter.stats().decreases, 1);
    }
}
