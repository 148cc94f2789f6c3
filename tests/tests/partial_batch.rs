//! The worker binary against SQS batch calls that succeed as calls but fail
//! some of their entries (the proxy's [`Fault::PartialBatchFailure`]): a
//! refused delete brings its message back after its visibility timeout, to
//! be absorbed as a duplicate; a refused heartbeat extension leaves the
//! message its old deadline. Either way the table ends equal to the model,
//! the queue empty and the DLQ holding only poison.

use std::time::Duration;

use serde_json::{Value, json};
use student_worker_tests::history::scenario;
use student_worker_tests::model::{assert_dead_letters, assert_tables_equal, expected_table, without_clock};
use student_worker_tests::proxy::{Fault, FaultProxy, FaultRule};
use student_worker_tests::worker_process::{Finished, Ledger, WorkerProcess, publish};
use student_worker_tests::world::World;

/// Generous: refused deletes each cost a 15 s visibility timeout, maybe several times.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs the binary through `proxy` until the queue is empty, with the
/// minimum visibility so refused entries come back soon.
async fn run_until_empty(w: &World, proxy: &FaultProxy) -> Finished {
    let env = [("WORKER_EXIT_WHEN_EMPTY", "true"), ("SQS_VISIBILITY_TIMEOUT_SECONDS", "15")];
    let run = WorkerProcess::spawn(w, &proxy.endpoint, &env).wait(RUN_TIMEOUT).await;
    assert!(run.ended_as_expected(), "{:?}\n{}", run.status, run.stderr);
    assert!(!run.panicked(), "{}", run.stderr);
    run
}

/// Asserts each injection of `PartialBatchFailure` into `operation` reached the
/// worker, which logged one `text` line per refused entry; returns how many.
fn assert_refusals_logged(proxy: &FaultProxy, run: &Finished, operation: &str, text: &str) -> usize {
    let injected = proxy.faults_of(operation, Fault::PartialBatchFailure.name());
    assert!(injected > 0, "PartialBatchFailure never hit {operation}: {:?}", proxy.fault_counts());
    let logged = run.lines_saying(text);
    assert!(logged >= 1, "no '{text}' line although {injected} {operation} entries were refused");
    assert!(logged <= usize::try_from(injected).expect("count"), "{logged} '{text}' lines, {injected} refusals");
    logged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_delete_entries_come_back_as_duplicates_and_nothing_is_lost() {
    let w = World::with_max_receive_count(50).await;
    let proxy = FaultProxy::start(&w.emulator.endpoint).await;
    proxy.inject(FaultRule::new("DeleteMessageBatch", Fault::PartialBatchFailure).rate(0.5));
    let s = scenario(21, 8, 4);
    let sent = publish(&w.sqs, &w.queue_url, &s.deliveries).await;

    let run = run_until_empty(&w, &proxy).await;
    // Each call's failure is its first entry, and the acker waits for every
    // answer: one 'delete refused' line per injection, exactly.
    let refused = assert_refusals_logged(&proxy, &run, "DeleteMessageBatch", "delete refused");
    assert_eq!(refused as u64, proxy.faults_of("DeleteMessageBatch", "PartialBatchFailure"));
    let mut ledger = Ledger::default();
    ledger.add(&run);
    let audit = ledger.audit(&sent, &s.poison);
    assert_eq!(audit.lost(), 0, "{audit:?}");
    assert_redeliveries_absorbed(&ledger, &sent, refused);
    assert_tables_equal(&without_clock(w.table().await), &expected_table(&s.events));
    // A poison message whose delete was refused is forwarded again: extra copies are fine.
    assert_dead_letters(&w.dead_letters().await, &s.poison);
    assert_eq!(w.queue_counts().await, (0, 0), "nothing left behind");
}

/// Every refused delete brought its message back for one more outcome, and a
/// valid message's later deliveries found their event (or a newer) stored.
fn assert_redeliveries_absorbed(ledger: &Ledger, sent: &[(String, String)], refused: usize) {
    let terminal: usize = sent.iter().map(|(id, _)| ledger.terminal(id).len()).sum();
    assert!(terminal >= sent.len() + refused, "{terminal} outcomes for {} messages and {refused} refusals", sent.len());
    let mut again = 0;
    for (id, body) in sent {
        let lines = ledger.terminal(id);
        let later: Vec<&str> = lines.iter().skip(1).map(|l| l.outcome.as_str()).collect();
        again += usize::from(!later.is_empty());
        let absorbed = later.iter().all(|o| ["duplicate", "stale", "invalid"].contains(o));
        assert!(absorbed, "message {id} was written again on a later delivery: {lines:?} {body}");
    }
    assert!(again >= 1, "no message was delivered again after its delete was refused");
}

/// Six students with versions 1 (upsert), 2 and 3 (patches), in order.
fn chains() -> Vec<Value> {
    let mut events = Vec::new();
    for s in 0..6 {
        let id = format!("hb{s}");
        events.push(json!({"type": "StudentUpserted", "eventId": format!("{id}-v1"), "studentId": id,
                           "version": 1, "student": {"name": format!("Student {id}"), "grade": 1}}));
        for v in 2..=3 {
            events.push(json!({"type": "StudentPatched", "eventId": format!("{id}-v{v}"), "studentId": id,
                               "version": v, "student": {"grade": v}}));
        }
    }
    events
}

/// The heartbeat's `(extended, failed)` from the worker's final summary line.
fn heartbeat_stats(run: &Finished) -> (u64, u64) {
    let line = run.log_lines().into_iter().rev().find(|l| l["message"] == "worker stopped");
    let summary = line.expect("a 'worker stopped' line");
    let number = |key: &str| summary[key].as_u64().unwrap_or_else(|| panic!("no number {key} in {summary}"));
    (number("heartbeat_extended"), number("heartbeat_failed"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_heartbeat_extensions_keep_the_old_deadline_and_nothing_is_lost() {
    let w = World::with_max_receive_count(50).await;
    let proxy = FaultProxy::start(&w.emulator.endpoint).await;
    // Each student's three writes take 9 s one after the other, and the
    // heartbeat is due 2 s after a receive (15 s visibility): it must extend.
    proxy.inject(FaultRule::new("PutItem", Fault::Latency(Duration::from_secs(3))));
    proxy.inject(FaultRule::new("UpdateItem", Fault::Latency(Duration::from_secs(3))));
    proxy.inject(FaultRule::new("ChangeMessageVisibilityBatch", Fault::PartialBatchFailure).rate(0.5));
    let events = chains();
    let bodies: Vec<String> = events.iter().map(Value::to_string).collect();
    let sent = publish(&w.sqs, &w.queue_url, &bodies).await;

    let run = run_until_empty(&w, &proxy).await;
    let refused = assert_refusals_logged(&proxy, &run, "ChangeMessageVisibilityBatch", "visibility extension refused");
    let (extended, failed) = heartbeat_stats(&run);
    assert!(failed >= refused as u64, "the summary counts {failed} failed extensions, the log {refused}");
    assert!(extended >= 1, "other extensions still went through: {extended}");
    let mut ledger = Ledger::default();
    ledger.add(&run);
    assert_eq!(ledger.audit(&sent, &[]).lost(), 0);
    assert_tables_equal(&without_clock(w.table().await), &expected_table(&events));
    assert!(w.dead_letters().await.is_empty(), "a healthy message reached the DLQ");
    assert_eq!(w.queue_counts().await, (0, 0), "nothing left behind");
}
