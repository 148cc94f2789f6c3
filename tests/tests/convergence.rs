//! The property the product stands on: whatever the order and duplication of
//! delivery, each student's item ends equal to applying that student's events
//! in version order, and every poison message is in the DLQ with its code.
//! Random interleavings from fixed seeds (reproducible), against moto.

use student_worker_tests::history::scenario;
use student_worker_tests::model::{assert_tables_equal, expected_table, without_clock};
use student_worker_tests::world::World;

async fn check(seed: u64) {
    // A high maxReceiveCount: patches may be deferred several times here.
    let w = World::with_max_receive_count(50).await;
    let s = scenario(seed, 12, 6);
    w.send(&s.deliveries).await;
    let summary = w.run(w.config()).await.expect("run");
    assert_eq!(summary.panicked, 0);
    assert_tables_equal(&without_clock(w.table().await), &expected_table(&s.events));
    let dead = w.dead_letters().await;
    // The worker runs several receives at once; moto's ReceiveMessage takes no
    // lock, so now and then it hands one message to two of them, as an SQS
    // standard queue may (at-least-once). Count distinct bodies.
    let mut distinct: Vec<&str> = dead.iter().map(|d| d.body.as_str()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), s.poison.len(), "seed {seed}: {summary:?}");
    for (body, code) in &s.poison {
        let d =
            dead.iter().find(|d| &d.body == body).unwrap_or_else(|| panic!("seed {seed}: {body} not dead-lettered"));
        assert_eq!(d.attributes["ErrorCode"], *code, "seed {seed}: {body}");
    }
    assert_eq!(w.queue_counts().await, (0, 0), "seed {seed}: nothing left behind");
    let accounted: u64 = ["applied", "duplicate", "stale", "invalid"].iter().map(|o| summary.outcomes[o]).sum();
    let deliveries = s.deliveries.len() as u64;
    assert!(
        (deliveries..=summary.received).contains(&accounted),
        "seed {seed}: every delivery finished (a redelivery at most once more): {summary:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_interleavings_converge_seed_1() {
    check(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_interleavings_converge_seed_2() {
    check(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_interleavings_converge_seed_3() {
    check(3).await;
}
