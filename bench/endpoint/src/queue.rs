//! The simulated queue behind the endpoint: a fixed number of messages,
//! handed out at most `max` per receive, hidden for the visibility timeout
//! the receive asked for, visible again when it ends or is set to 0, gone
//! when deleted. Enough SQS semantics that a worker which retries or releases
//! still finishes; no more.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// One delivery of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The message's position in the stream (its body is `events::body(index)`).
    pub index: u64,
    /// Unique per delivery.
    pub receipt: String,
    /// `ApproximateReceiveCount`: 1 on the first delivery.
    pub receive_count: u32,
}

#[derive(Debug, Clone, Copy)]
struct Hidden {
    index: u64,
    receive_count: u32,
    visible_at: Instant,
}

/// Queue state; callers hold it behind a lock.
#[derive(Debug, Default)]
pub struct Queue {
    total: u64,
    next_fresh: u64,
    ready: VecDeque<(u64, u32)>,
    in_flight: HashMap<String, Hidden>,
    done: Vec<bool>,
    deleted: u64,
    deliveries: u64,
}

impl Queue {
    /// A queue holding `total` messages, none received yet.
    #[must_use]
    pub fn new(total: u64) -> Self {
        Self { total, done: vec![false; usize::try_from(total).unwrap_or(0)], ..Self::default() }
    }

    /// Up to `max` visible messages, hidden for `visibility` from `now`.
    pub fn take(&mut self, max: usize, visibility: Duration, now: Instant) -> Vec<Delivery> {
        self.reveal_expired(now);
        let mut out = Vec::with_capacity(max);
        while out.len() < max {
            let Some((index, previous)) = self.next_visible() else { break };
            self.deliveries += 1;
            let receipt = format!("{index}.{}", self.deliveries);
            let receive_count = previous + 1;
            self.in_flight.insert(receipt.clone(), Hidden { index, receive_count, visible_at: now + visibility });
            out.push(Delivery { index, receipt, receive_count });
        }
        out
    }

    fn next_visible(&mut self) -> Option<(u64, u32)> {
        while let Some((index, count)) = self.ready.pop_front() {
            if !self.is_deleted(index) {
                return Some((index, count));
            }
        }
        (self.next_fresh < self.total).then(|| {
            self.next_fresh += 1;
            (self.next_fresh - 1, 0)
        })
    }

    fn reveal_expired(&mut self, now: Instant) {
        let ready = &mut self.ready;
        self.in_flight.retain(|_, hidden| {
            let expired = hidden.visible_at <= now;
            if expired {
                ready.push_back((hidden.index, hidden.receive_count));
            }
            !expired
        });
    }

    fn is_deleted(&self, index: u64) -> bool {
        usize::try_from(index).ok().and_then(|i| self.done.get(i)).copied().unwrap_or(true)
    }

    /// Deletes the message of `receipt`; true when this is its first delete.
    /// Like SQS, an unknown or stale receipt is not an error.
    pub fn delete(&mut self, receipt: &str) -> bool {
        let Some(hidden) = self.in_flight.remove(receipt) else { return false };
        let Some(slot) = usize::try_from(hidden.index).ok().and_then(|i| self.done.get_mut(i)) else { return false };
        let first = !*slot;
        *slot = true;
        self.deleted += u64::from(first);
        first
    }

    /// Sets the remaining visibility of `receipt`'s message (0: visible now).
    pub fn change_visibility(&mut self, receipt: &str, seconds: u64, now: Instant) {
        if seconds == 0 {
            if let Some(hidden) = self.in_flight.remove(receipt) {
                self.ready.push_back((hidden.index, hidden.receive_count));
            }
        } else if let Some(hidden) = self.in_flight.get_mut(receipt) {
            hidden.visible_at = now + Duration::from_secs(seconds);
        }
    }

    /// `(ApproximateNumberOfMessages, ApproximateNumberOfMessagesNotVisible)`.
    pub fn counts(&mut self, now: Instant) -> (u64, u64) {
        self.reveal_expired(now);
        let visible =
            (self.total - self.next_fresh) + self.ready.iter().filter(|(i, _)| !self.is_deleted(*i)).count() as u64;
        (visible, self.in_flight.len() as u64)
    }

    /// Messages deleted (each counted once).
    #[must_use]
    pub fn deleted(&self) -> u64 {
        self.deleted
    }

    /// Deliveries made, redeliveries included.
    #[must_use]
    pub fn deliveries(&self) -> u64 {
        self.deliveries
    }

    /// Every message is deleted.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.deleted == self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VISIBILITY: Duration = Duration::from_secs(30);

    #[test]
    fn hands_out_each_message_once_then_nothing() {
        let now = Instant::now();
        let mut q = Queue::new(12);
        let first = q.take(10, VISIBILITY, now);
        let second = q.take(10, VISIBILITY, now);
        assert_eq!((first.len(), second.len()), (10, 2));
        assert!(q.take(10, VISIBILITY, now).is_empty());
        assert_eq!(q.counts(now), (0, 12));
        for d in first.iter().chain(&second) {
            assert!(q.delete(&d.receipt));
        }
        assert!(q.is_finished());
        assert_eq!(q.counts(now), (0, 0));
    }

    #[test]
    fn released_and_expired_messages_come_back_with_a_higher_count() {
        let now = Instant::now();
        let mut q = Queue::new(2);
        let got = q.take(10, VISIBILITY, now);
        q.change_visibility(&got[0].receipt, 0, now);
        let again = q.take(10, VISIBILITY, now);
        assert_eq!((again[0].index, again[0].receive_count), (got[0].index, 2));
        let later = now + VISIBILITY + Duration::from_secs(1);
        let expired = q.take(10, VISIBILITY, later);
        assert_eq!(expired.len(), 2, "both visibilities ended");
        assert!(!q.delete(&got[1].receipt), "a stale receipt deletes nothing");
    }
}
