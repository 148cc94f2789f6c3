//! `bench-endpoint`: runs the benchmark endpoint until SIGTERM or Ctrl-C,
//! printing `listening on http://127.0.0.1:PORT` first (`https://` with
//! `--tls`, once the CA is written to `--ca-out`) and the last run's
//! counters (JSON) on exit. `scripts/bench` drives it through
//! `POST /reset` and `GET /stats`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use bench_endpoint::{Endpoint, Settings, Tls};
use clap::Parser;

/// Benchmark endpoint: SQS + DynamoDB JSON protocol on 127.0.0.1.
#[derive(Debug, Parser)]
#[command(name = "bench-endpoint", about)]
struct Args {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Messages in the queue.
    #[arg(long, default_value_t = 0)]
    messages: u64,
    /// Added latency per AWS call, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Share of PutItem/UpdateItem calls answered with ProvisionedThroughputExceededException (0–1).
    #[arg(long, default_value_t = 0.0)]
    throttle_rate: f64,
    /// Distinct student ids the event stream cycles through.
    #[arg(long, default_value_t = 10_000)]
    students: u64,
    /// Serve HTTPS with a certificate signed by a CA generated at start.
    #[arg(long, requires = "ca_out")]
    tls: bool,
    /// Where to write that CA's certificate (PEM), for the clients to trust.
    #[arg(long, requires = "tls")]
    ca_out: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let settings = Settings {
        messages: args.messages,
        latency: Duration::from_millis(args.latency_ms),
        throttle_rate: args.throttle_rate,
        students: args.students,
        ..Settings::default()
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let started = match args.ca_out {
        Some(ca_out) if args.tls => match tls(&ca_out) {
            Ok(tls) => Endpoint::start_tls(addr, settings, &tls).await,
            Err(e) => {
                eprintln!("bench-endpoint: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => Endpoint::start(addr, settings).await,
    };
    let endpoint = match started {
        Ok(endpoint) => endpoint,
        Err(e) => {
            eprintln!("bench-endpoint: cannot listen on 127.0.0.1:{}: {e}", args.port);
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {}", endpoint.url());
    stopped().await;
    println!("{}", endpoint.stats());
    ExitCode::SUCCESS
}

/// A fresh CA and server certificate, the CA written to `ca_out`.
fn tls(ca_out: &Path) -> Result<Tls, String> {
    let tls = Tls::generate().map_err(|e| format!("cannot make a certificate: {e}"))?;
    std::fs::write(ca_out, tls.ca_pem()).map_err(|e| format!("cannot write {}: {e}", ca_out.display()))?;
    Ok(tls)
}

/// Resolves on SIGTERM or Ctrl-C.
async fn stopped() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
