//! Log output by audience: text for a person at a terminal, JSON lines for
//! machines (ECS's awslogs pipe, CloudWatch Logs Insights, any other pipe or
//! file); `LOG_FORMAT` overrides the choice. Colour only at a terminal and
//! never with `NO_COLOR`. The level filter comes from `RUST_LOG`.

use std::io::IsTerminal;
use std::sync::OnceLock;

use clap::ValueEnum;

use crate::shutdown;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

/// `LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// One JSON object a line (CloudWatch Logs Insights reads the fields).
    #[default]
    Json,
    /// Human-readable lines.
    Text,
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// stdout: the worker's stream for CloudWatch.
    Stdout,
    /// stderr: for commands whose stdout is their result (`setup` prints env lines).
    Stderr,
}

impl Sink {
    /// Whether the stream is a terminal.
    pub fn is_terminal(self) -> bool {
        match self {
            Self::Stdout => std::io::stdout().is_terminal(),
            Self::Stderr => std::io::stderr().is_terminal(),
        }
    }
}

/// The format chosen when none is asked for: text for a person at a
/// terminal, JSON for anything else.
pub fn default_format(terminal: bool) -> LogFormat {
    if terminal { LogFormat::Text } else { LogFormat::Json }
}

/// Whether colour is wanted on a stream: only at a terminal, and not when
/// `NO_COLOR` is set to anything but the empty string (no-color.org).
pub fn colour(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The format the process logs in, once [`init`] chose it.
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// The format log lines are written in: what [`init`] chose, JSON before
/// (or without) it, as for the worker run inside a test process.
pub fn format() -> LogFormat {
    FORMAT.get().copied().unwrap_or_default()
}

/// Installs the global subscriber writing to `sink` in `format` (or the
/// one [`default_format`] picks for it) and returns the format in use.
/// `RUST_LOG` defaults to `info`.
pub fn init(format: Option<LogFormat>, sink: Sink) -> LogFormat {
    let filter = match EnvFilter::try_from_default_env() {
        Ok(filter) => filter,
        Err(e) => {
            if std::env::var_os(EnvFilter::DEFAULT_ENV).is_some() {
                eprintln!("warning: RUST_LOG is not a valid filter ({e}); using `info`");
            }
            EnvFilter::new("info")
        }
    };
    let terminal = sink.is_terminal();
    let format = *FORMAT.get_or_init(|| format.unwrap_or_else(|| default_format(terminal)));
    let writer = match sink {
        Sink::Stdout => BoxMakeWriter::new(|| Watched(std::io::stdout())),
        Sink::Stderr => BoxMakeWriter::new(std::io::stderr),
    };
    // A closed log stream is not worth a complaint on stderr for every line.
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).log_internal_errors(false);
    // A second init (tests run several workers in one process) is harmless.
    let _ = match format {
        // The current span carries context such as a Lambda invocation's
        // `request_id` (as `span.request_id`); the ECS runtime opens none.
        LogFormat::Json => {
            builder.json().with_ansi(false).flatten_event(true).with_current_span(true).with_span_list(false).try_init()
        }
        LogFormat::Text => builder.with_ansi(colour(terminal)).with_target(false).try_init(),
    };
    format
}

/// Stdout that notices its reader has gone: that stops the worker (see
/// [`shutdown::stdout_closed`]), and the line is dropped instead of failing.
struct Watched(std::io::Stdout);

impl std::io::Write for Watched {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        watch(std::io::Write::write_all(&mut self.0, buf)).map(|()| buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        watch(std::io::Write::flush(&mut self.0))
    }
}

/// Turns a closed stdout into the worker's stop, and the write into a no-op.
pub fn watch(written: std::io::Result<()>) -> std::io::Result<()> {
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            shutdown::stdout_closed();
            Ok(())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_gets_text_and_anything_else_json() {
        assert_eq!(default_format(true), LogFormat::Text);
        assert_eq!(default_format(false), LogFormat::Json);
        assert!(!colour(false), "never colour into a pipe or a file");
    }
}
