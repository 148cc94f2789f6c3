//! What the function needs from the Lambda environment besides
//! `lambda_runtime`: the variables it reads (checked first, so a missing one
//! is a clear message, not the crate's panic) and the init-error call,
//! which the crate does not expose.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::ConfigError;

/// The Runtime API's `host:port`: set by Lambda, and what makes the binary
/// serve invocations when started without a subcommand.
pub const RUNTIME_API: &str = "AWS_LAMBDA_RUNTIME_API";

/// The variables `lambda_runtime` reads at start-up (Lambda sets them all).
const RUNTIME_VARIABLES: [&str; 4] =
    [RUNTIME_API, "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION"];

/// The Runtime API's version prefix.
const API_VERSION: &str = "2018-06-01";

/// Whether the process runs inside Lambda.
pub fn in_lambda() -> bool {
    std::env::var_os(RUNTIME_API).is_some_and(|v| !v.is_empty())
}

/// The Runtime API address, once every variable `lambda_runtime` needs is there.
pub fn runtime_api() -> Result<String, ConfigError> {
    for variable in RUNTIME_VARIABLES {
        if std::env::var(variable).map_or(true, |v| v.trim().is_empty()) {
            return Err(ConfigError {
                variable,
                flag: "none: set by Lambda",
                problem: "is not set".into(),
                fix: "`lambda` serves invocations inside AWS Lambda, which sets it; to consume a queue elsewhere use `run`"
                    .into(),
            });
        }
    }
    if std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").is_ok_and(|v| v.trim().parse::<i32>().is_err()) {
        return Err(ConfigError {
            variable: "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            flag: "none: set by Lambda",
            problem: "is not a number".into(),
            fix: "Lambda sets it to the function's memory in MB".into(),
        });
    }
    Ok(std::env::var(RUNTIME_API).unwrap_or_default())
}

/// Reports a failed start to the Runtime API (`POST /runtime/init/error`),
/// so Lambda shows `message` as the function's init error.
pub async fn post_init_error(api: &str, error_type: &str, message: &str) -> std::io::Result<()> {
    let body = serde_json::json!({ "errorType": error_type, "errorMessage": message }).to_string();
    let request = format!(
        "POST /{API_VERSION}/runtime/init/error HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/json\r\n\
         Lambda-Runtime-Function-Error-Type: {error_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(api).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let status = String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned();
    if status.split_whitespace().nth(1).is_some_and(|code| code.starts_with('2')) {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("the Runtime API answered {status:?}")))
    }
}
