//! `dlq replay`: moves dead letters back to the source queue. Send first,
//! delete from the DLQ second: an interruption at any point loses nothing
//! (at worst a duplicate, which the worker's version guard absorbs). The body
//! and the producer's attributes are kept; the error attributes are dropped
//! and `ReplayCount` added. FIFO targets keep the group and get a fresh
//! deduplication id. Messages that do not match the filters, or that are
//! not moved, are released back to the DLQ unchanged.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeNameForSends};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::args::ReplayArgs;
use super::error::{DlqError, ReplaySummary};
use super::letter::{Letter, Queue};
use student_shared::ErrorCode;

use super::progress::Progress;
use crate::aws::entries;
use crate::aws::error::{Action, AwsError, Resource};
use crate::commands::output;
use crate::handler::deadletter::ERROR_ATTRIBUTES;
use crate::limits::{MAX_BATCH_SIZE, MAX_MESSAGE_ATTRIBUTES, MAX_VISIBILITY_TIMEOUT_SECONDS};

/// The attribute counting how often a message was replayed.
pub const REPLAY_COUNT: &str = "ReplayCount";
/// A received batch stays hidden this long beyond the time its sends need.
const HOLD_SLACK_SECONDS: f64 = 30.0;
/// FIFO group for a message that has none and no `studentId` either.
const FALLBACK_GROUP: &str = "replay";

/// Replays from `dlq` to `to` until the DLQ has no visible message left,
/// `--max` is reached, or `stop` is cancelled (after the message in hand).
pub async fn replay(
    dlq: &Queue,
    to: &str,
    args: &ReplayArgs,
    stop: &CancellationToken,
) -> Result<ReplaySummary, DlqError> {
    let estimate = dlq.counts().await.map(|c| c.visible).unwrap_or(0);
    let verb = if args.dry_run { "would replay" } else { "replaying" };
    output::line(format_args!("{verb} dead letters from {} to {to}", dlq.url))?;
    let progress = Progress::new(args.max.map_or(estimate, |m| m.min(estimate)));
    let mut r = Replayer::new(dlq, to, args, stop, progress);
    let result = r.run().await;
    dlq.release(&r.held).await;
    r.progress.finish();
    let summary = r.summary;
    output::line(format_args!("replay: {summary}"))?;
    if r.hopeless > 0 {
        output::line(format_args!(
            "{} left in the DLQ: their ErrorCode cannot succeed on replay (fix the producer and publish anew; --force moves them anyway)",
            r.hopeless
        ))?;
    }
    result?;
    if stop.is_cancelled() {
        return Err(DlqError::Interrupted(summary));
    }
    if summary.failed > 0 {
        return Err(DlqError::SomeFailed(summary));
    }
    Ok(summary)
}

struct Replayer<'a> {
    dlq: &'a Queue,
    to: &'a str,
    args: &'a ReplayArgs,
    stop: &'a CancellationToken,
    progress: Progress,
    pace: Pace,
    /// Message ids dealt with (a skipped one may come back when its hold ends).
    seen: HashSet<String>,
    /// Receipt handles to release at the end.
    held: Vec<String>,
    /// FIFO groups with a message left behind: later ones stay too, in order.
    blocked_groups: HashSet<String>,
    /// Skipped because their code cannot succeed on replay.
    hopeless: u64,
    summary: ReplaySummary,
}

/// The dead letter's code when it is one that cannot succeed on replay.
fn hopeless(letter: &Letter) -> Option<ErrorCode> {
    let code = letter.error_code()?;
    ErrorCode::ALL.into_iter().find(|c| c.as_str() == code && !c.may_succeed_on_replay())
}

/// What happened to one message.
enum Moved {
    Yes,
    SendFailed(AwsError),
    NotDeleted(AwsError),
}

impl<'a> Replayer<'a> {
    fn new(dlq: &'a Queue, to: &'a str, args: &'a ReplayArgs, stop: &'a CancellationToken, progress: Progress) -> Self {
        let summary = ReplaySummary { dry_run: args.dry_run, ..ReplaySummary::default() };
        Self {
            dlq,
            to,
            args,
            stop,
            progress,
            pace: Pace::new(args.rate),
            seen: HashSet::new(),
            held: Vec::new(),
            blocked_groups: HashSet::new(),
            hopeless: 0,
            summary,
        }
    }

    fn done(&self) -> bool {
        let attempted = self.summary.moved + self.summary.failed;
        self.stop.is_cancelled() || self.args.max.is_some_and(|max| attempted >= max)
    }

