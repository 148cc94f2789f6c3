//! What becomes of one message, decided without touching a queue: from the
//! write's result (or the refusal to decode) to a [`Decision`]: done, defer
//! N s, dead-letter with a code and reason, retry, release, or fatal. The
//! runtimes carry decisions out: the ECS poller as deletes, visibility
//! changes and DLQ sends; a Lambda function as a partial batch response.

use student_shared::outcome::ConditionFailure;
use student_shared::{ContractError, ErrorCode, Outcome, StudentEvent};

use super::write::{WriteError, Written};
use crate::aws::{Action, AwsError};

/// A deferred patch first comes back after this long...
pub const DEFER_BASE_SECONDS: i32 = 2;
/// ...four times longer with each receive, up to `WORKER_MAX_DEFER_SECONDS`
/// (default 15 minutes), so that within maxReceiveCount 5 a patch waits
/// 2 + 8 + 32 + 128 + 512 s ≈ 11 min for its predecessor: longer than a
/// predecessor held through a whole heartbeat period (5 min by default).
pub const DEFER_GROWTH: i32 = 4;

/// The answer for one message.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Finished (`applied`, `duplicate` or `stale`): delete it.
    Done(Outcome),
    /// A patch whose predecessor is not stored yet: hide it this long, then try again.
    Defer {
        /// Seconds until it is visible again.
        seconds: i32,
        /// The version the patch waits for (its own minus one).
        waits_for_version: u64,
    },
    /// It can never apply: forward it to the DLQ with this reason.
    DeadLetter(ContractError),
    /// A transient failure outlasted the deadline: leave it for another delivery.
    Retry,
    /// Not worked on (the worker is stopping, or its FIFO group stopped): visible again at once.
    Release,
    /// Setup is broken: stop; the message itself is released.
    Fatal(AwsError),
}

impl Decision {
    /// The outcome this decision gives the message when the runtime carries it out.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Done(outcome) => *outcome,
            Self::Defer { .. } => Outcome::Deferred,
            Self::DeadLetter(_) => Outcome::Invalid,
            Self::Retry => Outcome::Retry,
            Self::Release | Self::Fatal(_) => Outcome::Released,
        }
    }
}

/// Decides what becomes of a message whose `event` was written with `written`.
pub fn decide(
    event: &StudentEvent,
    written: Result<Written, WriteError>,
    receive_count: u32,
    max_defer_seconds: i32,
) -> Decision {
    match written {
        Ok(Written::Applied) => Decision::Done(Outcome::Applied),
        Ok(Written::NotApplied(why)) => match why {
            ConditionFailure::Duplicate => Decision::Done(Outcome::Duplicate),
            ConditionFailure::Stale { .. } => Decision::Done(Outcome::Stale),
            ConditionFailure::Deferred { .. } => Decision::Defer {
                seconds: defer_seconds(receive_count, max_defer_seconds),
                waits_for_version: event.version.saturating_sub(1),
            },
            ConditionFailure::PatchOnDeleted => Decision::DeadLetter(ContractError::new(
                ErrorCode::PatchOnDeleted,
                "type",
                format!("StudentPatched version {} follows a StudentDeleted tombstone", event.version),
            )),
            // Leave it: the next delivery tries again.
            ConditionFailure::Unexplained => Decision::Retry,
        },
        Err(error) => match error.action() {
            Action::Retry => Decision::Retry,
            Action::DeadLetter => Decision::DeadLetter(refusal_of(error)),
            Action::Stop => match error {
                WriteError::Aws(e) => Decision::Fatal(e),
                // Only AWS errors stop; the others never classify so.
                WriteError::Plan(_) | WriteError::OutOfTime => Decision::Release,
            },
        },
    }
}

/// DynamoDB's refusal of the item as a dead-letter reason.
fn refusal_of(error: WriteError) -> ContractError {
    match error {
        WriteError::Plan(refusal) => refusal,
        WriteError::Aws(e) => ContractError::new(ErrorCode::ItemRejected, "item", e.message),
        WriteError::OutOfTime => ContractError::new(ErrorCode::ItemRejected, "item", "out of time"),
    }
}

/// How long a deferred patch stays invisible: grows with each receive, up to `max_seconds`.
pub fn defer_seconds(receive_count: u32, max_seconds: i32) -> i32 {
    let steps = receive_count.saturating_sub(1).min(16);
    (0..steps).fold(DEFER_BASE_SECONDS, |s, _| s.saturating_mul(DEFER_GROWTH)).min(max_seconds)
}

#[cfg(test)]
mod tests {
    use student_shared::decode;

    use super::*;
    use crate::aws::Kind;
    use crate::config::handler::DEFAULT_MAX_DEFER_SECONDS;

    fn patch(version: u64) -> StudentEvent {
        let body = format!(
            r#"{{"type":"StudentPatched","eventId":"e{version}","studentId":"101","version":{version},"student":{{"grade":3}}}}"#
        );
        decode(body.as_bytes()).expect("a valid patch").event
    }

