//! Bad input against the event decoder (`student_shared::decode`), the one
//! entry point every message body goes through (the worker passes the SQS
//! body's bytes).
//!
//! Properties (proptest, seeded by proptest's own persistence): arbitrary
//! bytes and arbitrary JSON never panic, and every refusal has a code, a
//! field and a reason; a valid event with one field replaced by arbitrary
//! JSON is either still valid or refused naming that field, without echoing
//! the string values it was given. Then explicit cases: bodies at and over
//! the 256 KiB limit, deep nesting, wrong types for every field, non-UTF-8
//! bytes, huge numbers and Unicode ids.
//!
//! How bytes reach the decoder: SQS bodies are strings (the SDK hands the
//! worker a `String`, and SQS refuses characters outside XML's set), so the
//! worker can only ever pass valid UTF-8; the decoder takes bytes anyway and
//! refuses invalid UTF-8 as `MalformedJson`, which the cases below check.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use student_shared::limits::{MAX_BODY_BYTES, MAX_ERROR_MESSAGE_CHARS, MAX_VERSION};
use student_shared::{ContractError, ErrorCode, EventKind, decode};

/// A string value no refusal may repeat (values may be personal data).
const SECRET: &str = "Zq9-secret-Zq9";
/// SQS's largest message since 2025 (and moto's default `MaximumMessageSize`).
const SQS_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// serde_json refuses JSON nested deeper than this.
const SERDE_JSON_RECURSION_LIMIT: usize = 128;

/// Every field path the contract knows.
const PATHS: [&str; 11] = [
    "type",
    "eventId",
    "studentId",
    "version",
    "occurredAt",
    "student",
    "student.name",
    "student.email",
    "student.grade",
    "student.status",
    "student.courses",
];

/// Checks the shape of any refusal: known code, a field, a reason, a DLQ
/// message that fits its attribute.
fn assert_well_formed(e: &ContractError) {
    assert!(!e.field().is_empty(), "no field: {e:?}");
    assert!(!e.reason().is_empty(), "no reason: {e:?}");
    assert_eq!(e.to_string(), format!("{}: {}", e.field(), e.reason()));
    assert!(e.dlq_message().chars().count() <= MAX_ERROR_MESSAGE_CHARS, "{e:?}");
    assert!(!e.dlq_message().is_empty());
    if matches!(e.code(), ErrorCode::MalformedJson | ErrorCode::BodyTooLarge) {
        assert_eq!(e.field(), "body", "{e:?}");
    }
    assert!(
        matches!(e.code(), ErrorCode::MalformedJson | ErrorCode::BodyTooLarge | ErrorCode::InvalidEvent),
        "the decoder alone never says {:?}",
        e.code()
    );
}

fn refused(body: &[u8]) -> ContractError {
    let e = decode(body).expect_err("should be refused");
    assert_well_formed(&e);
    e
}

fn refused_json(value: &Value) -> ContractError {
    refused(value.to_string().as_bytes())
}

// ---------------------------------------------------------------- strategies

fn string_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        Just(SECRET.to_owned()),
        any::<String>().prop_map(|s| format!("{s}{SECRET}{s}")),
        // Characters that end or escape a quoted value in an error message.
        (any::<String>(), prop::sample::select(vec!["\"", "`", "\\", "\\\"", "'", "\n"]))
            .prop_map(|(s, cut)| format!("{s}{cut}{SECRET}")),
        prop::sample::select(vec!["StudentUpserted", "StudentPatched", "StudentDeleted", "active", "a@b", ""])
            .prop_map(str::to_owned),
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (0u64..=120).prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        string_value().prop_map(Value::String),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "type",
            "eventId",
            "studentId",
            "version",
            "occurredAt",
            "student",
            "name",
            "email",
            "grade",
            "status",
            "courses"
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object with contract-like keys: gets past the JSON syntax into validation.
fn event_like_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(key(), json_value(), 0..9).prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn chars(range: std::ops::RangeInclusive<usize>, ok: fn(char) -> bool) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>().prop_filter("allowed character", move |c| ok(*c)), range)
        .prop_map(String::from_iter)
}

fn student_fields(patch: bool) -> impl Strategy<Value = Map<String, Value>> {
    let optional = |v: BoxedStrategy<Value>| prop_oneof![Just(None), Just(Some(Value::Null)), v.prop_map(Some)];
    let email = (chars(0..=60, |_| true), chars(0..=60, |_| true)).prop_map(|(a, b)| json!(format!("{a}@{b}")));
    let courses = prop::collection::btree_set(chars(1..=32, |_| true), 0..6)
        .prop_map(|set| Value::Array(set.into_iter().map(Value::String).collect()));
    let status = prop::sample::select(vec!["active", "inactive", "graduated", "withdrawn"]).prop_map(|s| json!(s));
    let name = chars(1..=256, |_| true).prop_map(Value::String);
    (
        if patch { prop_oneof![Just(None), name.prop_map(Some)].boxed() } else { name.prop_map(Some).boxed() },
        optional(email.boxed()),
        optional((0u64..=99).prop_map(Value::from).boxed()),
        optional(status.boxed()),
        optional(courses.boxed()),
    )
        .prop_map(|(name, email, grade, status, courses)| {
            [("name", name), ("email", email), ("grade", grade), ("status", status), ("courses", courses)]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
                .collect()
        })
}

