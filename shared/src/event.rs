//! The event contract v1: decoding a message body into a validated
//! [`StudentEvent`]. A tolerant reader: unknown fields are ignored and
//! reported; every refusal names the failing field and says why.

use serde::{Deserialize, Deserializer};

use crate::error::{ContractError, ErrorCode};
use crate::limits::{
    MAX_BODY_BYTES, MAX_COURSE_CHARS, MAX_COURSES, MAX_EMAIL_CHARS, MAX_EVENT_ID_CHARS, MAX_GRADE, MAX_NAME_CHARS,
    MAX_STUDENT_ID_CHARS, MAX_VERSION,
};

/// The three kinds of event (`type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum EventKind {
    /// The whole record: create or replace.
    StudentUpserted,
    /// Some fields of an existing record.
    StudentPatched,
    /// The record is gone: leaves a tombstone.
    StudentDeleted,
}

impl EventKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StudentUpserted => "StudentUpserted",
            Self::StudentPatched => "StudentPatched",
            Self::StudentDeleted => "StudentDeleted",
        }
    }
}

/// `student.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Enrolled.
    Active,
    /// Enrolled but not attending.
    Inactive,
    /// Finished.
    Graduated,
    /// Left before finishing.
    Withdrawn,
}

/// A validated event.
#[derive(Debug, Clone, PartialEq)]
pub struct StudentEvent {
    /// `type`.
    pub kind: EventKind,
    /// `eventId`: upstream's unique id of this event.
    pub event_id: String,
    /// `studentId`: the record's key.
    pub student_id: String,
    /// `version`: 1-based, +1 per event of this student.
    pub version: u64,
    /// `occurredAt`, as given (validated RFC 3339).
    pub occurred_at: Option<String>,
    /// What the event does to the record.
    pub change: Change,
}

/// What an event does to the record, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Replace the record with this one.
    Upsert(StudentRecord),
    /// Change these fields.
    Patch(StudentPatch),
    /// Replace the record with a tombstone.
    Delete,
}

/// A full record, as a `StudentUpserted` event carries it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StudentRecord {
    /// `student.name`.
    pub name: String,
    /// `student.email`.
    pub email: Option<String>,
    /// `student.grade`, 0–99.
    pub grade: Option<u8>,
    /// `student.status`.
    pub status: Option<Status>,
    /// `student.courses`; empty means unset.
    pub courses: Vec<String>,
}

/// One field of a patch.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum FieldPatch<T> {
    /// Absent from the patch: leave as stored.
    #[default]
    Keep,
    /// `null` (or, for courses, an empty list): remove the attribute.
    Remove,
    /// Set to this value.
    Set(T),
}

/// The fields a `StudentPatched` event changes (at least one).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StudentPatch {
    /// New name; a name cannot be removed.
    pub name: Option<String>,
    /// `student.email`.
    pub email: FieldPatch<String>,
    /// `student.grade`.
    pub grade: FieldPatch<u8>,
    /// `student.status`.
    pub status: FieldPatch<Status>,
    /// `student.courses`.
    pub courses: FieldPatch<Vec<String>>,
}

/// A decoded body: the event, and the unknown fields the tolerant reader skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The validated event.
    pub event: StudentEvent,
    /// JSON paths of fields this contract does not know (logged at debug).
    pub unknown_fields: Vec<String>,
}

/// Decodes and validates one message body against the event contract v1.
pub fn decode(body: &[u8]) -> Result<Decoded, ContractError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ContractError::new(
            ErrorCode::BodyTooLarge,
            "body",
            format!("{} bytes exceeds the 256 KiB limit ({MAX_BODY_BYTES} bytes)", body.len()),
        ));
    }
    if let Err(e) = std::str::from_utf8(body) {
        return Err(ContractError::new(
            ErrorCode::MalformedJson,
            "body",
            format!("not valid UTF-8 (at byte {})", e.valid_up_to()),
        ));
    }
    let mut unknown_fields = Vec::new();
    let wire = parse_wire(body, &mut unknown_fields)?;
    let event = wire.validate()?;
    Ok(Decoded { event, unknown_fields })
}

