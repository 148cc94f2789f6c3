//! The endpoint's `--tls` mode, through its binary as the benchmark runs it:
//! a client trusting the CA written to `--ca-out` gets real HTTPS answers
//! over one kept-alive connection, which `/stats` counts as one connection
//! and one handshake; a client trusting another CA fails the handshake, and
//! that failure is counted. The driver's own `/stats` connections are not.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bench_endpoint::Tls;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::{TlsConnector, client::TlsStream};

/// A running `bench-endpoint --tls`; killed when dropped.
struct Running {
    _child: Child,
    /// `127.0.0.1:PORT`, from the `listening on https://…` line.
    addr: String,
    ca: PathBuf,
}

async fn start(name: &str) -> Running {
    let ca = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-ca.pem"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_bench-endpoint"))
        .arg("--tls")
        .arg("--ca-out")
        .arg(&ca)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run bench-endpoint");
    let stdout = child.stdout.take().expect("piped stdout");
    let line = BufReader::new(stdout).lines().next_line().await.expect("read stdout").expect("a first line");
    let addr = line.strip_prefix("listening on https://").unwrap_or_else(|| panic!("not an https URL: {line}"));
    Running { _child: child, addr: addr.to_owned(), ca }
}

/// A client configuration trusting only the CA in `ca_pem`, asking for HTTP/1.1.
fn trusting(ca_pem: &[u8]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem).expect("a PEM certificate")).expect("a valid CA");
    let mut config = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Connects and handshakes, verifying the server as `127.0.0.1` as the SDK does for that URL.
async fn connect(addr: &str, config: Arc<ClientConfig>) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").expect("an IP address").to_owned();
    TlsConnector::from(config).connect(name, tcp).await
}

async fn http(tls: TlsStream<TcpStream>) -> SendRequest<Full<Bytes>> {
    let (sender, connection) = http1::handshake(TokioIo::new(tls)).await.expect("HTTP/1.1 handshake");
    tokio::spawn(connection);
    sender
}

async fn call(sender: &mut SendRequest<Full<Bytes>>, method: Method, path: &str, target: Option<&str>) -> Value {
    let mut request = Request::builder().method(method).uri(path).header("host", "127.0.0.1");
    if let Some(target) = target {
        request = request.header("x-amz-target", target);
    }
    let request = request.body(Full::new(Bytes::from_static(b"{}"))).expect("a request");
    let response = sender.send_request(request).await.expect("an answer");
    assert!(response.status().is_success(), "{path} {target:?}: {}", response.status());
    let body = response.into_body().collect().await.expect("the body").to_bytes();
    serde_json::from_slice(&body).expect("a JSON answer")
}

/// `GET /stats` over a fresh trusted connection (itself left out of the counts).
async fn stats(endpoint: &Running) -> Value {
    let ca = std::fs::read(&endpoint.ca).expect("the CA file");
    let tls = connect(&endpoint.addr, trusting(&ca)).await.expect("a trusted handshake");
    call(&mut http(tls).await, Method::GET, "/stats", None).await
}

#[tokio::test]
async fn two_https_calls_on_one_connection_count_one_connection_and_one_handshake() {
    let endpoint = start("kept-alive").await;
    let ca = std::fs::read(&endpoint.ca).expect("the CA is written before the listening line");
    let tls = connect(&endpoint.addr, trusting(&ca)).await.expect("the written CA verifies the server");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut sender = http(tls).await;
    for _ in 0..2 {
        let answer = call(&mut sender, Method::POST, "/", Some("AmazonSQS.GetQueueAttributes")).await;
        assert_eq!(answer["Attributes"]["ApproximateNumberOfMessages"], "0", "{answer}");
    }

    let stats = stats(&endpoint).await;
    assert_eq!(stats["calls"]["GetQueueAttributes"], 2, "{stats}");
    assert_eq!(stats["connections"], 1, "the calls shared one connection: {stats}");
    assert_eq!(stats["tls_handshakes"], 1, "{stats}");
    assert_eq!(stats["tls_handshake_failures"], 0, "{stats}");
}

#[tokio::test]
async fn a_client_trusting_another_ca_fails_the_handshake_and_it_is_counted() {
    let endpoint = start("untrusted").await;
    let other = Tls::generate().expect("another CA");
    let refused = connect(&endpoint.addr, trusting(other.ca_pem().as_bytes())).await;
    assert!(refused.is_err(), "a certificate from an untrusted CA was accepted");

    // The server notices the client's alert a moment after the client gives up.
    let mut seen = stats(&endpoint).await;
    for _ in 0..50 {
        if seen["tls_handshake_failures"] != 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        seen = stats(&endpoint).await;
    }
    assert_eq!(seen["tls_handshake_failures"], 1, "{seen}");
    assert_eq!(seen["tls_handshakes"], 0, "the stats connections' handshakes are not counted: {seen}");
    assert_eq!(seen["connections"], 0, "{seen}");
}
