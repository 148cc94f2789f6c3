//! The worker's health, shared with `student-worker healthcheck` through a
//! small JSON file (`WORKER_HEALTH_FILE`).
//!
//! Why a file and not a port on 127.0.0.1: the image has no shell, so ECS
//! runs `student-worker healthcheck` as a second process in the same
//! container; a file needs no listener, no port to keep free, and still says
//! what happened after the worker stopped (a fatal error and its fix). With
//! `readonlyRootFilesystem` the task definition mounts a small writable
//! volume at `/tmp`, where the default path lives.
//!
//! The worker rewrites the file every [`WRITE_INTERVAL`] with the time its
//! loop last made progress (a receive completed, empty long polls included,
//! or a message finished), and once more when it stops. A worker that hangs
//! stops refreshing it, so the progress ages past `max_age_seconds` and the
//! check fails; the limit is written by the worker, which knows its long-poll
//! and visibility settings, so the check needs no configuration but the path.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::metrics::{Metrics, unix_ms};
/// How often the running worker rewrites the file.
pub const WRITE_INTERVAL: Duration = Duration::from_secs(5);
/// The file's format version.
pub const FORMAT_VERSION: u32 = 1;

/// What the worker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Receiving and processing.
    Running,
    /// Stopped cleanly.
    Stopped,
    /// Stopped by a fatal error (permissions, missing table or queue, credentials).
    Fatal,
}

/// The health file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// The worker's process id.
    pub pid: u32,
    /// What it is doing.
    pub state: State,
    /// Unix milliseconds of the last progress of its loop.
    pub last_progress_ms: u64,
    /// Unix milliseconds when the file was written.
    pub updated_at_ms: u64,
    /// How old `last_progress_ms` may be while healthy.
    pub max_age_seconds: u64,
    /// Why it stopped (the fatal error, with the fix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The verdict of a health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Healthy; the sentence says why.
    Healthy(String),
    /// Unhealthy; the sentence says why and what to look at.
    Unhealthy(String),
}

impl Health {
    /// Judges this record at `now`.
    pub fn verdict(&self, now: SystemTime) -> Verdict {
        let age_ms = unix_ms(now).saturating_sub(self.last_progress_ms);
        let age = age_ms / 1000;
        let limit = self.max_age_seconds;
        match self.state {
            State::Fatal => Verdict::Unhealthy(format!(
                "the worker (pid {}) stopped on a fatal error: {}",
                self.pid,
                self.reason.as_deref().unwrap_or("(no reason recorded)")
            )),
            State::Stopped => Verdict::Unhealthy(format!("the worker (pid {}) has stopped", self.pid)),
            State::Running if age_ms > limit.saturating_mul(1000) => Verdict::Unhealthy(format!(
                "the worker (pid {}) made no progress for {age} s (limit {limit} s): its loop is stuck; see its logs",
                self.pid
            )),
            State::Running => Verdict::Healthy(format!(
                "the worker (pid {}) is running; last progress {age} s ago (limit {limit} s)",
                self.pid
            )),
        }
    }
}

/// Reads and judges the health file at `path`.
pub fn check(path: &Path, now: SystemTime) -> Verdict {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Verdict::Unhealthy(format!(
                "no health file at {}: the worker has not started, or it writes elsewhere (WORKER_HEALTH_FILE must be the same for run and healthcheck)",
                path.display()
            ));
        }
        Err(e) => return Verdict::Unhealthy(format!("cannot read the health file {}: {e}", path.display())),
    };
    match serde_json::from_str::<Health>(&text) {
        Ok(health) if health.state == State::Running && !process_runs(health.pid) => Verdict::Unhealthy(format!(
            "the worker (pid {}) is no longer running (killed or crashed before it could record why); see its last logs",
            health.pid
        )),
        Ok(health) => health.verdict(now),
        Err(e) => Verdict::Unhealthy(format!("the health file {} is not a worker health record: {e}", path.display())),
    }
}