/// serde pass: JSON syntax first, then types with the failing path tracked.
/// Going through a [`serde_json::Value`] lets us insist on JSON objects
/// (derived structs would also accept arrays, in field order).
fn parse_wire(body: &[u8], unknown: &mut Vec<String>) -> Result<WireEvent, ContractError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ContractError::new(ErrorCode::MalformedJson, "body", format!("not valid JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(ContractError::invalid("body", format!("expected a JSON object, got {}", kind_of(&value))));
    };
    if let Some(student) = object.get("student").filter(|s| !s.is_object() && !s.is_null()) {
        return Err(ContractError::invalid("student", format!("expected an object, got {}", kind_of(student))));
    }
    let mut track = serde_path_to_error::Track::new();
    let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let ignoring = serde_ignored::Deserializer::new(&value, &mut on_unknown);
    let tracked = serde_path_to_error::Deserializer::new(ignoring, &mut track);
    WireEvent::deserialize(tracked).map_err(|e| wire_error(&track.path().to_string(), &e))
}

/// The JSON type of a value, for messages (never the value itself).
fn kind_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Turns a serde error at `path` into a refusal naming the field.
fn wire_error(path: &str, error: &serde_json::Error) -> ContractError {
    let message = strip_position(&error.to_string());
    let parent = if path == "." { String::new() } else { format!("{path}.") };
    if let Some(field) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
        return ContractError::invalid(format!("{parent}{field}"), "required");
    }
    if path == "." {
        return ContractError::invalid("body", format!("expected a JSON object: {message}"));
    }
    ContractError::invalid(path, message)
}

/// serde_json appends ` at line L column C`; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Present (even `null`) → `Some(value)`; absent → `None` via `#[serde(default)]`.
/// Lets the contract tell `"email": null` (remove) from no `email` (keep).
fn nullable<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

/// Absent → `None`; present → must be a value, `null` is refused.
fn present<'de, D, T>(de: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(de).map(Some)
}

/// The body as it travels: types checked by serde, rules checked by `validate`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireEvent {
    #[serde(rename = "type")]
    kind: EventKind,
    event_id: String,
    student_id: String,
    version: u64,
    #[serde(default, deserialize_with = "present")]
    occurred_at: Option<String>,
    #[serde(default, deserialize_with = "present")]
    student: Option<WireStudent>,
}

#[derive(Deserialize)]
struct WireStudent {
    #[serde(default, deserialize_with = "present")]
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    grade: Option<Option<u64>>,
    #[serde(default, deserialize_with = "nullable")]
    status: Option<Option<Status>>,
    #[serde(default, deserialize_with = "nullable")]
    courses: Option<Option<Vec<String>>>,
}

impl WireEvent {
    fn validate(self) -> Result<StudentEvent, ContractError> {
        check_chars("eventId", &self.event_id, MAX_EVENT_ID_CHARS)?;
        check_chars("studentId", &self.student_id, MAX_STUDENT_ID_CHARS)?;
        if self.student_id.chars().any(char::is_control) {
            return Err(ContractError::invalid("studentId", "must not contain control characters"));
        }
        if !(1..=MAX_VERSION).contains(&self.version) {
            return Err(ContractError::invalid(
                "version",
                format!("expected integer 1..={MAX_VERSION}, got {}", self.version),
            ));
        }
        if let Some(at) = &self.occurred_at {
            check_rfc3339(at)?;
        }
        let change = match (self.kind, self.student) {
            (EventKind::StudentDeleted, None) => Change::Delete,
            (EventKind::StudentDeleted, Some(_)) => {
                return Err(ContractError::invalid("student", "must be absent for StudentDeleted"));
            }
            (_, None) => {
                return Err(ContractError::invalid("student", format!("required for {}", self.kind.as_str())));
            }
            (EventKind::StudentUpserted, Some(s)) => Change::Upsert(s.into_record()?),
            (EventKind::StudentPatched, Some(s)) => Change::Patch(s.into_patch()?),
        };
        Ok(StudentEvent {
            kind: self.kind,
            event_id: self.event_id,
            student_id: self.student_id,
            version: self.version,
            occurred_at: self.occurred_at,
            change,
        })
    }
}

