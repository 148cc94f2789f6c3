//! `student-worker lambda`, the real binary, against a local Runtime API and
//! moto: events are built from messages really received from the emulator
//! (so visibility changes act on real receipt handles), and after each
//! response the test deletes what was not reported, as the event source
//! mapping does. Each test asserts the response, the table and the DLQ.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use student_worker_tests::lambda_api::{
    Answer, FunctionProcess, RuntimeApi, delete_unreported, queue_url_in_aws_form, receive_event,
};
use student_worker_tests::proxy::{Fault, FaultProxy, FaultRule};
use student_worker_tests::world::World;

/// An invocation's budget in the tests where time does not matter.
const BUDGET: Duration = Duration::from_secs(60);
/// The visibility the test's receives give (the mapping uses the queue's).
const VISIBILITY_SECONDS: i32 = 60;

fn upsert(id: &str, v: u64, name: &str) -> String {
    json!({"type": "StudentUpserted", "eventId": format!("{id}-v{v}"), "studentId": id, "version": v, "student": {"name": name}})
        .to_string()
}

fn patch(id: &str, v: u64, grade: u64) -> String {
    json!({"type": "StudentPatched", "eventId": format!("{id}-v{v}"), "studentId": id, "version": v, "student": {"grade": grade}})
        .to_string()
}

/// The function for `w` with its DLQ, every call sent to `endpoint`.
fn function(api: &RuntimeApi, w: &World, endpoint: &str, args: &[&str], dlq: bool) -> FunctionProcess {
    let mut env = vec![("DYNAMODB_TABLE_NAME", w.table.as_str())];
    if dlq {
        env.push(("SQS_DLQ_URL", w.dlq_url.as_str()));
    }
    FunctionProcess::spawn(api, endpoint, args, &env)
}

/// Receives `count` messages, invokes the function with them and finishes
/// the answer as the mapping does. Returns the answer and the ids by body.
async fn invoke(w: &World, api: &RuntimeApi, count: usize, budget: Duration) -> (Answer, Vec<(String, String)>) {
    let (event, received) = receive_event(&w.sqs, &w.queue_url, count, VISIBILITY_SECONDS).await;
    assert_eq!(received.len(), count, "received {} of {count} messages", received.len());
    let answer = api.invoke(event, budget).await;
    delete_unreported(&w.sqs, &w.queue_url, &received, &answer).await;
    (answer, received.into_iter().map(|r| (r.body, r.message_id)).collect())
}

fn id_of<'a>(ids: &'a [(String, String)], body: &str) -> &'a str {
    &ids.iter().find(|(b, _)| b == body).unwrap_or_else(|| panic!("{body} was not in the batch")).1
}