/// A valid event of any kind, with any valid values.
fn valid_event() -> impl Strategy<Value = Value> {
    let kind = prop::sample::select(vec!["StudentUpserted", "StudentPatched", "StudentDeleted"]);
    let occurred_at =
        prop::sample::select(vec![None, Some("2026-11-24T10:00:00Z"), Some("2026-11-24t10:00:00.5+09:00")]);
    (
        kind,
        chars(1..=128, |_| true),
        chars(1..=64, |c| !c.is_control()),
        1..=MAX_VERSION,
        occurred_at,
        student_fields(false),
        student_fields(true),
    )
        .prop_filter("a patch changes at least one field", |(kind, .., patch)| {
            *kind != "StudentPatched" || !patch.is_empty()
        })
        .prop_map(|(kind, event_id, student_id, version, occurred_at, record, patch)| {
            let mut event = json!({"type": kind, "eventId": event_id, "studentId": student_id, "version": version});
            if let Some(at) = occurred_at {
                event["occurredAt"] = json!(at);
            }
            match kind {
                "StudentUpserted" => event["student"] = Value::Object(record),
                "StudentPatched" => event["student"] = Value::Object(patch),
                _ => {}
            }
            event
        })
}

/// Sets (`Some`) or removes (`None`) the value at a dotted `path`.
fn mutate(event: &mut Value, path: &str, value: Option<Value>) {
    let (parent, leaf) = match path.split_once('.') {
        Some((outer, leaf)) => {
            let object = event.as_object_mut().expect("event object");
            let outer = object.entry(outer.to_owned()).or_insert_with(|| json!({}));
            if !outer.is_object() {
                *outer = json!({});
            }
            (outer, leaf)
        }
        None => (event, path),
    };
    let object = parent.as_object_mut().expect("object");
    match value {
        Some(v) => object.insert(leaf.to_owned(), v),
        None => object.remove(leaf),
    };
}

/// Whether a refusal's field blames the mutated `path`. Cross-field rules may
/// name the enclosing object: a student field added to a StudentDeleted, or
/// the last field removed from a patch, is reported on `student`; a changed
/// `type` may make the `student` object wrong for it.
fn blames(field: &str, path: &str) -> bool {
    field == path
        || field.starts_with(&format!("{path}."))
        || field.starts_with(&format!("{path}["))
        || (path.starts_with("student.") && field == "student")
        || (path == "type" && field.starts_with("student"))
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_refused_cleanly(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Err(e) = decode(&body) {
            assert_well_formed(&e);
        }
    }

    #[test]
    fn arbitrary_json_never_panics_and_objects_are_refused_by_field(value in json_value()) {
        if let Err(e) = decode(value.to_string().as_bytes()) {
            assert_well_formed(&e);
            prop_assert_eq!(e.code(), ErrorCode::InvalidEvent, "valid JSON is never MalformedJson: {}", e);
            if value.is_object() {
                prop_assert_ne!(e.field(), "body", "an object's refusal names a field: {}", e);
            }
            prop_assert!(!e.to_string().contains(SECRET), "echoed a value: {}", e);
        }
    }

    #[test]
    fn event_like_objects_are_refused_by_field_without_echoing_values(value in event_like_object()) {
        if let Err(e) = decode(value.to_string().as_bytes()) {
            assert_well_formed(&e);
            prop_assert_eq!(e.code(), ErrorCode::InvalidEvent);
            prop_assert!(PATHS.iter().any(|p| blames(e.field(), p)), "names no contract field: {}", e);
            prop_assert!(!e.to_string().contains(SECRET), "echoed a value: {}", e);
        }
    }

    #[test]
    fn valid_events_decode_to_what_they_say(event in valid_event()) {
        let decoded = decode(event.to_string().as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}: {event}")))?;
        let e = decoded.event;
        prop_assert_eq!(e.kind.as_str(), event["type"].as_str().expect("type"));
        prop_assert_eq!(&e.event_id, event["eventId"].as_str().expect("eventId"));
        prop_assert_eq!(&e.student_id, event["studentId"].as_str().expect("studentId"));
        prop_assert_eq!(Some(e.version), event["version"].as_u64());
        prop_assert_eq!(e.occurred_at.as_deref(), event.get("occurredAt").and_then(Value::as_str));
        prop_assert!(decoded.unknown_fields.is_empty());
    }

    #[test]
    fn one_bad_field_is_refused_by_its_name(
        event in valid_event(),
        path in prop::sample::select(PATHS.to_vec()),
        value in prop::option::weighted(0.9, json_value()),
    ) {
        let mut event = event;
        mutate(&mut event, path, value);
        if let Err(e) = decode(event.to_string().as_bytes()) {
            assert_well_formed(&e);
            prop_assert_eq!(e.code(), ErrorCode::InvalidEvent);
            prop_assert!(blames(e.field(), path), "changed {} but the refusal names {}: {}", path, e.field(), event);
            prop_assert!(!e.to_string().contains(SECRET), "echoed a value: {}", e);
        }
    }
}

