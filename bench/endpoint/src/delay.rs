//! Precise added latency. tokio's timer has 1 ms ticks and rounds every sleep
//! up, so `sleep(5 ms)` answers after 6 to 7 ms and the benchmark's
//! `concurrency / latency` bound would be computed from a latency the
//! endpoint does not really add. One thread keeps the deadlines in a heap and
//! wakes each caller at its deadline with the OS's sub-millisecond timed wait.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Instant;

use tokio::sync::oneshot;

/// The delay thread's handle; dropping it ends the thread.
#[derive(Debug)]
pub struct Delay {
    requests: Sender<Entry>,
}

impl Delay {
    /// Starts the delay thread.
    pub fn start() -> Self {
        let (requests, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("bench-delay".into())
            .spawn(move || serve(&rx))
            .expect("spawn the delay thread");
        Self { requests }
    }

    /// Resolves at `deadline` (within the OS's timer slack, about 50 µs).
    pub async fn until(&self, deadline: Instant) {
        let (wake, woken) = oneshot::channel();
        if self.requests.send(Entry { deadline, wake }).is_ok() {
            let _ = woken.await;
        }
    }
}

#[derive(Debug)]
struct Entry {
    deadline: Instant,
    wake: oneshot::Sender<()>,
}

// Ordered by deadline, earliest first out of the (max-)heap.
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        other.deadline.cmp(&self.deadline)
    }
}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.deadline == other.deadline
    }
}
impl Eq for Entry {}

fn serve(requests: &Receiver<Entry>) {
    let mut heap = BinaryHeap::new();
    loop {
        let now = Instant::now();
        while heap.peek().is_some_and(|e: &Entry| e.deadline <= now) {
            if let Some(due) = heap.pop() {
                let _ = due.wake.send(());
            }
        }
        let next = match heap.peek() {
            Some(e) => requests.recv_timeout(e.deadline - now),
            None => requests.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(entry) => heap.push(entry),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn wakes_at_the_deadline_not_a_timer_tick_later() {
        let delay = Delay::start();
        let mut late = Vec::new();
        for _ in 0..20 {
            let deadline = Instant::now() + Duration::from_millis(5);
            delay.until(deadline).await;
            late.push(Instant::now() - deadline);
        }
        late.sort();
        // Never early; the median under a millisecond late (tokio's timer: 1-2 ms).
        assert!(late.iter().all(|l| *l < Duration::from_secs(1)));
        assert!(late[late.len() / 2] < Duration::from_millis(1), "{late:?}");
    }

    #[tokio::test]
    async fn concurrent_callers_never_wake_before_their_deadline() {
        let delay = std::sync::Arc::new(Delay::start());
        let start = Instant::now();
        let mut tasks = Vec::new();
        for ms in [30u64, 10, 20] {
            let d = delay.clone();
            tasks.push(tokio::spawn(async move {
                d.until(start + Duration::from_millis(ms)).await;
                (ms, start.elapsed())
            }));
        }
        for t in tasks {
            let (ms, took) = t.await.expect("join");
            assert!(took >= Duration::from_millis(ms), "{ms} ms woke after {took:?}");
        }
    }
}
