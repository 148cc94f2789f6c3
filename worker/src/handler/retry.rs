//! Retries with exponential backoff and jitter, never past a deadline (the
//! message's visibility deadline). All use of the `backoff` crate is kept in
//! this module (it is unmaintained, RUSTSEC-2025-0012) so it can be swapped.

use std::future::Future;
use std::time::Duration;

use backoff::ExponentialBackoff;
use backoff::backoff::Backoff;
use tokio::time::Instant;

/// First pause after a throttle.
const INITIAL_INTERVAL: Duration = Duration::from_millis(50);
/// Longest single pause.
const MAX_INTERVAL: Duration = Duration::from_secs(5);
/// Growth per attempt.
const MULTIPLIER: f64 = 2.0;
/// ±50 % jitter, so throttled workers do not retry in lockstep.
const RANDOMIZATION: f64 = 0.5;

/// Whether a failed attempt may be tried again.
pub trait Retryable {
    /// `true` for transient failures.
    fn is_retryable(&self) -> bool;
}

/// The result of a retried operation and how many attempts it took.
#[derive(Debug)]
pub struct Retried<T, E> {
    /// The last attempt's result.
    pub result: Result<T, E>,
    /// Attempts made (at least 1).
    pub attempts: u32,
}

/// Runs `op` until it succeeds, fails permanently, or `deadline()` passes.
///
/// The deadline is read again after every pause: it moves when the visibility
/// heartbeat extends the message, so a pause never ends past the deadline
/// known when it started, and a retry continues only if time is still left.
pub async fn until_deadline<T, E, D, F, Fut>(deadline: D, mut op: F) -> Retried<T, E>
where
    E: Retryable,
    D: Fn() -> Instant,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut policy = exponential();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = op().await;
        let pause = match &result {
            Err(e) if e.is_retryable() => policy.next_backoff(),
            _ => None,
        };
        let left = deadline().saturating_duration_since(Instant::now());
        let Some(pause) = pause.filter(|_| !left.is_zero()) else {
            return Retried { result, attempts };
        };
        tokio::time::sleep(pause.min(left)).await;
        if Instant::now() >= deadline() {
            return Retried { result, attempts };
        }
    }
}

fn exponential() -> ExponentialBackoff {
    ExponentialBackoff {
        initial_interval: INITIAL_INTERVAL,
        current_interval: INITIAL_INTERVAL,
        max_interval: MAX_INTERVAL,
        multiplier: MULTIPLIER,
        randomization_factor: RANDOMIZATION,
        // The deadline below is the only limit.
        max_elapsed_time: None,
        ..ExponentialBackoff::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Flaky(bool);
    impl Retryable for Flaky {
        fn is_retryable(&self) -> bool {
            self.0
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_until_success() {
        let mut left = 3;
        let deadline = Instant::now() + Duration::from_secs(60);
        let r = until_deadline(
            || deadline,
            || {
                left -= 1;
                let result = if left > 0 { Err(Flaky(true)) } else { Ok(()) };
                async move { result }
            },
        )
        .await;
        assert!(r.result.is_ok());
        assert_eq!(r.attempts, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn stops_at_permanent_errors_and_at_the_deadline() {
        let far = Instant::now() + Duration::from_secs(60);
        let r: Retried<(), _> = until_deadline(|| far, || async { Err(Flaky(false)) }).await;
        assert_eq!(r.attempts, 1);
        let start = Instant::now();
        let deadline = start + Duration::from_secs(2);
        let r: Retried<(), _> = until_deadline(|| deadline, || async { Err(Flaky(true)) }).await;
        assert!(r.attempts > 2, "{}", r.attempts);
        assert!(Instant::now() <= deadline, "slept past the deadline");
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_that_moves_keeps_retrying() {
        let start = Instant::now();
        let deadline = std::sync::Arc::new(std::sync::Mutex::new(start + Duration::from_secs(1)));
        // The heartbeat: keeps the deadline a second ahead, for 20 s.
        let heartbeat = tokio::spawn({
            let deadline = std::sync::Arc::clone(&deadline);
            async move {
                for _ in 0..40 {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    *deadline.lock().expect("lock") = Instant::now() + Duration::from_secs(1);
                }
            }
        });
        let read = || *deadline.lock().expect("lock");
        let mut left = 12;
        let r = until_deadline(read, || {
            left -= 1;
            let result = if left > 0 { Err(Flaky(true)) } else { Ok(()) };
            async move { result }
        })
        .await;
        assert!(r.result.is_ok(), "gave up although the deadline kept moving");
        assert!(Instant::now() > start + Duration::from_secs(2), "retried past the first deadline");
        // Once it stops moving, retrying ends by it.
        heartbeat.await.expect("heartbeat");
        let last = read();
        let r: Retried<(), _> = until_deadline(read, || async { Err(Flaky(true)) }).await;
        assert!(r.result.is_err() && Instant::now() <= last);
    }
}
