//! The DynamoDB item shape of table `Students` (PascalCase attributes, key
//! `StudentID` S), and the event → item conversion with serde_dynamo. Unset
//! fields are absent, never NULL.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use crate::event::{Change, Status, StudentEvent};

/// Attribute names, once, so expressions and items cannot drift apart.
pub mod attr {
    /// Partition key (S).
    pub const STUDENT_ID: &str = "StudentID";
    /// `student.name` (S).
    pub const NAME: &str = "Name";
    /// `student.email` (S).
    pub const EMAIL: &str = "Email";
    /// `student.grade` (N).
    pub const GRADE: &str = "Grade";
    /// `student.status` (S).
    pub const STATUS: &str = "Status";
    /// `student.courses` (L of S).
    pub const COURSES: &str = "Courses";
    /// Event version last applied (N).
    pub const VERSION: &str = "Version";
    /// `eventId` of the last applied event (S).
    pub const EVENT_ID: &str = "EventID";
    /// `occurredAt` of the last applied event (S).
    pub const OCCURRED_AT: &str = "OccurredAt";
    /// Worker's clock at write (S, RFC 3339).
    pub const UPDATED_AT: &str = "UpdatedAt";
    /// `true` on a tombstone only (BOOL).
    pub const DELETED: &str = "Deleted";
    /// The record's own fields: what a tombstone removes.
    pub const RECORD_FIELDS: [&str; 5] = [NAME, EMAIL, GRADE, STATUS, COURSES];
}

/// One row of `Students`, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StudentItem {
    /// Partition key.
    #[serde(rename = "StudentID")]
    pub student_id: String,
    /// Absent on a tombstone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Absent when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Absent when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grade: Option<u8>,
    /// Absent when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Absent when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub courses: Vec<String>,
    /// Version of the last applied event.
    pub version: u64,
    /// `eventId` of the last applied event.
    #[serde(rename = "EventID")]
    pub event_id: String,
    /// `occurredAt` of the last applied event, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
    /// When the worker wrote it.
    pub updated_at: String,
    /// `Some(true)` on a tombstone only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
}

impl StudentItem {
    /// The item an Upserted event stores, or the tombstone a Deleted event
    /// leaves; `None` for a patch, which has no whole item.
    pub fn from_event(event: &StudentEvent, updated_at: &str) -> Option<Self> {
        let mut item = Self {
            student_id: event.student_id.clone(),
            name: None,
            email: None,
            grade: None,
            status: None,
            courses: Vec::new(),
            version: event.version,
            event_id: event.event_id.clone(),
            occurred_at: event.occurred_at.clone(),
            updated_at: updated_at.to_owned(),
            deleted: None,
        };
        match &event.change {
            Change::Upsert(record) => {
                item.name = Some(record.name.clone());
                item.email = record.email.clone();
                item.grade = record.grade;
                item.status = record.status;
                item.courses = record.courses.clone();
            }
            Change::Delete => item.deleted = Some(true),
            Change::Patch(_) => return None,
        }
        Some(item)
    }

    /// The item as DynamoDB attributes.
    pub fn to_attributes(&self) -> Result<HashMap<String, AttributeValue>, serde_dynamo::Error> {
        serde_dynamo::to_item(self)
    }

    /// Reads an item back (tests, tools).
    pub fn from_attributes(item: HashMap<String, AttributeValue>) -> Result<Self, serde_dynamo::Error> {
        serde_dynamo::from_item(item)
    }
}

/// The key of one student's item.
pub fn key(student_id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([(attr::STUDENT_ID.to_owned(), AttributeValue::S(student_id.to_owned()))])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode;

    #[test]
    fn setup_guide_record_has_exactly_the_expected_attributes() {
        let body =
            br#"{"type":"StudentUpserted","eventId":"e1","studentId":"101","version":1,"student":{"name":"Alice"}}"#;
        let event = decode(body).expect("valid").event;
        let attrs =
            StudentItem::from_event(&event, "2026-11-24T10:00:00Z").expect("upsert").to_attributes().expect("item");
        let mut names: Vec<_> = attrs.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["EventID", "Name", "StudentID", "UpdatedAt", "Version"]);
        assert_eq!(attrs["StudentID"], AttributeValue::S("101".into()));
        assert_eq!(attrs["Name"], AttributeValue::S("Alice".into()));
        assert_eq!(attrs["Version"], AttributeValue::N("1".into()));
    }

    #[test]
    fn full_record_types() {
        let body = br#"{"type":"StudentUpserted","eventId":"e1","studentId":"7","version":3,"occurredAt":"2026-11-24T10:00:00Z",
            "student":{"name":"A","email":"a@x.test","grade":3,"status":"active","courses":["MATH101","CS100"]}}"#;
        let event = decode(body).expect("valid").event;
        let attrs = StudentItem::from_event(&event, "now").expect("upsert").to_attributes().expect("item");
        assert_eq!(attrs["Grade"], AttributeValue::N("3".into()));
        assert_eq!(attrs["Status"], AttributeValue::S("active".into()));
        assert_eq!(
            attrs["Courses"],
            AttributeValue::L(vec![AttributeValue::S("MATH101".into()), AttributeValue::S("CS100".into())])
        );
        assert_eq!(attrs["OccurredAt"], AttributeValue::S("2026-11-24T10:00:00Z".into()));
        assert!(!attrs.contains_key("Deleted"));
    }
}