impl WireStudent {
    fn into_record(self) -> Result<StudentRecord, ContractError> {
        let name = self.name.ok_or_else(|| ContractError::invalid("student.name", "required"))?;
        Ok(StudentRecord {
            name: check_name(name)?,
            email: self.email.flatten().map(check_email).transpose()?,
            grade: self.grade.flatten().map(check_grade).transpose()?,
            status: self.status.flatten(),
            courses: self.courses.flatten().map(check_courses).transpose()?.unwrap_or_default(),
        })
    }

    fn into_patch(self) -> Result<StudentPatch, ContractError> {
        let patch = StudentPatch {
            name: self.name.map(check_name).transpose()?,
            email: field_patch(self.email, check_email)?,
            grade: field_patch(self.grade, check_grade)?,
            status: field_patch(self.status, Ok)?,
            courses: match field_patch(self.courses, check_courses)? {
                // Absent when empty: an empty list removes the attribute.
                FieldPatch::Set(c) if c.is_empty() => FieldPatch::Remove,
                other => other,
            },
        };
        if patch == StudentPatch::default() {
            return Err(ContractError::invalid(
                "student",
                "a patch needs at least one of name, email, grade, status, courses",
            ));
        }
        Ok(patch)
    }
}

fn field_patch<T, U>(
    wire: Option<Option<T>>,
    check: impl FnOnce(T) -> Result<U, ContractError>,
) -> Result<FieldPatch<U>, ContractError> {
    Ok(match wire {
        None => FieldPatch::Keep,
        Some(None) => FieldPatch::Remove,
        Some(Some(v)) => FieldPatch::Set(check(v)?),
    })
}

fn check_chars(field: &str, value: &str, max: usize) -> Result<(), ContractError> {
    let n = value.chars().count();
    if n == 0 || n > max {
        return Err(ContractError::invalid(field, format!("expected 1..={max} characters, got {n}")));
    }
    Ok(())
}

fn check_name(name: String) -> Result<String, ContractError> {
    check_chars("student.name", &name, MAX_NAME_CHARS)?;
    Ok(name)
}

fn check_email(email: String) -> Result<String, ContractError> {
    let n = email.chars().count();
    if n > MAX_EMAIL_CHARS {
        return Err(ContractError::invalid(
            "student.email",
            format!("expected at most {MAX_EMAIL_CHARS} characters, got {n}"),
        ));
    }
    if !email.contains('@') {
        return Err(ContractError::invalid("student.email", "expected an address containing @"));
    }
    Ok(email)
}

fn check_grade(grade: u64) -> Result<u8, ContractError> {
    u8::try_from(grade).ok().filter(|g| u64::from(*g) <= MAX_GRADE).ok_or_else(|| {
        ContractError::invalid("student.grade", format!("expected integer 0..={MAX_GRADE}, got {grade}"))
    })
}

fn check_courses(courses: Vec<String>) -> Result<Vec<String>, ContractError> {
    if courses.len() > MAX_COURSES {
        return Err(ContractError::invalid(
            "student.courses",
            format!("expected at most {MAX_COURSES} courses, got {}", courses.len()),
        ));
    }
    for (i, course) in courses.iter().enumerate() {
        check_chars(&format!("student.courses[{i}]"), course, MAX_COURSE_CHARS)?;
        if courses[..i].contains(course) {
            return Err(ContractError::invalid(format!("student.courses[{i}]"), "duplicate course"));
        }
    }
    Ok(courses)
}

