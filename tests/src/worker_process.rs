//! The `student-worker` binary as a child process for fault and chaos tests:
//! started with the environment ECS would give it but pointed at any endpoint
//! (usually a [`FaultProxy`](crate::proxy::FaultProxy) in front of moto),
//! stopped with SIGKILL or SIGTERM or run until the queue is empty, and its
//! JSON log lines gathered into a [`Ledger`] of per-message outcomes.
//!
//! Output goes to files, not pipes: a worker logging thousands of lines would
//! block on a full pipe nobody reads while it runs.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use serde_json::Value;

use crate::emulator::env_vars_for_endpoint;
use crate::world::{World, worker_binary};

/// SQS batch calls take at most 10 entries.
const SQS_MAX_BATCH: usize = 10;
/// A stopped worker that has not exited by then is a hung test, not a slow one.
const EXIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Outcomes after which the worker deletes the message (see `Outcome::is_done`).
pub const TERMINAL_OUTCOMES: [&str; 4] = ["applied", "duplicate", "stale", "invalid"];

/// Sends `bodies` to `queue_url` in batches of 10 and returns each message's
/// id with its body, in sending order (duplicated bodies get their own ids).
///
/// # Panics
/// If SQS refuses a call or an entry.
pub async fn publish(sqs: &aws_sdk_sqs::Client, queue_url: &str, bodies: &[String]) -> Vec<(String, String)> {
    let mut sent = Vec::with_capacity(bodies.len());
    for chunk in bodies.chunks(SQS_MAX_BATCH) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, body)| SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(body).build())
            .collect::<Result<Vec<_>, _>>()
            .expect("batch entries");
        let out = sqs
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("SendMessageBatch");
        assert!(out.failed.is_empty(), "entries refused: {:?}", out.failed);
        let mut ok: Vec<_> = out.successful.into_iter().map(|s| (s.id, s.message_id)).collect();
        ok.sort_by_key(|(id, _)| id.parse::<usize>().unwrap_or(usize::MAX));
        for ((_, message_id), body) in ok.into_iter().zip(chunk) {
            sent.push((message_id, body.clone()));
        }
    }
    sent
}

/// Sends one body, invisible for its first `delay_seconds` (SQS
/// `DelaySeconds`, 0–900), and returns its message id with the body.
///
/// # Panics
/// If SQS refuses it.
pub async fn publish_delayed(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    body: &str,
    delay_seconds: i32,
) -> (String, String) {
    let out = sqs
        .send_message()
        .queue_url(queue_url)
        .message_body(body)
        .delay_seconds(delay_seconds)
        .send()
        .await
        .expect("SendMessage");
    (out.message_id.expect("message id"), body.to_owned())
}

/// How a worker process was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGKILL: no drain, no flush; in-flight messages reappear after their visibility timeout.
    Kill,
    /// SIGTERM: drain within the grace period, release the rest, exit 0.
    Term,
    /// It exited by itself (`WORKER_EXIT_WHEN_EMPTY`, or an error).
    Exit,
}

/// A running worker binary.
#[derive(Debug)]
pub struct WorkerProcess {
    child: tokio::process::Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// A worker process that has ended, with its output.
#[derive(Debug)]
pub struct Finished {
    /// How it was stopped.
    pub stop: Stop,
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stdout (JSON log lines).
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl WorkerProcess {
    /// Starts `student-worker run` against `w`'s queue, table and DLQ with
    /// every AWS call sent to `endpoint`, plus `env` (which may override the
    /// defaults: 1 s long polls, 15 s visibility).
    ///
    /// # Panics
    /// If the binary cannot be built or started.
    #[must_use]
    pub fn spawn(w: &World, endpoint: &str, env: &[(&str, &str)]) -> WorkerProcess {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = std::env::temp_dir().join(format!("student-worker-run-{}-{n}", std::process::id()));
        let stdout = base.with_extension("out");
        let stderr = base.with_extension("err");
        let mut cmd = tokio::process::Command::new(worker_binary());
        cmd.env_clear()
            .envs(env_vars_for_endpoint(endpoint))
            .env("SQS_QUEUE_URL", &w.queue_url)
            .env("DYNAMODB_TABLE_NAME", &w.table)
            .env("SQS_DLQ_URL", &w.dlq_url)
            .env("SQS_WAIT_TIME_SECONDS", "1")
            .env("SQS_VISIBILITY_TIMEOUT_SECONDS", "15")
            .envs(env.iter().copied())
            .arg("run")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("create the worker's stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("create the worker's stderr file"))
            // A failing test must not leave workers behind.
            .kill_on_drop(true);
        let child = cmd.spawn().expect("start the worker binary");
        WorkerProcess { child, stdout, stderr }
    }

    /// The child's process id.
    ///
    /// # Panics
    /// If it has already been reaped.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the worker is running")
    }

    /// What it has written to stdout so far.
    #[must_use]
    pub fn stdout_so_far(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stdout).unwrap_or_default()).into_owned()
    }

