//! Integration tests of the test support against a real moto: the
//! [`FaultProxy`] (the SDK sees the injected errors with the intended codes,
//! the after-apply faults really apply the call, dropped connections answer
//! nothing, long polls pass through, the counters and shares add up, a
//! partial batch failure fails just the first entry of an SQS batch) and the
//! [`Emulator`]'s environment for child processes. Then each kind of fault
//! through the proxy into the worker (in-process for writes, the binary for
//! SQS calls, whose log shows what reached it): nothing is lost.

use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use serde_json::json;
use student_worker::aws::{Action, AwsError};
use student_worker_tests::emulator::{Emulator, python, sdk_config_with_endpoint};
use student_worker_tests::history::scenario;
use student_worker_tests::model::{assert_dead_letters, assert_tables_equal, expected_table, without_clock};
use student_worker_tests::proxy::{ANY_OPERATION, Fault, FaultProxy, FaultRule};
use student_worker_tests::worker_process::{
    Finished, Ledger, TERMINAL_OUTCOMES, WorkerProcess, publish, publish_delayed,
};
use student_worker_tests::world::{World, queue_counts, worker_binary};

const TABLE: &str = "Students";

/// A DynamoDB client without retries, so every injected fault surfaces.
fn dynamodb_no_retry(sdk: &SdkConfig) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::config::Builder::from(sdk).retry_config(RetryConfig::disabled()).build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// An SQS client without retries.
fn sqs_no_retry(sdk: &SdkConfig) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::config::Builder::from(sdk).retry_config(RetryConfig::disabled()).build();
    aws_sdk_sqs::Client::from_conf(config)
}