/// Whether process `pid` runs, seen from this pid namespace (the health
/// check runs in the worker's container): its `/proc` entry exists and it
/// is not a zombie. Without `/proc` to ask, it is taken to run, and the
/// progress age decides.
fn process_runs(pid: u32) -> bool {
    if !Path::new("/proc/self").exists() {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (name) S ...`: the state follows the last `)` (a name may hold one).
        Ok(stat) => stat.rsplit_once(')').is_none_or(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Writes `health` to `path` atomically (a temporary file renamed over it),
/// so the check never reads half a record.
pub fn write(path: &Path, health: &Health) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let text = serde_json::to_string(health).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Keeps the health file of the running worker up to date.
#[derive(Debug)]
pub struct Reporter {
    path: PathBuf,
    max_age_seconds: u64,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Reporter {
    /// Writes the first record now (failing if the path is not writable) and
    /// starts rewriting it every [`WRITE_INTERVAL`].
    /// The liveness it reports is `metrics`' last progress.
    pub fn start(path: PathBuf, max_age_seconds: u64, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        metrics.progress();
        Self::probe(&path, max_age_seconds)?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(refresh(path.clone(), max_age_seconds, Arc::clone(&metrics), stop.clone()));
        Ok(Self { path, max_age_seconds, metrics, stop, task })
    }

    /// Writes a first record (progress now), proving `path` is writable.
    pub fn probe(path: &Path, max_age_seconds: u64) -> std::io::Result<()> {
        write(path, &record(State::Running, max_age_seconds, now_ms(), None))
    }

    /// Stops refreshing and records the final state.
    pub async fn finish(self, fatal: Option<String>) {
        self.stop.cancel();
        let _ = self.task.await;
        let state = if fatal.is_some() { State::Fatal } else { State::Stopped };
        if let Err(e) = write(&self.path, &record(state, self.max_age_seconds, self.metrics.last_progress_ms(), fatal))
        {
            tracing::warn!(error = %e, path = %self.path.display(), "could not write the final health state");
        }
    }
}

/// Records a fatal stop that came before the loop (and its [`Reporter`])
/// started, e.g. `run`'s pre-flight refusal, so `healthcheck` reports it.
pub fn record_fatal(path: &Path, max_age_seconds: u64, cause: String) {
    if let Err(e) = write(path, &record(State::Fatal, max_age_seconds, now_ms(), Some(cause))) {
        tracing::warn!(error = %e, path = %path.display(), "could not write the final health state");
    }
}

async fn refresh(path: PathBuf, max_age_seconds: u64, metrics: Arc<Metrics>, stop: CancellationToken) {
    let mut warned = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(WRITE_INTERVAL) => {}
        }
        if let Err(e) = write(&path, &record(State::Running, max_age_seconds, metrics.last_progress_ms(), None))
            && !warned
        {
            // Not fatal by itself: the check will report the stale file.
            tracing::warn!(error = %e, path = %path.display(), "could not refresh the health file");
            warned = true;
        }
    }
}

fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

fn record(state: State, max_age_seconds: u64, last_progress_ms: u64, reason: Option<String>) -> Health {
    Health {
        version: FORMAT_VERSION,
        pid: std::process::id(),
        state,
        last_progress_ms,
        updated_at_ms: now_ms(),
        max_age_seconds,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(state: State, progress_age: Duration) -> (Health, SystemTime) {
        let now = SystemTime::now();
        let last = unix_ms(now - progress_age);
        let h = Health {
            version: FORMAT_VERSION,
            pid: 7,
            state,
            last_progress_ms: last,
            updated_at_ms: last,
            max_age_seconds: 90,
            reason: None,
        };
        (h, now)
    }

    #[test]
    fn fresh_progress_is_healthy_and_stale_progress_is_not() {
        let (h, now) = health(State::Running, Duration::from_secs(30));
        assert!(matches!(h.verdict(now), Verdict::Healthy(_)));
        let (h, now) = health(State::Running, Duration::from_secs(91));
        assert!(matches!(h.verdict(now), Verdict::Unhealthy(s) if s.contains("no progress for 91 s (limit 90 s)")));
    }

    #[test]
    fn fatal_and_stopped_are_unhealthy_whatever_the_age() {
        let (mut h, now) = health(State::Fatal, Duration::ZERO);
        h.reason = Some("AccessDeniedException on dynamodb:PutItem".into());
        assert!(matches!(h.verdict(now), Verdict::Unhealthy(s) if s.contains("AccessDeniedException")));
        let (h, now) = health(State::Stopped, Duration::ZERO);
        assert!(matches!(h.verdict(now), Verdict::Unhealthy(s) if s.contains("stopped")));
    }

    #[test]
    fn the_file_round_trips_and_a_missing_or_foreign_file_is_unhealthy() {
        let dir = std::env::temp_dir().join(format!("student-worker-health-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("health.json");
        let _ = std::fs::remove_file(&path);
        assert!(matches!(check(&path, SystemTime::now()), Verdict::Unhealthy(s) if s.contains("no health file")));
        let (mut h, now) = health(State::Running, Duration::from_secs(1));
        h.pid = std::process::id();
        write(&path, &h).expect("write");
        assert!(matches!(check(&path, now), Verdict::Healthy(_)));
        // A record of a process that no longer runs is unhealthy at once.
        h.pid = u32::MAX;
        write(&path, &h).expect("write");
        assert!(matches!(check(&path, now), Verdict::Unhealthy(s) if s.contains("no longer running")));
        std::fs::write(&path, "{}").expect("write");
        assert!(matches!(check(&path, now), Verdict::Unhealthy(s) if s.contains("not a worker health record")));
        let _ = std::fs::remove_dir_all(dir);
    }
}
