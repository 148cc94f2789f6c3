//! Keeps the benchmark endpoint honest: the real worker library, with the
//! real SDK clients over HTTP, drains a small generated queue through it:
//! every message written once and deleted, nothing dead-lettered or left,
//! and the endpoint's counts agree with the worker's summary. No timing.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use bench_endpoint::{Endpoint, Settings};
use student_worker::aws::Clients;
use student_worker::config::RunConfig;
use tokio_util::sync::CancellationToken;

const MESSAGES: u64 = 50;

async fn run_worker(endpoint: &Endpoint) -> student_worker::runtime::ecs::RunSummary {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("ap-northeast-2"))
        .credentials_provider(Credentials::new("test", "test", None, None, "bench-test"))
        .endpoint_url(endpoint.url())
        .load()
        .await;
    let mut config = RunConfig::new(format!("{}/123456789012/bench", endpoint.url()), "Students");
    config.exit_when_empty = true;
    config.wait_time_seconds = 1;
    let clients = Clients::for_worker(&sdk, &config);
    tokio::time::timeout(
        Duration::from_secs(60),
        student_worker::runtime::ecs::run(config, clients, CancellationToken::new()),
    )
    .await
    .expect("the worker drains 50 messages within a minute")
    .expect("the run succeeds")
}

async fn start(settings: Settings) -> Endpoint {
    Endpoint::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), settings).await.expect("bind 127.0.0.1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_drains_the_endpoint_writing_and_deleting_each_message_once() {
    // 20 students: versions 1..=3, so patches (UpdateItem) appear too.
    let endpoint = start(Settings { messages: MESSAGES, students: 20, ..Settings::default() }).await;
    let summary = run_worker(&endpoint).await;
    assert_eq!(summary.received, MESSAGES);
    assert_eq!(summary.outcomes["applied"], MESSAGES, "{summary:?}");
    assert_eq!(summary.acks.deleted, MESSAGES);

    let stats = endpoint.stats();
    let calls = |op: &str| stats["calls"][op].as_u64().unwrap_or(0);
    assert_eq!(stats["finished"], true, "{stats}");
    assert_eq!(stats["deleted"], MESSAGES);
    assert_eq!(stats["deliveries"], MESSAGES, "nothing redelivered");
    assert_eq!(calls("PutItem") + calls("UpdateItem"), MESSAGES, "one write per message: {stats}");
    assert!(calls("UpdateItem") > 0, "patches reach UpdateItem: {stats}");
    assert!(calls("DeleteMessageBatch") >= MESSAGES / 10, "{stats}");
    assert!(calls("GetQueueAttributes") >= 1, "exit-when-empty asked for the counts: {stats}");
    let connections = stats["connections"].as_u64().unwrap_or(0);
    assert!((1..MESSAGES).contains(&connections), "the SDK reuses its connections: {stats}");
    assert_eq!(stats["tls_handshakes"], 0, "plain HTTP: {stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_writes_are_retried_until_every_message_is_applied() {
    let endpoint = start(Settings { messages: MESSAGES, throttle_rate: 0.2, ..Settings::default() }).await;
    let summary = run_worker(&endpoint).await;
    assert_eq!(summary.outcomes["applied"], MESSAGES, "{summary:?}");

    let stats = endpoint.stats();
    let throttled = stats["throttled"].as_u64().unwrap_or(0);
    let writes = stats["calls"]["PutItem"].as_u64().unwrap_or(0) + stats["calls"]["UpdateItem"].as_u64().unwrap_or(0);
    assert!(throttled > 0, "some writes were throttled: {stats}");
    assert_eq!(writes, MESSAGES + throttled, "each throttled write was tried again: {stats}");
    assert_eq!(stats["deleted"], MESSAGES);
}