// ---------------------------------------------------------------- explicit cases

fn upsert() -> Value {
    json!({"type": "StudentUpserted", "eventId": "e-1", "studentId": "101", "version": 1, "student": {"name": "Alice"}})
}

/// `upsert()` padded with an unknown field to exactly `len` bytes.
fn padded_to(len: usize) -> Vec<u8> {
    let mut event = upsert();
    event["padding"] = json!("");
    let base = event.to_string().len();
    event["padding"] = json!("x".repeat(len - base));
    let body = event.to_string().into_bytes();
    assert_eq!(body.len(), len);
    body
}

#[test]
fn the_largest_body_is_accepted_and_one_byte_more_is_body_too_large() {
    let at_limit = decode(&padded_to(MAX_BODY_BYTES)).expect("exactly 256 KiB is allowed");
    assert_eq!(at_limit.unknown_fields, ["padding"]);
    let e = refused(&padded_to(MAX_BODY_BYTES + 1));
    assert_eq!(e.code(), ErrorCode::BodyTooLarge);
    assert_eq!(e.to_string(), "body: 262145 bytes exceeds the 256 KiB limit (262144 bytes)");
    // What SQS now carries at most; also refused before any parsing.
    assert_eq!(refused(&padded_to(SQS_MAX_MESSAGE_BYTES)).code(), ErrorCode::BodyTooLarge);
    assert_eq!(refused(&vec![0xff; SQS_MAX_MESSAGE_BYTES]).code(), ErrorCode::BodyTooLarge);
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    for body in
        ["[".repeat(200_000), "{\"a\":".repeat(40_000), format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000))]
    {
        let e = refused(body.as_bytes());
        assert_eq!(e.code(), ErrorCode::MalformedJson, "{e}");
        assert!(e.reason().contains("recursion limit"), "{e}");
    }
    let nest = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    // Within serde_json's limit, in an unknown field: ignored like any unknown field.
    let mut event = upsert().to_string();
    event.insert_str(event.len() - 1, &format!(",\"deep\":{}", nest(SERDE_JSON_RECURSION_LIMIT - 2)));
    assert_eq!(decode(event.as_bytes()).expect("ignored").unknown_fields, ["deep"]);
    // Past it: refused as a whole, whatever field it is in.
    let mut event = upsert().to_string();
    event.insert_str(event.len() - 1, &format!(",\"deep\":{}", nest(SERDE_JSON_RECURSION_LIMIT + 1)));
    assert_eq!(refused(event.as_bytes()).code(), ErrorCode::MalformedJson);
    // Nested where a known field is: that field is named.
    let mut event = upsert();
    event["student"]["courses"] = serde_json::from_str(&nest(50)).expect("json");
    assert_eq!(refused_json(&event).field(), "student.courses[0]");
}

#[test]
fn wrong_types_name_their_field() {
    let cases: [(&str, Value, &str); 19] = [
        ("type", json!(5), "type"),
        ("type", json!(["StudentUpserted"]), "type"),
        ("eventId", json!(5), "eventId"),
        ("eventId", Value::Null, "eventId"),
        ("studentId", json!(101), "studentId"),
        ("studentId", json!({"id": "101"}), "studentId"),
        ("version", json!("1"), "version"),
        ("version", json!(1.5), "version"),
        ("version", json!(true), "version"),
        ("occurredAt", json!(1_700_000_000), "occurredAt"),
        ("occurredAt", Value::Null, "occurredAt"),
        ("student", json!("Alice"), "student"),
        ("student.name", json!(5), "student.name"),
        ("student.email", json!(["a@b"]), "student.email"),
        ("student.grade", json!("3"), "student.grade"),
        ("student.grade", json!(3.0), "student.grade"),
        ("student.status", json!(1), "student.status"),
        ("student.courses", json!("CS100"), "student.courses"),
        ("student.courses", json!(["CS100", 7]), "student.courses[1]"),
    ];
    for (path, value, field) in cases {
        let mut event = upsert();
        mutate(&mut event, path, Some(value.clone()));
        let e = refused_json(&event);
        assert_eq!((e.code(), e.field()), (ErrorCode::InvalidEvent, field), "{path} = {value}: {e}");
    }
}

