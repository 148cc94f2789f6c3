//! Every AWS failure is classified here, once: what happened ([`Kind`]) and
//! what to do about it ([`Action`]): retry with backoff, dead-letter the
//! message, or stop the worker with the setup guide's cause and fix.

use std::error::Error as StdError;
use std::fmt;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

/// What the worker does with a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Transient: back off and try again while the message's deadline allows.
    Retry,
    /// The message can never succeed: forward it to the DLQ.
    DeadLetter,
    /// Setup is broken (permissions, missing table or queue, credentials):
    /// stop taking messages, release in-flight ones, exit non-zero.
    Stop,
}

/// The classes of failure the setup guide's error table and DESIGN.md name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `AccessDeniedException`: the role lacks the action.
    AccessDenied,
    /// `Unable to locate credentials`: no role attached, no keys.
    NoCredentials,
    /// Credentials exist but are rejected (bad signature, unknown key).
    BadCredentials,
    /// `ResourceNotFoundException` / `QueueDoesNotExist`: typo or region mismatch.
    NotFound,
    /// The table exists but its key is not `StudentID` (S): every write would fail.
    WrongKeySchema,
    /// `ValidationException`: the request (the item) is refused as such.
    Rejected,
    /// Throttling, 5xx, timeouts, connection errors, anything unknown.
    Transient,
}

impl Kind {
    /// What to do about it.
    pub fn action(self) -> Action {
        match self {
            Self::AccessDenied | Self::NoCredentials | Self::BadCredentials | Self::NotFound | Self::WrongKeySchema => {
                Action::Stop
            }
            Self::Rejected => Action::DeadLetter,
            Self::Transient => Action::Retry,
        }
    }
}

/// A failed AWS call, with enough context to say what to fix.
#[derive(Debug, Clone)]
pub struct AwsError {
    /// Its class.
    pub kind: Kind,
    /// The IAM action called, e.g. `dynamodb:PutItem`.
    pub action: &'static str,
    /// What it was called on, e.g. `table Students`.
    pub resource: String,
    /// The region the SDK used.
    pub region: String,
    /// The service's error code, e.g. `AccessDeniedException`, when it sent one.
    pub code: Option<String>,
    /// The service's or the SDK's message.
    pub message: String,
}

