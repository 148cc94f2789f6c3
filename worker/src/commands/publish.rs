//! `student-worker publish`: sends events from a JSONL file (or stdin) to the
//! queue with SendMessageBatch, 10 at a time. Each line is checked against the
//! event contract first; refused lines are reported and not sent unless
//! `--allow-invalid` (for exercising the DLQ). Reports every failure by line.

use std::path::PathBuf;

use aws_config::SdkConfig;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use clap::Args;
use student_shared::decode;
use student_shared::limits::MAX_BODY_BYTES;
use tokio::io::AsyncReadExt;

use super::error::CommandError;
use crate::aws::error::{AwsError, Kind, Resource};
use crate::aws::region_of;
use crate::limits::MAX_BATCH_ENTRIES;

/// `publish`'s flags.
#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// Queue to send to.
    #[arg(long, env = "SQS_QUEUE_URL", value_name = "URL")]
    pub queue_url: String,
    /// JSONL file, one event per line; `-` for stdin.
    #[arg(default_value = "-")]
    pub file: PathBuf,
    /// Send lines that break the event contract too (to exercise the DLQ).
    #[arg(long)]
    pub allow_invalid: bool,
}

/// One line to send.
#[derive(Debug, Clone)]
struct Line {
    number: usize,
    body: String,
    student_id: Option<String>,
    event_id: Option<String>,
}

/// Sends the file's events; fails if any line was refused or not sent.
pub async fn publish(sdk: &SdkConfig, args: &PublishArgs) -> Result<(), CommandError> {
    let text = read_input(&args.file).await?;
    let (lines, refused) = check_lines(&text, args.allow_invalid);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let fifo = args.queue_url.ends_with(".fifo");
    let mut failed = Vec::new();
    for batch in batches(&lines) {
        failed.extend(send_batch(&sqs, &args.queue_url, batch, fifo, &region_of(sdk)).await?);
    }
    let sent = lines.len() - failed.len();
    eprintln!("published {sent} of {} events to {}", lines.len() + refused, args.queue_url);
    for (line, reason) in &failed {
        eprintln!("line {line}: not sent: {reason}");
    }
    if refused + failed.len() > 0 {
        return Err(CommandError::NotPublished { refused, unsent: failed.len() });
    }
    Ok(())
}

async fn read_input(file: &PathBuf) -> Result<String, CommandError> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        let read = tokio::io::stdin().read_to_string(&mut text).await;
        return read.map(|_| text).map_err(|source| CommandError::Io { what: "reading stdin".into(), source });
    }
    let read = tokio::fs::read_to_string(file).await;
    read.map_err(|source| CommandError::Io { what: format!("reading {}", file.display()), source })
}

/// Parses lines (blank ones skipped); prints and counts refusals.
fn check_lines(text: &str, allow_invalid: bool) -> (Vec<Line>, usize) {
    let mut lines = Vec::new();
    let mut refused = 0;
    for (i, body) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let number = i + 1;
        let (student_id, event_id) = match decode(body.as_bytes()) {
            Ok(d) => (Some(d.event.student_id), Some(d.event.event_id)),
            Err(e) if allow_invalid => {
                eprintln!("line {number}: sending anyway (--allow-invalid): {e}");
                (None, None)
            }
            Err(e) => {
                eprintln!("line {number}: refused: {e}");
                refused += 1;
                continue;
            }
        };
        lines.push(Line { number, body: body.to_owned(), student_id, event_id });
    }
    (lines, refused)
}

/// Up to 10 entries and 256 KiB of bodies per SendMessageBatch.
fn batches(lines: &[Line]) -> Vec<&[Line]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, line) in lines.iter().enumerate() {
        let full = i - start == MAX_BATCH_ENTRIES || (i > start && bytes + line.body.len() > MAX_BODY_BYTES);
        if full {
            out.push(&lines[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += line.body.len();
    }
    if start < lines.len() {
        out.push(&lines[start..]);
    }
    out
}

async fn send_batch(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    batch: &[Line],
    fifo: bool,
    region: &str,
) -> Result<Vec<(usize, String)>, AwsError> {
    let resource = Resource::queue(queue_url, region);
    let mut entries = Vec::with_capacity(batch.len());
    for line in batch {
        let mut entry =
            SendMessageBatchRequestEntry::builder().id(format!("line{}", line.number)).message_body(&line.body);
        if fifo {
            // One group per student keeps each student's events in order.
            let group = line.student_id.as_deref().unwrap_or("invalid");
            let dedup = line.event_id.clone().unwrap_or_else(|| format!("line{}", line.number));
            entry = entry.message_group_id(group).message_deduplication_id(dedup);
        }
        entries.push(entry.build().map_err(|e| resource.local_error(Kind::Rejected, "sqs:SendMessageBatch", e))?);
    }
    let out = sqs
        .send_message_batch()
        .queue_url(queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| resource.error(&e, "sqs:SendMessageBatch"))?;
    Ok(out
        .failed
        .into_iter()
        .map(|f| {
            let line = f.id.trim_start_matches("line").parse().unwrap_or(0);
            (line, format!("{}: {}", f.code, f.message.unwrap_or_default()))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(number: usize, len: usize) -> Line {
        Line { number, body: "x".repeat(len), student_id: None, event_id: None }
    }

    #[test]
    fn batches_hold_ten_entries_and_256_kib() {
        let lines: Vec<Line> = (1..=23).map(|n| line(n, 10)).collect();
        let sizes: Vec<usize> = batches(&lines).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![10, 10, 3]);
        let big: Vec<Line> = (1..=3).map(|n| line(n, 100 * 1024)).collect();
        let sizes: Vec<usize> = batches(&big).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![2, 1]);
    }
}
