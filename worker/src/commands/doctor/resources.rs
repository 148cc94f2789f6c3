//! The resource checks: the table (in the region asked, key `StudentID` S),
//! the queue, its redrive policy to a DLQ, the visibility timeout against the
//! write retry budget, and the DLQ `run` forwards to.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{TableDescription, TableStatus};
use aws_sdk_sqs::types::QueueAttributeName as Q;
use student_shared::item::attr::STUDENT_ID;

use super::probes;
use super::report::Check;
use crate::aws::error::{Kind, Resource};
use crate::aws::explain::{Subject, explain, wrong_key_schema};
use crate::aws::table::key_schema_mismatch;
use crate::limits::{DEADLINE_MARGIN, DYNAMODB_ATTEMPT_TIMEOUT};

/// Fewer receives than this dead-letters a good event after a single
/// throttled or deferred delivery.
pub const MIN_MAX_RECEIVE_COUNT: u64 = 2;

/// Queue attributes as `GetQueueAttributes` returns them.
pub type QueueAttributes = HashMap<Q, String>;

/// The table check: `DescribeTable` for the key schema; where that action is
/// not allowed (the worker does not need it), the conditional-write probe.
pub async fn table(dynamodb: &aws_sdk_dynamodb::Client, name: &str, region: &str) -> Check {
    let described = dynamodb.describe_table().table_name(name).send().await;
    match described {
        Ok(out) => key_check(out.table.as_ref(), name, region),
        Err(e) => {
            let e = Resource::table(name, region).error(&e, "dynamodb:DescribeTable");
            if e.kind == Kind::AccessDenied {
                return table_by_probe(dynamodb, name, region).await;
            }
            let x = explain(&e, Subject::Table(name));
            Check::fail("table", format!("{name} in {region}"), x.cause, x.fix, x.fatal)
        }
    }
}

/// The table check with the `PutItem` probe only (what `run` may call).
pub async fn table_by_probe(dynamodb: &aws_sdk_dynamodb::Client, name: &str, region: &str) -> Check {
    match probes::put_item(dynamodb, name, region).await {
        Ok(()) => Check::pass(
            "table",
            format!(
                "{name} in {region}: exists and takes key {STUDENT_ID} (S) (a conditional-write probe; nothing written)"
            ),
        ),
        Err(e) => {
            let x = explain(&e, Subject::Table(name));
            Check::fail("table", format!("{name} in {region}"), x.cause, x.fix, x.fatal)
        }
    }
}

fn key_check(table: Option<&TableDescription>, name: &str, region: &str) -> Check {
    let Some(t) = table else {
        return Check::fail(
            "table",
            name,
            "DescribeTable answered without a table".into(),
            "run doctor again".into(),
            false,
        );
    };
    if let Some(found) = key_schema_mismatch(t) {
        let (problem, fix) = wrong_key_schema();
        return Check::fail("table", format!("{name} in {region}"), format!("{found}: {problem}"), fix, true);
    }
    let status = t.table_status().map_or_else(|| "unknown".to_owned(), |s| s.as_str().to_owned());
    if t.table_status() != Some(&TableStatus::Active) && t.table_status() != Some(&TableStatus::Updating) {
        return Check::warn(
            "table",
            format!("{name} in {region}: key {STUDENT_ID} (S), status {status}"),
            format!("the table is {status}, not ACTIVE: writes fail until it is"),
            "wait for ACTIVE (aws dynamodb wait table-exists)".into(),
        );
    }
    Check::pass("table", format!("{name} in {region}: key {STUDENT_ID} (S), status {status}"))
}

/// The queue check: it exists (its attributes are read for the next checks).
pub async fn queue(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    variable: &'static str,
    region: &str,
) -> (Check, Option<QueueAttributes>) {
    let read = sqs.get_queue_attributes().queue_url(url).attribute_names(Q::All).send().await;
    match read {
        Ok(out) => {
            let attrs = out.attributes.unwrap_or_default();
            let kind = if attrs.get(&Q::FifoQueue).is_some_and(|v| v == "true") { "FIFO" } else { "standard" };
            let count = |k: &Q| attrs.get(k).map_or("?", String::as_str).to_owned();
            let detail = format!(
                "{url}: exists ({kind}), {} messages visible, {} in flight",
                count(&Q::ApproximateNumberOfMessages),
                count(&Q::ApproximateNumberOfMessagesNotVisible)
            );
            (Check::pass("queue", detail), Some(attrs))
        }
        Err(e) => {
            let e = Resource::queue(url, region).error(&e, "sqs:GetQueueAttributes");
            let x = explain(&e, Subject::Queue(url, variable));
            (Check::fail("queue", url, x.cause, x.fix, x.fatal), None)
        }
    }
}

