//! Trace context through the worker, as the real binary carries it: a
//! message's `AWSTraceHeader` (X-Ray) or `traceparent` attribute (W3C) gives
//! its log lines a `trace_id`, a traced message that is dead-lettered keeps
//! the header in the DLQ, and `dlq replay` keeps it on the way back.

use std::time::Duration;

use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName, MessageSystemAttributeNameForSends, MessageSystemAttributeValue,
};
use serde_json::{Value, json};
use student_worker_tests::proxy::{Fault, FaultProxy, FaultRule};
use student_worker_tests::worker_process::WorkerProcess;
use student_worker_tests::world::{World, worker_binary};

const XRAY_ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";
const W3C_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn header(root: &str) -> String {
    format!("Root={root};Parent=53995c3f42cd8ad8;Sampled=1")
}

fn upsert(id: &str) -> String {
    json!({"type": "StudentUpserted", "eventId": format!("{id}-v1"), "studentId": id, "version": 1, "student": {"name": "N"}})
        .to_string()
}

/// Sends `body` with an X-Ray header and/or a `traceparent` attribute.
async fn send(w: &World, body: &str, xray: Option<&str>, traceparent: Option<&str>) {
    let mut send = w.sqs.send_message().queue_url(&w.queue_url).message_body(body);
    if let Some(root) = xray {
        let value = MessageSystemAttributeValue::builder().data_type("String").string_value(header(root)).build();
        send =
            send.message_system_attributes(MessageSystemAttributeNameForSends::AwsTraceHeader, value.expect("value"));
    }
    if let Some(tp) = traceparent {
        let value = MessageAttributeValue::builder().data_type("String").string_value(tp).build().expect("value");
        send = send.message_attributes("traceparent", value);
    }
    send.send().await.expect("send");
}

/// (body, AWSTraceHeader) of every message on `url`, left visible again.
async fn headers_on(w: &World, url: &str) -> Vec<(String, Option<String>)> {
    let out = w
        .sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .message_system_attribute_names(MessageSystemAttributeName::AwsTraceHeader)
        .send()
        .await
        .expect("receive");
    out.messages
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let header = m.attributes.unwrap_or_default().get(&MessageSystemAttributeName::AwsTraceHeader).cloned();
            (m.body.unwrap_or_default(), header)
        })
        .collect()
}

fn outcome_of<'a>(lines: &'a [Value], student: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l.get("outcome").is_some() && l["student_id"] == student)
        .unwrap_or_else(|| panic!("no outcome line for student {student}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_ids_reach_the_log_and_the_header_survives_the_dlq_and_replay() {
    let w = World::new().await;
    let proxy = FaultProxy::start(&w.emulator.endpoint).await;
    let worker = WorkerProcess::spawn(&w, &proxy.endpoint, &[]);
    // Once it receives, the pre-flight (which probes PutItem) is over.
    let patience = std::time::Instant::now();
    while proxy.calls("ReceiveMessage") == 0 {
        assert!(patience.elapsed() < Duration::from_secs(60), "the worker never received");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // DynamoDB refuses the traced event's item: it is dead-lettered as
    // ItemRejected, a code a replay may retry.
    proxy.inject(FaultRule::new("PutItem", Fault::ValidationException).times(1));
    send(&w, &upsert("1"), Some(XRAY_ROOT), None).await;
    while proxy.faults_injected("PutItem") == 0 {
        assert!(patience.elapsed() < Duration::from_secs(60), "the traced event was never written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let traceparent = format!("00-{W3C_TRACE}-00f067aa0ba902b7-01");
    // Both: the X-Ray header wins.
    send(&w, &upsert("2"), Some(XRAY_ROOT), Some(&traceparent)).await;
    // A producer that only speaks W3C, and one that traces nothing.
    send(&w, &upsert("3"), None, Some(&traceparent)).await;
    send(&w, &upsert("4"), None, None).await;
    while w.table().await.len() < 3 {
        assert!(patience.elapsed() < Duration::from_secs(60), "the other events were never written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let run = worker.terminate().await;
    assert!(run.ended_as_expected(), "{}", run.stderr);
    let lines = run.log_lines();
    let first = outcome_of(&lines, "1");
    assert_eq!((first["outcome"].as_str(), first["error_code"].as_str()), (Some("invalid"), Some("ItemRejected")));
    assert_eq!(first["trace_id"], XRAY_ROOT);
    assert_eq!(outcome_of(&lines, "2")["trace_id"], XRAY_ROOT);
    assert_eq!(outcome_of(&lines, "3")["trace_id"], W3C_TRACE);
    assert!(outcome_of(&lines, "4").get("trace_id").is_none(), "untraced: no field");

    let dead = headers_on(&w, &w.dlq_url).await;
    assert_eq!(dead, [(upsert("1"), Some(header(XRAY_ROOT)))], "the dead letter keeps its trace header");

    let replay = std::process::Command::new(worker_binary())
        .env_clear()
        .envs(w.emulator.env_vars())
        .env("SQS_DLQ_URL", &w.dlq_url)
        .env("SQS_QUEUE_URL", &w.queue_url)
        .args(["dlq", "replay"])
        .output()
        .expect("run dlq replay");
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    let back = headers_on(&w, &w.queue_url).await;
    assert_eq!(back, [(upsert("1"), Some(header(XRAY_ROOT)))], "the replay keeps it too");
}
