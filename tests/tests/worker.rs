//! The worker in-process against moto: docs/setup.md's record, deferral of
//! early patches, tombstones, dead-lettering with codes, throttling retries
//! and fatal errors (through the fault proxy).

use serde_json::json;
use student_worker::aws::Kind;
use student_worker::runtime::ecs::RunError;
use student_worker_tests::model::{apply, without_clock};
use student_worker_tests::proxy::{Fault, FaultProxy, FaultRule};
use student_worker_tests::world::World;

fn upsert(id: &str, v: u64, student: serde_json::Value) -> String {
    json!({"type": "StudentUpserted", "eventId": format!("{id}-v{v}"), "studentId": id, "version": v, "student": student}).to_string()
}

fn patch(id: &str, v: u64, student: serde_json::Value) -> String {
    json!({"type": "StudentPatched", "eventId": format!("{id}-v{v}"), "studentId": id, "version": v, "student": student}).to_string()
}

fn delete(id: &str, v: u64) -> String {
    json!({"type": "StudentDeleted", "eventId": format!("{id}-v{v}"), "studentId": id, "version": v}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_guide_record_reads_back_exactly() {
    let w = World::new().await;
    w.send(&[upsert("101", 1, json!({"name": "Alice"}))]).await;
    let summary = w.run(w.config()).await.expect("run");
    assert_eq!(summary.outcomes["applied"], 1);
    let out = w
        .dynamodb
        .get_item()
        .table_name("Students")
        .key("StudentID", aws_sdk_dynamodb::types::AttributeValue::S("101".into()))
        .send()
        .await
        .expect("get-item");
    let item = out.item.expect("item 101 stored");
    let mut names: Vec<&str> = item.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["EventID", "Name", "StudentID", "UpdatedAt", "Version"], "no NULLs, nothing extra");
    assert_eq!(item["StudentID"].as_s().expect("S"), "101");
    assert_eq!(item["Name"].as_s().expect("S"), "Alice");
    assert_eq!(item["Version"].as_n().expect("N"), "1");
    assert_eq!(w.queue_counts().await, (0, 0), "deleted after success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_before_its_predecessor_is_deferred_then_applied() {
    let w = World::new().await;
    let v2 = patch("7", 2, json!({"grade": 5, "courses": ["CS100"]}));
    w.send(std::slice::from_ref(&v2)).await;
    let worker = tokio::spawn({
        let config = w.config();
        let sdk = w.sdk.clone();
        async move {
            let clients = student_worker::aws::Clients::for_worker(&sdk, &config);
            student_worker::runtime::ecs::run(config, clients, Default::default()).await
        }
    });
    // Let the patch be received and deferred first, then publish its predecessor.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let v1 = upsert("7", 1, json!({"name": "Seven", "email": "seven@example.edu"}));
    w.send(std::slice::from_ref(&v1)).await;
    let summary = worker.await.expect("join").expect("run");
    assert!(summary.outcomes["deferred"] >= 1, "{summary:?}");
    assert_eq!(summary.outcomes["applied"], 2, "{summary:?}");
    let expected = [&v1, &v2].iter().map(|b| serde_json::from_str(b).expect("json")).fold(None, |s, e| apply(s, &e));
    let table = without_clock(w.table().await);
    assert_eq!(table.get("7"), expected.as_ref());
    assert!(w.dead_letters().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_patches_in_one_batch_applies_in_version_order() {
    let w = World::new().await;
    let mut bodies = vec![upsert("9", 1, json!({"name": "Nine"}))];
    bodies.extend((2..=6).map(|v| patch("9", v, json!({"grade": v}))));
    bodies.reverse();
    w.send(&bodies).await;
    let summary = w.run(w.config()).await.expect("run");
    assert_eq!(summary.outcomes["applied"], 6, "{summary:?}");
    assert_eq!(summary.outcomes["deferred"], 0, "same-batch patches must not defer themselves: {summary:?}");
    let table = w.table().await;
    assert_eq!(table["9"]["Version"].as_n().expect("N"), "6");
    assert_eq!(table["9"]["Grade"].as_n().expect("N"), "6");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tombstones_stop_stale_upserts_and_duplicates_are_absorbed() {
    let w = World::new().await;
    w.send(&[delete("5", 2)]).await;
    w.run(w.config()).await.expect("first run");
    w.send(&[upsert("5", 1, json!({"name": "Too late"})), delete("5", 2)]).await;
    let summary = w.run(w.config()).await.expect("second run");
    assert_eq!(summary.outcomes["stale"], 1, "{summary:?}");
    assert_eq!(summary.outcomes["duplicate"], 1, "{summary:?}");
    let item = &w.table().await["5"];
    assert_eq!(item["Deleted"], aws_sdk_dynamodb::types::AttributeValue::Bool(true));
    assert!(!item.contains_key("Name"), "a stale upsert must not revive the record: {item:?}");
    assert_eq!(item["Version"].as_n().expect("N"), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_invalid_message_lands_in_the_dlq_with_its_code() {
    let w = World::new().await;
    w.send(&[upsert("1", 1, json!({"name": "One"})), delete("1", 2)]).await;
    w.run(w.config()).await.expect("history");
    let cases = [
        ("{\"type\":", "MalformedJson"),
        (
            r#"{"type":"StudentUpserted","eventId":"e","studentId":"2","version":"3","student":{"name":"x"}}"#,
            "InvalidEvent",
        ),
        (r#"{"type":"StudentUpserted","eventId":"e","studentId":"2","version":1}"#, "InvalidEvent"),
        (r#"{"type":"StudentRenamed","eventId":"e","studentId":"2","version":1}"#, "InvalidEvent"),
        (
            r#"{"type":"StudentPatched","eventId":"e","studentId":"1","version":3,"student":{"grade":1}}"#,
            "PatchOnDeleted",
        ),
    ];
    let bodies: Vec<String> = cases.iter().map(|(b, _)| (*b).to_owned()).collect();
    w.send(&bodies).await;
    let summary = w.run(w.config()).await.expect("run");
    assert_eq!(summary.outcomes["invalid"], cases.len() as u64, "{summary:?}");
    let dead = w.dead_letters().await;
    assert_eq!(dead.len(), cases.len());
    for (body, code) in cases {
        let d = dead.iter().find(|d| d.body == body).unwrap_or_else(|| panic!("{body} not in the DLQ"));
        assert_eq!(d.attributes["ErrorCode"], code, "{body}");
        assert!(!d.attributes["ErrorMessage"].is_empty());
        assert_eq!(d.attributes["SourceQueue"], w.queue_url);
        assert_eq!(d.attributes["ReceiveCount"], "1");
        assert!(d.attributes["FailedAt"].ends_with('Z'));
    }
    let version_error = dead.iter().find(|d| d.body.contains(r#""version":"3""#)).expect("version case");
    assert!(version_error.attributes["ErrorMessage"].starts_with("version: "), "{:?}", version_error.attributes);
    assert_eq!(w.queue_counts().await, (0, 0), "dead-lettered messages are deleted from the source");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_dlq_url_invalid_messages_stay_for_redrive() {
    let w = World::new().await;
    w.send(&["not json".to_owned()]).await;
    let mut config = w.config();
    config.dlq_url = None;
    config.exit_when_empty = false;
    let summary =
        w.run_stopped_after(&w.emulator.endpoint, config, std::time::Duration::from_secs(3)).await.expect("run");
    assert_eq!(summary.outcomes["invalid"], 1);
    assert_eq!(summary.acks.deleted, 0, "never deleted without a DLQ to forward to");
    assert_eq!(w.queue_counts().await.1, 1, "still in flight, back after its visibility timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_with_backoff_by_the_worker_alone() {
    let w = World::new().await;
    let proxy = FaultProxy::start(&w.emulator.endpoint).await;
    proxy.inject(FaultRule::new("PutItem", Fault::Throttle).times(3));
    proxy.inject(FaultRule::new("UpdateItem", Fault::ServiceUnavailable).times(2));
    w.send(&[upsert("3", 1, json!({"name": "Three"})), patch("3", 2, json!({"grade": 2}))]).await;
    let summary = w.run_via(&proxy.endpoint, w.config()).await.expect("run");
    assert_eq!(summary.outcomes["applied"], 2, "{summary:?}");
    // SDK retries are off for DynamoDB: every call seen is one of the worker's attempts.
    assert_eq!(proxy.calls("PutItem"), 4);
    assert_eq!(proxy.calls("UpdateItem"), 3);
    assert_eq!(w.table().await["3"]["Grade"].as_n().expect("N"), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_500_after_the_write_ends_as_duplicate() {
    let w = World::new().await;
    let proxy = FaultProxy::start(&w.emulator.endpoint).await;
    proxy.inject(FaultRule::new("PutItem", Fault::InternalErrorAfterApply).times(1));
    w.send(&[upsert("4", 1, json!({"name": "Four"}))]).await;
    let summary = w.run_via(&proxy.endpoint, w.config()).await.expect("run");
    assert_eq!(summary.outcomes["duplicate"], 1, "the retry finds its own write: {summary:?}");
    assert_eq!(w.table().await["4"]["Version"].as_n().expect("N"), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_stops_the_worker_and_loses_nothing() {
    let w = World::new().await;
    let proxy = FaultProxy::start(&w.emulator.endpoint).await;
    proxy.inject(FaultRule::new("PutItem", Fault::AccessDenied));
    let bodies: Vec<String> = (1..=15).map(|i| upsert(&i.to_string(), 1, json!({"name": "N"}))).collect();
    w.send(&bodies).await;
    let Err(RunError::Fatal(e)) = w.run_via(&proxy.endpoint, w.config()).await else {
        panic!("expected a fatal error")
    };
    assert_eq!(e.kind, Kind::AccessDenied);
    assert!(
        e.to_string().starts_with(
            "AccessDeniedException on dynamodb:PutItem for table Students: the role lacks dynamodb:PutItem on table Students; \
             add \"dynamodb:PutItem\" on arn:aws:dynamodb:ap-northeast-2:<account-id>:table/Students to the task role's IAM policy"
        ),
        "{e}"
    );
    assert!(w.dead_letters().await.is_empty(), "a permission problem must not dead-letter messages");
    assert!(w.table().await.is_empty());
    let left = w.leftovers().await;
    assert_eq!(left.len(), bodies.len(), "every message released back to the queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_is_fatal_with_the_setup_guides_hint() {
    let w = World::new().await;
    w.send(&[upsert("1", 1, json!({"name": "One"}))]).await;
    let mut config = w.config();
    config.table_name = "Studnets".into();
    let Err(RunError::Fatal(e)) = w.run(config).await else { panic!("expected a fatal error") };
    let text = e.to_string();
    assert!(text.starts_with("ResourceNotFoundException on dynamodb:PutItem for table Studnets"), "{text}");
    assert!(text.contains("region ap-northeast-2") && text.contains("typo or a region mismatch"), "{text}");
    assert_eq!(w.leftovers().await.len(), 1, "the message is released, not lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_dynamodb_rejects_is_dead_lettered_as_item_rejected() {
    let w = World::new().await;
    let proxy = FaultProxy::start(&w.emulator.endpoint).await;
    proxy.inject(FaultRule::new("PutItem", Fault::ValidationException).times(1));
    let body = upsert("8", 1, json!({"name": "Eight"}));
    w.send(std::slice::from_ref(&body)).await;
    let summary = w.run_via(&proxy.endpoint, w.config()).await.expect("run");
    assert_eq!(summary.outcomes["invalid"], 1, "{summary:?}");
    let dead = w.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, body);
    assert_eq!(dead[0].attributes["ErrorCode"], "ItemRejected");
    assert_eq!(proxy.calls("PutItem"), 1, "never retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_written_by_hand_without_version_is_replaced_by_the_first_event() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let w = World::new().await;
    // docs/setup.md's own test write: `aws dynamodb put-item --item '{"StudentID": {"S": "101"}, "Name": {"S": "Alice"}}'`.
    w.dynamodb
        .put_item()
        .table_name("Students")
        .item("StudentID", AttributeValue::S("101".into()))
        .item("Name", AttributeValue::S("Alice".into()))
        .send()
        .await
        .expect("put-item");
    w.send(&[upsert("101", 1, json!({"name": "Alice", "grade": 3})), patch("101", 2, json!({"status": "active"}))])
        .await;
    let summary = w.run(w.config()).await.expect("run");
    assert_eq!(summary.outcomes["applied"], 2, "{summary:?}");
    let item = &w.table().await["101"];
    assert_eq!(item["Version"].as_n().expect("N"), "2");
    assert_eq!(item["Status"].as_s().expect("S"), "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_with_the_wrong_key_is_fatal_not_a_flood_of_dead_letters() {
    use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
    let w = World::new().await;
    w.dynamodb
        .create_table()
        .table_name("WrongKey")
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("def"),
        )
        .key_schema(KeySchemaElement::builder().attribute_name("id").key_type(KeyType::Hash).build().expect("key"))
        .send()
        .await
        .expect("create table");
    w.send(&[upsert("1", 1, json!({"name": "One"})), delete("2", 1)]).await;
    let mut config = w.config();
    config.table_name = "WrongKey".into();
    let Err(RunError::Fatal(e)) = w.run(config).await else { panic!("expected a fatal error") };
    assert_eq!(e.kind, Kind::WrongKeySchema, "{e}");
    assert!(e.to_string().contains("partition key StudentID of type S"), "{e}");
    assert!(w.dead_letters().await.is_empty(), "valid events must not be dead-lettered");
    assert_eq!(w.leftovers().await.len(), 2);

    let args = student_worker::commands::setup::SetupArgs {
        table_name: "WrongKey".into(),
        queue_name: "students".into(),
        dlq_name: None,
        max_receive_count: 5,
        visibility_timeout_seconds: 60,
    };
    let refused =
        student_worker::commands::setup::ensure(&w.sdk, &args).await.expect_err("setup must refuse the table");
    assert_eq!(refused.kind, Kind::WrongKeySchema);
    assert!(refused.to_string().contains("the table's key is id (HASH) with types id S"), "{refused}");
    assert!(!refused.to_string().contains("student-worker setup"), "setup must not advise running setup: {refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_may_not_delete_stops_the_worker() {
    let w = World::new().await;
    let proxy = FaultProxy::start(&w.emulator.endpoint).await;
    proxy.inject(FaultRule::new("DeleteMessageBatch", Fault::AccessDenied));
    w.send(&[upsert("1", 1, json!({"name": "One"}))]).await;
    let Err(RunError::Fatal(e)) = w.run_via(&proxy.endpoint, w.config()).await else {
        panic!("expected a fatal error")
    };
    assert_eq!(e.kind, Kind::AccessDenied);
    assert!(e.to_string().starts_with("AccessDenied on sqs:DeleteMessageBatch"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_in_time_to_leave_the_message_before_its_visibility_ends() {
    let w = World::new().await;
    let proxy = FaultProxy::start(&w.emulator.endpoint).await;
    proxy.inject(FaultRule::new("PutItem", Fault::Throttle));
    w.send(&[upsert("1", 1, json!({"name": "One"}))]).await;
    let mut config = w.config();
    config.visibility_timeout_seconds = 15; // deadline 10 s after receipt; last attempt starts by 5 s
    config.max_visibility_extension_seconds = 0; // no heartbeat: the first deadline is the last
    config.exit_when_empty = false;
    config.shutdown_grace_seconds = 0; // whatever still works at the stop is released
    let summary = w.run_stopped_after(&proxy.endpoint, config, std::time::Duration::from_secs(8)).await.expect("run");
    // Gave up (retry) before the 8 s stop; had it still been retrying, it would be `released`.
    assert_eq!(summary.outcomes["retry"], 1, "{summary:?}");
    assert_eq!(summary.outcomes["released"], 0, "{summary:?}");
    assert!(proxy.calls("PutItem") > 3, "retried with backoff: {} calls", proxy.calls("PutItem"));
    assert!(w.dead_letters().await.is_empty());
    assert!(w.table().await.is_empty());
}