/// The queue check with the visibility probe only (what `run` may call).
pub async fn queue_by_probe(sqs: &aws_sdk_sqs::Client, url: &str, region: &str) -> Check {
    match probes::change_visibility(sqs, url, region).await {
        Ok(()) => Check::pass("queue", format!("{url}: exists ({})", probes::SQS_HOW)),
        Err(e) => {
            let x = explain(&e, Subject::Queue(url, "SQS_QUEUE_URL"));
            Check::fail("queue", url, x.cause, x.fix, x.fatal)
        }
    }
}

/// The redrive policy as SQS stores it (`maxReceiveCount` may be a string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    /// The DLQ's ARN.
    pub dlq_arn: String,
    /// Receives before SQS moves a message there.
    pub max_receive_count: u64,
}

/// Parses the `RedrivePolicy` attribute.
pub fn redrive_of(attrs: &QueueAttributes) -> Option<Redrive> {
    let policy: serde_json::Value = serde_json::from_str(attrs.get(&Q::RedrivePolicy)?).ok()?;
    let dlq_arn = policy.get("deadLetterTargetArn")?.as_str()?.to_owned();
    let count = policy.get("maxReceiveCount")?;
    let max_receive_count = count.as_u64().or_else(|| count.as_str().and_then(|s| s.parse().ok()))?;
    Some(Redrive { dlq_arn, max_receive_count })
}

/// The URL of the queue `arn` names, on the same endpoint as `sibling_url`
/// (SQS URLs are `<endpoint>/<account>/<name>`), so no `GetQueueUrl` is needed.
pub fn url_of_arn(arn: &str, sibling_url: &str) -> Option<String> {
    let mut parts = arn.rsplit(':');
    let (name, account) = (parts.next()?, parts.next()?);
    let base = sibling_url.trim_end_matches('/').rsplitn(3, '/').nth(2)?;
    Some(format!("{base}/{account}/{name}"))
}

/// The redrive check: a policy, a sane `maxReceiveCount`, a DLQ that exists.
pub async fn redrive(sqs: &aws_sdk_sqs::Client, attrs: &QueueAttributes, queue_url: &str, region: &str) -> Check {
    let Some(r) = redrive_of(attrs) else {
        return Check::fail(
            "redrive",
            "no redrive policy",
            "the queue has no RedrivePolicy: a message that can never be written is received again and again until its retention ends, and there is no DLQ to inspect or replay".into(),
            "give the queue a RedrivePolicy to a DLQ with maxReceiveCount 5 (`student-worker setup` in dev accounts; \
             otherwise `aws sqs set-queue-attributes` or your infrastructure code)"
                .into(),
            false,
        );
    };
    if r.max_receive_count < MIN_MAX_RECEIVE_COUNT {
        return Check::fail(
            "redrive",
            format!("to {} after {} receive", r.dlq_arn, r.max_receive_count),
            "maxReceiveCount 1: a single throttled, timed-out or deferred delivery dead-letters a good event".into(),
            "set maxReceiveCount to 5 (the setup default) or more".into(),
            false,
        );
    }
    let detail = format!("to {} after {} receives", r.dlq_arn, r.max_receive_count);
    let Some(dlq_url) = url_of_arn(&r.dlq_arn, queue_url) else {
        return Check::pass("redrive", detail);
    };
    let read =
        sqs.get_queue_attributes().queue_url(&dlq_url).attribute_names(Q::ApproximateNumberOfMessages).send().await;
    match read {
        Ok(out) => {
            let n = out.attributes.unwrap_or_default().remove(&Q::ApproximateNumberOfMessages).unwrap_or_default();
            Check::pass("redrive", format!("{detail}; the DLQ holds {n} messages"))
        }
        Err(e) => {
            let e = Resource::queue(&dlq_url, region).error(&e, "sqs:GetQueueAttributes");
            let x = explain(&e, Subject::Queue(&dlq_url, "the RedrivePolicy's deadLetterTargetArn"));
            if e.kind == Kind::NotFound {
                return Check::fail("redrive", detail, x.cause, x.fix, false);
            }
            if e.kind == Kind::AccessDenied {
                return unreadable_dlq("redrive", detail);
            }
            Check::warn("redrive", detail, format!("the DLQ could not be read: {}", x.cause), x.fix)
        }
    }
}