    /// Waits until its stdout contains `text`.
    ///
    /// # Panics
    /// If it has not within [`EXIT_TIMEOUT`] (a hung test, not a slow one).
    pub async fn until_stdout_contains(&self, text: &str) {
        let started = std::time::Instant::now();
        while !self.stdout_so_far().contains(text) {
            assert!(started.elapsed() < EXIT_TIMEOUT, "the worker never wrote {text:?}:\n{}", self.stdout_so_far());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL, then collect the output.
    ///
    /// # Panics
    /// If the signal cannot be sent.
    pub async fn kill(mut self) -> Finished {
        // Sends SIGKILL on Unix; an error means it already exited, which
        // `finish` reports through the exit status.
        let _ = self.child.start_kill();
        self.finish(Stop::Kill).await
    }

    /// SIGTERM, wait for the drain, then collect the output.
    ///
    /// # Panics
    /// If `kill -TERM` fails or the worker does not exit in time.
    pub async fn terminate(self) -> Finished {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM failed");
        self.finish(Stop::Term).await
    }

    /// Waits (up to `timeout`) for it to exit by itself.
    ///
    /// # Panics
    /// If it is still running after `timeout`.
    pub async fn wait(mut self, timeout: Duration) -> Finished {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!("the worker did not exit within {timeout:?}; stdout in {}", self.stdout.display())
            })
            .expect("wait for the worker");
        self.collect(Stop::Exit, status)
    }

    async fn finish(mut self, stop: Stop) -> Finished {
        let status = tokio::time::timeout(EXIT_TIMEOUT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the worker did not exit within {EXIT_TIMEOUT:?} of {stop:?}"))
            .expect("wait for the worker");
        self.collect(stop, status)
    }

    fn collect(&self, stop: Stop, status: ExitStatus) -> Finished {
        // KEEP_WORKER_LOGS=1 keeps the files (in the temp dir) for a look.
        let keep = std::env::var_os("KEEP_WORKER_LOGS").is_some();
        let read = |path: &PathBuf| {
            let bytes = std::fs::read(path).unwrap_or_default();
            if keep {
                eprintln!("worker output kept: {}", path.display());
            } else {
                let _ = std::fs::remove_file(path);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        };
        Finished { stop, status, stdout: read(&self.stdout), stderr: read(&self.stderr) }
    }
}

impl Finished {
    /// The JSON log lines. A SIGKILL may cut the last line short; that one
    /// line is skipped, any other non-JSON line is a failure.
    ///
    /// # Panics
    /// On a line that is not JSON (other than a killed worker's last line).
    #[must_use]
    pub fn log_lines(&self) -> Vec<Value> {
        let lines: Vec<&str> = self.stdout.lines().collect();
        let last = lines.len().saturating_sub(1);
        lines
            .iter()
            .enumerate()
            .filter_map(|(i, line)| match serde_json::from_str(line) {
                Ok(value) => Some(value),
                Err(_) if self.stop == Stop::Kill && i == last => None,
                Err(e) => panic!("not a JSON log line ({e}): {line}"),
            })
            .collect()
    }

    /// Whether a panic shows in its output: Rust's panic message (`thread
    /// '…' panicked at …`), a task's `JoinError` (`task 7 panicked with …`),
    /// or the worker's line for a failed processing task. (The plain word
    /// would also match the `panicked: 0` of the run summary line.)
    #[must_use]
    pub fn panicked(&self) -> bool {
        const SIGNS: [&str; 3] = ["panicked at", " panicked with ", "a processing task failed"];
        SIGNS.iter().any(|sign| self.stdout.contains(sign) || self.stderr.contains(sign))
    }

    /// Whether it ended as its stop asks: killed by signal 9, or exit 0.
    #[must_use]
    pub fn ended_as_expected(&self) -> bool {
        match self.stop {
            Stop::Kill => self.status.signal() == Some(9),
            Stop::Term | Stop::Exit => self.status.success(),
        }
    }

    /// Log lines whose `message` contains `text`.
    #[must_use]
    pub fn lines_saying(&self, text: &str) -> usize {
        self.log_lines().iter().filter(|l| l["message"].as_str().is_some_and(|m| m.contains(text))).count()
    }
}

/// One outcome line of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeLine {
    /// `outcome`.
    pub outcome: String,
    /// `error_code`, for `invalid`.
    pub error_code: Option<String>,
}

/// Every outcome line of every worker run, by SQS message id.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    /// message id → its outcome lines, in log order.
    pub by_message: BTreeMap<String, Vec<OutcomeLine>>,
}

