//! Which DynamoDB call applies an event, with its conditions: PutItem for an
//! upsert, UpdateItem for a patch or a tombstone. Every name and value goes
//! through an expression placeholder (`#Name`, `:name`), so no attribute name
//! or user value is ever spliced into an expression.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::error::{ContractError, ErrorCode};
use crate::event::{Change, FieldPatch, StudentEvent, StudentPatch};
use crate::item::{StudentItem, attr, key};

/// Upserts and deletes carry the whole state, so they may skip ahead. A record
/// without `Version` (written by hand, as docs/setup.md's `aws dynamodb
/// put-item` does) counts as version 0: the first event replaces it.
const NEWER_THAN_STORED: &str =
    "attribute_not_exists(#StudentID) OR attribute_not_exists(#Version) OR #Version < :version";
/// A patch applies exactly on its predecessor, never on a tombstone.
const ON_PREDECESSOR: &str = "#Version = :prev AND attribute_not_exists(#Deleted)";

/// One conditional write, ready for the SDK.
#[derive(Debug, Clone, PartialEq)]
pub enum WritePlan {
    /// PutItem of a whole item.
    Put {
        /// The item.
        item: HashMap<String, AttributeValue>,
        /// ConditionExpression.
        condition: &'static str,
        /// ExpressionAttributeNames.
        names: HashMap<String, String>,
        /// ExpressionAttributeValues.
        values: HashMap<String, AttributeValue>,
    },
    /// UpdateItem with SET/REMOVE.
    Update {
        /// The student's key.
        key: HashMap<String, AttributeValue>,
        /// UpdateExpression.
        update: String,
        /// ConditionExpression.
        condition: &'static str,
        /// ExpressionAttributeNames.
        names: HashMap<String, String>,
        /// ExpressionAttributeValues.
        values: HashMap<String, AttributeValue>,
    },
}

impl WritePlan {
    /// The DynamoDB action this plan calls (for errors and IAM hints).
    pub fn action(&self) -> &'static str {
        match self {
            Self::Put { .. } => "dynamodb:PutItem",
            Self::Update { .. } => "dynamodb:UpdateItem",
        }
    }
}

/// Plans the write that applies `event`; `updated_at` is the worker's clock.
pub fn plan_write(event: &StudentEvent, updated_at: &str) -> Result<WritePlan, ContractError> {
    match &event.change {
        Change::Upsert(_) => plan_upsert(event, updated_at),
        Change::Patch(patch) => plan_patch(event, patch, updated_at),
        Change::Delete => plan_delete(event, updated_at),
    }
}

fn plan_upsert(event: &StudentEvent, updated_at: &str) -> Result<WritePlan, ContractError> {
    let item = StudentItem::from_event(event, updated_at)
        .map(|i| i.to_attributes())
        .transpose()
        .map_err(conversion_error)?
        .unwrap_or_default();
    let mut u = Update::new(event);
    u.name(attr::STUDENT_ID);
    Ok(WritePlan::Put { item, condition: NEWER_THAN_STORED, names: u.names, values: u.values })
}

fn plan_patch(event: &StudentEvent, patch: &StudentPatch, updated_at: &str) -> Result<WritePlan, ContractError> {
    let mut u = Update::new(event);
    u.head(event, updated_at);
    u.name(attr::DELETED);
    u.value(":prev", num(event.version - 1));
    if let Some(name) = &patch.name {
        u.set(attr::NAME, AttributeValue::S(name.clone()));
    }
    u.patch(attr::EMAIL, &patch.email, |e| AttributeValue::S(e.clone()));
    u.patch(attr::GRADE, &patch.grade, |g| num(u64::from(*g)));
    u.patch(attr::STATUS, &patch.status, |s| {
        serde_dynamo::to_attribute_value(s).unwrap_or_else(|_| AttributeValue::Null(true))
    });
    u.patch(attr::COURSES, &patch.courses, |c| AttributeValue::L(c.iter().cloned().map(AttributeValue::S).collect()));
    Ok(u.finish(event, ON_PREDECESSOR))
}

fn plan_delete(event: &StudentEvent, updated_at: &str) -> Result<WritePlan, ContractError> {
    let mut u = Update::new(event);
    u.head(event, updated_at);
    u.name(attr::STUDENT_ID);
    u.set(attr::DELETED, AttributeValue::Bool(true));
    for field in attr::RECORD_FIELDS {
        u.remove(field);
    }
    Ok(u.finish(event, NEWER_THAN_STORED))
}

fn conversion_error(e: serde_dynamo::Error) -> ContractError {
    ContractError::new(ErrorCode::ItemRejected, "item", format!("cannot convert to a DynamoDB item: {e}"))
}

