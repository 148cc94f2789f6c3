//! Integration tests of the test support against a real moto: the
//! [`FaultProxy`] (the SDK sees the injected errors with the intended codes,
//! the after-apply fault really applies the write, long polls pass through,
//! the counters add up) and the [`Emulator`]'s environment for child
//! processes.

use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use student_worker_tests::emulator::{Emulator, python, sdk_config_with_endpoint};
use student_worker_tests::proxy::{ANY_OPERATION, Fault, FaultProxy, FaultRule};

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
