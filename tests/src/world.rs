//! A test world: a fresh emulator with the worker's table, queue and DLQ
//! (made by the worker's own `setup`), clients to inspect them, and helpers
//! to run the worker in-process or as the real binary.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry};
use student_worker::aws::Clients;
use student_worker::commands::setup::{SetupArgs, ensure};
use student_worker::config::RunConfig;
use student_worker::runtime::ecs::{RunError, RunSummary, run};
use tokio_util::sync::CancellationToken;

use crate::emulator::{Emulator, sdk_config_with_endpoint, workspace_root};

/// One item as stored: attribute name → value.
pub type Item = HashMap<String, AttributeValue>;

/// A dead letter as the operator sees it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The original body.
    pub body: String,
    /// Message attributes as strings (`ErrorCode`, `ErrorMessage`, ...).
    pub attributes: BTreeMap<String, String>,
}

/// An emulator with the worker's resources.
pub struct World {
    /// The emulator (dropped last).
    pub emulator: Emulator,
    /// SDK config pointing at it.
    pub sdk: SdkConfig,
    /// SQS client.
    pub sqs: aws_sdk_sqs::Client,
    /// DynamoDB client.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// Source queue URL.
    pub queue_url: String,
    /// DLQ URL.
    pub dlq_url: String,
    /// Table name.
    pub table: String,
}

impl World {
    /// Table `Students`, queue `students` with maxReceiveCount 5.
    pub async fn new() -> World {
        Self::with_max_receive_count(5).await
    }

    /// The same with another maxReceiveCount.
    pub async fn with_max_receive_count(max_receive_count: u32) -> World {
        Self::with_queue("students", max_receive_count).await
    }

    /// FIFO queues `students.fifo` and `students-dlq.fifo`, maxReceiveCount 5.
    pub async fn fifo() -> World {
        Self::with_queue("students.fifo", 5).await
    }

    async fn with_queue(queue_name: &str, max_receive_count: u32) -> World {
        let emulator = Emulator::start();
        let sdk = emulator.sdk_config().await;
        let args = SetupArgs {
            table_name: "Students".into(),
            queue_name: queue_name.into(),
            dlq_name: None,
            max_receive_count,
            visibility_timeout_seconds: 60,
        };
        let out = ensure(&sdk, &args).await.expect("setup against the emulator");
        World {
            sqs: aws_sdk_sqs::Client::new(&sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            sdk,
            emulator,
            queue_url: out.queue_url,
            dlq_url: out.dlq_url,
            table: out.table_name,
        }
    }

    /// A run configuration for tests: DLQ on, 1 s long polls, exit when empty.
    pub fn config(&self) -> RunConfig {
        let mut c = RunConfig::new(&self.queue_url, &self.table);
        c.dlq_url = Some(self.dlq_url.clone());
        c.wait_time_seconds = 1;
        c.visibility_timeout_seconds = 30;
        c.exit_when_empty = true;
        c
    }

    /// Sends raw bodies to the source queue, 10 per batch.
    pub async fn send(&self, bodies: &[String]) {
        for (n, chunk) in bodies.chunks(10).enumerate() {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| SendMessageBatchRequestEntry::builder().id(format!("m{n}-{i}")).message_body(b).build())
                .collect::<Result<Vec<_>, _>>()
                .expect("entries");
            let out = self
                .sqs
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("send batch");
            assert!(out.failed.is_empty(), "send failed: {:?}", out.failed);
        }
    }

    /// Sends `(MessageGroupId, body)` pairs to a FIFO source queue in this
    /// order, 10 per batch, each with its own deduplication id.
    pub async fn send_grouped(&self, messages: &[(&str, String)]) {
        static SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        for chunk in messages.chunks(10) {
            let entries = chunk
                .iter()
                .map(|(group, body)| {
                    let n = SENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    SendMessageBatchRequestEntry::builder()
                        .id(format!("m{n}"))
                        .message_body(body)
                        .message_group_id(*group)
                        .message_deduplication_id(format!("d{n}"))
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .expect("entries");
            let out = self
                .sqs
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("send batch");
            assert!(out.failed.is_empty(), "send failed: {:?}", out.failed);
        }
    }

    /// Runs the worker in-process until it exits.
    pub async fn run(&self, config: RunConfig) -> Result<RunSummary, RunError> {
        let clients = Clients::for_worker(&self.sdk, &config);
        run(config, clients, CancellationToken::new()).await
    }

    /// Runs the worker in-process with its clients sent to `endpoint` (a proxy).
    pub async fn run_via(&self, endpoint: &str, config: RunConfig) -> Result<RunSummary, RunError> {
        let sdk = sdk_config_with_endpoint(endpoint).await;
        let clients = Clients::for_worker(&sdk, &config);
        run(config, clients, CancellationToken::new()).await
    }

    /// Runs the worker in-process (through `endpoint`, e.g. a proxy) and
    /// stops it as SIGTERM would after `stop_after`.
    pub async fn run_stopped_after(
        &self,
        endpoint: &str,
        config: RunConfig,
        stop_after: std::time::Duration,
    ) -> Result<RunSummary, RunError> {
        let sdk = sdk_config_with_endpoint(endpoint).await;
        let clients = Clients::for_worker(&sdk, &config);
        let shutdown = CancellationToken::new();
        let stopper = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(stop_after).await;
            stopper.cancel();
        });
        run(config, clients, shutdown).await
    }

