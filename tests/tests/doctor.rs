//! `student-worker doctor` against the emulator: a good setup passes; a
//! missing table, a wrong region, missing credentials, a queue without
//! redrive, a table with the wrong key and AccessDenied answers (injected by
//! the proxy) each fail with the cause and fix of docs/setup.md's error table; the probes
//! write nothing; a role that may not read the DLQ (the task role) gets a
//! warning, not a request to widen it; and `run` refuses to start with the
//! same message.

use std::process::{Command, Output};

use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use serde_json::Value;
use student_worker::commands::doctor::report::Status;
use student_worker::commands::doctor::resources;
use student_worker::commands::doctor::{diagnose, preflight};
use student_worker::config::RunConfig;
use student_worker::config::{HandlerArgs, RunArgs};
use student_worker_tests::emulator::{REGION, sdk_config_with_endpoint};
use student_worker_tests::proxy::{Fault, FaultProxy, FaultRule};
use student_worker_tests::world::{World, worker_binary};

/// `student-worker doctor --json` with the environment ECS would give the task.
fn doctor(w: &World) -> Command {
    let mut cmd = w.task_command();
    cmd.args(["doctor", "--json"]);
    cmd
}

fn report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("doctor --json printed no JSON ({e}): {}\n{}", String::from_utf8_lossy(&out.stdout), stderr(out))
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The check named `name`.
fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["check"] == name))
        .unwrap_or_else(|| panic!("no check {name:?} in {report:#}"))
}

fn text(check: &Value, field: &str) -> String {
    check[field].as_str().unwrap_or_default().to_owned()
}