impl AwsError {
    /// Classifies an SDK error from a call of `action` on `resource`.
    pub fn from_sdk<E, R>(err: &SdkError<E, R>, action: &'static str, resource: &str, region: &str) -> Self
    where
        E: ProvideErrorMetadata + StdError + 'static,
        R: fmt::Debug + 'static,
    {
        let code = err.as_service_error().and_then(|e| e.code()).map(str::to_owned);
        let message = match err.as_service_error() {
            Some(e) => e.message().unwrap_or("no message").to_owned(),
            None => chain(err),
        };
        let kind = match (&code, err) {
            (Some(code), _) if code == "ValidationException" && names_the_key(&message) => Kind::WrongKeySchema,
            (Some(code), _) => kind_of_code(code),
            (None, SdkError::DispatchFailure(_)) if missing_credentials(err) => Kind::NoCredentials,
            _ => Kind::Transient,
        };
        if code.as_deref().is_some_and(is_throttling) {
            crate::metrics::global().throttled(); // observe (issue 5): every throttle the worker sees
        }
        Self { kind, action, resource: resource.to_owned(), region: region.to_owned(), code, message }
    }

    /// Classifies a failure to obtain credentials from the provider chain
    /// (asked directly, before any call: `doctor` and `run`'s pre-flight).
    pub fn from_credentials(err: &CredentialsError, action: &'static str, region: &str) -> Self {
        let kind = if missing_credentials(err) { Kind::NoCredentials } else { Kind::Transient };
        Self {
            kind,
            action,
            resource: "the default credential chain".to_owned(),
            region: region.to_owned(),
            code: None,
            message: chain(err),
        }
    }

    /// Retry, dead-letter or stop.
    pub fn action(&self) -> Action {
        self.kind.action()
    }

    /// Whether the service throttled the call (a transient error that also
    /// lowers the write concurrency, see `concurrency.rs`).
    pub fn is_throttling(&self) -> bool {
        self.kind == Kind::Transient && self.code.as_deref().is_some_and(|code| THROTTLING_CODES.contains(&code))
    }

    /// The setup guide's cause → fix for a fatal error.
    pub fn hint(&self) -> String {
        let region = &self.region;
        match self.kind {
            Kind::AccessDenied => "the task role lacks this action; add it to the role's policy".into(),
            Kind::NoCredentials => "Unable to locate credentials: no IAM role is attached; attach a task role (taskRoleArn) in the task definition, or for local use configure a profile or AWS_ACCESS_KEY_ID".into(),
            Kind::BadCredentials => "the credentials were rejected; in ECS rely on the task role and set no keys in the environment".into(),
            Kind::NotFound => format!("it does not exist in region {region}: a name typo or a region mismatch; check the name and AWS_REGION (the table and queue must be in the task's region)"),
            Kind::WrongKeySchema => "the table's key schema is not the setup guide's; the table needs partition key StudentID of type S (and no sort key): recreate it, e.g. with `student-worker setup`, or point DYNAMODB_TABLE_NAME at the right table".into(),
            Kind::Rejected | Kind::Transient => "retried with backoff".into(),
        }
    }
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.code.as_deref().unwrap_or(match self.kind {
            Kind::NoCredentials => "NoCredentials",
            _ => "error",
        });
        write!(f, "{code} on {} for {}: ", self.action, self.resource)?;
        match self.action() {
            Action::Stop => write!(f, "{} (AWS said: {})", self.hint(), self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl StdError for AwsError {}

/// Error codes that mean "slow down" (the SDK's own throttling list).
const THROTTLING_CODES: [&str; 8] = [
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
];

fn kind_of_code(code: &str) -> Kind {
    match code {
        "AccessDeniedException" | "AccessDenied" | "KMSAccessDeniedException" => Kind::AccessDenied,
        "ResourceNotFoundException" | "QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue" => Kind::NotFound,
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "ExpiredToken"
        | "ExpiredTokenException" => Kind::BadCredentials,
        "ValidationException" => Kind::Rejected,
        _ => Kind::Transient,
    }
}

/// Throttling error codes (the SDK's own throttling classifier's list, plus
/// SQS's query-protocol code).
pub fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "Throttling"
            | "ThrottlingException"
            | "ThrottledException"
            | "RequestThrottledException"
            | "TooManyRequestsException"
            | "ProvisionedThroughputExceededException"
            | "TransactionInProgressException"
            | "RequestLimitExceeded"
            | "RequestThrottled"
            | "AWS.SimpleQueueService.RequestThrottled"
    )
}

/// DynamoDB's ValidationException for a key that does not fit the table
/// ("The provided key element does not match the schema", "Missing the key
/// StudentID in the item", ...) is a setup problem, not a bad item.
fn names_the_key(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("key element")
        || m.contains("missing the key")
        || m.contains("key schema")
        || m.contains("type mismatch for key")
}

/// Identity resolution fails before the request is sent: the SDK reports it
/// as a dispatch failure whose source chain holds the credentials error.
fn missing_credentials(err: &(dyn StdError + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            return matches!(c, CredentialsError::CredentialsNotLoaded(_) | CredentialsError::InvalidConfiguration(_));
        }
        source = e.source();
    }
    false
}

/// The error and its sources on one line.
fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(e) = source {
        parts.push(e.to_string());
        source = e.source();
    }
    parts.dedup();
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_actions() {
        assert_eq!(kind_of_code("AccessDeniedException").action(), Action::Stop);
        assert_eq!(kind_of_code("ResourceNotFoundException").action(), Action::Stop);
        assert_eq!(kind_of_code("AWS.SimpleQueueService.NonExistentQueue").action(), Action::Stop);
        assert_eq!(kind_of_code("ValidationException").action(), Action::DeadLetter);
        assert_eq!(kind_of_code("ProvisionedThroughputExceededException").action(), Action::Retry);
        assert_eq!(kind_of_code("ThrottlingException").action(), Action::Retry);
        assert_eq!(kind_of_code("InternalServerError").action(), Action::Retry);
        assert_eq!(kind_of_code("ExpiredTokenException").action(), Action::Stop);
        assert!(THROTTLING_CODES.iter().all(|c| kind_of_code(c) == Kind::Transient));
        assert!(names_the_key("One or more parameter values were invalid: Missing the key id in the item"));
        assert!(names_the_key("The provided key element does not match the schema"));
        assert!(names_the_key("Type mismatch for key StudentID expected: N actual: S"));
        assert!(!names_the_key("Item size has exceeded the maximum allowed size"));
    }

    #[test]
    fn fatal_message_says_cause_and_fix() {
        let e = AwsError {
            kind: Kind::AccessDenied,
            action: "dynamodb:PutItem",
            resource: "table Students".into(),
            region: "ap-northeast-2".into(),
            code: Some("AccessDeniedException".into()),
            message: "User is not authorized".into(),
        };
        assert!(
            e.to_string().starts_with(
                "AccessDeniedException on dynamodb:PutItem for table Students: the task role lacks this action; add it to the role's policy"
            ),
            "{e}"
        );
    }
}
