//! The limits AWS sets and the worker's timing budget, named once. Every
//! other module takes these from here; docs/design.md explains the budget as
//! a whole (how the deadline margin, one write attempt and the heartbeat's
//! lead fit inside a visibility timeout).

use std::time::Duration;

/// SQS returns at most 10 messages per receive.
pub const MAX_BATCH_SIZE: i32 = 10;
/// SQS batch calls (delete, change visibility, send) take at most 10 entries.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// SQS long polls wait at most 20 s.
pub const MAX_WAIT_TIME_SECONDS: i32 = 20;
/// SQS's largest visibility timeout: 12 hours.
pub const MAX_VISIBILITY_TIMEOUT_SECONDS: i32 = 43_200;
/// SQS allows at most 10 message attributes per message.
pub const MAX_MESSAGE_ATTRIBUTES: usize = 10;

/// Work on a message stops this long before its visibility ends, leaving time
/// to delete it before another consumer may receive it.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(5);
/// A Lambda invocation stops working this long before its deadline, leaving
/// time to hide deferred messages, forward invalid ones and post the answer.
pub const LAMBDA_ANSWER_MARGIN: Duration = Duration::from_secs(2);
/// One DynamoDB write attempt may take this long before it counts as failed
/// and is retried (the SDK sets no read timeout by default).
pub const DYNAMODB_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// SQS calls get this long on top of the long-poll wait before they time out.
pub const SQS_ATTEMPT_SLACK: Duration = Duration::from_secs(15);
/// Smallest visibility timeout: room for the deadline margin, one write
/// attempt and the delete.
pub const MIN_VISIBILITY_TIMEOUT_SECONDS: i32 = 15;

/// How often the heartbeat looks for messages to extend.
pub const HEARTBEAT_TICK: Duration = Duration::from_secs(1);
/// An extension call may take this long; the messages it holds wait for it
/// before they can be deleted or released, so a hanging call must not hold
/// them (or the shutdown) for the SQS client's whole retry budget.
pub const HEARTBEAT_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Extend once no more than this much visibility is left (or half the
/// visibility timeout, if larger): the deadline margin, one write attempt and
/// a few ticks, so a retrying write never runs out of time while the
/// extension is on its way.
pub const EXTEND_LEAD: Duration =
    Duration::from_secs(DEADLINE_MARGIN.as_secs() + DYNAMODB_ATTEMPT_TIMEOUT.as_secs() + 3 * HEARTBEAT_TICK.as_secs());
/// A partly filled delete or visibility batch waits at most this long for company.
pub const ACK_FLUSH_INTERVAL: Duration = Duration::from_millis(20);
/// Batch calls under way at once (the acker's, and the heartbeat's per
/// tick): enough that deletes and extensions keep up at any round-trip time
/// (10 messages per call), few enough not to flood SQS when a backlog is
/// flushed.
pub const MAX_CALLS_IN_FLIGHT: usize = 8;
/// How long a receive under way at shutdown may still deliver (what it
/// brings is released at once): stopping must not wait out a long poll.
pub const LATE_ARRIVAL_WINDOW: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_visibility_holds_the_margin_and_one_attempt() {
        let budget = DEADLINE_MARGIN + DYNAMODB_ATTEMPT_TIMEOUT;
        assert!(Duration::from_secs(MIN_VISIBILITY_TIMEOUT_SECONDS.unsigned_abs().into()) > budget);
        assert_eq!(EXTEND_LEAD, Duration::from_secs(13));
    }
}
