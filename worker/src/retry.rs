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

/// Runs `op` until it succeeds, fails permanently, or the next pause would
/// end after `deadline`.
pub async fn until_deadline<T, E, F, Fut>(deadline: Instant, mut op: F) -> Retried<T, E>
where
    E: Retryable,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut policy = DeadlineBackoff { inner: exponential(), deadline };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = op().await;
        let pause = match &result {
            Err(e) if e.is_retryable() => policy.next_backoff(),
            _ => None,
        };
        match pause {
            Some(pause) => tokio::time::sleep(pause).await,
            None => return Retried { result, attempts },
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

/// Gives up when the next pause would end past the deadline.
struct DeadlineBackoff {
    inner: ExponentialBackoff,
    deadline: Instant,
}

impl Backoff for DeadlineBackoff {
    fn next_backoff(&mut self) -> Option<Duration> {
        let pause = self.inner.next_backoff()?;
        (Instant::now() + pause < self.deadline).then_some(pause)
    }

    fn reset(&mut self) {
        self.inner.reset();
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
        let r = until_deadline(Instant::now() + Duration::from_secs(60), || {
            left -= 1;
            let result = if left > 0 { Err(Flaky(true)) } else { Ok(()) };
            async move { result }
        })
        .await;
        assert!(r.result.is_ok());
        assert_eq!(r.attempts, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn stops_at_permanent_errors_and_at_the_deadline() {
        let r: Retried<(), _> =
            until_deadline(Instant::now() + Duration::from_secs(60), || async { Err(Flaky(false)) }).await;
        assert_eq!(r.attempts, 1);
        let start = Instant::now();
        let deadline = start + Duration::from_secs(2);
        let r: Retried<(), _> = until_deadline(deadline, || async { Err(Flaky(true)) }).await;
        assert!(r.attempts > 2, "{}", r.attempts);
        assert!(Instant::now() <= deadline, "slept past the deadline");
    }
}
