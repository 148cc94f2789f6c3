//! `dlq stats`: approximate counts of the DLQ and its source queue(s), and
//! the age of the oldest dead letter. SQS keeps no "oldest message" attribute
//! (CloudWatch has it as a metric), so the DLQ is scanned: each message is
//! looked at (which counts one receive on the DLQ) and released at once.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::error::DlqError;
use super::letter::Queue;
use crate::aws::queue::Counts;
use crate::commands::output;

/// How a dead letter without an `ErrorCode` attribute is counted.
const NO_CODE: &str = "(none)";

/// Seconds a scanned message stays hidden while the scan goes on.
const SCAN_HOLD_SECONDS: i32 = 60;

/// Prints the counts and the oldest dead letter's age; `queues` are the
/// queues to count besides the DLQ, each with whether it is one of its
/// sources (its redrive policy points at the DLQ).
pub async fn stats(dlq: &Queue, queues: &[(Queue, bool)], scan_limit: u64, json_out: bool) -> Result<(), DlqError> {
    let dlq_counts = dlq.counts().await?;
    let mut source_counts = Vec::new();
    for (q, source) in queues {
        source_counts.push((q.url.clone(), *source, q.counts().await?));
    }
    let scan = dlq.scan(usize::try_from(scan_limit).unwrap_or(usize::MAX), SCAN_HOLD_SECONDS).await;
    if let Ok(s) = &scan {
        dlq.release(&s.handles).await;
    }
    let scan = scan?;
    let oldest_ms = scan.letters.iter().filter_map(|l| l.sent_at_ms).min();
    let age_seconds = oldest_ms.map(|sent| (now_ms() - sent).max(0) / 1000);
    let complete = u64::try_from(scan.letters.len()).unwrap_or(u64::MAX) < scan_limit;
    let mut by_code: BTreeMap<&str, u64> = BTreeMap::new();
    for letter in &scan.letters {
        *by_code.entry(letter.error_code().unwrap_or(NO_CODE)).or_default() += 1;
    }
    if json_out {
        let sources: Vec<_> = source_counts
            .iter()
            .map(|(url, source, c)| json!({ "url": url, "redrives_here": source, "counts": c }))
            .collect();
        let out = json!({
            "dlq": { "url": dlq.url, "counts": dlq_counts },
            "sources": sources,
            "oldest_age_seconds": age_seconds,
            "oldest_sent_at_ms": oldest_ms,
            "scanned": scan.letters.len(),
            "by_error_code": by_code,
            "scan_complete": complete,
        });
        output::line(out)?;
        return Ok(());
    }
    output::line(format_args!("dlq    {}: {}", dlq.url, counts_text(dlq_counts)))?;
    for (url, source, c) in &source_counts {
        match source {
            true => output::line(format_args!("source {url}: {}", counts_text(*c)))?,
            false => output::line(format_args!(
                "queue  {url} (not a source: its redrive policy does not point at this DLQ): {}",
                counts_text(*c)
            ))?,
        }
    }
    let seen = if complete { "all".to_owned() } else { format!("the first {}", scan.letters.len()) };
    if !by_code.is_empty() {
        let counts: Vec<String> = by_code.iter().map(|(code, n)| format!("{code} {n}")).collect();
        output::line(format_args!("by ErrorCode: {} (of {seen} messages looked at)", counts.join(", ")))?;
    }
    match age_seconds {
        Some(age) => {
            output::line(format_args!("oldest dead letter: {} old (of {seen} messages looked at)", human_age(age)))?
        }
        None => output::line("oldest dead letter: none (the DLQ has no visible message)")?,
    }
    Ok(())
}

fn counts_text(c: Counts) -> String {
    format!("{} visible, {} in flight, {} delayed (approximate)", c.visible, c.in_flight, c.delayed)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `12s`.
pub fn human_age(seconds: i64) -> String {
    let (d, h, m, s) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60, seconds % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::human_age;

    #[test]
    fn ages_read_like_people_say_them() {
        assert_eq!(human_age(12), "12s");
        assert_eq!(human_age(250), "4m 10s");
        assert_eq!(human_age(7500), "2h 5m");
        assert_eq!(human_age(3 * 86_400 + 4 * 3600 + 5), "3d 4h");
    }
}