    async fn run(&mut self) -> Result<(), DlqError> {
        while !self.done() {
            let want = self.batch_size();
            let batch = self.dlq.receive(want, self.hold_seconds(want)).await?;
            if batch.is_empty() {
                return Ok(());
            }
            let mut batch = batch.into_iter();
            while let Some(letter) = batch.next() {
                if self.done() {
                    self.held.push(letter.receipt_handle);
                    self.held.extend(batch.by_ref().map(|l| l.receipt_handle));
                    break;
                }
                self.handle(letter).await?;
            }
        }
        Ok(())
    }

    fn batch_size(&self) -> i32 {
        let left = self.args.max.map_or(u64::MAX, |max| max - (self.summary.moved + self.summary.failed));
        i32::try_from(left).unwrap_or(MAX_BATCH_SIZE).clamp(1, MAX_BATCH_SIZE)
    }

    /// Long enough for the batch's sends at the chosen rate, plus slack.
    fn hold_seconds(&self, batch: i32) -> i32 {
        let sending = self.args.rate.map_or(0.0, |rate| f64::from(batch) / rate);
        let seconds = (sending + HOLD_SLACK_SECONDS).ceil().min(f64::from(MAX_VISIBILITY_TIMEOUT_SECONDS));
        // In range by the min above.
        seconds as i32
    }

    async fn handle(&mut self, letter: Letter) -> Result<(), DlqError> {
        if !self.seen.insert(letter.message_id.clone()) {
            self.held.push(letter.receipt_handle);
            return Ok(());
        }
        if let Some(reason) = self.skip_reason(&letter) {
            if let Some(group) = &letter.group_id {
                self.blocked_groups.insert(group.clone());
            }
            self.summary.skipped += 1;
            self.held.push(letter.receipt_handle);
            self.progress.step();
            self.progress.line(&format!("skipped {}: {reason}", letter.message_id))?;
            return Ok(());
        }
        if self.args.dry_run {
            self.summary.moved += 1;
            let line = format!("would move {} {}", letter.message_id, describe(&letter));
            self.held.push(letter.receipt_handle);
            self.progress.step();
            self.progress.line(&line)?;
            return Ok(());
        }
        if !self.pace.wait(self.stop).await {
            self.held.push(letter.receipt_handle);
            return Ok(());
        }
        self.move_and_count(letter).await
    }

    async fn move_and_count(&mut self, letter: Letter) -> Result<(), DlqError> {
        let outcome = move_one(self.dlq, self.to, &letter).await;
        self.progress.step();
        match outcome {
            Moved::Yes => {
                self.summary.moved += 1;
                self.progress.line(&format!("moved {} {}", letter.message_id, describe(&letter)))?;
                Ok(())
            }
            Moved::SendFailed(e) => {
                self.summary.failed += 1;
                if let Some(group) = &letter.group_id {
                    self.blocked_groups.insert(group.clone());
                }
                self.held.push(letter.receipt_handle);
                self.progress.line(&format!("failed {}: not sent, still in the DLQ: {e}", letter.message_id))?;
                if e.action() == Action::Stop { Err(e.into()) } else { Ok(()) }
            }
            Moved::NotDeleted(e) => {
                self.summary.failed += 1;
                self.progress.line(&format!(
                    "failed {}: sent, but not deleted from the DLQ (now in both; the version guard absorbs the duplicate): {e}",
                    letter.message_id
                ))?;
                if e.action() == Action::Stop { Err(e.into()) } else { Ok(()) }
            }
        }
    }

    fn skip_reason(&mut self, letter: &Letter) -> Option<String> {
        if let Some(code) = &self.args.error_code {
            let found = letter.error_code();
            if found != Some(code.as_str()) {
                return Some(format!("ErrorCode is {}, not {code}", found.unwrap_or("(none)")));
            }
        }
        if !self.args.force
            && let Some(code) = hopeless(letter)
        {
            self.hopeless += 1;
            return Some(format!(
                "ErrorCode {code} cannot succeed on replay (it would come straight back); --force moves it anyway"
            ));
        }
        if let Some(id) = &self.args.student_id
            && letter.student_id().as_deref() != Some(id.as_str())
        {
            return Some(format!("studentId is not {id}"));
        }
        match &letter.group_id {
            Some(group) if self.blocked_groups.contains(group) => {
                Some(format!("an earlier message of FIFO group {group} stays in the DLQ, so this one does too"))
            }
            _ => None,
        }
    }
}

/// `ErrorCode` and `studentId`, for the per-message lines (no personal fields).
fn describe(letter: &Letter) -> String {
    format!(
        "(ErrorCode {}, studentId {})",
        letter.error_code().unwrap_or("-"),
        letter.student_id().as_deref().unwrap_or("-")
    )
}

