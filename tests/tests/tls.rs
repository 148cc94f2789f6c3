//! `AWS_CA_BUNDLE`, through the real binary: `run` trusts the CA it names and
//! drains an HTTPS endpoint whose certificate that CA signed, on reused
//! connections; without it, `run` refuses to start naming the untrusted
//! certificate and the fix; and a missing or malformed bundle stops every
//! subcommand that calls AWS, naming the variable, before any call; `doctor`
//! names the bundle it trusts.
//!
//! The HTTPS endpoint is the benchmark's (`bench-endpoint` in TLS mode, a CA
//! generated for the test): moto serves plain HTTP only, and what is tested
//! here is the TLS trust, not the AWS semantics the other suites cover.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Output;

use bench_endpoint::{Endpoint, Settings, Tls};
use student_worker_tests::emulator::env_vars_for_endpoint;
use student_worker_tests::world::worker_binary;

const MESSAGES: u64 = 50;

/// An HTTPS endpoint serving `MESSAGES` events, and its CA written to a file.
async fn https_endpoint(name: &str) -> (Endpoint, PathBuf) {
    let tls = Tls::generate().expect("generate a CA and a server certificate");
    let ca = std::env::temp_dir().join(format!("student-worker-{name}-{}-ca.pem", std::process::id()));
    std::fs::write(&ca, tls.ca_pem()).expect("write the CA");
    let settings = Settings { messages: MESSAGES, ..Settings::default() };
    let endpoint =
        Endpoint::start_tls(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), settings, &tls).await.expect("bind 127.0.0.1");
    (endpoint, ca)
}

/// `student-worker ARGS` with only the endpoint's variables and `extra`.
async fn worker(endpoint: &str, args: &[&str], extra: &[(&str, &str)]) -> Output {
    tokio::process::Command::new(worker_binary())
        .env_clear()
        .envs(env_vars_for_endpoint(endpoint))
        .env("LOG_FORMAT", "text")
        .env("NO_COLOR", "1")
        .envs(extra.iter().copied())
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run the worker binary")
}

async fn run(endpoint: &Endpoint, extra: &[(&str, &str)]) -> Output {
    let queue = format!("{}/123456789012/bench", endpoint.url());
    let mut env = vec![
        ("SQS_QUEUE_URL", queue.as_str()),
        ("DYNAMODB_TABLE_NAME", "Students"),
        ("WORKER_EXIT_WHEN_EMPTY", "true"),
        ("SQS_WAIT_TIME_SECONDS", "1"),
    ];
    env.extend_from_slice(extra);
    worker(&endpoint.url(), &["run"], &env).await
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn shown(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_trusts_the_ca_bundle_and_drains_an_https_endpoint_on_reused_connections() {
    let (endpoint, ca) = https_endpoint("trusted").await;
    assert!(endpoint.url().starts_with("https://"), "{}", endpoint.url());
    let output = run(&endpoint, &[("AWS_CA_BUNDLE", shown(&ca))]).await;
    assert!(output.status.success(), "run over HTTPS with the bundle: {}", text(&output));

    let stats = endpoint.stats();
    assert_eq!(stats["deleted"], MESSAGES, "every message written and deleted: {stats}");
    let handshakes = stats["tls_handshakes"].as_u64().unwrap_or(0);
    let calls: u64 = stats["calls"].as_object().map_or(0, |c| c.values().filter_map(serde_json::Value::as_u64).sum());
    assert!(handshakes >= 1, "the calls went over TLS: {stats}");
    assert_eq!(stats["tls_handshake_failures"], 0, "{stats}");
    assert!(calls > handshakes, "connections are reused: {calls} calls on {handshakes} handshakes: {stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_bundle_run_refuses_to_start_naming_the_untrusted_certificate_and_the_fix() {
    let (endpoint, _ca) = https_endpoint("untrusted").await;
    let output = run(&endpoint, &[]).await;
    let said = text(&output);
    assert!(!output.status.success(), "an untrusted certificate is not retried forever: {said}");
    assert!(said.contains("refusing to start"), "{said}");
    assert!(said.contains("UntrustedCertificate"), "{said}");
    assert!(said.contains("set AWS_CA_BUNDLE to its path"), "the fix names the variable: {said}");
    assert_eq!(endpoint.stats()["deleted"], 0);
    assert!(endpoint.stats()["tls_handshake_failures"].as_u64().unwrap_or(0) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_bundle_stops_every_aws_subcommand_naming_the_variable_before_any_call() {
    let (endpoint, _ca) = https_endpoint("broken").await;
    let queue = format!("{}/123456789012/bench", endpoint.url());
    let not_pem = std::env::temp_dir().join(format!("student-worker-not-pem-{}.txt", std::process::id()));
    std::fs::write(&not_pem, "not a certificate\n").expect("write a file that is not PEM");
    let targets = [("SQS_QUEUE_URL", queue.as_str()), ("DYNAMODB_TABLE_NAME", "Students")];
    for (bundle, problem) in
        [("/nonexistent/ca.pem", "which cannot be read"), (shown(&not_pem), "which holds no PEM certificate")]
    {
        let mut env = targets.to_vec();
        env.push(("AWS_CA_BUNDLE", bundle));
        for args in [&["run"][..], &["setup"], &["dlq", "stats"], &["get", "101"]] {
            let output = worker(&endpoint.url(), args, &env).await;
            let said = text(&output);
            assert_eq!(output.status.code(), Some(2), "{args:?} with AWS_CA_BUNDLE={bundle}: {said}");
            assert!(said.contains(&format!("AWS_CA_BUNDLE is \"{bundle}\", {problem}")), "{args:?}: {said}");
            assert_eq!(said.matches("AWS_CA_BUNDLE is").count(), 1, "said once: {said}");
        }
        let doctor = worker(&endpoint.url(), &["doctor"], &env).await;
        let said = text(&doctor);
        assert_eq!(doctor.status.code(), Some(1), "doctor fails its check: {said}");
        assert!(said.contains("[FAIL] trusted CAs: AWS_CA_BUNDLE is wrong"), "{said}");
        assert!(said.contains("not checked: AWS_CA_BUNDLE is wrong"), "{said}");
    }
    assert_eq!(endpoint.stats()["connections"], 0, "no call was made: {}", endpoint.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_the_bundle_it_trusts_and_its_calls_go_over_tls() {
    let (endpoint, ca) = https_endpoint("doctor").await;
    let queue = format!("{}/123456789012/bench", endpoint.url());
    let env = [("SQS_QUEUE_URL", queue.as_str()), ("DYNAMODB_TABLE_NAME", "Students"), ("AWS_CA_BUNDLE", shown(&ca))];
    let doctor = worker(&endpoint.url(), &["doctor"], &env).await;
    let said = text(&doctor);
    let endpoint_line = format!(
        "[pass] endpoint: {} (from AWS_ENDPOINT_URL), trusting the CAs of AWS_CA_BUNDLE={} too",
        endpoint.url(),
        shown(&ca)
    );
    assert!(said.contains(&endpoint_line), "{said}");
    // The bench endpoint knows no DescribeTable, but the queue's attributes
    // are read over HTTPS through the bundle's CA.
    assert!(said.contains(&format!("[pass] queue: {queue}: exists")), "{said}");
    assert!(!said.contains("trusted CAs"), "a good bundle is no failed check: {said}");
    assert_eq!(endpoint.stats()["tls_handshake_failures"], 0, "{}", endpoint.stats());
}