fn run_args(w: &World) -> RunArgs {
    RunArgs {
        queue_url: Some(w.queue_url.clone()),
        handler: HandlerArgs {
            table_name: Some(w.table.clone()),
            dlq_url: Some(w.dlq_url.clone()),
            ..HandlerArgs::default()
        },
        ..RunArgs::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_setup_passes_every_check_and_the_probes_write_nothing() {
    let w = World::new().await;
    let out = doctor(&w).output().expect("run doctor");
    let r = report(&out);
    assert!(out.status.success(), "{r:#}\n{}", stderr(&out));
    assert_eq!(r["ok"], true);
    for c in r["checks"].as_array().expect("checks") {
        assert!(c["status"] == "pass" || c["status"] == "skip", "{c}");
    }
    assert_eq!(text(check(&r, "region"), "detail"), "ap-northeast-2 (from AWS_REGION)");
    assert_eq!(text(check(&r, "credentials"), "detail"), "found, from environment variables (AWS_ACCESS_KEY_ID)");
    assert!(text(check(&r, "table"), "detail").contains("key StudentID (S)"), "{r:#}");
    assert!(text(check(&r, "redrive"), "detail").contains("students-dlq after 5 receives"), "{r:#}");
    for action in ["dynamodb:PutItem", "dynamodb:UpdateItem", "sqs:ChangeMessageVisibility", "sqs:DeleteMessage"] {
        assert_eq!(check(&r, &format!("permission {action}"))["status"], "pass");
    }
    assert_eq!(check(&r, "permission sqs:ReceiveMessage")["status"], "skip", "not probed, and says so");
    assert!(w.table().await.is_empty(), "the probes wrote to the table");

    // Text for people, and the region's source when only AWS_DEFAULT_REGION is set.
    let out = Command::new(worker_binary())
        .env_clear()
        .envs(w.emulator.env_vars())
        .env_remove("AWS_REGION")
        .env("SQS_QUEUE_URL", &w.queue_url)
        .env("DYNAMODB_TABLE_NAME", &w.table)
        .arg("doctor")
        .output()
        .expect("run doctor");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", stderr(&out));
    assert!(stdout.contains("[pass] region: ap-northeast-2 (from AWS_DEFAULT_REGION)"), "{stdout}");
    assert!(stdout.contains("[pass] table: Students in ap-northeast-2"), "{stdout}");
    assert!(stdout.lines().last().is_some_and(|l| l.contains(" 0 failed")), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_is_a_typo_or_a_region_mismatch() {
    let w = World::new().await;
    let out = doctor(&w).env("DYNAMODB_TABLE_NAME", "Studnets").output().expect("run doctor");
    let r = report(&out);
    assert_eq!(out.status.code(), Some(1), "{r:#}");
    let table = check(&r, "table");
    assert_eq!(table["status"], "fail");
    assert!(
        text(table, "cause").contains(
            "table Studnets does not exist in region ap-northeast-2 (the region asked): a table name typo or a region mismatch"
        ),
        "{table}"
    );
    assert!(text(table, "fix").starts_with("check DYNAMODB_TABLE_NAME and AWS_REGION"), "{table}");
    assert_eq!(check(&r, "queue")["status"], "pass", "only the table is wrong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_region_names_the_region_asked() {
    let w = World::new().await;
    let out =
        doctor(&w).env("AWS_REGION", "us-east-1").env("AWS_DEFAULT_REGION", "us-east-1").output().expect("doctor");
    let r = report(&out);
    assert_eq!(out.status.code(), Some(1), "{r:#}");
    assert_eq!(text(check(&r, "region"), "detail"), "us-east-1 (from AWS_REGION)");
    let table = check(&r, "table");
    assert!(text(table, "cause").contains("does not exist in region us-east-1 (the region asked)"), "{table}");
    let queue = check(&r, "queue");
    assert_eq!(queue["status"], "fail");
    assert!(text(queue, "cause").contains("in region us-east-1 (the region asked): a URL typo or a region mismatch"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_say_attach_a_task_role() {
    let w = World::new().await;
    let out = doctor(&w)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("HOME", std::env::temp_dir())
        .output()
        .expect("doctor");
    let r = report(&out);
    assert_eq!(out.status.code(), Some(1), "{r:#}");
    let creds = check(&r, "credentials");
    assert_eq!(creds["status"], "fail");
    assert!(text(creds, "cause").starts_with("Unable to locate credentials"), "{creds}");
    assert!(text(creds, "fix").starts_with("attach a task role (taskRoleArn)"), "{creds}");
    assert!(text(creds, "fix").contains("configure a profile"), "{creds}");
    assert_eq!(check(&r, "table, queue and permissions")["status"], "skip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_without_redrive_fails_the_redrive_check() {
    let w = World::new().await;
    let bare = w.sqs.create_queue().queue_name("bare").send().await.expect("queue").queue_url.expect("url");
    let out = doctor(&w).env("SQS_QUEUE_URL", &bare).output().expect("doctor");
    let r = report(&out);
    assert_eq!(out.status.code(), Some(1), "{r:#}");
    let redrive = check(&r, "redrive");
    assert_eq!(redrive["status"], "fail");
    assert!(text(redrive, "cause").starts_with("the queue has no RedrivePolicy"), "{redrive}");
    assert!(text(redrive, "fix").contains("maxReceiveCount 5"), "{redrive}");
    assert_eq!(check(&r, "queue")["status"], "pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_with_another_key_is_named_with_the_key_it_has() {
    let w = World::new().await;
    w.dynamodb
        .create_table()
        .table_name("Other")
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::N)
                .build()
                .expect("definition"),
        )
        .key_schema(KeySchemaElement::builder().attribute_name("id").key_type(KeyType::Hash).build().expect("key"))
        .send()
        .await
        .expect("create table");
    let out = doctor(&w).env("DYNAMODB_TABLE_NAME", "Other").output().expect("doctor");
    let r = report(&out);
    assert_eq!(out.status.code(), Some(1));
    let table = check(&r, "table");
    assert!(text(table, "cause").starts_with("the table's key is id (HASH) with types id N"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_names_the_missing_action_and_the_policy_to_fix() {
    let w = World::new().await;
    let proxy = FaultProxy::start(&w.emulator.endpoint).await;
    proxy.inject(FaultRule::new("DescribeTable", Fault::AccessDenied));
    proxy.inject(FaultRule::new("UpdateItem", Fault::AccessDenied));
    proxy.inject(FaultRule::new("DeleteMessageBatch", Fault::AccessDenied));
    let sdk = sdk_config_with_endpoint(&proxy.endpoint).await;
    let r = diagnose(&sdk, &run_args(&w)).await;
    let find = |name: &str| r.checks.iter().find(|c| c.check == name).unwrap_or_else(|| panic!("{name}"));
    assert!(!r.ok);

    // DescribeTable is not needed by the worker: the probe stands in for it.
    let table = find("table");
    assert_eq!(table.status, Status::Pass, "{table}");
    assert!(table.detail.contains("conditional-write probe"), "{table}");
    assert_eq!(find("permission dynamodb:PutItem").status, Status::Pass);

    let update = find("permission dynamodb:UpdateItem");
    assert_eq!(update.status, Status::Fail);
    let cause = update.cause.as_deref().unwrap_or_default();
    assert!(
        cause.starts_with("AccessDeniedException: the role lacks dynamodb:UpdateItem on table Students"),
        "{update}"
    );
    assert_eq!(
        update.fix.as_deref(),
        Some(
            "add \"dynamodb:UpdateItem\" on arn:aws:dynamodb:ap-northeast-2:<account-id>:table/Students to the task role's IAM policy (on Lambda: the function's role; locally: your profile's user or role)"
        )
    );
    let delete = find("permission sqs:DeleteMessage");
    assert_eq!(delete.status, Status::Fail);
    assert!(
        delete
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("\"sqs:DeleteMessage\" on arn:aws:sqs:ap-northeast-2:123456789012:students")),
        "{delete}"
    );
    assert_eq!(find("permission sqs:ChangeMessageVisibility").status, Status::Pass);

    // run's pre-flight refuses on the same failure, with the same words.
    let config = RunConfig::new(&w.queue_url, &w.table);
    let refused = preflight(&sdk, &config).await.expect_err("UpdateItem and DeleteMessage are denied");
    let refused_checks: Vec<&str> = refused.failures.iter().map(|c| c.check.as_str()).collect();
    assert_eq!(refused_checks, ["permission dynamodb:UpdateItem", "permission sqs:DeleteMessage"], "{refused}");
    assert_eq!(refused.failures[0].cause, update.cause);
    assert_eq!(refused.failures[1].fix, delete.fix);
    assert!(w.table().await.is_empty(), "the probes wrote to the table");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_to_start_with_doctors_message_and_receives_nothing() {
    let w = World::new().await;
    w.send(&[r#"{"type":"StudentDeleted","eventId":"e","studentId":"1","version":1}"#.to_owned()]).await;
    let out = Command::new(worker_binary())
        .env_clear()
        .envs(w.emulator.env_vars())
        .env("SQS_QUEUE_URL", &w.queue_url)
        .env("DYNAMODB_TABLE_NAME", "Studnets")
        .env("SQS_WAIT_TIME_SECONDS", "1")
        .arg("run")
        .output()
        .expect("run the worker");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("refusing to start: 1 pre-flight check(s) failed"), "{err}");
    assert!(err.contains("[FAIL] table: Studnets in ap-northeast-2"), "{err}");
    let doctor_out = doctor(&w).env("DYNAMODB_TABLE_NAME", "Studnets").output().expect("doctor");
    let doctor_cause = text(check(&report(&doctor_out), "table"), "cause");
    let same_words = doctor_cause.split(" (AWS said").next().unwrap_or_default().to_owned();
    assert!(err.contains(&same_words), "run said:\n{err}\ndoctor said: {doctor_cause}");

    // The message was never received.
    let got = w
        .sqs
        .receive_message()
        .queue_url(&w.queue_url)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receive");
    let messages = got.messages.unwrap_or_default();
    assert_eq!(messages.len(), 1);
    let count = messages[0].attributes().and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount));
    assert_eq!(count.map(String::as_str), Some("1"), "the worker received the message before refusing");
}

/// Run as the task (its role may not read the DLQ: the worker only sends
/// there), `doctor` warns about the DLQ checks instead of asking to widen
/// the task role, and does not fail on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_may_not_read_the_dlq_gets_a_warning_not_a_request_to_widen_it() {
    let w = World::new().await;
    let (_, attrs) = resources::queue(&w.sqs, &w.queue_url, "SQS_QUEUE_URL", REGION).await;
    let attrs = attrs.expect("the queue's attributes");
    let proxy = FaultProxy::start(&w.emulator.endpoint).await;
    proxy.inject(FaultRule::new("GetQueueAttributes", Fault::AccessDenied));
    let sqs = aws_sdk_sqs::Client::new(&sdk_config_with_endpoint(&proxy.endpoint).await);

    let dlq = resources::forward_dlq(&sqs, &w.dlq_url, resources::redrive_of(&attrs).as_ref(), REGION).await;
    let redrive = resources::redrive(&sqs, &attrs, &w.queue_url, REGION).await;
    for check in [&dlq, &redrive] {
        assert_eq!(check.status, Status::Warn, "{check}");
        assert!(!check.failed(), "{check}");
        let cause = check.cause.as_deref().unwrap_or_default();
        assert!(cause.contains("the worker does not need that action there"), "{check}");
        let fix = check.fix.as_deref().unwrap_or_default();
        assert!(fix.contains("iam/operator-policy.json") && !fix.contains("add \""), "{check}");
    }
    assert!(proxy.faults_injected("GetQueueAttributes") >= 2, "the DLQ reads went through the proxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_the_endpoint_and_the_account_and_warns_when_sts_is_out_of_reach() {
    let w = World::new().await;
    let r = report(&doctor(&w).output().expect("run doctor"));
    let endpoint = text(check(&r, "endpoint"), "detail");
    assert_eq!(endpoint, format!("{} (from AWS_ENDPOINT_URL)", w.emulator.endpoint));
    let account = check(&r, "account");
    assert_eq!(account["status"], "pass", "{account}");
    assert!(text(account, "detail").starts_with("123456789012 as arn:aws:"), "{account}");

    // STS alone out of reach: a warning, and doctor still passes.
    let out = doctor(&w).env("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9").output().expect("run doctor");
    let r = report(&out);
    assert!(out.status.success(), "{r:#}");
    let account = check(&r, "account");
    assert_eq!(account["status"], "warn", "{account}");
    assert!(text(account, "cause").contains("sts:GetCallerIdentity failed"), "{account}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_value_is_not_set_and_a_queue_url_of_another_region_fails() {
    let w = World::new().await;
    let r = report(&doctor(&w).env("DYNAMODB_TABLE_NAME", "").output().expect("run doctor"));
    assert_eq!(text(check(&r, "configuration"), "detail"), "DYNAMODB_TABLE_NAME is not set", "{r:#}");

    // moto finds the queue by its name, so only the region differs.
    let elsewhere = "https://sqs.us-east-1.amazonaws.com/123456789012/students";
    let out = doctor(&w).env("SQS_QUEUE_URL", elsewhere).output().expect("run doctor");
    let r = report(&out);
    assert_eq!(out.status.code(), Some(1), "{r:#}");
    let region = check(&r, "queue region");
    assert_eq!(region["status"], "fail", "{region}");
    assert!(text(region, "detail").contains("SQS_QUEUE_URL is in us-east-1"), "{region}");
    assert!(text(region, "fix").contains("AWS_REGION=us-east-1"), "{region}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_pre_flight_check_is_never_followed_by_checks_passed() {
    let w = World::new().await;
    // DynamoDB out of reach: not a setup problem run refuses on, so it starts
    // (and, with nothing on the queue, exits at once).
    let out = w
        .task_command()
        .env("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9")
        .env("SQS_WAIT_TIME_SECONDS", "1")
        .env("WORKER_EXIT_WHEN_EMPTY", "true")
        .arg("run")
        .output()
        .expect("run the worker");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", stderr(&out));
    assert!(stdout.contains("pre-flight check failed; starting anyway"), "{stdout}");
    assert!(!stdout.contains("checks passed"), "{stdout}");
}
