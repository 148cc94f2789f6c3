//! The generated event stream: message `i` of a run is a valid contract v1
//! event. Students cycle through `students` ids, so any window shorter than
//! that holds distinct students (independent writes, no grouping in a batch),
//! and each student's versions rise by exactly 1 per event: version 1 is a
//! `StudentUpserted` (PutItem), later versions alternate between a
//! `StudentPatched` (UpdateItem) and a new `StudentUpserted`.

use serde_json::json;

/// The fixed `occurredAt` of generated events (the worker copies it).
const OCCURRED_AT: &str = "2026-11-24T10:00:00Z";
/// Statuses the contract allows, cycled through.
const STATUSES: [&str; 4] = ["active", "inactive", "graduated", "withdrawn"];
/// Course codes, two per student.
const COURSES: [&str; 6] = ["MATH101", "CS100", "PHYS110", "CHEM120", "HIST200", "ART105"];
/// Highest grade the contract allows.
const MAX_GRADE: u64 = 99;

/// The body of message `index` (0-based) in a stream over `students` ids.
#[must_use]
pub fn body(index: u64, students: u64) -> String {
    let students = students.max(1);
    let student = index % students;
    let version = index / students + 1;
    let student_id = format!("S{student:07}");
    let event_id = format!("bench-{index}");
    let grade = (index * 7) % (MAX_GRADE + 1);
    let status = STATUSES[usize::try_from(index % 4).unwrap_or(0)];
    let event = if version > 1 && version.is_multiple_of(2) {
        json!({
            "type": "StudentPatched", "eventId": event_id, "studentId": student_id, "version": version,
            "occurredAt": OCCURRED_AT, "student": {"grade": grade, "status": status},
        })
    } else {
        let first = usize::try_from(student % 5).unwrap_or(0);
        json!({
            "type": "StudentUpserted", "eventId": event_id, "studentId": student_id, "version": version,
            "occurredAt": OCCURRED_AT,
            "student": {
                "name": format!("Student {student}"), "email": format!("s{student}@example.edu"),
                "grade": grade, "status": status, "courses": [COURSES[first], COURSES[first + 1]],
            },
        })
    };
    event.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(body: &str, name: &str) -> serde_json::Value {
        let value: serde_json::Value = serde_json::from_str(body).expect("generated bodies are JSON");
        value[name].clone()
    }

    #[test]
    fn students_cycle_and_versions_rise_by_one() {
        let students = 3;
        let ids: Vec<_> = (0..7).map(|i| field(&body(i, students), "studentId")).collect();
        assert_eq!(ids[0], ids[3]);
        assert_ne!(ids[0], ids[1]);
        let versions: Vec<_> = (0..7).map(|i| field(&body(i, students), "version")).collect();
        assert_eq!(versions, [1, 1, 1, 2, 2, 2, 3].map(serde_json::Value::from));
    }

    #[test]
    fn first_event_of_a_student_is_an_upsert_then_a_patch() {
        assert_eq!(field(&body(0, 2), "type"), "StudentUpserted");
        assert_eq!(field(&body(2, 2), "type"), "StudentPatched");
        assert_eq!(field(&body(4, 2), "type"), "StudentUpserted");
    }

    #[test]
    fn every_event_passes_the_workers_decoder() {
        for i in 0..200 {
            let body = body(i, 50);
            assert!(student_shared::decode(body.as_bytes()).is_ok(), "message {i} is refused: {body}");
        }
    }
}
