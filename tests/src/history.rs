//! Random but reproducible event histories for property tests: per student a
//! valid sequence of versions 1, 2, 3, ..., delivered shuffled and with
//! duplicates, plus poison messages of every kind with the `ErrorCode` each
//! must reach the DLQ with.

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// A scenario: what happened upstream, and what the queue delivers.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The valid events, one per (student, version).
    pub events: Vec<Value>,
    /// Message bodies in delivery order: every event at least once, some twice, and the poison.
    pub deliveries: Vec<String>,
    /// Poison bodies and the `ErrorCode` each must be dead-lettered with.
    pub poison: Vec<(String, &'static str)>,
}

/// Builds a scenario with `students` students of 1..=`max_events` events each.
pub fn scenario(seed: u64, students: usize, max_events: u64) -> Scenario {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut events = Vec::new();
    let mut poison = Vec::new();
    for s in 0..students {
        let id = format!("s{seed}-{s}");
        let history = history(&mut rng, &id, max_events);
        if history.last().is_some_and(|e| e["type"] == "StudentDeleted") && rng.random_bool(0.5) {
            let v = history.len() as u64 + 1;
            poison.push((patch(&mut rng, &id, v).to_string(), "PatchOnDeleted"));
        }
        events.extend(history);
    }
    poison.push(("{not json".to_owned(), "MalformedJson"));
    poison.push((json!({"type": "StudentUpserted", "eventId": "bad-v", "studentId": "p1", "version": 0, "student": {"name": "X"}}).to_string(), "InvalidEvent"));
    poison.push((json!({"type": "StudentUpserted", "eventId": "bad-g", "studentId": "p2", "version": 1, "student": {"name": "X", "grade": 100}}).to_string(), "InvalidEvent"));
    poison.push((
        json!({"type": "StudentPatched", "eventId": "bad-p", "studentId": "p3", "version": 2, "student": {}})
            .to_string(),
        "InvalidEvent",
    ));
    let mut deliveries: Vec<String> = events.iter().map(Value::to_string).collect();
    let dups: Vec<String> = deliveries.iter().filter(|_| rng.random_bool(0.3)).cloned().collect();
    deliveries.extend(dups);
    deliveries.extend(poison.iter().map(|(b, _)| b.clone()));
    deliveries.shuffle(&mut rng);
    Scenario { events, deliveries, poison }
}

fn history(rng: &mut StdRng, id: &str, max_events: u64) -> Vec<Value> {
    let n = rng.random_range(1..=max_events);
    let mut out: Vec<Value> = Vec::new();
    for v in 1..=n {
        let after_delete = out.last().is_none_or(|e| e["type"] == "StudentDeleted");
        let roll = rng.random_range(0..10);
        let event = if !after_delete && roll < 5 {
            patch(rng, id, v)
        } else if v > 1 && roll >= 8 {
            json!({"type": "StudentDeleted", "eventId": format!("{id}-v{v}"), "studentId": id, "version": v})
        } else {
            upsert(rng, id, v)
        };
        out.push(event);
    }
    out
}

fn upsert(rng: &mut StdRng, id: &str, v: u64) -> Value {
    let mut student = json!({"name": format!("Student {id} v{v}")});
    for (field, value) in [
        ("email", email(id, v)),
        ("grade", json!(rng.random_range(0..=99))),
        ("status", status(rng)),
        ("courses", courses(rng)),
    ] {
        if rng.random_bool(0.6) {
            student[field] = value;
        }
    }
    with_meta(
        rng,
        json!({"type": "StudentUpserted", "eventId": format!("{id}-v{v}"), "studentId": id, "version": v, "student": student}),
    )
}

fn patch(rng: &mut StdRng, id: &str, v: u64) -> Value {
    let mut student = json!({});
    while student.as_object().is_some_and(serde_json::Map::is_empty) {
        let choices = [
            ("name", json!(format!("Renamed {id} v{v}"))),
            ("email", if rng.random_bool(0.3) { Value::Null } else { email(id, v) }),
            ("grade", if rng.random_bool(0.3) { Value::Null } else { json!(rng.random_range(0..=99)) }),
            ("status", if rng.random_bool(0.3) { Value::Null } else { status(rng) }),
            ("courses", if rng.random_bool(0.3) { json!([]) } else { courses(rng) }),
        ];
        for (field, value) in choices {
            if rng.random_bool(0.4) {
                student[field] = value;
            }
        }
    }
    with_meta(
        rng,
        json!({"type": "StudentPatched", "eventId": format!("{id}-v{v}"), "studentId": id, "version": v, "student": student}),
    )
}