impl Ledger {
    /// Adds a run's outcome lines.
    pub fn add(&mut self, run: &Finished) {
        for line in run.log_lines() {
            let (Some(id), Some(outcome)) = (line["message_id"].as_str(), line["outcome"].as_str()) else { continue };
            self.by_message.entry(id.to_owned()).or_default().push(OutcomeLine {
                outcome: outcome.to_owned(),
                error_code: line["error_code"].as_str().map(str::to_owned),
            });
        }
    }

    /// The terminal outcome lines of `message_id` (empty: never finished).
    #[must_use]
    pub fn terminal(&self, message_id: &str) -> Vec<&OutcomeLine> {
        self.by_message
            .get(message_id)
            .map(|lines| lines.iter().filter(|l| TERMINAL_OUTCOMES.contains(&l.outcome.as_str())).collect())
            .unwrap_or_default()
    }

    /// Checks that every sent message finished, and finished right: each
    /// poison body (with the `ErrorCode` it must get) only ever as `invalid`
    /// with that code, every other message never as `invalid`. Returns how
    /// the messages ended.
    ///
    /// # Panics
    /// Naming the first message that never finished or finished wrongly.
    #[must_use]
    pub fn audit(&self, sent: &[(String, String)], poison: &[(String, &str)]) -> Audit {
        let poison: BTreeMap<&str, &str> = poison.iter().map(|(body, code)| (body.as_str(), *code)).collect();
        let mut audit = Audit { messages: sent.len(), ..Audit::default() };
        for (id, body) in sent {
            let lines = self.terminal(id);
            assert!(!lines.is_empty(), "message {id} never finished (no applied/duplicate/stale/invalid line): {body}");
            match poison.get(body.as_str()) {
                Some(code) => {
                    for line in &lines {
                        assert_eq!(line.outcome, "invalid", "poison message {id} ended {line:?}: {body}");
                        assert_eq!(line.error_code.as_deref(), Some(*code), "poison message {id}: {body}");
                    }
                    audit.dead_lettered += 1;
                }
                None => {
                    assert!(
                        lines.iter().all(|l| l.outcome != "invalid"),
                        "valid message {id} dead-lettered: {lines:?}"
                    );
                    if lines.iter().any(|l| l.outcome == "applied") {
                        audit.applied += 1;
                    } else {
                        audit.superseded += 1;
                    }
                }
            }
        }
        audit
    }

    /// How many lines had each outcome.
    #[must_use]
    pub fn outcome_counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for line in self.by_message.values().flatten() {
            *counts.entry(line.outcome.clone()).or_default() += 1;
        }
        counts
    }
}

/// How the sent messages ended, from [`Ledger::audit`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Audit {
    /// Messages sent.
    pub messages: usize,
    /// Messages whose event was written by one of their deliveries.
    pub applied: usize,
    /// Messages that only ever found their event (or a newer one) stored: duplicates and stale.
    pub superseded: usize,
    /// Poison messages dead-lettered with their code.
    pub dead_lettered: usize,
}

impl Audit {
    /// Messages not accounted for (0 when every one is applied, superseded or dead-lettered).
    #[must_use]
    pub fn lost(&self) -> usize {
        self.messages - self.applied - self.superseded - self.dead_lettered
    }
}