/// The visibility check: the visibility `run` asks for on each receive must
/// leave room for the write retry budget (an attempt of at most 5 s starts
/// only if it can end 5 s before the message reappears).
pub fn visibility(worker_seconds: i32, attrs: &QueueAttributes) -> Check {
    let needed = DEADLINE_MARGIN + DYNAMODB_ATTEMPT_TIMEOUT * 2;
    let visibility = std::time::Duration::from_secs(u64::try_from(worker_seconds).unwrap_or(0));
    let room = visibility.saturating_sub(DEADLINE_MARGIN + DYNAMODB_ATTEMPT_TIMEOUT);
    let queue_default = attrs.get(&Q::VisibilityTimeout).map_or("?", String::as_str);
    let detail = format!(
        "run asks for {worker_seconds} s on each receive (SQS_VISIBILITY_TIMEOUT_SECONDS): write attempts may start for {} s, \
         each ending {} s before the message reappears (the queue's own default is {queue_default} s)",
        room.as_secs(),
        DEADLINE_MARGIN.as_secs()
    );
    if visibility < needed {
        return Check::fail(
            "visibility",
            detail,
            format!(
                "{worker_seconds} s leaves no room for a retry after a failed {} s attempt",
                DYNAMODB_ATTEMPT_TIMEOUT.as_secs()
            ),
            format!("set SQS_VISIBILITY_TIMEOUT_SECONDS to at least {} (60 is the default)", needed.as_secs()),
            true,
        );
    }
    Check::pass("visibility", detail)
}

/// The check of `SQS_DLQ_URL`, where `run` forwards invalid messages at once.
pub async fn forward_dlq(sqs: &aws_sdk_sqs::Client, url: &str, redrive: Option<&Redrive>, region: &str) -> Check {
    let read = sqs.get_queue_attributes().queue_url(url).attribute_names(Q::QueueArn).send().await;
    match read {
        Ok(out) => {
            let arn = out.attributes.unwrap_or_default().remove(&Q::QueueArn).unwrap_or_default();
            match redrive {
                Some(r) if r.dlq_arn != arn => Check::warn(
                    "dlq",
                    format!("{url}: exists"),
                    format!("invalid messages go to {arn} but redriven ones to {}: two places to look", r.dlq_arn),
                    "point SQS_DLQ_URL at the queue's redrive target".into(),
                ),
                _ => Check::pass("dlq", format!("{url}: exists; invalid messages are forwarded here")),
            }
        }
        Err(e) => {
            let e = Resource::queue(url, region).error(&e, "sqs:GetQueueAttributes");
            if e.kind == Kind::AccessDenied {
                return unreadable_dlq("dlq", url.to_owned());
            }
            let x = explain(&e, Subject::Queue(url, "SQS_DLQ_URL"));
            Check::fail("dlq", url, x.cause, x.fix, x.fatal)
        }
    }
}

/// The role may not read the DLQ's attributes. The task role need not: the
/// worker only sends there (least privilege, iam/task-role-policy.json), so
/// doctor run as the task warns instead of asking to widen the role.
fn unreadable_dlq(check: &str, detail: String) -> Check {
    Check::warn(
        check,
        detail,
        "the role may not call sqs:GetQueueAttributes on the DLQ, so its existence was not checked; \
         the worker does not need that action there (it only sends), so the task role rightly lacks it"
            .into(),
        "nothing to fix for the task role; to check the DLQ, run doctor with the operator policy \
         (iam/operator-policy.json)"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redrive_policy_and_dlq_url_are_read_as_sqs_stores_them() {
        let attrs = QueueAttributes::from([(
            Q::RedrivePolicy,
            r#"{"deadLetterTargetArn":"arn:aws:sqs:ap-northeast-2:123456789012:students-dlq","maxReceiveCount":"5"}"#
                .to_owned(),
        )]);
        let r = redrive_of(&attrs).expect("policy");
        assert_eq!(r.max_receive_count, 5);
        assert_eq!(
            url_of_arn(&r.dlq_arn, "https://sqs.ap-northeast-2.amazonaws.com/123456789012/students").as_deref(),
            Some("https://sqs.ap-northeast-2.amazonaws.com/123456789012/students-dlq")
        );
        assert_eq!(redrive_of(&QueueAttributes::new()), None);
    }

    #[test]
    fn visibility_must_leave_room_for_a_retry() {
        assert_eq!(visibility(60, &QueueAttributes::new()).status, super::super::report::Status::Pass);
        let short = visibility(12, &QueueAttributes::new());
        assert!(short.failed());
        assert!(short.fix.as_deref().is_some_and(|f| f.contains("at least 15")), "{short}");
    }
}
