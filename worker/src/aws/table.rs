//! The table's key as the worker needs it: partition key `StudentID` of
//! type S and no sort key. `setup` checks an existing table with it, and
//! `doctor` the table it is pointed at, on `DescribeTable`'s answer.

use aws_sdk_dynamodb::types::{KeyType, ScalarAttributeType, TableDescription};
use student_shared::item::attr::STUDENT_ID;

/// What the table's key is, when it is not `StudentID` (S) alone.
pub fn key_schema_mismatch(table: &TableDescription) -> Option<String> {
    let hash_only =
        matches!(table.key_schema(), [k] if k.attribute_name() == STUDENT_ID && *k.key_type() == KeyType::Hash);
    let string_key = table
        .attribute_definitions()
        .iter()
        .any(|a| a.attribute_name() == STUDENT_ID && *a.attribute_type() == ScalarAttributeType::S);
    if hash_only && string_key {
        return None;
    }
    let keys: Vec<String> =
        table.key_schema().iter().map(|k| format!("{} ({})", k.attribute_name(), k.key_type())).collect();
    let types: Vec<String> = table
        .attribute_definitions()
        .iter()
        .map(|a| format!("{} {}", a.attribute_name(), a.attribute_type()))
        .collect();
    Some(format!("the table's key is {} with types {}", keys.join(", "), types.join(", ")))
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::{AttributeDefinition, KeySchemaElement};

    use super::*;

    fn table(keys: &[(&str, KeyType)], types: &[(&str, ScalarAttributeType)]) -> TableDescription {
        let mut t = TableDescription::builder();
        for (name, kind) in keys {
            t = t.key_schema(
                KeySchemaElement::builder().attribute_name(*name).key_type(kind.clone()).build().expect("key"),
            );
        }
        for (name, ty) in types {
            t = t.attribute_definitions(
                AttributeDefinition::builder().attribute_name(*name).attribute_type(ty.clone()).build().expect("type"),
            );
        }
        t.build()
    }

    #[test]
    fn only_a_string_student_id_partition_key_fits() {
        let right = table(&[(STUDENT_ID, KeyType::Hash)], &[(STUDENT_ID, ScalarAttributeType::S)]);
        assert_eq!(key_schema_mismatch(&right), None);
        let number = table(&[(STUDENT_ID, KeyType::Hash)], &[(STUDENT_ID, ScalarAttributeType::N)]);
        assert_eq!(
            key_schema_mismatch(&number).as_deref(),
            Some("the table's key is StudentID (HASH) with types StudentID N")
        );
        let sorted = table(
            &[(STUDENT_ID, KeyType::Hash), ("Term", KeyType::Range)],
            &[(STUDENT_ID, ScalarAttributeType::S), ("Term", ScalarAttributeType::S)],
        );
        assert!(key_schema_mismatch(&sorted).is_some_and(|m| m.contains("Term (RANGE)")));
        let other = table(&[("id", KeyType::Hash)], &[("id", ScalarAttributeType::S)]);
        assert!(key_schema_mismatch(&other).is_some());
    }
}
