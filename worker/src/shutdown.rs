//! SIGTERM (ECS stopping the task) and SIGINT (Ctrl-C) become one
//! cancellation token: the worker stops receiving at once and drains. A second
//! signal exits immediately; unfinished messages then reappear on the queue
//! when their visibility timeout ends, so nothing is lost either way.

use tokio_util::sync::CancellationToken;

/// Exit code after a second signal (128 + SIGINT, as shells report it).
const FORCED_EXIT_CODE: i32 = 130;

/// A token cancelled by the first SIGTERM or SIGINT.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let first = wait_for_signal().await;
        tracing::info!(signal = first, "shutting down: no new receives, draining in-flight messages");
        cancel.cancel();
        let second = wait_for_signal().await;
        tracing::warn!(
            signal = second,
            "second signal: exiting now; unfinished messages reappear after their visibility timeout"
        );
        std::process::exit(FORCED_EXIT_CODE);
    });
    token
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return ctrl_c().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        name = ctrl_c() => name,
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    ctrl_c().await
}

async fn ctrl_c() -> &'static str {
    match tokio::signal::ctrl_c().await {
        Ok(()) => "SIGINT",
        // No signal handling possible: never resolve rather than shut down.
        Err(_) => std::future::pending().await,
    }
}
