//! The `student-worker` binary: parses the command line, sets up logging and
//! hands over to the library. `anyhow` lives here only.

use std::process::ExitCode;

use clap::Parser;
use student_worker::cli::{self, Cli};
use student_worker::logging::Sink;

/// mimalloc instead of glibc's malloc: the SDK allocates and frees many small
/// buffers per call on several threads, and glibc's shared arenas made that
/// about a quarter of the worker's CPU time; mimalloc cut CPU per message by
/// about 25 % (docs/performance.md). Without transparent huge pages (`no_thp`)
/// its peak RSS stays where glibc's was (23 MB, not 35 MB).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let sink = match cli.command {
        cli::Command::Run(_) => Sink::Stdout,
        _ => Sink::Stderr,
    };
    student_worker::logging::init(cli.log_format, sink);
    match cli::dispatch(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report(&error),
    }
}

/// Prints the error chain for people (stderr) and picks the exit code.
fn report(error: &anyhow::Error) -> ExitCode {
    tracing::error!(error = %format!("{error:#}"), "student-worker stopped");
    eprintln!("error: {error:#}");
    match error.downcast_ref::<student_worker::config::ConfigError>() {
        Some(_) => ExitCode::from(2),
        None => ExitCode::FAILURE,
    }
}
