//! Local AWS emulator (moto) for integration tests.
//!
//! [`Emulator::start`] spawns `moto_server` on a free `127.0.0.1` port, waits
//! until it answers HTTP and kills it when dropped. The executable comes from
//! `$MOTO_SERVER`, else `<workspace>/.venv/bin/moto_server`, installed by
//! `scripts/emulator install`. A missing emulator is a loud panic, never a
//! skipped test.
//!
//! [`Emulator::sdk_config`] / [`sdk_config_with_endpoint`] build an AWS SDK
//! config (region `ap-northeast-2`, static `test`/`test` credentials) pointing
//! at the emulator or at anything in front of it (e.g. a
//! [`FaultProxy`](crate::proxy::FaultProxy)); [`Emulator::env_vars`] is the
//! same for a child process.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::Credentials;

/// AWS region every test client and child process uses.
pub const REGION: &str = "ap-northeast-2";
/// Access key id of the static test credentials.
pub const ACCESS_KEY_ID: &str = "test";
/// Secret access key of the static test credentials.
pub const SECRET_ACCESS_KEY: &str = "test";

/// How long to wait for `moto_server` to answer after spawning it.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How many ports to try before giving up (a free port can be taken by
/// someone else between finding it and moto binding it).
const START_ATTEMPTS: usize = 3;
/// Lines of the server log included in panic messages.
const LOG_TAIL_LINES: usize = 40;

const INSTALL_HINT: &str = "run `scripts/emulator install` from the repository root \
     (it creates .venv with moto), or set MOTO_SERVER to a moto_server executable";

/// A running `moto_server`, killed and reaped on drop.
#[derive(Debug)]
pub struct Emulator {
    /// Base URL of the emulator, `http://127.0.0.1:PORT` (no trailing slash).
    pub endpoint: String,
    /// The port it listens on.
    pub port: u16,
    child: Child,
    log_path: PathBuf,
}

impl Emulator {
    /// Starts `moto_server` on a free port and waits until it answers.
    ///
    /// Synchronous and runtime-free, so it can be called from inside a
    /// `#[tokio::test]`.
    ///
    /// # Panics
    /// If `moto_server` is not installed (with a hint to run
    /// `scripts/emulator install`) or does not come up after a few attempts
    /// (with the tail of its log).
    #[must_use]
    pub fn start() -> Emulator {
        let exe = moto_server_path();
        let mut failures = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            match try_start(&exe) {
                Ok(emulator) => return emulator,
                Err(failure) => {
                    failures.push(format!("attempt {attempt}: {failure}"));
                }
            }
        }
        panic!(
            "\n\n*** could not start the AWS emulator ({}) after {START_ATTEMPTS} attempts ***\n{}\n",
            exe.display(),
            failures.join("\n")
        );
    }

    /// An SDK config pointing at this emulator: region `ap-northeast-2`,
    /// static credentials `test`/`test`.
    pub async fn sdk_config(&self) -> SdkConfig {
        sdk_config_with_endpoint(&self.endpoint).await
    }

    /// The environment a child process (the worker binary, a Python script)
    /// needs to talk to this emulator.
    #[must_use]
    pub fn env_vars(&self) -> Vec<(String, String)> {
        env_vars_for_endpoint(&self.endpoint)
    }

    /// Path of the file the server's stdout and stderr go to.
    #[must_use]
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last lines of the server's log, for diagnostics.
    #[must_use]
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        // Errors here mean the process already exited; nothing to clean up.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("moto_server log kept at {} (tail follows):\n{}", self.log_path.display(), self.log_tail());
        } else {
            let _ = fs::remove_file(&self.log_path);
        }
    }
}

