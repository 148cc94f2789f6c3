//! `dlq peek`: shows dead letters with their `ErrorCode`, `ErrorMessage`,
//! receive count and body, without losing them: each is received with a
//! short hold and released right after (which counts one receive on the DLQ).
//! Bodies may hold personal data: this prints to the operator's terminal,
//! never to the logs.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::DlqError;
use super::letter::{Letter, Queue};
use crate::commands::output;

/// Seconds a shown message stays hidden while the others are fetched.
const PEEK_HOLD_SECONDS: i32 = 30;

/// With `--error-code`, look at up to this many dead letters to find `--max` that match.
const FILTERED_SCAN: usize = 1000;

/// Prints up to `max` dead letters (with `error_code`, only those), then releases them.
pub async fn peek(dlq: &Queue, max: u64, error_code: Option<&str>, json_out: bool) -> Result<(), DlqError> {
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let limit = if error_code.is_some() { FILTERED_SCAN.max(max) } else { max };
    let scan = dlq.scan(limit, PEEK_HOLD_SECONDS).await;
    if let Ok(s) = &scan {
        dlq.release(&s.handles).await;
    }
    let scan = scan?;
    let shown: Vec<&Letter> =
        scan.letters.iter().filter(|l| error_code.is_none_or(|c| l.error_code() == Some(c))).take(max).collect();
    for (n, letter) in shown.iter().enumerate() {
        match json_out {
            true => output::line(letter.to_json())?,
            false => output::line(text(n + 1, letter))?,
        }
    }
    if !json_out {
        match error_code {
            Some(code) => output::line(format_args!(
                "{} dead letter(s) with ErrorCode {code} shown (of {} looked at); all are still in the DLQ",
                shown.len(),
                scan.letters.len()
            ))?,
            None => output::line(format_args!("{} dead letter(s) shown; all are still in the DLQ", shown.len()))?,
        }
    }
    Ok(())
}

fn text(n: usize, l: &Letter) -> String {
    let sent = l
        .sent_at_ms
        .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "?".to_owned());
    let attr = |name: &str| l.attribute(name).unwrap_or("-").to_owned();
    let mut lines = vec![
        format!("#{n} message {} (sent {sent})", l.message_id),
        format!("  ErrorCode:    {}", l.error_code().unwrap_or("-")),
        format!("  ErrorMessage: {}", attr("ErrorMessage")),
        format!(
            "  receives:     {} on the source queue (ReceiveCount), {} on the DLQ",
            attr("ReceiveCount"),
            l.receive_count
        ),
        format!("  FailedAt:     {}  SourceQueue: {}", attr("FailedAt"), attr("SourceQueue")),
    ];
    if let Some(group) = &l.group_id {
        lines.push(format!("  group:        {group}"));
    }
    lines.push(format!("  body:         {}", l.body));
    lines.join("\n")
}
