//! Permission probes that change no data. DynamoDB: a conditional write on a
//! sentinel key whose condition cannot hold (`attribute_exists(#k) AND
//! attribute_not_exists(#k)`): `ConditionalCheckFailed` proves the action is
//! allowed, the table exists and takes a `StudentID` (S) key, and nothing is
//! written. SQS: the batch calls the worker makes, on a receipt handle no
//! message can have: a per-entry `ReceiptHandleIsInvalid` proves the action is
//! allowed and the queue exists. Receive and send cannot be proved without
//! touching messages; they are not probed.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use student_shared::item::attr::STUDENT_ID;

use super::report::Check;
use crate::aws::entries::{delete_entries, visibility_entries};
use crate::aws::error::{AwsError, Resource};
use crate::aws::explain::{Subject, explain};

/// The sentinel key of the DynamoDB probes. No probe can change it (or any
/// item), whether or not such a student exists.
pub const SENTINEL_STUDENT_ID: &str = "student-worker-doctor-probe";
/// A receipt handle no message can have.
const BOGUS_RECEIPT_HANDLE: &str = "student-worker-doctor-probe";
/// A condition that can never hold: the key both exists and does not.
const IMPOSSIBLE_CONDITION: &str = "attribute_exists(#k) AND attribute_not_exists(#k)";
/// Whole-request answers that still prove the caller was authorised: SQS
/// authorises a request before it looks at the receipt handles.
const ALLOWED_BUT_REFUSED: [&str; 3] = ["ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight"];

/// `dynamodb:PutItem` on the sentinel key, refused by its condition.
pub async fn put_item(dynamodb: &aws_sdk_dynamodb::Client, table: &str, region: &str) -> Result<(), AwsError> {
    let sent = dynamodb
        .put_item()
        .table_name(table)
        .item(STUDENT_ID, AttributeValue::S(SENTINEL_STUDENT_ID.to_owned()))
        .condition_expression(IMPOSSIBLE_CONDITION)
        .expression_attribute_names("#k", STUDENT_ID)
        .send()
        .await;
    match sent {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.as_service_error(), Some(PutItemError::ConditionalCheckFailedException(_))) => Ok(()),
        Err(e) => Err(Resource::table(table, region).error(&e, "dynamodb:PutItem")),
    }
}

/// `dynamodb:UpdateItem` on the sentinel key, refused by its condition.
pub async fn update_item(dynamodb: &aws_sdk_dynamodb::Client, table: &str, region: &str) -> Result<(), AwsError> {
    let sent = dynamodb
        .update_item()
        .table_name(table)
        .set_key(Some(HashMap::from([(STUDENT_ID.to_owned(), AttributeValue::S(SENTINEL_STUDENT_ID.to_owned()))])))
        .update_expression("SET #p = :p")
        .condition_expression(IMPOSSIBLE_CONDITION)
        .expression_attribute_names("#k", STUDENT_ID)
        .expression_attribute_names("#p", "DoctorProbe")
        .expression_attribute_values(":p", AttributeValue::Bool(true))
        .send()
        .await;
    match sent {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.as_service_error(), Some(UpdateItemError::ConditionalCheckFailedException(_))) => Ok(()),
        Err(e) => Err(Resource::table(table, region).error(&e, "dynamodb:UpdateItem")),
    }
}

/// `sqs:ChangeMessageVisibility` (the batch call the worker makes) on a bogus receipt handle.
pub async fn change_visibility(sqs: &aws_sdk_sqs::Client, queue_url: &str, region: &str) -> Result<(), AwsError> {
    let entries = visibility_entries([(BOGUS_RECEIPT_HANDLE, 0)]);
    let sent = sqs.change_message_visibility_batch().queue_url(queue_url).set_entries(Some(entries)).send().await;
    match sent {
        Ok(_) => Ok(()),
        Err(e) => allowed_but_refused(Resource::queue(queue_url, region).error(&e, "sqs:ChangeMessageVisibility")),
    }
}

/// `sqs:DeleteMessage` (the batch call the worker makes) on a bogus receipt handle.
pub async fn delete_message(sqs: &aws_sdk_sqs::Client, queue_url: &str, region: &str) -> Result<(), AwsError> {
    let entries = delete_entries([BOGUS_RECEIPT_HANDLE]);
    let sent = sqs.delete_message_batch().queue_url(queue_url).set_entries(Some(entries)).send().await;
    match sent {
        Ok(_) => Ok(()),
        Err(e) => allowed_but_refused(Resource::queue(queue_url, region).error(&e, "sqs:DeleteMessage")),
    }
}

fn allowed_but_refused(e: AwsError) -> Result<(), AwsError> {
    match e.code.as_deref() {
        Some(code) if ALLOWED_BUT_REFUSED.contains(&code) => Ok(()),
        _ => Err(e),
    }
}

/// A `permission <action>` line from a probe's result.
pub fn permission(action: &str, subject: Subject<'_>, result: Result<(), AwsError>, how: &str) -> Check {
    let name = format!("permission {action}");
    match result {
        Ok(()) => Check::pass(name, format!("allowed ({how})")),
        Err(e) => {
            let x = explain(&e, subject);
            Check::fail(name, "refused", x.cause, x.fix, x.fatal)
        }
    }
}

/// How the DynamoDB probes prove an action, for the report.
pub const DYNAMODB_HOW: &str = "a conditional write on a sentinel key whose condition cannot hold answered ConditionalCheckFailed; nothing was written";
/// How the SQS probes prove an action, for the report.
pub const SQS_HOW: &str =
    "a batch call on a receipt handle no message has answered ReceiptHandleIsInvalid; no message was touched";
