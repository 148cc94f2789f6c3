//! Log output: JSON lines on stdout for CloudWatch (`LOG_FORMAT=json`, the
//! default) or text for people; the level filter comes from `RUST_LOG`.

use std::io::IsTerminal;

use clap::ValueEnum;
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

/// Installs the global subscriber. `RUST_LOG` defaults to `info`.
pub fn init(format: LogFormat, sink: Sink) {
    let filter = match EnvFilter::try_from_default_env() {
        Ok(filter) => filter,
        Err(e) => {
            if std::env::var_os(EnvFilter::DEFAULT_ENV).is_some() {
                eprintln!("warning: RUST_LOG is not a valid filter ({e}); using `info`");
            }
            EnvFilter::new("info")
        }
    };
    let (writer, terminal) = match sink {
        Sink::Stdout => (BoxMakeWriter::new(std::io::stdout), std::io::stdout().is_terminal()),
        Sink::Stderr => (BoxMakeWriter::new(std::io::stderr), std::io::stderr().is_terminal()),
    };
    // Colours only for a person at a terminal, never into files or CloudWatch.
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(terminal);
    // A second init (tests run several workers in one process) is harmless.
    let _ = match format {
        // The current span carries context such as a Lambda invocation's
        // `request_id` (as `span.request_id`); the ECS runtime opens none.
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Text => builder.with_target(false).try_init(),
    };
}