/// An SDK config for any endpoint (the emulator, or a proxy in front of it):
/// region `ap-northeast-2`, static credentials `test`/`test`.
pub async fn sdk_config_with_endpoint(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(ACCESS_KEY_ID, SECRET_ACCESS_KEY, None, None, "test"))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// The environment a child process needs to talk to `endpoint`:
/// `AWS_ENDPOINT_URL`, `AWS_REGION` and `AWS_DEFAULT_REGION` (boto3 reads
/// only the latter), static credentials and `AWS_EC2_METADATA_DISABLED=true`.
///
/// Caveat: awscli v1's `aws sqs` ignores `AWS_ENDPOINT_URL` in regions such
/// as ap-northeast-2 (it forces the legacy `*.queue.amazonaws.com` name):
/// pass `--endpoint-url` to it explicitly. boto3 and `aws dynamodb` honour it.
#[must_use]
pub fn env_vars_for_endpoint(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", REGION),
        ("AWS_DEFAULT_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The workspace root (the parent of this crate's directory).
///
/// # Panics
/// Never in practice: this crate's directory always has a parent.
#[must_use]
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate lives inside the workspace").to_path_buf()
}

/// The virtualenv's Python (`<workspace>/.venv/bin/python`), which has
/// boto3, awscli and jsonschema.
///
/// # Panics
/// If the virtualenv is missing, telling to run `scripts/emulator install`.
#[must_use]
pub fn python() -> PathBuf {
    let path = workspace_root().join(".venv/bin/python");
    assert!(
        path.exists(),
        "\n\n*** the test virtualenv's Python is missing: {} ***\n*** {INSTALL_HINT} ***\n",
        path.display()
    );
    path
}

/// The `moto_server` executable: `$MOTO_SERVER`, else the virtualenv's.
fn moto_server_path() -> PathBuf {
    let path = match std::env::var_os("MOTO_SERVER") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => workspace_root().join(".venv/bin/moto_server"),
    };
    assert!(
        path.exists(),
        "\n\n*** the AWS emulator is not installed: {} does not exist ***\n*** {INSTALL_HINT} ***\n",
        path.display()
    );
    path
}

/// A port that was free on 127.0.0.1 a moment ago.
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| format!("cannot bind 127.0.0.1:0 to find a free port: {e}"))?;
    listener.local_addr().map(|addr| addr.port()).map_err(|e| format!("cannot read the bound port: {e}"))
}

fn new_log_path(port: u16) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("student-worker-moto-{}-{n}-{port}.log", std::process::id()))
}

fn try_start(exe: &Path) -> Result<Emulator, String> {
    let port = free_port()?;
    let log_path = new_log_path(port);
    let log = File::create(&log_path).map_err(|e| format!("cannot create log file {}: {e}", log_path.display()))?;
    let log_err = log.try_clone().map_err(|e| format!("cannot clone log file handle: {e}"))?;
    let child = Command::new(exe)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|e| format!("cannot spawn {}: {e}", exe.display()))?;
    let mut emulator = Emulator { endpoint: format!("http://127.0.0.1:{port}"), port, child, log_path };
    match wait_until_ready(&mut emulator) {
        Ok(()) => Ok(emulator),
        Err(reason) => {
            let _ = emulator.child.kill();
            let _ = emulator.child.wait();
            let tail = emulator.log_tail();
            // Dropping kills again (harmless) and removes the log: the tail
            // is in the message.
            Err(format!("{reason}\n--- last lines of {} ---\n{tail}", emulator.log_path.display()))
        }
    }
}

/// Waits until our child logged that it listens on the port (so an answer is
/// not from some other process that grabbed it) and answers an HTTP request.
fn wait_until_ready(emulator: &mut Emulator) -> Result<(), String> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let marker = format!("Running on {}", emulator.endpoint);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, emulator.port));
    loop {
        if let Some(status) = emulator.child.try_wait().map_err(|e| format!("cannot poll moto_server: {e}"))? {
            return Err(format!("moto_server exited during startup ({status}) on port {}", emulator.port));
        }
        let listening = fs::read_to_string(&emulator.log_path).is_ok_and(|log| log.contains(&marker));
        if listening && answers_http(addr) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("moto_server did not answer on {} within {STARTUP_TIMEOUT:?}", emulator.endpoint));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// True when `addr` answers `GET /moto-api/` with any HTTP status line.
fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let timeout = Some(Duration::from_secs(2));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    let request = format!(
        "GET /moto-api/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: student-worker-tests\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

fn log_tail(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(LOG_TAIL_LINES);
            lines[start..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