    /// Every item, by `StudentID`.
    pub async fn table(&self) -> BTreeMap<String, Item> {
        let items: Vec<Item> = self
            .dynamodb
            .scan()
            .table_name(&self.table)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<_, _>>()
            .await
            .expect("scan");
        items
            .into_iter()
            .map(|item| {
                let id = item.get("StudentID").and_then(|v| v.as_s().ok()).cloned().expect("StudentID S");
                (id, item)
            })
            .collect()
    }

    /// Every message on the DLQ (received, not deleted).
    pub async fn dead_letters(&self) -> Vec<DeadLetter> {
        drain_queue(&self.sqs, &self.dlq_url).await
    }

    /// Every message still on the source queue (received, not deleted).
    pub async fn leftovers(&self) -> Vec<DeadLetter> {
        drain_queue(&self.sqs, &self.queue_url).await
    }

    /// The worker binary with only the environment ECS would give the task,
    /// pointed at this world's emulator, queue, table and DLQ; the caller
    /// adds the subcommand and any setting of its own.
    pub fn task_command(&self) -> Command {
        let mut cmd = Command::new(worker_binary());
        cmd.env_clear()
            .envs(self.emulator.env_vars())
            .env("SQS_QUEUE_URL", &self.queue_url)
            .env("DYNAMODB_TABLE_NAME", &self.table)
            .env("SQS_DLQ_URL", &self.dlq_url);
        cmd
    }

    /// (visible, in flight) messages on the source queue.
    pub async fn queue_counts(&self) -> (u64, u64) {
        queue_counts(&self.sqs, &self.queue_url).await
    }
}

/// Receives until empty, hiding each message for 5 minutes so none repeats.
async fn drain_queue(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<DeadLetter> {
    let mut out = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(300)
            .wait_time_seconds(0)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .expect("receive");
        let messages = got.messages.unwrap_or_default();
        if messages.is_empty() {
            return out;
        }
        for m in messages {
            let attributes = m
                .message_attributes
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.string_value.unwrap_or_default()))
                .collect();
            out.push(DeadLetter { body: m.body.unwrap_or_default(), attributes });
        }
    }
}

/// Variables cargo sets for a test process about its own crate (prefixes).
const TEST_CRATE_ENV: [&str; 6] =
    ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_CRATE_", "CARGO_BIN_", "CARGO_PRIMARY_", "CARGO_TARGET_TMPDIR"];

/// Removes what cargo told this test process about its own crate from a
/// nested cargo's environment: ring's build script watches some of those
/// variables, so passing them on would rebuild the SDK there and again at
/// the next `cargo test`.
pub fn strip_test_crate_env(cargo: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if TEST_CRATE_ENV.iter().any(|prefix| name.to_string_lossy().starts_with(prefix)) {
            cargo.env_remove(name);
        }
    }
}

/// The `student-worker` binary, built once per test process with the same
/// cargo (tests in another package cannot use `CARGO_BIN_EXE_*`).
pub fn worker_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = Command::new(cargo);
            build.current_dir(workspace_root());
            build.args(["build", "--quiet", "--locked", "-p", "student-worker", "--bin", "student-worker"]);
            strip_test_crate_env(&mut build);
            let status = build.status().expect("run cargo build for the worker binary");
            assert!(status.success(), "building the student-worker binary failed");
            let target =
                std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from);
            let binary = target.join("debug").join("student-worker");
            assert!(binary.exists(), "no binary at {}", binary.display());
            binary
        })
        .clone()
}

/// (visible, in flight) messages on the queue at `url`.
pub async fn queue_counts(sqs: &aws_sdk_sqs::Client, url: &str) -> (u64, u64) {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("queue attributes");
    let attrs = out.attributes.unwrap_or_default();
    let n = |k: &QueueAttributeName| attrs.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
    (n(&QueueAttributeName::ApproximateNumberOfMessages), n(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
}