/// Send to the target first, delete from the DLQ second.
async fn move_one(dlq: &Queue, to: &str, letter: &Letter) -> Moved {
    let mut send = dlq
        .sqs()
        .send_message()
        .queue_url(to)
        .message_body(&letter.body)
        .set_message_attributes(Some(replay_attributes(&letter.attributes)));
    if let Some(header) = letter.trace_header.as_deref().and_then(entries::trace_header) {
        send = send.message_system_attributes(MessageSystemAttributeNameForSends::AwsTraceHeader, header);
    }
    if to.ends_with(".fifo") {
        let group =
            letter.group_id.clone().or_else(|| letter.student_id()).unwrap_or_else(|| FALLBACK_GROUP.to_owned());
        send = send.message_group_id(group).message_deduplication_id(fresh_deduplication_id(&letter.message_id));
    }
    if let Err(e) = send.send().await {
        return Moved::SendFailed(Resource::queue(to, dlq.region()).error(&e, "sqs:SendMessage"));
    }
    match dlq.delete(&letter.receipt_handle).await {
        Ok(()) => Moved::Yes,
        Err(e) => Moved::NotDeleted(e),
    }
}

/// The producer's attributes without the error ones, plus `ReplayCount`
/// (when it fits under SQS's 10 attributes).
pub fn replay_attributes(
    attributes: &HashMap<String, MessageAttributeValue>,
) -> HashMap<String, MessageAttributeValue> {
    let previous: u64 = attributes.get(REPLAY_COUNT).and_then(|v| v.string_value.as_deref()?.parse().ok()).unwrap_or(0);
    let mut kept: HashMap<String, MessageAttributeValue> = attributes
        .iter()
        .filter(|(name, _)| !ERROR_ATTRIBUTES.contains(&name.as_str()) && name.as_str() != REPLAY_COUNT)
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    if kept.len() < MAX_MESSAGE_ATTRIBUTES
        && let Ok(count) =
            MessageAttributeValue::builder().data_type("Number").string_value((previous + 1).to_string()).build()
    {
        kept.insert(REPLAY_COUNT.to_owned(), count);
    }
    kept
}

/// A FIFO deduplication id no earlier send used, so SQS's 5-minute
/// deduplication window cannot swallow the replayed message.
fn fresh_deduplication_id(message_id: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("replay-{message_id}-{nanos}")
}

/// Spaces sends `1/rate` seconds apart; the first goes at once.
struct Pace {
    interval: Option<Duration>,
    next: Option<Instant>,
}

impl Pace {
    fn new(rate: Option<f64>) -> Self {
        Self { interval: rate.map(|r| Duration::from_secs_f64(1.0 / r)), next: None }
    }

    /// Waits for the next slot; `false` if `stop` was cancelled meanwhile.
    async fn wait(&mut self, stop: &CancellationToken) -> bool {
        let Some(interval) = self.interval else { return !stop.is_cancelled() };
        if let Some(next) = self.next {
            tokio::select! {
                biased;
                () = stop.cancelled() => return false,
                () = tokio::time::sleep_until(next) => {}
            }
        }
        self.next = Some(Instant::now() + interval);
        !stop.is_cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(v: &str) -> MessageAttributeValue {
        MessageAttributeValue::builder().data_type("String").string_value(v).build().expect("attribute")
    }

    #[test]
    fn replay_drops_the_error_attributes_and_counts_replays() {
        let mut attrs: HashMap<String, MessageAttributeValue> =
            ERROR_ATTRIBUTES.iter().map(|name| ((*name).to_owned(), value("x"))).collect();
        attrs.insert("TraceId".into(), value("t-1"));
        let once = replay_attributes(&attrs);
        let mut names: Vec<&str> = once.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["ReplayCount", "TraceId"]);
        assert_eq!(once[REPLAY_COUNT].string_value.as_deref(), Some("1"));
        assert_eq!(replay_attributes(&once)[REPLAY_COUNT].string_value.as_deref(), Some("2"));
    }

    #[tokio::test(start_paused = true)]
    async fn pace_spaces_sends_and_stops_on_cancel() {
        let stop = CancellationToken::new();
        let mut pace = Pace::new(Some(4.0));
        let start = Instant::now();
        for _ in 0..5 {
            assert!(pace.wait(&stop).await);
        }
        assert!(start.elapsed() >= Duration::from_secs(1), "{:?}", start.elapsed());
        stop.cancel();
        assert!(!pace.wait(&stop).await);
    }
}
