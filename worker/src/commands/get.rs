//! `student-worker get STUDENT_ID`: the stored record of one student as a
//! person reads it (plain values, not DynamoDB JSON), or with `--json` as
//! one JSON object for scripts. A tombstone shows as deleted at its version;
//! no item at all says so and exits 1. Reads with `dynamodb:GetItem`.

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use clap::Args;
use serde_json::{Map, Value};
use student_shared::item::attr;

use super::error::CommandError;
use super::output;
use crate::aws::error::Resource;
use crate::aws::region_of;
use crate::config::error::required;

/// `get`'s arguments.
#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// The student's id (the item's `StudentID`).
    #[arg(value_name = "STUDENT_ID")]
    pub student_id: String,
    /// The table to read.
    #[arg(long, env = "DYNAMODB_TABLE_NAME", value_name = "NAME")]
    pub table_name: Option<String>,
    /// Print the item as one JSON object, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `get --help`'s examples.
pub const EXAMPLES: &str = "\
  student-worker get 101
  student-worker get 101 --json | jq .Name
  DYNAMODB_TABLE_NAME=Students AWS_REGION=ap-northeast-2 student-worker get 101";

/// The order a person reads a record in; other attributes follow by name.
const ORDER: [&str; 10] = [
    attr::STUDENT_ID,
    attr::NAME,
    attr::EMAIL,
    attr::GRADE,
    attr::STATUS,
    attr::COURSES,
    attr::VERSION,
    attr::EVENT_ID,
    attr::OCCURRED_AT,
    attr::UPDATED_AT,
];

/// Prints the student's item; [`CommandError::NoItem`] when there is none.
pub async fn get(sdk: &SdkConfig, args: &GetArgs) -> Result<(), CommandError> {
    let table = required(&args.table_name, "DYNAMODB_TABLE_NAME", "table-name", "the table's name, e.g. Students")?;
    let region = region_of(sdk);
    let resource = Resource::table(&table, &region);
    let out = aws_sdk_dynamodb::Client::new(sdk)
        .get_item()
        .table_name(&table)
        .key(attr::STUDENT_ID, AttributeValue::S(args.student_id.clone()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| resource.error(&e, "dynamodb:GetItem"))?;
    let Some(item) = out.item else {
        return Err(CommandError::NoItem { student_id: args.student_id.clone(), table, region });
    };
    let value: Value = serde_dynamo::from_item(item)
        .map_err(|e| CommandError::Io { what: "reading the item".into(), source: std::io::Error::other(e) })?;
    let Value::Object(record) = value else { return Ok(()) };
    match args.json {
        true => output::line(Value::Object(record))?,
        false => output::line(text(&record))?,
    }
    Ok(())
}

/// `Name: Alice`-style lines, a tombstone's first line saying so.
fn text(record: &Map<String, Value>) -> String {
    let mut lines = Vec::new();
    if record.get(attr::DELETED) == Some(&Value::Bool(true)) {
        let version = record.get(attr::VERSION).map_or_else(|| "?".to_owned(), plain);
        lines.push(format!("deleted at version {version} (a tombstone: later events of a lower version are stale)"));
    }
    let rest = record.keys().filter(|k| !ORDER.contains(&k.as_str()) && k.as_str() != attr::DELETED);
    let names: Vec<&str> = ORDER.iter().copied().chain(rest.map(String::as_str)).collect();
    let width = names.iter().filter(|n| record.contains_key(**n)).map(|n| n.len()).max().unwrap_or(0);
    for name in names {
        if let Some(value) = record.get(name) {
            lines.push(format!("{name:<width$}  {}", plain(value)));
        }
    }
    lines.join("\n")
}

/// A value as a person writes it: strings unquoted, lists comma-separated.
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_record_reads_in_its_order_with_plain_values_and_a_tombstone_says_so() {
        let Value::Object(record) =
            json!({"Version": 2, "Name": "Alice", "StudentID": "101", "Courses": ["MATH101", "CS100"]})
        else {
            unreachable!()
        };
        assert_eq!(text(&record), "StudentID  101\nName       Alice\nCourses    MATH101, CS100\nVersion    2");
        let Value::Object(tomb) = json!({"StudentID": "102", "Version": 4, "Deleted": true}) else { unreachable!() };
        assert!(text(&tomb).starts_with("deleted at version 4"), "{}", text(&tomb));
    }
}
