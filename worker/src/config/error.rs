//! The error that stops start-up on a bad setting, naming the variable, the
//! flag and what is allowed, and the readers of one setting that produce it.

/// A configuration value that stops start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {problem}; {fix}", self.setting())]
pub struct ConfigError {
    /// The environment variable.
    pub variable: &'static str,
    /// The equivalent flag, without dashes; empty for a variable that has
    /// no flag (the SDK's own, like `AWS_REGION`).
    pub flag: &'static str,
    /// What is wrong.
    pub problem: String,
    /// What to do.
    pub fix: String,
}

impl ConfigError {
    /// The variable, and its flag when it has one: `SQS_QUEUE_URL (--queue-url)`.
    pub fn setting(&self) -> String {
        match self.flag {
            "" => self.variable.to_owned(),
            flag => format!("{} (--{flag})", self.variable),
        }
    }
}

/// A set, non-blank value, trimmed.
pub fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The problem of a setting that has no value.
pub const NOT_SET: &str = "is not set";

/// A required text setting; `what` says what to set it to.
pub fn required(
    value: &Option<String>,
    variable: &'static str,
    flag: &'static str,
    what: &str,
) -> Result<String, ConfigError> {
    match given(value) {
        Some(v) => Ok(v.to_owned()),
        None => Err(ConfigError {
            variable,
            flag,
            problem: NOT_SET.into(),
            fix: format!("set {variable} (or --{flag}) to {what}"),
        }),
    }
}

/// An SQS queue URL: `http(s)://…`.
pub fn check_url(url: &str, variable: &'static str, flag: &'static str) -> Result<(), ConfigError> {
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(());
    }
    Err(ConfigError {
        variable,
        flag,
        problem: format!("is {url:?}, not a queue URL"),
        fix: "use the URL `aws sqs get-queue-url` prints, e.g. https://sqs.ap-northeast-2.amazonaws.com/123456789012/students".into(),
    })
}

/// An integer setting from `min` to `max`, `default` when unset.
pub fn int<T>(
    value: &Option<String>,
    variable: &'static str,
    flag: &'static str,
    min: T,
    max: T,
    default: T,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(raw) = given(value) else {
        return Ok(default);
    };
    match raw.parse::<T>() {
        Ok(v) if v >= min && v <= max => Ok(v),
        _ => Err(ConfigError {
            variable,
            flag,
            problem: format!("is {raw:?}"),
            fix: format!("expected an integer from {min} to {max} (default {default})"),
        }),
    }
}

/// A boolean setting: true/false, 1/0, yes/no; unset is false.
pub fn boolean(value: &Option<String>, variable: &'static str, flag: &'static str) -> Result<bool, ConfigError> {
    match value.as_deref().map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "false" | "0" | "no") => Ok(false),
        Some("true" | "1" | "yes") => Ok(true),
        Some(other) => {
            Err(ConfigError { variable, flag, problem: format!("is {other:?}"), fix: "expected true or false".into() })
        }
    }
}