    fn aws(kind: Kind, code: &str) -> WriteError {
        WriteError::Aws(AwsError {
            throttling_reasons: crate::aws::error::ThrottlingReasons::default(),
            kind,
            action: "dynamodb:UpdateItem",
            resource: "table Students".into(),
            region: "ap-northeast-2".into(),
            code: Some(code.into()),
            message: "said".into(),
        })
    }

    fn decided(written: Result<Written, WriteError>, receive_count: u32) -> Decision {
        decide(&patch(7), written, receive_count, DEFAULT_MAX_DEFER_SECONDS)
    }

    #[test]
    fn finished_writes_are_done() {
        assert_eq!(decided(Ok(Written::Applied), 1).outcome(), Outcome::Applied);
        let not_applied = |why| decided(Ok(Written::NotApplied(why)), 1).outcome();
        assert_eq!(not_applied(ConditionFailure::Duplicate), Outcome::Duplicate);
        assert_eq!(not_applied(ConditionFailure::Stale { stored_version: 9 }), Outcome::Stale);
        assert!(matches!(
            decided(Ok(Written::NotApplied(ConditionFailure::Stale { stored_version: 7 })), 1),
            Decision::Done(Outcome::Stale)
        ));
    }

    #[test]
    fn a_patch_ahead_of_its_predecessor_is_deferred_longer_with_each_receive() {
        let deferred = |n| decided(Ok(Written::NotApplied(ConditionFailure::Deferred { stored_version: Some(5) })), n);
        assert!(matches!(deferred(1), Decision::Defer { seconds: 2, waits_for_version: 6 }));
        assert!(matches!(deferred(3), Decision::Defer { seconds: 32, .. }));
        assert!(matches!(deferred(9), Decision::Defer { seconds: 900, .. }), "capped");
    }

    #[test]
    fn what_can_never_apply_is_dead_lettered_with_its_code() {
        let Decision::DeadLetter(refusal) = decided(Ok(Written::NotApplied(ConditionFailure::PatchOnDeleted)), 1)
        else {
            panic!("a patch on a tombstone is dead-lettered")
        };
        assert_eq!(refusal.code(), ErrorCode::PatchOnDeleted);
        assert!(refusal.to_string().contains("version 7 follows a StudentDeleted tombstone"), "{refusal}");
        let Decision::DeadLetter(refusal) = decided(Err(aws(Kind::Rejected, "ValidationException")), 1) else {
            panic!("an item DynamoDB refuses is dead-lettered")
        };
        assert_eq!(refusal.code(), ErrorCode::ItemRejected);
        let plan = ContractError::new(ErrorCode::InvalidEvent, "student", "no fields");
        assert!(
            matches!(decided(Err(WriteError::Plan(plan)), 1), Decision::DeadLetter(r) if r.code() == ErrorCode::InvalidEvent)
        );
    }

    #[test]
    fn transient_failures_retry_and_broken_setups_are_fatal() {
        assert!(matches!(decided(Err(aws(Kind::Transient, "ThrottlingException")), 1), Decision::Retry));
        assert!(matches!(decided(Err(WriteError::OutOfTime), 1), Decision::Retry));
        assert!(matches!(decided(Ok(Written::NotApplied(ConditionFailure::Unexplained)), 1), Decision::Retry));
        let fatal = decided(Err(aws(Kind::AccessDenied, "AccessDeniedException")), 1);
        assert!(matches!(&fatal, Decision::Fatal(e) if e.kind == Kind::AccessDenied));
        assert_eq!(fatal.outcome(), Outcome::Released, "a fatal error releases the message, never dead-letters it");
        assert!(matches!(decided(Err(aws(Kind::NotFound, "ResourceNotFoundException")), 1), Decision::Fatal(_)));
    }

    #[test]
    fn deferral_grows_and_is_capped() {
        let default = |n| defer_seconds(n, DEFAULT_MAX_DEFER_SECONDS);
        let delays: Vec<i32> = (1..=8).map(default).collect();
        assert_eq!(delays, vec![2, 8, 32, 128, 512, 900, 900, 900]);
        assert_eq!(default(u32::MAX), 900);
        // Within maxReceiveCount 5 a deferred patch waits longer than the default heartbeat period.
        assert!((1..=5).map(default).sum::<i32>() > 600);
        // A smaller cap (WORKER_MAX_DEFER_SECONDS) holds from where the ladder reaches it.
        let capped: Vec<i32> = (1..=4).map(|n| defer_seconds(n, 10)).collect();
        assert_eq!(capped, vec![2, 8, 10, 10]);
        // SQS's 12-hour limit is the largest cap; the ladder never overflows on the way.
        assert_eq!(defer_seconds(u32::MAX, 43_200), 43_200);
    }
}
