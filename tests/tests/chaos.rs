//! The chaos suite: the real worker binary through the fault proxy, killed
//! with SIGKILL at random moments (and now and then stopped with SIGTERM),
//! restarted, and finally run until the queue is empty; then the table must
//! equal in-order application of every student's events, every poison
//! message must be in the DLQ with its `ErrorCode`, and every message must be
//! accounted for (applied, superseded or dead-lettered, from the worker's
//! outcome lines), with nothing left on the queue and no panic.
//!
//! Size: `CHAOS_EVENTS` valid events (default 300, a CI-sized run; moto
//! writes about 200 items a second), `CHAOS_KILLS` stops before the last run
//! (default 4: three SIGKILLs and a SIGTERM), `CHAOS_SEED` (default 7). `scripts/chaos --events 5000` runs it large and
//! prints the figures (docs/reliability.md, "Chaos suite").
//!
//! Faults, as shares of each operation's calls: writes (PutItem, UpdateItem)
//! 20 % throttled (half `ProvisionedThroughputExceededException`, half
//! `ThrottlingException`), 5 % ambiguous 500s after the write applied, 1 %
//! each dropped connection before and after forwarding; receives, deletes,
//! visibility changes and DLQ sends a few percent of 5xx, throttling,
//! `OverLimit` and dropped connections.
//!
//! maxReceiveCount is [`MAX_RECEIVE_COUNT`] = 100: a healthy message is
//! received again after every kill that caught it in flight, every lost
//! receive, and every deferral (a patch delivered long before its
//! predecessor comes back after 2, 8, 32, then every 60 s,
//! `WORKER_MAX_DEFER_SECONDS`, for as long as that predecessor is held up). 100 is far above that sum,
//! so redrive never takes a healthy message; a healthy message in the DLQ
//! fails the test.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use student_worker_tests::history::sized_scenario;
use student_worker_tests::model::{assert_dead_letters, assert_tables_equal, expected_table, without_clock};
use student_worker_tests::proxy::{Fault, FaultProxy};
use student_worker_tests::worker_process::{Finished, Ledger, WorkerProcess, publish};
use student_worker_tests::world::{World, worker_binary};

/// Redrive threshold of the source queue (see the module docs for why).
const MAX_RECEIVE_COUNT: u32 = 100;
/// Valid events in a CI-sized run.
const DEFAULT_EVENTS: usize = 300;
/// Stops before the last run in a CI-sized run (the 4th a SIGTERM).
const DEFAULT_KILLS: usize = 4;
/// Every this many restarts, a SIGTERM instead of a SIGKILL.
const SIGTERM_EVERY: usize = 4;
/// The worker's visibility timeout: the shortest allowed, so killed messages come back soon.
const VISIBILITY_TIMEOUT_SECONDS: &str = "15";
/// Cap of the deferral ladder (2, 8, 32, then 60 s): with the default 900 s a
/// patch deferred for the 5th time waits 512 s, and the final run with it; a
/// much lower cap makes patches whose predecessors are far behind come back
/// so often that moto (each call scans the whole queue) spends itself on
/// them. The receives this costs are what maxReceiveCount 100 is for.
const MAX_DEFER_SECONDS: &str = "60";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

/// The fault mix, as overall shares of each operation's calls.
fn inject_faults(proxy: &FaultProxy) {
    let writes = [
        (Fault::Throttle, 0.10),
        (Fault::ThrottlingException, 0.10),
        (Fault::InternalErrorAfterApply, 0.05),
        (Fault::DropBeforeForward, 0.01),
        (Fault::DropAfterForward, 0.01),
    ];
    proxy.inject_mix("PutItem", &writes);
    proxy.inject_mix("UpdateItem", &writes);
    proxy.inject_mix(
        "ReceiveMessage",
        &[(Fault::ServiceUnavailable, 0.02), (Fault::OverLimit, 0.01), (Fault::DropAfterForward, 0.01)],
    );
    proxy.inject_mix("DeleteMessageBatch", &[(Fault::InternalError, 0.02), (Fault::InternalErrorAfterApply, 0.02)]);
    proxy.inject_mix("ChangeMessageVisibilityBatch", &[(Fault::ThrottlingException, 0.02)]);
    proxy.inject_mix("SendMessage", &[(Fault::ServiceUnavailable, 0.05)]);
}

