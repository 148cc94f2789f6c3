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
//!
//! A second scenario, `chaos_tasks_scaled_in_and_out_on_one_queue_lose_nothing`
//! (at the end), runs several worker processes at once on the queue, scaled
//! in with SIGTERM and out while upstream publishes, with the same faults and
//! checks; `scripts/chaos --tasks N` runs it large.

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

// ---------------------------------------------------------------------------
// Scale: several tasks on one queue at once, scaled in and out.
// ---------------------------------------------------------------------------

/// Tasks running at once in a CI-sized scale run (the starting count; the
/// run scales between 1 and twice this many).
const DEFAULT_TASKS: usize = 3;
/// Valid events in a CI-sized scale run.
const DEFAULT_SCALE_EVENTS: usize = 450;
/// Scale steps (one task stopped with SIGTERM, or one or two started) at
/// least, before the final run-to-empty; more happen while upstream still
/// publishes.
const DEFAULT_SCALE_STEPS: usize = 4;
/// Upstream publishes this many messages at a time...
const WAVE_MESSAGES: usize = 100;
/// ...with this pause between waves, while the tasks run.
const WAVE_PAUSE: Duration = Duration::from_secs(3);

/// Cap of the deferral ladder in the scale run (2, 8, then every 16 s): a
/// patch waits for its predecessor to be published, and chains of patches
/// wait for each other, so with 60 s the run would mostly wait out the
/// ladder at the end (the last 86 s of a 127 s run of 300 events).
const DEFAULT_SCALE_MAX_DEFER_SECONDS: u32 = 16;

/// A task of the scale run: [`worker`]'s settings but the deferral cap.
/// SIGTERM for a task once it is up. A task scaled out at the very step the
/// scaler stops everything would otherwise get its SIGTERM before its
/// process has reached `main`, where no program can handle it (it dies of
/// the signal with nothing received); once it logs that it is starting, its
/// handlers are in place and it must drain and exit 0.
async fn stop_when_up(task: usize, run: WorkerProcess) -> (usize, Finished) {
    run.until_stdout_contains("worker starting").await;
    (task, run.terminate().await)
}

fn scale_worker(w: &World, proxy: &FaultProxy, exit_when_empty: bool, max_defer_seconds: &str) -> WorkerProcess {
    let exit = if exit_when_empty { "true" } else { "false" };
    WorkerProcess::spawn(
        w,
        &proxy.endpoint,
        &[
            ("SQS_VISIBILITY_TIMEOUT_SECONDS", VISIBILITY_TIMEOUT_SECONDS),
            ("WORKER_SHUTDOWN_GRACE_SECONDS", "5"),
            ("WORKER_MAX_DEFER_SECONDS", max_defer_seconds),
            ("WORKER_EXIT_WHEN_EMPTY", exit),
        ],
    )
}

/// Adds a step to the scale run's timeline, and shows it at once (on stderr).
fn note(timeline: &mut Vec<String>, step: String) {
    eprintln!("scale: {step}");
    timeline.push(step);
}

/// One outcome line of one task, for the figures between tasks.
#[derive(Debug)]
struct TaskLine {
    task: usize,
    student: String,
    event: String,
    version: u64,
    outcome: String,
    /// Microseconds since the epoch: received, and the outcome logged.
    held: (i64, i64),
}