fn with_meta(rng: &mut StdRng, mut event: Value) -> Value {
    if rng.random_bool(0.5) {
        event["occurredAt"] = json!(format!("2026-11-24T10:{:02}:00Z", rng.random_range(0..60)));
    }
    if rng.random_bool(0.1) {
        event["upstreamTrace"] = json!("ignored by the tolerant reader");
    }
    event
}

fn email(id: &str, v: u64) -> Value {
    json!(format!("{id}.v{v}@example.edu"))
}

fn status(rng: &mut StdRng) -> Value {
    json!(["active", "inactive", "graduated", "withdrawn"][rng.random_range(0..4)])
}

fn courses(rng: &mut StdRng) -> Value {
    let all = ["MATH101", "CS100", "PHYS200", "HIST110", "ART101"];
    let n = rng.random_range(0..=3);
    json!(all.choose_multiple(rng, n).collect::<Vec<_>>())
}

/// A scenario of about `target_events` valid events (students of 1..=6
/// events each), every event delivered once and 30 % of them twice, all
/// shuffled, plus poison: the PatchOnDeleted patches [`scenario`] makes and
/// one more poison message of a rotating kind per 50 events (each unique, so
/// each must reach the DLQ once with its code).
pub fn sized_scenario(seed: u64, target_events: usize) -> Scenario {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut events = Vec::new();
    let mut poison = Vec::new();
    let mut s = 0;
    while events.len() < target_events {
        let id = format!("c{seed}-{s}");
        let history = history(&mut rng, &id, 6);
        if history.last().is_some_and(|e| e["type"] == "StudentDeleted") && rng.random_bool(0.5) {
            let v = history.len() as u64 + 1;
            poison.push((patch(&mut rng, &id, v).to_string(), "PatchOnDeleted"));
        }
        events.extend(history);
        s += 1;
    }
    for i in 0..(target_events / 50).max(POISON_KINDS) {
        poison.push(poison_of_kind(i));
    }
    let mut deliveries: Vec<String> = events.iter().map(Value::to_string).collect();
    let dups: Vec<String> = deliveries.iter().filter(|_| rng.random_bool(0.3)).cloned().collect();
    deliveries.extend(dups);
    deliveries.extend(poison.iter().map(|(b, _)| b.clone()));
    deliveries.shuffle(&mut rng);
    Scenario { events, deliveries, poison }
}

/// How many kinds [`poison_of_kind`] rotates through.
const POISON_KINDS: usize = 6;

/// The `i`-th extra poison message: unique body, and the code it must get.
fn poison_of_kind(i: usize) -> (String, &'static str) {
    let id = format!("poison-{i}");
    match i % POISON_KINDS {
        0 => (format!("{{\"type\":\"StudentUpserted\",\"eventId\":\"{id}\""), "MalformedJson"),
        1 => (json!({"type": "StudentUpserted", "eventId": id, "studentId": id, "version": 0, "student": {"name": "X"}}).to_string(), "InvalidEvent"),
        2 => (json!({"type": "StudentUpserted", "eventId": id, "studentId": id, "version": 1, "student": {"name": "X", "grade": 100}}).to_string(), "InvalidEvent"),
        3 => (json!({"type": "StudentPatched", "eventId": id, "studentId": id, "version": 2, "student": {}}).to_string(), "InvalidEvent"),
        4 => (json!({"type": "StudentRenamed", "eventId": id, "studentId": id, "version": 1}).to_string(), "InvalidEvent"),
        _ => (json!({"type": "StudentDeleted", "eventId": id, "studentId": format!("{id}\u{7}"), "version": 1}).to_string(), "InvalidEvent"),
    }
}