#[test]
fn non_utf8_bytes_are_malformed_json_with_the_offset() {
    let valid = upsert().to_string().into_bytes();
    let name_at = valid.windows(5).position(|w| w == b"Alice").expect("name");
    for bad in [&[0xff_u8][..], &[0xc0, 0xaf], &[0xed, 0xa0, 0x80], &[0xf4, 0x90, 0x80, 0x80], &[0xe2, 0x82]] {
        let mut body = valid.clone();
        body.splice(name_at..name_at + 1, bad.iter().copied());
        let e = refused(&body);
        assert_eq!(e.code(), ErrorCode::MalformedJson);
        assert_eq!(e.reason(), format!("not valid UTF-8 (at byte {name_at})"), "{bad:?}");
    }
    // JSON's own escape for a lone surrogate is not a character either.
    let body = upsert().to_string().replace("Alice", "\\ud800");
    assert_eq!(refused(body.as_bytes()).code(), ErrorCode::MalformedJson);
    // A byte order mark is not JSON (RFC 8259 §8.1: do not add one).
    let mut body = "\u{feff}".as_bytes().to_vec();
    body.extend(&valid);
    assert_eq!(refused(&body).code(), ErrorCode::MalformedJson);
}

#[test]
fn huge_numbers_are_refused_by_field() {
    let cases: [(&str, &str, &str); 9] = [
        ("version", "9007199254740992", "version: expected integer 1..=9007199254740991, got 9007199254740992"),
        ("version", "18446744073709551615", "version: expected integer 1..=9007199254740991, got 18446744073709551615"),
        (
            "version",
            "18446744073709551616",
            "version: invalid type: floating point `1.8446744073709552e+19`, expected u64",
        ),
        ("version", "-1", "version: invalid value: integer `-1`, expected u64"),
        ("version", "1e3", "version: invalid type: floating point `1000.0`, expected u64"),
        ("version", "0", "version: expected integer 1..=9007199254740991, got 0"),
        ("grade", "1e30", "student.grade: invalid type: floating point `1e+30`, expected u64"),
        ("grade", "256", "student.grade: expected integer 0..=99, got 256"),
        ("grade", "18446744073709551615", "student.grade: expected integer 0..=99, got 18446744073709551615"),
    ];
    for (field, number, message) in cases {
        let body = match field {
            "version" => upsert().to_string().replace("\"version\":1", &format!("\"version\":{number}")),
            _ => upsert().to_string().replace("\"name\":\"Alice\"", &format!("\"name\":\"Alice\",\"grade\":{number}")),
        };
        assert_eq!(refused(body.as_bytes()).to_string(), message, "{field} = {number}");
    }
    // Beyond f64: not a number serde_json can hold, so the body is not JSON to it.
    let body = upsert().to_string().replace("\"version\":1", "\"version\":1e400");
    let e = refused(body.as_bytes());
    assert_eq!(e.code(), ErrorCode::MalformedJson);
    assert!(e.reason().contains("number out of range"), "{e}");
}

#[test]
fn unicode_ids_count_characters_not_bytes() {
    let with_ids = |event_id: &str, student_id: &str| {
        let mut event = upsert();
        event["eventId"] = json!(event_id);
        event["studentId"] = json!(student_id);
        event.to_string()
    };
    for (event_id, student_id) in [
        ("e-학생", "학생-101"),
        ("😀".repeat(128).as_str(), "😀".repeat(64).as_str()),
        ("e", "a\u{200d}b"),          // zero-width joiner: a format character, not a control
        ("e", "\u{202e}101"),         // right-to-left override: likewise
        ("e", "e\u{301}\u{301}"),     // combining marks
        ("\u{10ffff}", "\u{10ffff}"), // the last code point
    ] {
        let decoded = decode(with_ids(event_id, student_id).as_bytes()).expect("valid unicode ids");
        assert_eq!((decoded.event.event_id.as_str(), decoded.event.student_id.as_str()), (event_id, student_id));
        assert_eq!(decoded.event.kind, EventKind::StudentUpserted);
    }
    for (event_id, student_id, field) in [
        ("😀".repeat(129), "1".to_owned(), "eventId"),
        ("e".to_owned(), "😀".repeat(65), "studentId"),
        ("e".to_owned(), "a\u{85}b".to_owned(), "studentId"), // C1 control (NEL)
        ("e".to_owned(), "a\u{0}b".to_owned(), "studentId"),
        ("e".to_owned(), String::new(), "studentId"),
    ] {
        let e = refused(with_ids(&event_id, &student_id).as_bytes());
        assert_eq!(e.field(), field, "{e}");
    }
}
