//! Why an event was refused: a machine-readable [`ErrorCode`] (sent to the DLQ
//! as the `ErrorCode` message attribute) and a human reason that names the
//! failing field. Reasons never echo string values, so a name or an email in
//! the wrong field never reaches a log line.

use std::fmt;

use crate::limits::MAX_ERROR_MESSAGE_CHARS;

/// The `ErrorCode` attribute of a dead letter: one per kind of refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The body is larger than SQS's 256 KiB message limit.
    BodyTooLarge,
    /// The body is not UTF-8 JSON.
    MalformedJson,
    /// The body is JSON but breaks the event contract v1.
    InvalidEvent,
    /// A patch whose predecessor version is a tombstone: it can never apply.
    PatchOnDeleted,
    /// DynamoDB refused the item (`ValidationException`), e.g. over 400 KB.
    ItemRejected,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: [ErrorCode; 5] =
        [Self::BodyTooLarge, Self::MalformedJson, Self::InvalidEvent, Self::PatchOnDeleted, Self::ItemRejected];

    /// Whether a dead letter with this code can succeed when replayed: only
    /// when the cause lay outside its body (a rejected item, after the table
    /// or the item's limit changed). The body alone condemns the others, and
    /// a tombstone stays a tombstone.
    pub fn may_succeed_on_replay(self) -> bool {
        matches!(self, Self::ItemRejected)
    }

    /// The code as it appears in the DLQ's `ErrorCode` attribute and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BodyTooLarge => "BodyTooLarge",
            Self::MalformedJson => "MalformedJson",
            Self::InvalidEvent => "InvalidEvent",
            Self::PatchOnDeleted => "PatchOnDeleted",
            Self::ItemRejected => "ItemRejected",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event that cannot be applied, ever: retrying will not help, so the
/// worker dead-letters it with this code and reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ContractError {
    code: ErrorCode,
    field: String,
    reason: String,
}

impl ContractError {
    /// A refusal of `field` (a JSON path such as `student.grade`, or `body`).
    pub fn new(code: ErrorCode, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { code, field: field.into(), reason: redact_quoted(&reason.into()) }
    }

    /// Shorthand for a contract violation of one field.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidEvent, field, reason)
    }

    /// The machine-readable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The failing field's path (`body` when the whole body is at fault).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The reason, without the field.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// `field: reason`, cut to the 256 characters a DLQ attribute carries.
    pub fn dlq_message(&self) -> String {
        truncate_chars(&self.to_string(), MAX_ERROR_MESSAGE_CHARS)
    }
}

/// Cuts `text` to at most `max` characters, marking the cut with `…`.
fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Replaces the values serde quotes in its messages with `…`: a double-quoted
/// run (`invalid type: string "Alice", expected u64`) and the variant of
/// ``unknown variant `alice@example.edu`, expected one of ...``. Any value may
/// be personal data in the wrong field.
fn redact_quoted(message: &str) -> String {
    const UNKNOWN_VARIANT: &str = "unknown variant `";
    // The variant is not escaped and may hold a backtick: cut at the last "`, expected".
    if let Some(rest) = message.strip_prefix(UNKNOWN_VARIANT)
        && let Some(end) = rest.rfind("`, expected")
    {
        return format!("{UNKNOWN_VARIANT}…`{}", redact_double_quoted(&rest[end + 1..]));
    }
    redact_double_quoted(message)
}

/// serde quotes strings with `{:?}`, so a quote inside one arrives as `\"`.
fn redact_double_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    let mut escaped = false;
    for c in message.chars() {
        if inside && (escaped || c == '\\') {
            escaped = !escaped;
        } else if c == '"' {
            if inside {
                out.push('…');
            }
            out.push(c);
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_redacted() {
        let e = ContractError::invalid("student.grade", r#"invalid type: string "Alice", expected u64"#);
        assert_eq!(e.to_string(), r#"student.grade: invalid type: string "…", expected u64"#);
        let e = ContractError::invalid(
            "student.status",
            "unknown variant `alice@example.edu`, expected one of `active`, `inactive`",
        );
        assert_eq!(e.to_string(), "student.status: unknown variant `…`, expected one of `active`, `inactive`");
        // A quote or backtick inside the value does not end the redaction.
        let e = ContractError::invalid("version", r#"invalid type: string "a\"Alice\\", expected u64"#);
        assert_eq!(e.to_string(), r#"version: invalid type: string "…", expected u64"#);
        let e = ContractError::invalid("type", "unknown variant `a`Alice`, expected one of `StudentUpserted`");
        assert_eq!(e.to_string(), "type: unknown variant `…`, expected one of `StudentUpserted`");
    }

    #[test]
    fn dlq_message_is_cut_to_256_chars() {
        let e = ContractError::invalid("body", "x".repeat(1000));
        assert_eq!(e.dlq_message().chars().count(), 256);
        assert!(e.dlq_message().ends_with('…'));
    }
}