fn check_rfc3339(at: &str) -> Result<(), ContractError> {
    // The `time` parser skips any byte between date and time; RFC 3339 wants `T`.
    let separator_ok = matches!(at.as_bytes().get(10), Some(b'T' | b't'));
    match time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339) {
        Ok(_) if separator_ok => Ok(()),
        _ => Err(ContractError::invalid("occurredAt", "expected an RFC 3339 timestamp such as 2026-11-24T10:00:00Z")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> ContractError {
        decode(body.as_bytes()).expect_err("should be refused")
    }

    const OK: &str =
        r#"{"type":"StudentUpserted","eventId":"e1","studentId":"101","version":1,"student":{"name":"Alice"}}"#;

    #[test]
    fn setup_guide_record_decodes() {
        let d = decode(OK.as_bytes()).expect("valid");
        assert_eq!(d.event.student_id, "101");
        assert_eq!(d.event.change, Change::Upsert(StudentRecord { name: "Alice".into(), ..Default::default() }));
        assert!(d.unknown_fields.is_empty());
    }

    #[test]
    fn refusals_name_the_field() {
        let e = err(r#"{"type":"StudentDeleted","eventId":"e1","studentId":"1","version":0}"#);
        assert_eq!(e.to_string(), "version: expected integer 1..=9007199254740991, got 0");
        assert_eq!(err(r#"{"type":"StudentDeleted","studentId":"1","version":1}"#).to_string(), "eventId: required");
        let e = err(
            r#"{"type":"StudentUpserted","eventId":"e","studentId":"1","version":1,"student":{"name":"A","grade":"Alice"}}"#,
        );
        assert_eq!(e.field(), "student.grade");
        assert!(!e.to_string().contains("Alice"), "{e}");
        assert_eq!(err("[1]").field(), "body");
        assert_eq!(err(r#"["StudentDeleted","e","1",5]"#).to_string(), "body: expected a JSON object, got an array");
        assert_eq!(err(&OK.replace(r#"{"name":"Alice"}"#, r#"["Alice"]"#)).field(), "student");
        assert_eq!(err(&OK.replace(r#""type":"StudentUpserted""#, r#""type":null"#)).field(), "type");
        let spaced = OK.replace(r#""version":1"#, r#""version":1,"occurredAt":"2026-11-24 10:00:00Z""#);
        assert_eq!(err(&spaced).field(), "occurredAt");
        assert_eq!(err("{").code(), ErrorCode::MalformedJson);
        assert_eq!(err(&format!("{OK} x")).code(), ErrorCode::MalformedJson);
    }

    #[test]
    fn patch_distinguishes_null_from_absent() {
        let d = decode(
            br#"{"type":"StudentPatched","eventId":"e","studentId":"1","version":2,"student":{"email":null,"courses":[]}}"#,
        )
        .expect("valid");
        let Change::Patch(p) = d.event.change else { panic!("not a patch") };
        assert_eq!(p.email, FieldPatch::Remove);
        assert_eq!(p.courses, FieldPatch::Remove);
        assert_eq!(p.grade, FieldPatch::Keep);
        let e = err(r#"{"type":"StudentPatched","eventId":"e","studentId":"1","version":2,"student":{"name":null}}"#);
        assert_eq!(e.field(), "student.name");
    }

    #[test]
    fn a_repeated_property_counts_its_last_occurrence_as_the_schema_says() {
        let body = br#"{"type":"StudentDeleted","eventId":"e","studentId":"1","version":1,"version":2}"#;
        assert_eq!(decode(body).expect("valid").event.version, 2);
    }

    #[test]
    fn unknown_fields_are_reported_not_refused() {
        let body = OK.replace(r#""version":1"#, r#""version":1,"source":"sis","student2":{}"#);
        let d = decode(body.as_bytes()).expect("valid");
        assert_eq!(d.unknown_fields, vec!["source".to_owned(), "student2".to_owned()]);
    }

    #[test]
    fn oversized_and_non_utf8_bodies_are_refused() {
        assert_eq!(decode(&vec![b' '; MAX_BODY_BYTES + 1]).expect_err("big").code(), ErrorCode::BodyTooLarge);
        assert_eq!(decode(b"{\"type\":\"\xff\"}").expect_err("utf8").code(), ErrorCode::MalformedJson);
    }
}