async fn create_table(client: &aws_sdk_dynamodb::Client) {
    client
        .create_table()
        .table_name(TABLE)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("StudentID")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute definition"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("StudentID")
                .key_type(KeyType::Hash)
                .build()
                .expect("key schema"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create the Students table in moto");
}

async fn put(
    client: &aws_sdk_dynamodb::Client,
    id: &str,
) -> Result<(), aws_sdk_dynamodb::error::SdkError<aws_sdk_dynamodb::operation::put_item::PutItemError>> {
    client
        .put_item()
        .table_name(TABLE)
        .item("StudentID", AttributeValue::S(id.to_owned()))
        .item("Name", AttributeValue::S(format!("student {id}")))
        .send()
        .await
        .map(|_| ())
}

async fn stored(client: &aws_sdk_dynamodb::Client, id: &str) -> bool {
    client
        .get_item()
        .table_name(TABLE)
        .key("StudentID", AttributeValue::S(id.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem straight to moto")
        .item
        .is_some()
}

/// Emulator, proxy in front of it, a direct client and a proxied no-retry
/// client, with the table created.
async fn setup() -> (Emulator, FaultProxy, aws_sdk_dynamodb::Client, aws_sdk_dynamodb::Client) {
    let emulator = Emulator::start();
    let direct = aws_sdk_dynamodb::Client::new(&emulator.sdk_config().await);
    create_table(&direct).await;
    let proxy = FaultProxy::start(&emulator.endpoint).await;
    let proxied = dynamodb_no_retry(&sdk_config_with_endpoint(&proxy.endpoint).await);
    (emulator, proxy, direct, proxied)
}

#[tokio::test]
async fn throttle_twice_then_put_succeeds() {
    let (_emulator, proxy, direct, client) = setup().await;
    proxy.inject(FaultRule::new("PutItem", Fault::Throttle).times(2));

    for attempt in 1..=2 {
        let err = put(&client, "S1").await.expect_err("throttled PutItem");
        assert_eq!(err.code(), Some("ProvisionedThroughputExceededException"), "attempt {attempt}: {err:?}");
        let service_err = err.into_service_error();
        assert!(service_err.is_provisioned_throughput_exceeded_exception(), "modeled error expected: {service_err:?}");
    }
    assert!(!stored(&direct, "S1").await, "a throttled put must not write");

    put(&client, "S1").await.expect("third PutItem passes through");
    assert!(stored(&direct, "S1").await);
    assert_eq!(proxy.calls("PutItem"), 3);
    assert_eq!(proxy.faults_injected("PutItem"), 2);
    assert_eq!(proxy.faults_injected(ANY_OPERATION), 2);
}

#[tokio::test]
async fn internal_error_after_apply_stores_the_item() {
    let (_emulator, proxy, direct, client) = setup().await;
    proxy.inject(FaultRule::new("PutItem", Fault::InternalErrorAfterApply).times(1));

    let err = put(&client, "S2").await.expect_err("500 after apply");
    assert_eq!(err.code(), Some("InternalServerError"), "{err:?}");
    let status = err.raw_response().map(|r| r.status().as_u16());
    assert_eq!(status, Some(500));
    assert!(err.into_service_error().is_internal_server_error(), "modeled InternalServerError expected");
    assert!(stored(&direct, "S2").await, "the write reached moto");
    assert_eq!(proxy.calls("PutItem"), 1);
    assert_eq!(proxy.faults_injected("PutItem"), 1);
}

#[tokio::test]
async fn other_faults_have_the_intended_codes() {
    let (_emulator, proxy, direct, client) = setup().await;
    let cases = [
        (Fault::ThrottlingException, "ThrottlingException", 400),
        (Fault::AccessDenied, "AccessDeniedException", 400),
        (Fault::ServiceUnavailable, "ServiceUnavailable", 503),
    ];
    for (fault, code, status) in cases {
        proxy.clear();
        proxy.inject(FaultRule::new("PutItem", fault.clone()));
        let err = put(&client, "S3").await.expect_err("faulted PutItem");
        assert_eq!(err.code(), Some(code), "{fault:?}: {err:?}");
        assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(status), "{fault:?}");
    }
    assert!(!stored(&direct, "S3").await);
    proxy.clear();
    put(&client, "S3").await.expect("no rules left");
    assert!(stored(&direct, "S3").await);
    assert_eq!(proxy.calls("PutItem"), 4);
    assert_eq!(proxy.faults_injected("PutItem"), 3);
}

#[tokio::test]
async fn rules_match_only_their_operation_and_latency_forwards() {
    let (_emulator, proxy, _direct, client) = setup().await;
    proxy.inject(FaultRule::new("UpdateItem", Fault::Throttle));
    proxy.inject(FaultRule::new("GetItem", Fault::Latency(Duration::from_millis(300))));

    put(&client, "S4").await.expect("PutItem is not faulted");
    let started = Instant::now();
    let item = client
        .get_item()
        .table_name(TABLE)
        .key("StudentID", AttributeValue::S("S4".to_owned()))
        .send()
        .await
        .expect("delayed GetItem still succeeds")
        .item;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(item.is_some());

    let err = client
        .update_item()
        .table_name(TABLE)
        .key("StudentID", AttributeValue::S("S4".to_owned()))
        .update_expression("SET #n = :n")
        .expression_attribute_names("#n", "Name")
        .expression_attribute_values(":n", AttributeValue::S("x".to_owned()))
        .send()
        .await
        .expect_err("UpdateItem throttled");
    assert_eq!(err.code(), Some("ProvisionedThroughputExceededException"));

    assert_eq!(proxy.calls("PutItem"), 1);
    assert_eq!(proxy.calls("GetItem"), 1);
    assert_eq!(proxy.calls("UpdateItem"), 1);
    assert_eq!(proxy.faults_injected("PutItem"), 0);
    assert_eq!(proxy.faults_injected("GetItem"), 1);
    assert_eq!(proxy.faults_injected("UpdateItem"), 1);
    assert_eq!(proxy.calls(ANY_OPERATION), 3);
}

#[tokio::test]
async fn rate_is_seeded_and_partial() {
    let (_emulator, proxy, _direct, client) = setup().await;
    proxy.inject(FaultRule::new("PutItem", Fault::Throttle).rate(0.5));
    let mut failed = 0u64;
    for i in 0..40 {
        if put(&client, &format!("R{i}")).await.is_err() {
            failed += 1;
        }
    }
    assert_eq!(proxy.faults_injected("PutItem"), failed);
    assert!((5..=35).contains(&failed), "rate 0.5 over 40 calls injected {failed}");
}

#[tokio::test]
async fn sdk_retries_through_throttles_by_default() {
    let (_emulator, proxy, direct, _client) = setup().await;
    let emulator_sdk = sdk_config_with_endpoint(&proxy.endpoint).await;
    let retrying = aws_sdk_dynamodb::Client::new(&emulator_sdk);
    proxy.inject(FaultRule::new("PutItem", Fault::Throttle).times(2));
    put(&retrying, "S5").await.expect("standard retry mode makes 3 attempts");
    assert!(stored(&direct, "S5").await);
    assert_eq!(proxy.calls("PutItem"), 3);
}

#[tokio::test]
async fn sqs_faults_use_query_compatible_codes() {
    let emulator = Emulator::start();
    let proxy = FaultProxy::start(&emulator.endpoint).await;
    let sqs = sqs_no_retry(&sdk_config_with_endpoint(&proxy.endpoint).await);
    let queue_url = sqs
        .create_queue()
        .queue_name("jobs")
        .send()
        .await
        .expect("CreateQueue through the proxy")
        .queue_url
        .expect("queue url");
    sqs.send_message().queue_url(&queue_url).message_body("hello").send().await.expect("SendMessage through the proxy");

    let cases = [
        (Fault::ThrottlingException, "ThrottlingException", 400),
        (Fault::AccessDenied, "AccessDenied", 403),
        (Fault::ServiceUnavailable, "ServiceUnavailable", 503),
    ];
    for (fault, code, status) in cases {
        proxy.clear();
        proxy.inject(FaultRule::new("ReceiveMessage", fault.clone()));
        let err = sqs.receive_message().queue_url(&queue_url).send().await.expect_err("faulted ReceiveMessage");
        assert_eq!(aws_sdk_sqs::error::ProvideErrorMetadata::code(&err), Some(code), "{fault:?}: {err:?}");
        assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(status), "{fault:?}");
    }

    // After apply: the message is received (and becomes invisible) but the
    // client only sees a 500.
    proxy.clear();
    proxy.inject(FaultRule::new("ReceiveMessage", Fault::InternalErrorAfterApply).times(1));
    let err =
        sqs.receive_message().queue_url(&queue_url).visibility_timeout(30).send().await.expect_err("500 after apply");
    assert_eq!(aws_sdk_sqs::error::ProvideErrorMetadata::code(&err), Some("InternalError"));
    let again = sqs.receive_message().queue_url(&queue_url).send().await.expect("plain ReceiveMessage");
    assert!(again.messages.unwrap_or_default().is_empty(), "the lost receive made the message invisible");
    assert_eq!(proxy.calls("ReceiveMessage"), 5);
    assert_eq!(proxy.faults_injected("ReceiveMessage"), 4);
}

#[tokio::test]
async fn long_poll_through_the_proxy_wakes_on_send() {
    let emulator = Emulator::start();
    let proxy = FaultProxy::start(&emulator.endpoint).await;
    let proxied = sqs_no_retry(&sdk_config_with_endpoint(&proxy.endpoint).await);
    let direct = aws_sdk_sqs::Client::new(&emulator.sdk_config().await);
    let queue_url =
        direct.create_queue().queue_name("poll").send().await.expect("CreateQueue").queue_url.expect("queue url");

    let started = Instant::now();
    let receive = {
        let proxied = proxied.clone();
        let queue_url = queue_url.clone();
        tokio::spawn(async move { proxied.receive_message().queue_url(queue_url).wait_time_seconds(10).send().await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    direct.send_message().queue_url(&queue_url).message_body("wake up").send().await.expect("SendMessage");
    let output = receive.await.expect("receive task").expect("long-polled ReceiveMessage");
    let messages = output.messages.unwrap_or_default();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body(), Some("wake up"));
    assert!(started.elapsed() < Duration::from_secs(8), "woke on send, not at the wait timeout");
    assert_eq!(proxy.calls("ReceiveMessage"), 1);
}

#[test]
fn env_vars_let_boto3_reach_the_emulator() {
    let emulator = Emulator::start();
    let script = r#"
import boto3
sqs = boto3.client("sqs")
url = sqs.create_queue(QueueName="from-python")["QueueUrl"]
ddb = boto3.client("dynamodb")
print(sqs.meta.region_name, url, ddb.list_tables()["TableNames"])
"#;
    let output = std::process::Command::new(python())
        .args(["-c", script])
        .env_clear()
        .envs(emulator.env_vars())
        .output()
        .expect("run the venv python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "python failed: {}{}", stdout, String::from_utf8_lossy(&output.stderr));
    let expected = format!("ap-northeast-2 {}/123456789012/from-python []", emulator.endpoint);
    assert_eq!(stdout.trim(), expected);
}

/// The worker's classification of an SDK error (what it would do with it).
fn worker_action<E, R>(err: &aws_sdk_dynamodb::error::SdkError<E, R>) -> Action
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    AwsError::from_sdk(err, "test:Call", "test resource", "ap-northeast-2").action()
}

#[tokio::test]
async fn dropped_connections_answer_nothing_and_after_forward_the_write_happened() {
    let (_emulator, proxy, direct, client) = setup().await;
    proxy.inject(FaultRule::new("PutItem", Fault::DropBeforeForward).times(1));
    let err = put(&client, "D1").await.expect_err("dropped before forwarding");
    assert!(err.raw_response().is_none() && err.code().is_none(), "no answer at all: {err:?}");
    assert_eq!(worker_action(&err), Action::Retry, "{err:?}");
    assert!(!stored(&direct, "D1").await, "never forwarded");

    proxy.inject(FaultRule::new("PutItem", Fault::DropAfterForward).times(1));
    let err = put(&client, "D2").await.expect_err("dropped after forwarding");
    assert!(err.raw_response().is_none() && err.code().is_none(), "no answer at all: {err:?}");
    assert_eq!(worker_action(&err), Action::Retry, "{err:?}");
    assert!(stored(&direct, "D2").await, "the write reached moto although the client saw a failure");

    put(&client, "D3").await.expect("the next call gets a fresh connection");
    assert_eq!(proxy.faults_of("PutItem", "DropBeforeForward"), 1);
    assert_eq!(proxy.faults_of("PutItem", "DropAfterForward"), 1);
    assert_eq!(proxy.faults_of(ANY_OPERATION, "DropAfterForward"), 1);
    assert_eq!(proxy.calls("PutItem"), 3);
}

#[tokio::test]
async fn sqs_over_limit_and_internal_errors_on_receive_delete_and_visibility() {
    let emulator = Emulator::start();
    let proxy = FaultProxy::start(&emulator.endpoint).await;
    let sqs = sqs_no_retry(&sdk_config_with_endpoint(&proxy.endpoint).await);
    let queue_url =
        sqs.create_queue().queue_name("jobs").send().await.expect("CreateQueue").queue_url.expect("queue url");
    sqs.send_message().queue_url(&queue_url).message_body("hello").send().await.expect("SendMessage");

    proxy.inject(FaultRule::new("ReceiveMessage", Fault::OverLimit).times(1));
    let err = sqs.receive_message().queue_url(&queue_url).send().await.expect_err("OverLimit");
    assert_eq!(aws_sdk_sqs::error::ProvideErrorMetadata::code(&err), Some("OverLimit"), "{err:?}");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
    assert_eq!(AwsError::from_sdk(&err, "sqs:ReceiveMessage", "q", "r").action(), Action::Retry);
    assert!(err.into_service_error().is_over_limit(), "the modeled OverLimit error");

    // Received with visibility 0, so it stays receivable whatever happens to the delete.
    let received = sqs.receive_message().queue_url(&queue_url).visibility_timeout(0).send().await.expect("receive");
    let receipt = received.messages.unwrap_or_default()[0].receipt_handle.clone().expect("receipt");
    let delete_entry = aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
        .id("0")
        .receipt_handle(&receipt)
        .build()
        .expect("entry");
    let visibility_entry = aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry::builder()
        .id("0")
        .receipt_handle(&receipt)
        .visibility_timeout(0)
        .build()
        .expect("entry");

    proxy.inject(FaultRule::new("ChangeMessageVisibilityBatch", Fault::OverLimit).times(1));
    proxy.inject(FaultRule::new("ChangeMessageVisibilityBatch", Fault::InternalError).times(1));
    for (code, status) in [("OverLimit", 403), ("InternalError", 500)] {
        let err = sqs
            .change_message_visibility_batch()
            .queue_url(&queue_url)
            .entries(visibility_entry.clone())
            .send()
            .await
            .expect_err("faulted ChangeMessageVisibilityBatch");
        assert_eq!(aws_sdk_sqs::error::ProvideErrorMetadata::code(&err), Some(code), "{err:?}");
        assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(status));
        assert_eq!(AwsError::from_sdk(&err, "sqs:ChangeMessageVisibilityBatch", "q", "r").action(), Action::Retry);
    }

    proxy.inject(FaultRule::new("DeleteMessageBatch", Fault::InternalError).times(1));
    let err = sqs
        .delete_message_batch()
        .queue_url(&queue_url)
        .entries(delete_entry.clone())
        .send()
        .await
        .expect_err("500 on DeleteMessageBatch");
    assert_eq!(aws_sdk_sqs::error::ProvideErrorMetadata::code(&err), Some("InternalError"), "{err:?}");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(500));
    let again = sqs.receive_message().queue_url(&queue_url).send().await.expect("receive");
    assert_eq!(again.messages.unwrap_or_default().len(), 1, "an InternalError (not after apply) deleted nothing");
    assert_eq!(proxy.faults_of("ReceiveMessage", "OverLimit"), 1);
    assert_eq!(proxy.faults_of("ChangeMessageVisibilityBatch", "OverLimit"), 1);
    assert_eq!(proxy.faults_of("ChangeMessageVisibilityBatch", "InternalError"), 1);
    assert_eq!(proxy.faults_of("DeleteMessageBatch", "InternalError"), 1);
    assert_eq!(proxy.faults_injected(ANY_OPERATION), 4);
}

#[tokio::test]
async fn inject_mix_gives_each_fault_its_overall_share() {
    let (_emulator, proxy, _direct, client) = setup().await;
    proxy.inject_mix(
        "ListTables",
        &[(Fault::Throttle, 0.2), (Fault::InternalError, 0.1), (Fault::ServiceUnavailable, 0.1)],
    );
    let calls: u32 = 400;
    for _ in 0..calls {
        let _ = client.list_tables().send().await;
    }
    let share = |fault: &str| proxy.faults_of("ListTables", fault) as f64 / f64::from(calls);
    // Seeded, so the same every run; the bounds only say "about right".
    assert!((0.14..=0.26).contains(&share("Throttle")), "Throttle {}", share("Throttle"));
    assert!((0.05..=0.15).contains(&share("InternalError")), "InternalError {}", share("InternalError"));
    assert!((0.05..=0.15).contains(&share("ServiceUnavailable")), "ServiceUnavailable {}", share("ServiceUnavailable"));
    assert_eq!(proxy.calls("ListTables"), u64::from(calls));
}

/// Every configured (operation, fault) was injected at least once.
fn assert_each_fault_injected(proxy: &FaultProxy, expected: &[(&str, Fault)]) {
    for (operation, fault) in expected {
        assert!(
            proxy.faults_of(operation, fault.name()) > 0,
            "{fault:?} never hit {operation}: {:?}",
            proxy.fault_counts()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_loses_nothing_to_dropped_connections_slow_answers_and_5xx_on_writes() {
    let w = World::with_max_receive_count(50).await;
    let proxy = FaultProxy::start(&w.emulator.endpoint).await;
    let mix = [
        (Fault::DropBeforeForward, 0.15),
        (Fault::DropAfterForward, 0.15),
        (Fault::InternalError, 0.05),
        (Fault::ServiceUnavailable, 0.05),
    ];
    for operation in ["PutItem", "UpdateItem"] {
        // Longer than the worker's 5 s attempt timeout: the attempt is abandoned,
        // and the request still reaches moto afterwards (a late duplicate write).
        proxy.inject(FaultRule::new(operation, Fault::Latency(Duration::from_secs(6))).times(1));
        // Each fault once for sure (the mix alone is random, and how many
        // writes meet it depends on timing), then the mix.
        for (fault, _) in &mix {
            proxy.inject(FaultRule::new(operation, fault.clone()).times(1));
        }
        proxy.inject_mix(operation, &mix);
    }
    let s = scenario(11, 10, 5);
    w.send(&s.deliveries).await;
    let summary = w.run_via(&proxy.endpoint, w.config()).await.expect("run");

    // DynamoDB's SDK retries are off in the worker, so each injection is a
    // failed attempt the worker itself saw and retried.
    let mut expected: Vec<(&str, Fault)> = Vec::new();
    for operation in ["PutItem", "UpdateItem"] {
        expected.push((operation, Fault::Latency(Duration::ZERO)));
        expected.extend(mix.iter().map(|(fault, _)| (operation, fault.clone())));
    }
    assert_each_fault_injected(&proxy, &expected);
    assert_eq!(summary.panicked, 0);
    assert_tables_equal(&without_clock(w.table().await), &expected_table(&s.events));
    assert_eq!(assert_dead_letters(&w.dead_letters().await, &s.poison), 0, "each poison forwarded once");
    assert_eq!(w.queue_counts().await, (0, 0), "nothing left behind");
    let finished: u64 = TERMINAL_OUTCOMES.iter().map(|o| summary.outcomes[o]).sum();
    assert_eq!(finished, s.deliveries.len() as u64, "every delivery finished once: {summary:?}");
}

/// How long the predecessors of the deferred patches are held back.
const PREDECESSOR_DELAY_SECONDS: i32 = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_errors_on_receive_delete_and_visibility_reach_the_worker_and_lose_nothing() {
    let w = World::with_max_receive_count(50).await;
    let proxy = FaultProxy::start(&w.emulator.endpoint).await;
    // Each fault once, in this order, on the first calls of each operation,
    // then a random mix.
    let receive = [
        Fault::OverLimit,
        Fault::ThrottlingException,
        Fault::InternalError,
        Fault::ServiceUnavailable,
        Fault::DropBeforeForward,
        Fault::DropAfterForward,
        Fault::InternalErrorAfterApply,
    ];
    let delete = [
        Fault::OverLimit,
        Fault::InternalError,
        Fault::ThrottlingException,
        Fault::DropBeforeForward,
        Fault::InternalErrorAfterApply,
        Fault::DropAfterForward,
    ];
    let visibility = [
        Fault::OverLimit,
        Fault::InternalError,
        Fault::ThrottlingException,
        Fault::DropBeforeForward,
        Fault::DropAfterForward,
    ];
    let mut expected: Vec<(&str, Fault)> = Vec::new();
    // `run`'s pre-flight probes the queue with one DeleteMessageBatch and one
    // ChangeMessageVisibilityBatch before the loop starts: an OverLimit
    // (never retried) each for those, so the worker's own first calls get
    // the sequence below. Its retryable faults may be spread over calls under
    // way at once (each recovering on the SDK's retry), but its first fault,
    // OverLimit, always reaches the worker.
    for operation in ["DeleteMessageBatch", "ChangeMessageVisibilityBatch"] {
        proxy.inject(FaultRule::new(operation, Fault::OverLimit).times(1));
    }
    for (operation, faults) in [
        ("ReceiveMessage", &receive[..]),
        ("DeleteMessageBatch", &delete[..]),
        ("ChangeMessageVisibilityBatch", &visibility[..]),
    ] {
        for fault in faults {
            proxy.inject(FaultRule::new(operation, fault.clone()).times(1));
            expected.push((operation, fault.clone()));
        }
        let share = 0.2 / faults.len() as f64;
        proxy.inject_mix(operation, &faults.iter().map(|f| (f.clone(), share)).collect::<Vec<_>>());
    }
    // Patches whose predecessors are held back (SQS DelaySeconds) are deferred
    // again and again, each on its own schedule: many visibility changes.
    let s = scenario(12, 8, 4);
    let mut events = s.events.clone();
    let mut sent = Vec::new();
    // Built before publishing, so the delays below count from the worker's start.
    let _ = worker_binary();
    for (i, delay) in [0, 2, 4, 6].into_iter().enumerate() {
        let id = format!("lead{i}");
        let v1 = json!({"type": "StudentUpserted", "eventId": format!("{id}-v1"), "studentId": id, "version": 1, "student": {"name": "Lead"}});
        let v2 = json!({"type": "StudentPatched", "eventId": format!("{id}-v2"), "studentId": id, "version": 2, "student": {"grade": 7}});
        sent.push(publish_delayed(&w.sqs, &w.queue_url, &v2.to_string(), delay).await);
        sent.push(publish_delayed(&w.sqs, &w.queue_url, &v1.to_string(), PREDECESSOR_DELAY_SECONDS).await);
        events.extend([v1, v2]);
    }
    sent.extend(publish(&w.sqs, &w.queue_url, &s.deliveries).await);

    let run = WorkerProcess::spawn(&w, &proxy.endpoint, &[("WORKER_EXIT_WHEN_EMPTY", "true")])
        .wait(Duration::from_secs(600))
        .await;
    assert!(run.ended_as_expected(), "{:?}\n{}", run.status, run.stderr);
    assert!(!run.panicked(), "{}", run.stderr);
    assert_each_fault_injected(&proxy, &expected);
    // The worker's own log says it met each kind of failure. Visibility
    // changes come from two places: the acker (deferrals) and the heartbeat
    // (extensions, when processing is slow on a loaded machine); whichever
    // met the faults injected first, a failed call must reach the worker.
    let met = |texts: &[&str]| texts.iter().map(|t| run.lines_saying(t)).sum::<usize>();
    assert!(met(&["receive failed"]) > 0, "no 'receive failed' line: the fault never reached the worker");
    assert!(met(&["delete failed"]) > 0, "no 'delete failed' line: the fault never reached the worker");
    let visibility = ["visibility change failed", "visibility extension failed", "visibility extension timed out"];
    assert!(
        met(&visibility) > 0,
        "none of {visibility:?}: the fault never reached the worker; faults {:?}; warnings {:?}",
        proxy.fault_counts(),
        warnings(&run)
    );
    assert_tables_equal(&without_clock(w.table().await), &expected_table(&events));
    assert_dead_letters(&w.dead_letters().await, &s.poison);
    assert_eq!(w.queue_counts().await, (0, 0), "nothing left behind");
    let mut ledger = Ledger::default();
    ledger.add(&run);
    let audit = ledger.audit(&sent, &s.poison);
    assert_eq!(audit.lost(), 0, "{audit:?}");
    assert_eq!(audit.dead_lettered, s.poison.len());
}

/// A queue `jobs` (through the proxy) with `bodies` on it, all received at
/// once with visibility 0 (so each stays receivable): (url, receipt per body).
async fn queue_with_received(sqs: &aws_sdk_sqs::Client, bodies: &[&str]) -> (String, Vec<String>) {
    let url = sqs.create_queue().queue_name("jobs").send().await.expect("CreateQueue").queue_url.expect("queue url");
    for body in bodies {
        sqs.send_message().queue_url(&url).message_body(*body).send().await.expect("SendMessage");
    }
    let got = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .send()
        .await
        .expect("ReceiveMessage")
        .messages
        .unwrap_or_default();
    let receipt = |body: &str| {
        let m = got.iter().find(|m| m.body() == Some(body)).unwrap_or_else(|| panic!("{body} not received: {got:?}"));
        m.receipt_handle.clone().expect("receipt handle")
    };
    let receipts = bodies.iter().map(|b| receipt(b)).collect();
    (url, receipts)
}

/// The bodies receivable now (each hidden for 300 s once seen, so none repeats), sorted.
async fn visible_bodies(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    let got = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(300)
        .send()
        .await
        .expect("ReceiveMessage")
        .messages
        .unwrap_or_default();
    let mut bodies: Vec<String> = got.into_iter().filter_map(|m| m.body).collect();
    bodies.sort();
    bodies
}

/// The entry ids of a batch answer's `Failed` list, checking each is the injected one.
fn injected_failures(failed: &[aws_sdk_sqs::types::BatchResultErrorEntry]) -> Vec<String> {
    for f in failed {
        assert_eq!(f.code(), "InternalError", "{f:?}");
        assert!(!f.sender_fault(), "{f:?}");
        assert!(f.message().is_some_and(|m| m.contains("PartialBatchFailure")), "{f:?}");
    }
    failed.iter().map(|f| f.id().to_owned()).collect()
}

fn delete_entry(id: &str, receipt: &str) -> aws_sdk_sqs::types::DeleteMessageBatchRequestEntry {
    aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder().id(id).receipt_handle(receipt).build().expect("entry")
}

#[tokio::test]
async fn partial_batch_failure_fails_the_first_delete_and_deletes_the_rest() {
    let emulator = Emulator::start();
    let proxy = FaultProxy::start(&emulator.endpoint).await;
    let sqs = sqs_no_retry(&sdk_config_with_endpoint(&proxy.endpoint).await);
    let (url, receipts) = queue_with_received(&sqs, &["a", "b", "c"]).await;
    proxy.inject(FaultRule::new("DeleteMessageBatch", Fault::PartialBatchFailure));

    let entries = ["a", "b", "c"].iter().zip(&receipts).map(|(id, r)| delete_entry(id, r)).collect();
    let out = sqs.delete_message_batch().queue_url(&url).set_entries(Some(entries)).send().await.expect("200");
    assert_eq!(injected_failures(&out.failed), ["a"]);
    let mut deleted: Vec<&str> = out.successful.iter().map(|s| s.id()).collect();
    deleted.sort_unstable();
    assert_eq!(deleted, ["b", "c"], "moto deleted the forwarded entries");
    assert_eq!(visible_bodies(&sqs, &url).await, ["a"], "only the failed entry's message is left");

    // A batch of one is answered without forwarding: the message stays.
    let out = sqs.delete_message_batch().queue_url(&url).entries(delete_entry("x", &receipts[0])).send().await;
    let out = out.expect("200");
    assert_eq!((injected_failures(&out.failed), out.successful.len()), (vec!["x".to_owned()], 0));
    assert_eq!(queue_counts(&sqs, &url).await, (0, 1), "a is still there (hidden by the last receive)");
    assert_eq!(proxy.faults_of("DeleteMessageBatch", "PartialBatchFailure"), 2);
    assert_eq!(proxy.calls("DeleteMessageBatch"), 2);
}

#[tokio::test]
async fn partial_batch_failure_leaves_the_first_visibility_unchanged() {
    let emulator = Emulator::start();
    let proxy = FaultProxy::start(&emulator.endpoint).await;
    let sqs = sqs_no_retry(&sdk_config_with_endpoint(&proxy.endpoint).await);
    let (url, receipts) = queue_with_received(&sqs, &["a", "b", "c"]).await;
    proxy.inject(FaultRule::new("ChangeMessageVisibilityBatch", Fault::PartialBatchFailure));

    // Hide all three for 300 s; the first keeps its visibility 0.
    let entries = ["a", "b", "c"]
        .iter()
        .zip(&receipts)
        .map(|(id, r)| {
            aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(*id)
                .receipt_handle(r)
                .visibility_timeout(300)
                .build()
                .expect("entry")
        })
        .collect();
    let out = sqs.change_message_visibility_batch().queue_url(&url).set_entries(Some(entries)).send().await;
    let out = out.expect("200");
    assert_eq!(injected_failures(&out.failed), ["a"]);
    let mut changed: Vec<&str> = out.successful.iter().map(|s| s.id()).collect();
    changed.sort_unstable();
    assert_eq!(changed, ["b", "c"]);
    assert_eq!(visible_bodies(&sqs, &url).await, ["a"], "b and c are hidden, a is not");
    assert_eq!(proxy.faults_of("ChangeMessageVisibilityBatch", "PartialBatchFailure"), 1);
    assert_eq!(proxy.fault_counts().len(), 1, "{:?}", proxy.fault_counts());
}

#[tokio::test]
async fn partial_batch_failure_on_send_sends_all_but_the_first() {
    let emulator = Emulator::start();
    let proxy = FaultProxy::start(&emulator.endpoint).await;
    let sqs = sqs_no_retry(&sdk_config_with_endpoint(&proxy.endpoint).await);
    let url = sqs.create_queue().queue_name("jobs").send().await.expect("CreateQueue").queue_url.expect("queue url");
    proxy.inject(FaultRule::new("SendMessageBatch", Fault::PartialBatchFailure));
    let entries = ["a", "b", "c"]
        .iter()
        .map(|b| aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder().id(*b).message_body(*b).build())
        .collect::<Result<Vec<_>, _>>()
        .expect("entries");
    let out = sqs.send_message_batch().queue_url(&url).set_entries(Some(entries)).send().await.expect("200");
    assert_eq!(injected_failures(&out.failed), ["a"]);
    assert_eq!(out.successful.len(), 2);
    assert_eq!(visible_bodies(&sqs, &url).await, ["b", "c"]);
    assert_eq!(proxy.faults_of("SendMessageBatch", "PartialBatchFailure"), 1);
}

/// The worker's warning and error messages with how often each was logged.
fn warnings(run: &Finished) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for line in run.log_lines() {
        if matches!(line["level"].as_str(), Some("WARN" | "ERROR")) {
            *counts.entry(line["message"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
        }
    }
    counts
}
