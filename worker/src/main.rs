//! The `student-worker` binary: parses the command line, sets up logging,
//! hands over to the library and turns its error into the exit code.

use std::io::Write;
use std::process::ExitCode;

use student_worker::cli;
use student_worker::commands::error::CommandError;
use student_worker::observe::logging::{self, LogFormat, Sink};

/// mimalloc instead of glibc's malloc: the SDK allocates and frees many small
/// buffers per call on several threads, and glibc's shared arenas made that
/// about a quarter of the worker's CPU time; mimalloc cut CPU per message by
/// 9-38 % (docs/performance.md). Without transparent huge pages (`no_thp`)
/// its peak RSS stays where glibc's was (22 MB, not 31-35 MB).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runtime threads unless `TOKIO_WORKER_THREADS` says otherwise: the work is
/// waiting on AWS, and one thread carries thousands of messages/s; a second
/// one buys throughput only near a full core, for about 20 % more CPU per
/// message (docs/performance.md), on tasks that mostly have a fraction of a vCPU.
const DEFAULT_RUNTIME_THREADS: usize = 1;

fn main() -> ExitCode {
    let threads = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n: &usize| *n > 0)
        .unwrap_or(DEFAULT_RUNTIME_THREADS);
    // One thread: the current-thread runtime, where the receive loop and the
    // processing tasks share the thread that runs `block_on`. A multi-thread
    // runtime would keep that loop on the main thread and make every
    // hand-off to a processing task (and back) cross threads.
    let runtime = match threads {
        1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build(),
    };
    match runtime {
        Ok(runtime) => runtime.block_on(start()),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn start() -> ExitCode {
    let mut invocation = cli::parse();
    // The runtimes log to stdout (CloudWatch); commands keep it for their result.
    let sink = match invocation.command {
        cli::Command::Run(_) | cli::Command::Lambda(_) => Sink::Stdout,
        _ => Sink::Stderr,
    };
    let format = logging::init(invocation.log_format, sink);
    invocation.log_format = Some(format);
    match cli::dispatch(invocation).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => report(&error, format == LogFormat::Json && sink == Sink::Stdout),
    }
}

/// Prints the error once for each audience and picks the exit code: the
/// `error:` block on stderr for a person, and with JSON logs on stdout (the
/// ECS service) one structured line in that log stream too. Nothing after a
/// closed pipe: the reader has gone.
fn report(error: &CommandError, log_line: bool) -> ExitCode {
    if error.is_reported() {
        if log_line {
            tracing::error!(error = %error, "student-worker stopped");
        }
        // A closed stderr leaves nobody to tell; that is no reason to panic.
        let _ = writeln!(std::io::stderr(), "error: {error}");
    }
    ExitCode::from(error.exit_code())
}
