//! SIGTERM (ECS stopping the task) and SIGINT (Ctrl-C) become one
//! cancellation token: the worker stops receiving at once and drains. A second
//! signal exits immediately; unfinished messages then reappear on the queue
//! when their visibility timeout ends, so nothing is lost either way.

use std::sync::LazyLock;

use tokio_util::sync::CancellationToken;

/// Cancelled when stdout, where `run` logs, has been closed by its reader
/// (`run | head`): nobody hears the worker any more, so it stops as on
/// SIGTERM.
static STDOUT_CLOSED: LazyLock<CancellationToken> = LazyLock::new(CancellationToken::new);

/// Records that stdout's reader has gone.
pub fn stdout_closed() {
    STDOUT_CLOSED.cancel();
}

/// Exit code after a second signal (128 + SIGINT, as shells report it).
const FORCED_EXIT_CODE: i32 = 130;

/// A token cancelled by the first SIGTERM or SIGINT (or when stdout's reader has gone).
///
/// The handlers are installed before this returns, not in the spawned task:
/// a SIGTERM that arrives before that task first runs must drain the worker,
/// not kill it with the default disposition.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    let mut signals = Signals::install();
    tokio::spawn(async move {
        let first = tokio::select! {
            first = signals.next() => first,
            () = STDOUT_CLOSED.cancelled() => "stdout closed",
        };
        tracing::info!(signal = first, "shutting down: no new receives, draining in-flight messages");
        cancel.cancel();
        let second = signals.next().await;
        tracing::warn!(
            signal = second,
            "second signal: exiting now; unfinished messages reappear after their visibility timeout"
        );
        std::process::exit(FORCED_EXIT_CODE);
    });
    token
}

/// The installed SIGTERM and SIGINT streams.
#[cfg(unix)]
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

#[cfg(unix)]
impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Self { term: signal(SignalKind::terminate()).ok(), int: signal(SignalKind::interrupt()).ok() }
    }

    /// The next signal's name; never resolves when no handler could be installed.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            Some(()) = recv(&mut self.term) => "SIGTERM",
            Some(()) = recv(&mut self.int) => "SIGINT",
            else => std::future::pending().await,
        }
    }
}

#[cfg(unix)]
async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> Self {
        Self
    }

    async fn next(&mut self) -> &'static str {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "SIGINT",
            // No signal handling possible: never resolve rather than shut down.
            Err(_) => std::future::pending().await,
        }
    }
}