fn num(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

/// Builds an UpdateExpression from SET and REMOVE clauses, with placeholders.
struct Update {
    sets: Vec<String>,
    removes: Vec<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Update {
    fn new(event: &StudentEvent) -> Self {
        let mut u = Self { sets: Vec::new(), removes: Vec::new(), names: HashMap::new(), values: HashMap::new() };
        u.name(attr::VERSION);
        u.value(":version", num(event.version));
        u
    }

    /// The bookkeeping every applied event writes: version, event id, clocks.
    fn head(&mut self, event: &StudentEvent, updated_at: &str) {
        self.sets.push("#Version = :version".to_owned());
        self.set(attr::EVENT_ID, AttributeValue::S(event.event_id.clone()));
        self.set(attr::UPDATED_AT, AttributeValue::S(updated_at.to_owned()));
        // OccurredAt describes the last applied event: absent when it had none.
        match &event.occurred_at {
            Some(at) => self.set(attr::OCCURRED_AT, AttributeValue::S(at.clone())),
            None => self.remove(attr::OCCURRED_AT),
        }
    }

    fn name(&mut self, attribute: &str) -> String {
        let placeholder = format!("#{attribute}");
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    fn value(&mut self, placeholder: &str, value: AttributeValue) {
        self.values.insert(placeholder.to_owned(), value);
    }

    fn set(&mut self, attribute: &str, value: AttributeValue) {
        let name = self.name(attribute);
        let placeholder = format!(":{attribute}");
        self.sets.push(format!("{name} = {placeholder}"));
        self.value(&placeholder, value);
    }

    fn remove(&mut self, attribute: &str) {
        let name = self.name(attribute);
        self.removes.push(name);
    }

    fn patch<T>(&mut self, attribute: &str, field: &FieldPatch<T>, to_value: impl FnOnce(&T) -> AttributeValue) {
        match field {
            FieldPatch::Keep => {}
            FieldPatch::Remove => self.remove(attribute),
            FieldPatch::Set(v) => self.set(attribute, to_value(v)),
        }
    }

    fn finish(self, event: &StudentEvent, condition: &'static str) -> WritePlan {
        let mut update = format!("SET {}", self.sets.join(", "));
        if !self.removes.is_empty() {
            update.push_str(&format!(" REMOVE {}", self.removes.join(", ")));
        }
        WritePlan::Update { key: key(&event.student_id), update, condition, names: self.names, values: self.values }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode;

    fn plan(body: &str) -> WritePlan {
        plan_write(&decode(body.as_bytes()).expect("valid").event, "2026-11-24T10:00:00Z").expect("plan")
    }

    /// Every `#x` and `:x` used in the expressions is defined, and vice versa.
    fn assert_placeholders_match(
        exprs: &[&str],
        names: &HashMap<String, String>,
        values: &HashMap<String, AttributeValue>,
    ) {
        let text = exprs.join(" ");
        let used = |sigil: char| -> std::collections::BTreeSet<String> {
            text.split(|c: char| !(c.is_alphanumeric() || c == '#' || c == ':' || c == '_'))
                .filter(|t| t.starts_with(sigil))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(used('#'), names.keys().cloned().collect(), "{text}");
        assert_eq!(used(':'), values.keys().cloned().collect(), "{text}");
    }

    #[test]
    fn patch_sets_and_removes_with_placeholders() {
        let p = plan(
            r#"{"type":"StudentPatched","eventId":"e2","studentId":"1","version":2,"student":{"grade":4,"email":null}}"#,
        );
        let WritePlan::Update { update, condition, names, values, .. } = p else { panic!("update") };
        assert_eq!(
            update,
            "SET #Version = :version, #EventID = :EventID, #UpdatedAt = :UpdatedAt, #Grade = :Grade REMOVE #OccurredAt, #Email"
        );
        assert_eq!(condition, "#Version = :prev AND attribute_not_exists(#Deleted)");
        assert_eq!(values[":prev"], AttributeValue::N("1".into()));
        assert_placeholders_match(&[&update, condition], &names, &values);
    }

    #[test]
    fn delete_leaves_a_tombstone() {
        let p = plan(
            r#"{"type":"StudentDeleted","eventId":"e3","studentId":"1","version":3,"occurredAt":"2026-11-24T10:00:00Z"}"#,
        );
        let WritePlan::Update { update, condition, names, values, .. } = p else { panic!("update") };
        assert!(update.contains("#Deleted = :Deleted"), "{update}");
        assert!(update.ends_with("REMOVE #Name, #Email, #Grade, #Status, #Courses"), "{update}");
        assert_eq!(condition, NEWER_THAN_STORED);
        assert_placeholders_match(&[&update, condition], &names, &values);
    }

    #[test]
    fn upsert_is_a_conditional_put() {
        let p = plan(r#"{"type":"StudentUpserted","eventId":"e1","studentId":"1","version":1,"student":{"name":"A"}}"#);
        assert_eq!(p.action(), "dynamodb:PutItem");
        let WritePlan::Put { condition, names, values, .. } = p else { panic!("put") };
        assert_placeholders_match(&[condition], &names, &values);
    }
}