/// Microseconds since the epoch of an RFC 3339 UTC timestamp as the
/// worker's JSON logs write it (`2026-12-03T14:40:01.123456Z`).
fn epoch_micros(ts: &str) -> Option<i64> {
    let (date, time) = ts.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(str::parse::<i64>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(str::parse::<i64>);
    let (h, min, s) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let micros: i64 = format!("{frac:0<6}").get(..6)?.parse().ok()?;
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((((days * 24 + h) * 60 + min) * 60 + s) * 1_000_000 + micros)
}

fn task_lines(task: usize, run: &Finished) -> Vec<TaskLine> {
    run.log_lines()
        .iter()
        .filter(|l| l["message_id"].is_string() && l["outcome"].is_string())
        .filter_map(|l| {
            let logged = epoch_micros(l["timestamp"].as_str()?)?;
            let elapsed_ms = i64::try_from(l["elapsed_ms"].as_u64()?).ok()?;
            Some(TaskLine {
                task,
                student: l["student_id"].as_str()?.to_owned(),
                event: l["event_id"].as_str()?.to_owned(),
                version: l["version"].as_u64()?,
                outcome: l["outcome"].as_str()?.to_owned(),
                held: (logged - elapsed_ms * 1000, logged),
            })
        })
        .filter(|l| !l.student.is_empty())
        .collect()
}

/// What happened between tasks, from their outcome lines.
#[derive(Debug, Default)]
struct BetweenTasks {
    /// `duplicate` lines of one task for an event another task logged `applied`.
    duplicates: usize,
    /// `stale` lines of one task for a student of whom another task applied
    /// a newer version and this task wrote (applied or found stored) none.
    stale: usize,
    /// Students whose events were applied by more than one task.
    students_written_by_several: usize,
    /// Students two tasks held messages of at overlapping times (received to outcome line).
    students_held_by_two_at_once: usize,
}

fn between_tasks(lines: &[TaskLine]) -> BetweenTasks {
    let mut by_student: BTreeMap<&str, Vec<&TaskLine>> = BTreeMap::new();
    for l in lines {
        by_student.entry(&l.student).or_default().push(l);
    }
    let mut b = BetweenTasks::default();
    for lines in by_student.values() {
        let applied = |pred: &dyn Fn(&TaskLine) -> bool| lines.iter().any(|l| l.outcome == "applied" && pred(l));
        for l in lines {
            match l.outcome.as_str() {
                "duplicate" if applied(&|a| a.event == l.event && a.task != l.task) => b.duplicates += 1,
                "stale"
                    if applied(&|a| a.version > l.version && a.task != l.task)
                        && !lines.iter().any(|o| {
                            o.task == l.task
                                && o.version > l.version
                                && matches!(o.outcome.as_str(), "applied" | "duplicate")
                        }) =>
                {
                    b.stale += 1;
                }
                _ => {}
            }
        }
        let writers: std::collections::BTreeSet<usize> =
            lines.iter().filter(|l| l.outcome == "applied").map(|l| l.task).collect();
        if writers.len() > 1 {
            b.students_written_by_several += 1;
        }
        let overlap = lines.iter().enumerate().any(|(i, x)| {
            lines[i + 1..].iter().any(|y| x.task != y.task && x.held.0 < y.held.1 && y.held.0 < x.held.1)
        });
        if overlap {
            b.students_held_by_two_at_once += 1;
        }
    }
    b
}

/// Several tasks consume the queue at once, as ECS runs them in production
/// (the template scales on backlog per task), so two tasks can hold events
/// of one student at the same time. `CHAOS_TASKS` tasks (default 3) start on
/// one standard queue through the fault proxy (the faults of the test
/// above) while upstream publishes in waves; every few seconds the run
/// scales in (SIGTERM to a random task) or out (one or two more), between 1
/// and 2 × `CHAOS_TASKS` tasks, at least `CHAOS_SCALE_STEPS` times (default
/// 4) and for as long as upstream publishes. Then `CHAOS_TASKS` tasks start
/// with `WORKER_EXIT_WHEN_EMPTY=true`, every other task gets its SIGTERM, and
/// the last ones run until the queue is empty. Checks: every SIGTERM exits
/// 0 and every final task too, no panic, the table equals in-order
/// application, only poison is dead-lettered, nothing is lost or left.
/// Size: `CHAOS_SCALE_EVENTS` valid events (default 450), `CHAOS_SEED`.
/// `scripts/chaos --tasks N --events E` runs it large (docs/reliability.md,
/// "Many tasks at once").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_tasks_scaled_in_and_out_on_one_queue_lose_nothing() {
    let tasks: usize = env_or("CHAOS_TASKS", DEFAULT_TASKS).max(1);
    let events: usize = env_or("CHAOS_SCALE_EVENTS", DEFAULT_SCALE_EVENTS);
    let min_steps: usize = env_or("CHAOS_SCALE_STEPS", DEFAULT_SCALE_STEPS);
    let seed: u64 = env_or("CHAOS_SEED", 7);
    let max_defer = env_or("CHAOS_SCALE_MAX_DEFER_SECONDS", DEFAULT_SCALE_MAX_DEFER_SECONDS).to_string();
    let started = Instant::now();
    let w = World::with_max_receive_count(MAX_RECEIVE_COUNT).await;
    let s = sized_scenario(seed, events);
    let proxy = FaultProxy::start_with_seed(&w.emulator.endpoint, seed).await;
    inject_faults(&proxy);
    let _ = worker_binary();
    let publisher = {
        let (sqs, url, bodies) = (w.sqs.clone(), w.queue_url.clone(), s.deliveries.clone());
        tokio::spawn(async move {
            let mut sent = Vec::with_capacity(bodies.len());
            for (i, wave) in bodies.chunks(WAVE_MESSAGES).enumerate() {
                if i > 0 {
                    tokio::time::sleep(WAVE_PAUSE).await;
                }
                sent.extend(publish(&sqs, &url, wave).await);
            }
            (sent, started.elapsed().as_secs())
        })
    };

    let mut rng = StdRng::seed_from_u64(seed ^ 0x5CA1E);
    let mut running: Vec<(usize, WorkerProcess)> =
        (0..tasks).map(|i| (i, scale_worker(&w, &proxy, false, &max_defer))).collect();
    let mut started_tasks = tasks;
    let mut max_at_once = tasks;
    let (mut scaled_in, mut scaled_out) = (0, 0);
    let mut timeline = vec![format!("0s start {tasks}")];
    let mut stopping: tokio::task::JoinSet<(usize, Finished)> = tokio::task::JoinSet::new();
    let mut lines: Vec<TaskLine> = Vec::new();
    let mut ledger = Ledger::default();
    let finish = |task: usize, run: &Finished, ledger: &mut Ledger, lines: &mut Vec<TaskLine>| {
        if !run.ended_as_expected() {
            let out: Vec<&str> = run.stdout.lines().collect();
            eprintln!(
                "task {task} ended {:?} after {:?} ({} stdout lines; first and last: {:?} {:?})",
                run.status,
                run.stop,
                out.len(),
                out.first(),
                out.last()
            );
        }
        check_run(run);
        ledger.add(run);
        lines.extend(task_lines(task, run));
    };
    let mut step = 0;
    while step < min_steps || !publisher.is_finished() {
        tokio::time::sleep(Duration::from_millis(rng.random_range(3_000..=8_000))).await;
        // The first step scales in, the second out; then towards `tasks`, at random.
        let scale_in = match step {
            0 => running.len() > 1,
            1 => false,
            _ if running.len() <= 1 => false,
            _ if running.len() >= 2 * tasks => true,
            _ => rng.random_bool(if running.len() > tasks { 0.7 } else { 0.3 }),
        };
        if scale_in {
            // ECS stops a task while the others go on: the scaler does not wait for the drain.
            let (task, run) = running.swap_remove(rng.random_range(0..running.len()));
            stopping.spawn(stop_when_up(task, run));
            scaled_in += 1;
            note(&mut timeline, format!("{}s -1: task {task} ({})", started.elapsed().as_secs(), running.len()));
        } else {
            let more = rng.random_range(1..=2).min(2 * tasks - running.len()).max(1);
            for _ in 0..more {
                running.push((started_tasks, scale_worker(&w, &proxy, false, &max_defer)));
                started_tasks += 1;
            }
            scaled_out += 1;
            max_at_once = max_at_once.max(running.len());
            note(&mut timeline, format!("{}s +{more} ({})", started.elapsed().as_secs(), running.len()));
        }
        step += 1;
    }
    let (sent, published_at) = publisher.await.expect("the publisher");
    note(&mut timeline, format!("{published_at}s upstream done: {} messages", sent.len()));
    // The last scale-in: fresh tasks that exit once the queue is empty take
    // over, every other task gets its SIGTERM.
    let finals: Vec<(usize, WorkerProcess)> =
        (0..tasks).map(|i| (started_tasks + i, scale_worker(&w, &proxy, true, &max_defer))).collect();
    started_tasks += tasks;
    max_at_once = max_at_once.max(running.len() + tasks);
    note(
        &mut timeline,
        format!("{}s +{tasks} exiting when empty, -{} ({tasks})", started.elapsed().as_secs(), running.len()),
    );
    for (task, run) in running {
        stopping.spawn(stop_when_up(task, run));
        scaled_in += 1;
    }
    while let Some(stopped) = stopping.join_next().await {
        let (task, run) = stopped.expect("a SIGTERM");
        finish(task, &run, &mut ledger, &mut lines);
    }
    note(&mut timeline, format!("{}s every SIGTERMed task exited", started.elapsed().as_secs()));
    for (task, run) in finals {
        let run = run.wait(Duration::from_secs(60 * 60)).await;
        finish(task, &run, &mut ledger, &mut lines);
    }
    note(&mut timeline, format!("{}s the queue is empty, the last tasks exited", started.elapsed().as_secs()));

    assert_tables_equal(&without_clock(w.table().await), &expected_table(&s.events));
    let dead = w.dead_letters().await;
    let extra_dead_letters = assert_dead_letters(&dead, &s.poison);
    assert_eq!(w.queue_counts().await, (0, 0), "nothing left on the queue or in flight");
    let audit = ledger.audit(&sent, &s.poison);
    assert_eq!(audit.lost(), 0, "{audit:?}");

    timeline.sort_by_key(|t| t.split('s').next().and_then(|n| n.parse::<u64>().ok()));
    let between = between_tasks(&lines);
    let counts = ledger.outcome_counts();
    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    for ((operation, fault), n) in proxy.fault_counts() {
        *faults.entry(format!("{operation}/{fault}")).or_default() += n;
    }
    let figures = serde_json::json!({
        "seed": seed,
        "tasks_at_start": tasks,
        "max_defer_seconds": max_defer,
        "tasks_started": started_tasks,
        "tasks_at_once_max": max_at_once,
        "scaled_in_sigterms": scaled_in,
        "scaled_out_steps": scaled_out,
        "timeline": timeline,
        "events": s.events.len(),
        "students": expected_table(&s.events).len(),
        "messages": sent.len(),
        "duplicates": s.deliveries.len() - s.events.len() - s.poison.len(),
        "poison": s.poison.len(),
        "faults_injected": faults,
        "faults_total": proxy.faults_injected("*"),
        "calls_through_proxy": proxy.calls("*"),
        "outcome_lines": counts,
        "refused_conditional_writes": counts.get("duplicate").unwrap_or(&0) + counts.get("stale").unwrap_or(&0),
        "refused_between_tasks": {
            "duplicate": between.duplicates,
            "stale": between.stale,
        },
        "students_written_by_several_tasks": between.students_written_by_several,
        "students_held_by_two_tasks_at_once": between.students_held_by_two_at_once,
        "applied_messages": audit.applied,
        "superseded_messages": audit.superseded,
        "dead_lettered_messages": audit.dead_lettered,
        "dlq_extra_copies": extra_dead_letters,
        "messages_lost": audit.lost(),
        "wall_seconds": started.elapsed().as_secs(),
    });
    println!("CHAOS SCALE FIGURES {figures:#}");
    assert!(
        tasks == 1 || between.students_held_by_two_at_once > 0,
        "no two tasks ever held one student's messages at once: the run tested nothing between tasks"
    );
}