fn worker(w: &World, proxy: &FaultProxy, exit_when_empty: bool) -> WorkerProcess {
    let exit = if exit_when_empty { "true" } else { "false" };
    WorkerProcess::spawn(
        w,
        &proxy.endpoint,
        &[
            ("SQS_VISIBILITY_TIMEOUT_SECONDS", VISIBILITY_TIMEOUT_SECONDS),
            ("WORKER_SHUTDOWN_GRACE_SECONDS", "5"),
            ("WORKER_MAX_DEFER_SECONDS", MAX_DEFER_SECONDS),
            ("WORKER_EXIT_WHEN_EMPTY", exit),
        ],
    )
}

fn check_run(run: &Finished) {
    assert!(run.ended_as_expected(), "{:?} ended {:?}\n{}", run.stop, run.status, run.stderr);
    assert!(!run.panicked(), "the worker panicked:\n{}\n{}", run.stderr, run.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_kills_throttles_and_ambiguous_writes_lose_nothing() {
    let events: usize = env_or("CHAOS_EVENTS", DEFAULT_EVENTS);
    let kills: usize = env_or("CHAOS_KILLS", DEFAULT_KILLS);
    let seed: u64 = env_or("CHAOS_SEED", 7);
    let started = Instant::now();
    let w = World::with_max_receive_count(MAX_RECEIVE_COUNT).await;
    let s = sized_scenario(seed, events);
    let proxy = FaultProxy::start_with_seed(&w.emulator.endpoint, seed).await;
    inject_faults(&proxy);
    let _ = worker_binary(); // built before the clock of the first run starts
    // Published while the workers run, as upstream would: moto's SQS calls
    // cost time in proportion to the queue's length, so a queue holding
    // thousands of messages at once would make the run quadratic.
    let publisher = {
        let (sqs, url, bodies) = (w.sqs.clone(), w.queue_url.clone(), s.deliveries.clone());
        tokio::spawn(async move { publish(&sqs, &url, &bodies).await })
    };

    let mut rng = StdRng::seed_from_u64(seed);
    let mut ledger = Ledger::default();
    let (mut killed, mut terminated) = (0, 0);
    for round in 1..=kills {
        let run = worker(&w, &proxy, false);
        tokio::time::sleep(Duration::from_millis(rng.random_range(2_000..=12_000))).await;
        let run = if round % SIGTERM_EVERY == 0 {
            terminated += 1;
            run.terminate().await
        } else {
            killed += 1;
            run.kill().await
        };
        check_run(&run);
        ledger.add(&run);
    }
    let sent = publisher.await.expect("the publisher");
    // Killed messages come back after their visibility timeout; the last run
    // waits for them (and for deferred patches) before it exits.
    let last = worker(&w, &proxy, true).wait(Duration::from_secs(60 * 60)).await;
    check_run(&last);
    ledger.add(&last);

    assert_tables_equal(&without_clock(w.table().await), &expected_table(&s.events));
    let dead = w.dead_letters().await;
    let extra_dead_letters = assert_dead_letters(&dead, &s.poison);
    assert_eq!(w.queue_counts().await, (0, 0), "nothing left on the queue or in flight");
    let audit = ledger.audit(&sent, &s.poison);
    assert_eq!(audit.lost(), 0, "{audit:?}");

    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    for ((operation, fault), n) in proxy.fault_counts() {
        *faults.entry(format!("{operation}/{fault}")).or_default() += n;
    }
    let mut poison_codes: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, code) in &s.poison {
        *poison_codes.entry(code).or_default() += 1;
    }
    let figures = serde_json::json!({
        "seed": seed,
        "events": s.events.len(),
        "students": expected_table(&s.events).len(),
        "messages": sent.len(),
        "duplicates": s.deliveries.len() - s.events.len() - s.poison.len(),
        "poison": poison_codes,
        "faults_injected": faults,
        "faults_total": proxy.faults_injected("*"),
        "calls_through_proxy": proxy.calls("*"),
        "sigkills_survived": killed,
        "sigterms": terminated,
        "outcome_lines": ledger.outcome_counts(),
        "applied_messages": audit.applied,
        "superseded_messages": audit.superseded,
        "dead_lettered_messages": audit.dead_lettered,
        "dlq_extra_copies": extra_dead_letters,
        "messages_lost": audit.lost(),
        "wall_seconds": started.elapsed().as_secs(),
    });
    println!("CHAOS FIGURES {figures:#}");
    assert!(
        faults.keys().any(|k| k.ends_with("/InternalErrorAfterApply")) && faults.keys().any(|k| k.contains("Throttl")),
        "the run was too short to inject the faults it is about: {faults:?}"
    );
}
