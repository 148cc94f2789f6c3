//! The reference model the worker is checked against: each student's events
//! applied in version order, written independently of the worker's code so
//! the two can disagree. Items are compared without `UpdatedAt` (the clock).

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;

use crate::world::{DeadLetter, Item};

/// The table expected after applying `events` (valid events only) in order.
pub fn expected_table(events: &[Value]) -> BTreeMap<String, Item> {
    let mut by_student: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for e in events {
        by_student.entry(e["studentId"].as_str().expect("studentId").to_owned()).or_default().push(e);
    }
    by_student
        .into_iter()
        .filter_map(|(id, mut evs)| {
            evs.sort_by_key(|e| e["version"].as_u64());
            evs.dedup_by_key(|e| e["version"].as_u64());
            let item = evs.into_iter().fold(None, apply);
            item.map(|i| (id, i))
        })
        .collect()
}

/// Applies one event to a student's item.
pub fn apply(state: Option<Item>, event: &Value) -> Option<Item> {
    let mut item = match event["type"].as_str() {
        Some("StudentUpserted") => {
            let mut item = Item::new();
            for (field, value) in event["student"].as_object().expect("student") {
                set_field(&mut item, field, value);
            }
            item
        }
        Some("StudentPatched") => {
            let mut item = state.expect("a patch needs a predecessor");
            for (field, value) in event["student"].as_object().expect("student") {
                set_field(&mut item, field, value);
            }
            item
        }
        Some("StudentDeleted") => Item::from([("Deleted".to_owned(), AttributeValue::Bool(true))]),
        other => panic!("unknown type {other:?}"),
    };
    item.insert("StudentID".into(), s(event["studentId"].as_str().expect("id")));
    item.insert("Version".into(), AttributeValue::N(event["version"].to_string()));
    item.insert("EventID".into(), s(event["eventId"].as_str().expect("eventId")));
    match event.get("occurredAt").and_then(Value::as_str) {
        Some(at) => item.insert("OccurredAt".into(), s(at)),
        None => item.remove("OccurredAt"),
    };
    Some(item)
}

fn set_field(item: &mut Item, field: &str, value: &Value) {
    let attribute = match field {
        "name" => "Name",
        "email" => "Email",
        "grade" => "Grade",
        "status" => "Status",
        "courses" => "Courses",
        _ => return,
    };
    let stored = match value {
        Value::Null => None,
        Value::String(v) => Some(s(v)),
        Value::Number(n) => Some(AttributeValue::N(n.to_string())),
        Value::Array(list) if list.is_empty() => None,
        Value::Array(list) => Some(AttributeValue::L(list.iter().map(|c| s(c.as_str().expect("course"))).collect())),
        other => panic!("unexpected {other}"),
    };
    match stored {
        Some(v) => item.insert(attribute.to_owned(), v),
        None => item.remove(attribute),
    };
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

/// The stored table without `UpdatedAt`, after checking each has one.
pub fn without_clock(table: BTreeMap<String, Item>) -> BTreeMap<String, Item> {
    table
        .into_iter()
        .map(|(id, mut item)| {
            let at = item.remove("UpdatedAt").unwrap_or_else(|| panic!("{id}: no UpdatedAt"));
            assert!(at.as_s().is_ok_and(|t| t.ends_with('Z') && t.contains('T')), "{id}: UpdatedAt {at:?}");
            (id, item)
        })
        .collect()
}

/// Asserts the tables are equal, naming the first student that differs.
pub fn assert_tables_equal(actual: &BTreeMap<String, Item>, expected: &BTreeMap<String, Item>) {
    let ids: std::collections::BTreeSet<_> = actual.keys().chain(expected.keys()).collect();
    for id in ids {
        assert_eq!(
            actual.get(id),
            expected.get(id),
            "student {id}: stored (left) differs from in-order application (right)"
        );
    }
}

/// Asserts the DLQ holds the poison and nothing else: every dead letter is a
/// poison body with its `ErrorCode`, and every poison body is there at least
/// once. At-least-once delivery may forward one twice (a worker killed between
/// the DLQ send and the delete); returns how many such extra copies there are.
pub fn assert_dead_letters(dead: &[DeadLetter], poison: &[(String, &str)]) -> usize {
    for d in dead {
        let code = poison.iter().find(|(body, _)| *body == d.body).map(|(_, code)| *code);
        let code = code.unwrap_or_else(|| panic!("a message that is not poison reached the DLQ: {d:?}"));
        assert_eq!(d.attributes.get("ErrorCode").map(String::as_str), Some(code), "{d:?}");
        assert!(d.attributes.get("ErrorMessage").is_some_and(|m| !m.is_empty()), "no reason: {d:?}");
    }
    for (body, _) in poison {
        assert!(dead.iter().any(|d| &d.body == body), "poison not dead-lettered: {body}");
    }
    dead.len().saturating_sub(poison.len())
}
