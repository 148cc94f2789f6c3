//! Applies one event to DynamoDB with its conditional write (see
//! `student_shared::plan`), retrying throttling and transient errors with
//! backoff until the message's deadline (which the runtime supplies, and the
//! ECS heartbeat may move). Each
//! attempt takes a slot from the adaptive concurrency [`Limiter`] and reports
//! back whether DynamoDB throttled it. On a failed condition the old item
//! (`ReturnValuesOnConditionCheckFailure=ALL_OLD`) says why, without a read.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use student_shared::outcome::ConditionFailure;
use student_shared::{ContractError, StudentEvent, WritePlan, classify_conditional_failure, plan_write};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;

use super::concurrency::{Limiter, Signal};
use super::message::Deadline;
use super::retry::{self, Retried, Retryable};
use crate::aws::{Action, AwsError, Resource};
use crate::limits::DYNAMODB_ATTEMPT_TIMEOUT;
use crate::observe::Metrics;

/// Sends a PutItem or UpdateItem `call` under `condition` (names and values
/// as placeholders), asking for the old item when the condition fails: that
/// failure is `Ok(Some(old item))`, success `Ok(None)`, any other error goes
/// through `$map`. A macro because the two request builders share these
/// methods but no trait.
macro_rules! conditional {
    ($call:expr, $condition:expr, $names:expr, $values:expr, $error:ident, $map:expr) => {
        $call
            .condition_expression($condition)
            .set_expression_attribute_names(Some($names))
            .set_expression_attribute_values(Some($values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await
            .map(|_| None)
            .or_else(|e| match e.as_service_error() {
                Some($error::ConditionalCheckFailedException(c)) => Ok(Some(c.item.clone())),
                _ => Err($map(&e)),
            })
    };
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// The condition held; the item is stored.
    Applied,
    /// The condition failed; why.
    NotApplied(ConditionFailure),
}

/// A write that did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The event cannot become an item.
    #[error(transparent)]
    Plan(#[from] ContractError),
    /// DynamoDB refused or failed the call.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The message's deadline leaves no time for another attempt.
    #[error("no time left before the message's visibility deadline")]
    OutOfTime,
}

impl WriteError {
    /// Retry, dead-letter or stop.
    pub fn action(&self) -> Action {
        match self {
            Self::Plan(_) => Action::DeadLetter,
            Self::Aws(e) => e.action(),
            Self::OutOfTime => Action::Retry,
        }
    }
}

impl Retryable for WriteError {
    fn is_retryable(&self) -> bool {
        self.action() == Action::Retry
    }
}

/// Writes events to one table.
#[derive(Debug, Clone)]
pub struct Writer {
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    resource: Resource,
    limiter: Arc<Limiter>,
    metrics: Arc<Metrics>,
}

impl Writer {
    /// A writer for `table`; the client should have SDK retries off.
    /// Throttled attempts are counted in `metrics`.
    pub fn new(
        dynamodb: aws_sdk_dynamodb::Client,
        table: &str,
        region: &str,
        limiter: Arc<Limiter>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { dynamodb, table: table.to_owned(), resource: Resource::table(table, region), limiter, metrics }
    }

    /// The adaptive limit on writes in flight.
    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }

    /// Applies `event`, retrying transient failures while a whole attempt
    /// still fits before the lease's deadline.
    pub async fn write(&self, event: &StudentEvent, lease: &impl Deadline) -> WriteReport {
        let plan = match plan_write(event, &now_rfc3339()) {
            Ok(plan) => plan,
            Err(e) => return WriteReport::once(Err(e.into())),
        };
        if Instant::now() >= last_start(lease) {
            return WriteReport::once(Err(WriteError::OutOfTime));
        }
        let throttled_by = Mutex::new(BTreeSet::new());
        let retried =
            retry::until_deadline(|| last_start(lease), || self.limited_attempt(event, &plan, lease, &throttled_by))
                .await;
        let throttle_reasons = throttled_by.into_inner().unwrap_or_else(PoisonError::into_inner).into_iter().collect();
        WriteReport { retried, throttle_reasons }
    }

    /// One attempt within the concurrency limit; waiting for a slot may use
    /// up the time left, so the deadline is checked again once it is ours.
    async fn limited_attempt(
        &self,
        event: &StudentEvent,
        plan: &WritePlan,
        lease: &impl Deadline,
        throttled_by: &Mutex<BTreeSet<String>>,
    ) -> Result<Written, WriteError> {
        let permit = self.limiter.acquire().await;
        if Instant::now() >= last_start(lease) {
            permit.done(Signal::Neutral);
            return Err(WriteError::OutOfTime);
        }
        let result = self.attempt(event, plan).await;
        if let Err(WriteError::Aws(e)) = &result
            && e.is_throttling()
        {
            let reasons = e.throttle_causes();
            tracing::debug!(student_id = %event.student_id, version = event.version, code = e.code.as_deref(), reasons = %reasons.join(","), "write throttled; retrying while the deadline allows");
            throttled_by.lock().unwrap_or_else(PoisonError::into_inner).extend(reasons);
        }
        permit.done(match &result {
            Ok(_) | Err(WriteError::Plan(_)) => Signal::Success,
            Err(WriteError::Aws(e)) if e.is_throttling() => Signal::Throttled,
            Err(_) => Signal::Neutral,
        });
        result
    }

    async fn attempt(&self, event: &StudentEvent, plan: &WritePlan) -> Result<Written, WriteError> {
        let old = match plan.clone() {
            WritePlan::Put { item, condition, names, values } => {
                let call = self.dynamodb.put_item().table_name(&self.table).set_item(Some(item));
                conditional!(call, condition, names, values, PutItemError, |e| self.error(e, plan))?
            }
            WritePlan::Update { key, update, condition, names, values } => {
                let call =
                    self.dynamodb.update_item().table_name(&self.table).set_key(Some(key)).update_expression(update);
                conditional!(call, condition, names, values, UpdateItemError, |e| self.error(e, plan))?
            }
        };
        Ok(match old {
            None => Written::Applied,
            Some(old) => Written::NotApplied(classify(event, old.as_ref())),
        })
    }

    fn error<E, R>(&self, e: &aws_sdk_dynamodb::error::SdkError<E, R>, plan: &WritePlan) -> WriteError
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        self.metrics.failed(&self.resource, e, plan.action()).into()
    }
}

/// A write's result, its attempts, and why DynamoDB throttled it on the way.
#[derive(Debug)]
pub struct WriteReport {
    /// The result and the attempts made.
    pub retried: Retried<Written, WriteError>,
    /// DynamoDB's throttling reasons over all attempts, each once
    /// (`Unspecified` for a throttle that named none); empty if none was throttled.
    pub throttle_reasons: Vec<String>,
}

impl WriteReport {
    fn once(result: Result<Written, WriteError>) -> Self {
        Self { retried: Retried { result, attempts: 0 }, throttle_reasons: Vec::new() }
    }
}

/// The last moment an attempt may start and still end by the lease's deadline.
fn last_start(lease: &impl Deadline) -> Instant {
    let deadline = lease.deadline();
    deadline.checked_sub(DYNAMODB_ATTEMPT_TIMEOUT).unwrap_or(deadline)
}

fn classify(event: &StudentEvent, old: Option<&HashMap<String, AttributeValue>>) -> ConditionFailure {
    classify_conditional_failure(event, old.filter(|item| !item.is_empty()))
}

/// The worker's clock for `UpdatedAt`.
fn now_rfc3339() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}
