//! `student-worker publish`: sends events from a file (or stdin) to the queue
//! with SendMessageBatch, 10 at a time. The input is one JSON value (an
//! event, pretty-printed or not, or an array of events) when the whole of it
//! parses as one; otherwise JSON Lines, one event a line. Each event is
//! checked against the event contract first; refused ones are reported and
//! not sent unless `--allow-invalid` (for exercising the DLQ); `--dry-run`
//! checks and sends nothing. Reports every failure by line or event number.

use std::path::PathBuf;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use clap::Args;
use student_shared::decode;
use student_shared::limits::MAX_BODY_BYTES;
use tokio::io::AsyncReadExt;

use super::error::CommandError;
use crate::aws::error::{AwsError, Kind, Resource};
use crate::aws::{self, region_of};
use crate::config::error::required;
use crate::limits::MAX_BATCH_ENTRIES;

/// `publish`'s flags.
#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// Queue to send to (not needed with --dry-run).
    #[arg(long, env = "SQS_QUEUE_URL", value_name = "URL")]
    pub queue_url: Option<String>,
    /// JSON Lines (one event a line), one JSON event, or a JSON array of events; `-` for stdin.
    #[arg(default_value = "-")]
    pub file: PathBuf,
    /// Send events that break the event contract too (to exercise the DLQ).
    #[arg(long)]
    pub allow_invalid: bool,
    /// Check every event against the contract and send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `publish --help`'s examples.
pub const EXAMPLES: &str = "\
  student-worker publish events.jsonl
  student-worker publish --dry-run event.json
  echo '{\"type\":\"StudentDeleted\",\"eventId\":\"e-9\",\"studentId\":\"101\",\"version\":9}' | student-worker publish
  student-worker publish --allow-invalid shared/samples/demo-poison.jsonl";

/// One event to send, numbered as the input counts it.
#[derive(Debug, Clone)]
struct Line {
    number: usize,
    body: String,
    student_id: Option<String>,
    event_id: Option<String>,
}

/// How the input was read: what its numbers count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// JSON Lines: line numbers.
    Lines,
    /// One JSON event, or an array of them: event numbers (1 for a single one).
    Events,
}

impl Shape {
    fn unit(self) -> &'static str {
        match self {
            Self::Lines => "line",
            Self::Events => "event",
        }
    }
}

/// Sends the input's events; fails if any was refused or not sent.
pub async fn publish(args: &PublishArgs) -> Result<(), CommandError> {
    let text = read_input(&args.file).await?;
    let (shape, bodies) = split(&text);
    let (lines, refused) = check_lines(shape, &bodies, args.allow_invalid);
    if shape == Shape::Lines && lines.is_empty() && refused > 0 {
        hint(&text);
    }
    if args.dry_run {
        eprintln!("dry run: {} of {} events valid; nothing sent", lines.len(), lines.len() + refused);
        return match refused {
            0 => Ok(()),
            _ => Err(CommandError::NotPublished { refused, unsent: 0 }),
        };
    }
    let queue_url = required(&args.queue_url, "SQS_QUEUE_URL", "queue-url", "the queue's URL")?;
    let sdk = aws::load_sdk_config().await?;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let fifo = queue_url.ends_with(".fifo");
    let mut failed = Vec::new();
    for batch in batches(&lines) {
        failed.extend(send_batch(&sqs, &queue_url, batch, fifo, &region_of(&sdk)).await?);
    }
    let sent = lines.len() - failed.len();
    eprintln!("published {sent} of {} events to {queue_url}", lines.len() + refused);
    for (line, reason) in &failed {
        eprintln!("{} {line}: not sent: {reason}", shape.unit());
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

/// The input's events, numbered: the whole of it when it parses as one
/// JSON value (an array's elements each, or one event), else its non-blank
/// lines (JSON Lines).
fn split(text: &str) -> (Shape, Vec<(usize, String)>) {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Array(events)) => {
            (Shape::Events, events.iter().enumerate().map(|(i, e)| (i + 1, e.to_string())).collect())
        }
        Ok(event @ serde_json::Value::Object(_)) => (Shape::Events, vec![(1, event.to_string())]),
        _ => {
            let lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
            (Shape::Lines, lines.map(|(i, l)| (i + 1, l.to_owned())).collect())
        }
    }
}

/// When no line was an event: says what the input is not, and where the
/// whole of it stopped being JSON.
fn hint(text: &str) {
    if let Err(e) = serde_json::from_str::<serde_json::Value>(text) {
        eprintln!(
            "hint: the input is neither JSON Lines (one event a line) nor one JSON event or array of events; read as one JSON value it breaks at line {}, column {}: {e}",
            e.line(),
            e.column()
        );
    }
}

/// Checks each body against the contract; prints and counts refusals.
fn check_lines(shape: Shape, bodies: &[(usize, String)], allow_invalid: bool) -> (Vec<Line>, usize) {
    let unit = shape.unit();
    let mut lines = Vec::new();
    let mut refused = 0;
    for (number, body) in bodies {
        let number = *number;
        let (student_id, event_id) = match decode(body.as_bytes()) {
            Ok(d) => (Some(d.event.student_id), Some(d.event.event_id)),
            Err(e) if allow_invalid => {
                eprintln!("{unit} {number}: sending anyway (--allow-invalid): {e}");
                (None, None)
            }
            Err(e) => {
                eprintln!("{unit} {number}: refused: {e}");
                refused += 1;
                continue;
            }
        };
        lines.push(Line { number, body: body.clone(), student_id, event_id });
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
    fn one_json_value_is_read_whole_and_anything_else_by_line() {
        let pretty = "{\n  \"type\": \"StudentDeleted\",\n  \"version\": 1\n}\n";
        assert_eq!(split(pretty), (Shape::Events, vec![(1, r#"{"type":"StudentDeleted","version":1}"#.to_owned())]));
        let (shape, events) = split("[{\"a\":1},\n {\"b\":2}]");
        assert_eq!((shape, events.len()), (Shape::Events, 2));
        let (shape, lines) = split("{\"a\":1}\n\n{\"b\":2}\n");
        assert_eq!((shape, lines.iter().map(|(n, _)| *n).collect::<Vec<_>>()), (Shape::Lines, vec![1, 3]));
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
