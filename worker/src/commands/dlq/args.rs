//! `student-worker dlq`'s command line: `stats`, `peek`, `replay`.

use clap::{Args, Subcommand};
use student_shared::ErrorCode;

/// `dlq`'s flags.
#[derive(Debug, Clone, Args)]
pub struct DlqArgs {
    /// The dead-letter queue.
    #[arg(long, env = "SQS_DLQ_URL", value_name = "URL", global = true)]
    pub dlq_url: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: DlqCommand,
}

/// `dlq --help`'s examples.
pub const EXAMPLES: &str = "\
  student-worker dlq stats
  student-worker dlq peek --error-code ItemRejected
  student-worker dlq replay --dry-run";
/// `dlq stats --help`'s examples.
pub const STATS_EXAMPLES: &str = "\
  student-worker dlq stats
  student-worker dlq stats --json | jq .by_error_code";
/// `dlq peek --help`'s examples.
pub const PEEK_EXAMPLES: &str = "\
  student-worker dlq peek --max 3
  student-worker dlq peek --json --error-code itemrejected | jq .body";
/// `dlq replay --help`'s examples.
pub const REPLAY_EXAMPLES: &str = "\
  student-worker dlq replay --dry-run
  student-worker dlq replay --error-code ItemRejected --rate 5/s
  student-worker dlq replay --student-id 101 --to https://sqs.ap-northeast-2.amazonaws.com/123456789012/students";

/// The operator's DLQ tools.
#[derive(Debug, Clone, Subcommand)]
pub enum DlqCommand {
    /// Approximate counts in the DLQ and its source queue(s), and the oldest dead letter's age.
    Stats(StatsArgs),
    /// Show dead letters (ErrorCode, ErrorMessage, receive count, body) without losing them.
    Peek(PeekArgs),
    /// Move dead letters back to the source queue: send first, delete second.
    Replay(ReplayArgs),
}

/// Most dead letters `stats` looks at.
const MAX_SCAN: u64 = 100_000;
/// Most dead letters `peek` shows.
const MAX_PEEK: u64 = 10_000;

/// The `dlq` subcommands' flags in `cmd` with their ranges, written from the limits.
pub fn describe(cmd: clap::Command) -> clap::Command {
    cmd.mut_subcommand("stats", |c| {
        c.mut_arg("scan", |a| {
            a.help(format!(
                "Look at up to this many dead letters to count them by code and find the oldest, 1–{MAX_SCAN}"
            ))
        })
    })
    .mut_subcommand("peek", |c| {
        c.mut_arg("max", |a| a.help(format!("Show at most this many dead letters, 1–{MAX_PEEK}")))
    })
}

/// `dlq stats`.
#[derive(Debug, Clone, Args)]
pub struct StatsArgs {
    /// Another queue to count too; the DLQ's sources (the queues whose redrive policy points at it) are always counted.
    #[arg(long, value_name = "URL")]
    pub queue_url: Option<String>,
    /// Look at up to this many dead letters to find the oldest.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=MAX_SCAN))]
    pub scan: u64,
    /// Print one JSON object, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `dlq peek`.
#[derive(Debug, Clone, Args)]
pub struct PeekArgs {
    /// Show at most this many dead letters.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=MAX_PEEK))]
    pub max: u64,
    /// Only dead letters with this `ErrorCode` (any case), e.g. `ItemRejected`.
    #[arg(long, value_name = "CODE", value_parser = parse_error_code)]
    pub error_code: Option<String>,
    /// One JSON object a line, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `dlq replay`.
#[derive(Debug, Clone, Default, Args)]
pub struct ReplayArgs {
    /// Queue to move messages to [default: the queue whose redrive policy points at the DLQ].
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// Move at most this many messages.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max: Option<u64>,
    /// Send at most this many messages a second, e.g. `5/s` or `0.5`.
    #[arg(long, value_name = "N/s", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Only messages whose `ErrorCode` attribute is this (any case), e.g. `ItemRejected`.
    #[arg(long, value_name = "CODE", value_parser = parse_error_code)]
    pub error_code: Option<String>,
    /// Only messages whose body's `studentId` is this.
    #[arg(long, value_name = "ID")]
    pub student_id: Option<String>,
    /// Move nothing; print what would move.
    #[arg(long)]
    pub dry_run: bool,
    /// Move dead letters whose code cannot succeed on replay too (MalformedJson, InvalidEvent, BodyTooLarge, PatchOnDeleted): they come straight back.
    #[arg(long)]
    pub force: bool,
}

/// An `ErrorCode` in any case, as the DLQ spells it; an unknown one is
/// refused with the list.
pub fn parse_error_code(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    match ErrorCode::ALL.iter().find(|c| c.as_str().eq_ignore_ascii_case(raw)) {
        Some(code) => Ok(code.as_str().to_owned()),
        None => {
            let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
            Err(format!("{raw:?} is not an ErrorCode; one of {}", all.join(", ")))
        }
    }
}

/// `5`, `5/s` or `0.5/s`: a positive rate per second.
pub fn parse_rate(raw: &str) -> Result<f64, String> {
    let number = raw.trim().strip_suffix("/s").unwrap_or(raw.trim());
    match number.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("{raw:?} is not a rate; expected messages per second like 5/s or 0.5")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_with_or_without_per_second() {
        assert_eq!(parse_rate("5/s"), Ok(5.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[test]
    fn error_codes_match_in_any_case_and_unknown_ones_list_the_codes() {
        assert_eq!(parse_error_code("itemrejected"), Ok("ItemRejected".to_owned()));
        let e = parse_error_code("Oops").expect_err("unknown");
        assert!(e.contains("MalformedJson, InvalidEvent"), "{e}");
    }
}