fn version(w: &std::collections::BTreeMap<String, student_worker_tests::world::Item>, id: &str) -> String {
    w[id]["Version"].as_n().expect("Version is a number").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_reports_only_the_deferred_patch_and_dead_letters_the_poison() {
    let w = World::new().await;
    let api = RuntimeApi::start().await;
    let f = function(&api, &w, &w.emulator.endpoint, &["lambda"], true);

    // History: student 1 at v1, student 2 at v2.
    w.send(&[upsert("1", 1, "One"), upsert("2", 1, "Two"), patch("2", 2, 7)]).await;
    let (first, _) = invoke(&w, &api, 3, BUDGET).await;
    assert_eq!(first.failures(), Vec::<String>::new(), "all applied");

    let valid = upsert("3", 1, "Three");
    let duplicate = upsert("1", 1, "One");
    let stale = upsert("2", 1, "Two again");
    let poison = "{\"type\":".to_owned();
    let orphan = patch("9", 2, 5);
    // Out of order in one batch: applied in version order, nothing deferred.
    let burst = [patch("4", 3, 9), patch("4", 2, 8), upsert("4", 1, "Four")];
    let mut bodies = vec![valid, duplicate.clone(), stale.clone(), poison.clone(), orphan.clone()];
    bodies.extend(burst.iter().cloned());
    w.send(&bodies).await;
    let started = Instant::now();
    let (answer, ids) = invoke(&w, &api, bodies.len(), BUDGET).await;

    assert_eq!(answer.failures(), [id_of(&ids, &orphan).to_owned()], "only the deferred patch is reported");
    let table = w.table().await;
    assert_eq!(
        (version(&table, "1"), version(&table, "2")),
        ("1".into(), "2".into()),
        "duplicate and stale change nothing"
    );
    assert_eq!(table["2"]["Name"].as_s().expect("S"), "Two");
    assert_eq!((version(&table, "3"), version(&table, "4")), ("1".into(), "3".into()));
    assert_eq!(table["4"]["Grade"].as_n().expect("N"), "9");
    assert!(!table.contains_key("9"), "the orphan patch wrote nothing");
    let dead = w.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].body, poison);
    assert_eq!(dead[0].attributes["ErrorCode"], "MalformedJson");
    assert_eq!(dead[0].attributes["SourceQueue"], queue_url_in_aws_form(&w.queue_url), "the URL built from the ARN");

    // The deferred patch was hidden for its 2 s deferral, not the receive's 60 s.
    let (event, again) = loop {
        let (event, again) = receive_event(&w.sqs, &w.queue_url, 1, VISIBILITY_SECONDS).await;
        if !again.is_empty() || started.elapsed() > Duration::from_secs(20) {
            break (event, again);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(again.len(), 1, "the deferred patch did not come back within 20 s");
    assert_eq!(again[0].body, orphan);
    // Its predecessor arrives: the next delivery applies.
    let answer = api.invoke(event, BUDGET).await;
    assert_eq!(answer.failures(), [again[0].message_id.clone()], "still no v1");
    w.send(&[upsert("9", 1, "Nine")]).await;

    let ended = f.stop().await;
    let outcomes: Vec<(String, String)> = ids
        .iter()
        .map(|(_, id)| {
            let line = ended.outcome_of(id);
            assert!(line["span"]["request_id"].as_str().is_some_and(|r| r.starts_with("request-")), "{line}");
            (
                line["outcome"].as_str().expect("outcome").to_owned(),
                line["student_id"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    for expected in ["applied", "duplicate", "stale", "invalid", "deferred"] {
        assert!(outcomes.iter().any(|(o, _)| o == expected), "no {expected} line: {outcomes:?}");
    }
    let metrics: Vec<Value> = ended.log_lines().into_iter().filter(|l| l.get("_aws").is_some()).collect();
    assert_eq!(metrics.len(), 3, "one EMF line per invocation:\n{}", ended.stdout);
    assert_eq!(metrics[1]["MessagesReceived"], bodies.len());
    assert_eq!(metrics[1]["MessagesApplied"], 4);
    assert_eq!(metrics[1]["QueueName"], "students");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_dlq_an_invalid_message_is_reported_for_the_queue_s_redrive() {
    let w = World::new().await;
    let api = RuntimeApi::start().await;
    let f = function(&api, &w, &w.emulator.endpoint, &["lambda"], false);
    let poison = "not json".to_owned();
    w.send(&[poison.clone(), upsert("1", 1, "One")]).await;
    let (answer, ids) = invoke(&w, &api, 2, BUDGET).await;
    assert_eq!(answer.failures(), [id_of(&ids, &poison).to_owned()]);
    assert!(w.dead_letters().await.is_empty(), "the function sent nothing to the DLQ itself");
    assert_eq!(version(&w.table().await, "1"), "1");
    assert_eq!(w.queue_counts().await, (0, 1), "the poison stays for the redrive");
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_group_stops_at_its_first_unfinished_message_and_the_others_go_on() {
    let w = World::fifo().await;
    let api = RuntimeApi::start().await;
    let f = function(&api, &w, &w.emulator.endpoint, &["lambda"], true);
    let held = [upsert("a", 1, "A"), patch("a", 3, 3), patch("a", 4, 4)];
    let free = [upsert("b", 1, "B"), patch("b", 2, 2)];
    let order = [
        ("g1", held[0].clone()),
        ("g2", free[0].clone()),
        ("g1", held[1].clone()),
        ("g2", free[1].clone()),
        ("g1", held[2].clone()),
    ];
    w.send_grouped(&order).await;
    let (answer, ids) = invoke(&w, &api, order.len(), BUDGET).await;

    // a-v3 waits for the missing v2: it and a-v4 after it are reported, in order.
    assert_eq!(answer.failures(), [id_of(&ids, &held[1]).to_owned(), id_of(&ids, &held[2]).to_owned()]);
    let table = w.table().await;
    assert_eq!((version(&table, "a"), version(&table, "b")), ("1".into(), "2".into()));
    assert!(w.dead_letters().await.is_empty());
    let ended = f.stop().await;
    assert_eq!(ended.outcome_of(id_of(&ids, &held[1]))["outcome"], "deferred");
    assert_eq!(ended.outcome_of(id_of(&ids, &held[2]))["outcome"], "released", "untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_fails_the_invocation_with_cause_and_fix_and_dead_letters_nothing() {
    let w = World::new().await;
    let api = RuntimeApi::start().await;
    let env = [("DYNAMODB_TABLE_NAME", "Missing"), ("SQS_DLQ_URL", w.dlq_url.as_str())];
    // With no subcommand: what a zip's `bootstrap` does inside Lambda.
    let f = FunctionProcess::spawn(&api, &w.emulator.endpoint, &[], &env);
    w.send(&[upsert("1", 1, "One"), upsert("2", 1, "Two")]).await;
    let (answer, _) = invoke(&w, &api, 2, BUDGET).await;

    let Answer::Error(error) = &answer else { panic!("expected an error, got {answer:?}") };
    assert_eq!(error["errorType"], "StudentWorker.Fatal");
    let message = error["errorMessage"].as_str().expect("errorMessage");
    assert!(message.contains("Missing"), "names the table: {message}");
    assert!(message.contains("check DYNAMODB_TABLE_NAME"), "says the fix: {message}");
    assert!(message.contains("Lambda function"), "a fix that fits a function, not only an ECS task: {message}");
    assert!(w.dead_letters().await.is_empty(), "nothing dead-lettered for a fatal error");
    assert_eq!(w.queue_counts().await, (0, 2), "nothing deleted: the batch returns after its visibility");
    let ended = f.stop().await;
    assert!(
        ended
            .log_lines()
            .iter()
            .any(|l| l["level"] == "ERROR" && l["error"].as_str().is_some_and(|e| e.contains("Missing"))),
        "{}",
        ended.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_that_outlasts_the_deadline_is_reported_in_time() {
    let w = World::new().await;
    let proxy = FaultProxy::start(&w.emulator.endpoint).await;
    for operation in ["PutItem", "UpdateItem"] {
        proxy.inject(FaultRule::new(operation, Fault::Throttle));
    }
    let api = RuntimeApi::start().await;
    let f = function(&api, &w, &proxy.endpoint, &["lambda"], true);
    let bodies = [upsert("1", 1, "One"), upsert("2", 1, "Two"), patch("1", 2, 3)];
    w.send(&bodies).await;
    let budget = Duration::from_secs(10);
    let started = Instant::now();
    let (answer, ids) = invoke(&w, &api, bodies.len(), budget).await;

    let elapsed = started.elapsed();
    let ended = f.stop().await;
    assert!(elapsed < budget, "answered after the deadline: {elapsed:?}");
    let mut failed = answer.failures();
    failed.sort();
    let mut all: Vec<String> = ids.iter().map(|(_, id)| id.clone()).collect();
    all.sort();
    assert_eq!(failed, all, "every message is reported for another try");
    assert!(
        proxy.faults_of("PutItem", "Throttle") > 3,
        "retried with backoff: {:?}\n{}",
        proxy.fault_counts(),
        ended.stdout
    );
    assert!(w.table().await.is_empty());
    assert!(w.dead_letters().await.is_empty());
    assert_eq!(ended.outcome_of(id_of(&ids, &bodies[1]))["outcome"], "retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_setting_is_posted_as_the_init_error_and_the_process_exits_2() {
    let w = World::new().await;
    let api = RuntimeApi::start().await;
    let env = [("DYNAMODB_TABLE_NAME", w.table.as_str()), ("WORKER_CONCURRENCY", "0")];
    let ended =
        FunctionProcess::spawn(&api, &w.emulator.endpoint, &["lambda"], &env).exited(Duration::from_secs(30)).await;
    assert_eq!(ended.status.code(), Some(2), "{}", ended.stderr);
    let expected = r#"WORKER_CONCURRENCY (--concurrency) is "0"; expected an integer from 1 to 4096 (default 32)"#;
    let errors = api.init_errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["errorMessage"], expected, "the message `run` prints");
    assert_eq!(errors[0]["errorType"], "StudentWorker.ConfigError");
    assert!(ended.stderr.contains(&format!("error: {expected}")), "{}", ended.stderr);
}

#[tokio::test]
async fn outside_lambda_the_command_says_what_is_missing() {
    let out = std::process::Command::new(student_worker_tests::world::worker_binary())
        .env_clear()
        .env("DYNAMODB_TABLE_NAME", "Students")
        .arg("lambda")
        .output()
        .expect("run the binary");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("AWS_LAMBDA_RUNTIME_API") && stderr.contains("use `run`"), "{stderr}");
    let out = std::process::Command::new(student_worker_tests::world::worker_binary())
        .env_clear()
        .output()
        .expect("run the binary");
    assert_eq!(out.status.code(), Some(2), "no subcommand outside Lambda is a usage error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traced_message_keeps_its_trace_in_the_log_and_in_the_dlq() {
    use aws_sdk_sqs::types::{
        MessageSystemAttributeName, MessageSystemAttributeNameForSends, MessageSystemAttributeValue,
    };
    let w = World::new().await;
    let api = RuntimeApi::start().await;
    let f = function(&api, &w, &w.emulator.endpoint, &["lambda"], true);
    let header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    let value = MessageSystemAttributeValue::builder().data_type("String").string_value(header).build().expect("value");
    w.sqs
        .send_message()
        .queue_url(&w.queue_url)
        .message_body("not json")
        .message_system_attributes(MessageSystemAttributeNameForSends::AwsTraceHeader, value)
        .send()
        .await
        .expect("send");
    let (answer, ids) = invoke(&w, &api, 1, BUDGET).await;
    assert_eq!(answer.failures(), Vec::<String>::new(), "dead-lettered, not reported");
    let dead = w
        .sqs
        .receive_message()
        .queue_url(&w.dlq_url)
        .message_system_attribute_names(MessageSystemAttributeName::AwsTraceHeader)
        .send()
        .await
        .expect("receive the dead letter")
        .messages
        .unwrap_or_default();
    assert_eq!(dead.len(), 1);
    let kept = dead[0].attributes.as_ref().and_then(|a| a.get(&MessageSystemAttributeName::AwsTraceHeader));
    assert_eq!(kept.map(String::as_str), Some(header));
    let ended = f.stop().await;
    assert_eq!(ended.outcome_of(&ids[0].1)["trace_id"], "1-5759e988-bd862e3fe1be46a994272793");
}
