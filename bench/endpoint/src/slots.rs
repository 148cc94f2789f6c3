//! Where a client's write slots go, seen from the endpoint. With `c` writes
//! allowed at once, every moment a slot holds no write is lost throughput;
//! this splits that idle slot-time by whether a received message was waiting
//! to be written at the time:
//!
//! - **starved**: every delivered message was already written, so the slot
//!   had nothing to take (the client did not receive far enough ahead);
//! - **ready**: a delivered message was waiting, but its write had not
//!   arrived yet (the client's own time: CPU, its runtime's scheduling, the
//!   loopback hop).
//!
//! Over the run's length, `starved + ready` is `c` minus the mean writes in
//! flight, so the two shares say where the missing part of `c / latency`
//! went.

use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// Slot accounting for one run.
#[derive(Debug, Default)]
pub struct Slots {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    concurrency: u64,
    /// Delivered and not yet written (redeliveries count again).
    waiting: u64,
    /// Writes arrived and not yet answered.
    writing: u64,
    /// The last event; nothing is counted before the first one.
    last: Option<Instant>,
    starved_nanos: u128,
    ready_nanos: u128,
}

/// The idle slot-time of a run, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Idle {
    /// Idle while no delivered message waited for a write.
    pub starved_seconds: f64,
    /// Idle while a delivered message waited for its write.
    pub ready_seconds: f64,
}

impl Slots {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a new run for a client allowed `concurrency` writes at once.
    pub fn reset(&self, concurrency: u64) {
        *self.lock() = State { concurrency, ..State::default() };
    }

    /// A receive handed out `n` messages.
    pub fn delivered(&self, n: u64) {
        let mut s = self.lock();
        s.advance(Instant::now());
        s.waiting += n;
    }

    /// A write arrived.
    pub fn write_arrived(&self) {
        let mut s = self.lock();
        s.advance(Instant::now());
        s.waiting = s.waiting.saturating_sub(1);
        s.writing += 1;
    }

    /// A write was answered.
    pub fn write_answered(&self) {
        let mut s = self.lock();
        s.advance(Instant::now());
        s.writing = s.writing.saturating_sub(1);
    }

    /// The idle slot-time so far.
    pub fn idle(&self) -> Idle {
        let s = self.lock();
        #[allow(clippy::cast_precision_loss)] // seconds for a report
        let seconds = |nanos: u128| nanos as f64 / 1e9;
        Idle { starved_seconds: seconds(s.starved_nanos), ready_seconds: seconds(s.ready_nanos) }
    }
}

impl State {
    /// Counts the idle slots of the interval since the last event.
    fn advance(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let idle = u128::from(self.concurrency.saturating_sub(self.writing));
            let slot_nanos = now.duration_since(last).as_nanos() * idle;
            match self.waiting {
                0 => self.starved_nanos += slot_nanos,
                _ => self.ready_nanos += slot_nanos,
            }
        }
        self.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn idle_slots_are_split_by_whether_a_message_was_waiting() {
        let mut s = State { concurrency: 2, ..State::default() };
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        s.advance(t0); // the first event only starts the clock
        s.waiting = 1; // delivered 1
        s.advance(ms(10)); // 10 ms, 2 idle slots, a message waiting: 20 ready
        s.waiting = 0;
        s.writing = 1; // its write arrived
        s.advance(ms(15)); // 5 ms, 1 idle slot, nothing waiting: 5 starved
        s.writing = 2;
        s.advance(ms(20)); // 5 ms, no idle slot
        assert_eq!(s.ready_nanos, 20_000_000);
        assert_eq!(s.starved_nanos, 5_000_000);
    }
}
