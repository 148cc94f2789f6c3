//! Every AWS failure is classified here, once: what happened ([`Kind`]) and
//! what to do about it ([`Action`]): retry with backoff, dead-letter the
//! message, or stop the worker with its cause and fix (worded in
//! [`super::explain`]).

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_dynamodb::config::http::HttpResponse;
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

/// The classes of failure docs/setup.md's error table names.
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
    /// The endpoint's TLS certificate is not trusted (a TLS-inspecting proxy,
    /// a private endpoint): no retry can fix it, only the trusted CAs.
    UntrustedCertificate,
    /// Throttling, 5xx, timeouts, connection errors, anything unknown.
    Transient,
}

impl Kind {
    /// What to do about it.
    pub fn action(self) -> Action {
        match self {
            Self::AccessDenied
            | Self::NoCredentials
            | Self::BadCredentials
            | Self::NotFound
            | Self::WrongKeySchema
            | Self::UntrustedCertificate => Action::Stop,
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
    pub code: Option<Box<str>>,
    /// The service's or the SDK's message.
    pub message: String,
    /// Why DynamoDB throttled the call, when it says (`ThrottlingReasons`,
    /// e.g. `TableWriteKeyRangeThroughputExceeded`); empty otherwise.
    pub throttling_reasons: ThrottlingReasons,
}

impl AwsError {
    /// Classifies an SDK error from a call of `action` on `resource`.
    pub fn from_sdk<E, R>(err: &SdkError<E, R>, action: &'static str, resource: &str, region: &str) -> Self
    where
        E: ProvideErrorMetadata + StdError + 'static,
        R: fmt::Debug + 'static,
    {
        let code: Option<Box<str>> = err.as_service_error().and_then(|e| e.code()).map(Into::into);
        let message = match err.as_service_error() {
            Some(e) => e.message().unwrap_or("no message").to_owned(),
            None => chain(err),
        };
        let kind = match (&code, err) {
            (Some(code), _) if &**code == "ValidationException" && names_the_key(&message) => Kind::WrongKeySchema,
            (Some(code), _) => kind_of_code(code),
            (None, SdkError::DispatchFailure(_)) if missing_credentials(err) => Kind::NoCredentials,
            (None, SdkError::DispatchFailure(_)) if untrusted_certificate(err) => Kind::UntrustedCertificate,
            _ => Kind::Transient,
        };
        let throttling_reasons = match &code {
            Some(code) if is_throttling(code) => ThrottlingReasons::new(reasons_in(err.raw_response())),
            _ => ThrottlingReasons::default(),
        };
        Self {
            kind,
            action,
            resource: resource.to_owned(),
            region: region.to_owned(),
            code,
            message,
            throttling_reasons,
        }
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
            throttling_reasons: ThrottlingReasons::default(),
        }
    }

    /// Retry, dead-letter or stop.
    pub fn action(&self) -> Action {
        self.kind.action()
    }

    /// Why the call was throttled: DynamoDB's reasons, each once, or
    /// [`UNSPECIFIED_REASON`] when it named none; empty if it was not throttled.
    pub fn throttle_causes(&self) -> Vec<String> {
        if !self.is_throttling() {
            return Vec::new();
        }
        let mut reasons = self.throttling_reasons.as_slice().to_vec();
        reasons.sort_unstable();
        reasons.dedup();
        if reasons.is_empty() {
            reasons.push(UNSPECIFIED_REASON.to_owned());
        }
        reasons
    }

    /// Whether the service throttled the call: [`THROTTLING_CODES`]. The
    /// throttle metric counts every such error the worker meets; the write
    /// limiter lowers its concurrency on DynamoDB's.
    pub fn is_throttling(&self) -> bool {
        self.code.as_deref().is_some_and(is_throttling)
    }

    /// The service's error code, or the kind's name when there is none.
    pub fn code_or_kind(&self) -> &str {
        self.code.as_deref().unwrap_or(match self.kind {
            Kind::NoCredentials => "NoCredentials",
            Kind::UntrustedCertificate => "UntrustedCertificate",
            _ => "error",
        })
    }
}

/// What AWS calls are made on, in which region: the context every error
/// from them carries (and the one place that words it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    name: String,
    region: String,
}

impl Resource {
    /// The queue at `url`.
    pub fn queue(url: &str, region: &str) -> Self {
        Self { name: format!("queue {url}"), region: region.to_owned() }
    }

    /// The table `name`.
    pub fn table(name: &str, region: &str) -> Self {
        Self { name: format!("table {name}"), region: region.to_owned() }
    }

    /// The region the calls go to.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Classifies a failed call of `action` on this resource.
    pub fn error<E, R>(&self, err: &SdkError<E, R>, action: &'static str) -> AwsError
    where
        E: ProvideErrorMetadata + StdError + 'static,
        R: fmt::Debug + 'static,
    {
        AwsError::from_sdk(err, action, &self.name, &self.region)
    }

    /// A failure outside a service answer (a request builder, a waiter), as `kind`.
    pub fn local_error(&self, kind: Kind, action: &'static str, e: impl fmt::Display) -> AwsError {
        AwsError {
            throttling_reasons: ThrottlingReasons::default(),
            kind,
            action,
            resource: self.name.clone(),
            region: self.region.clone(),
            code: None,
            message: e.to_string(),
        }
    }
}

/// DynamoDB's throttling reasons for one call, behind one pointer, so that an
/// [`AwsError`] stays small (errors travel in `Result`s everywhere).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThrottlingReasons(Option<Arc<Vec<String>>>);

impl ThrottlingReasons {
    /// The reasons given (none: empty).
    pub fn new(reasons: Vec<String>) -> Self {
        Self((!reasons.is_empty()).then(|| Arc::new(reasons)))
    }

    /// The reasons, in the order given.
    pub fn as_slice(&self) -> &[String] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

/// The reason counted for a throttle whose error names none.
pub const UNSPECIFIED_REASON: &str = "Unspecified";

/// The throttling reasons in a raw answer's JSON body: DynamoDB lists them as
/// `ThrottlingReasons` (or `throttlingReasons`), each with a `reason`.
fn reasons_in<R: 'static>(raw: Option<&R>) -> Vec<String> {
    let body =
        raw.and_then(|r| (r as &dyn std::any::Any).downcast_ref::<HttpResponse>()).and_then(|r| r.body().bytes());
    body.map(throttling_reasons).unwrap_or_default()
}

/// The `reason` of each entry of the `ThrottlingReasons` list of an error body.
pub fn throttling_reasons(body: &[u8]) -> Vec<String> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else { return Vec::new() };
    let list = value.get("ThrottlingReasons").or_else(|| value.get("throttlingReasons"));
    let entries = list.and_then(serde_json::Value::as_array).map(Vec::as_slice).unwrap_or_default();
    entries
        .iter()
        .filter_map(|e| e.get("reason").or_else(|| e.get("Reason")).and_then(serde_json::Value::as_str))
        .map(str::to_owned)
        .collect()
}

// Display is implemented in `super::explain`, where the wording lives.
impl StdError for AwsError {}

/// Error codes that mean "slow down": the SDK's own throttling classifier's
/// list, plus SQS's query-protocol code. The one list: the metric and the
/// write limiter both go by it.
pub const THROTTLING_CODES: [&str; 10] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "AWS.SimpleQueueService.RequestThrottled",
];

/// Whether `code` is one of [`THROTTLING_CODES`].
pub fn is_throttling(code: &str) -> bool {
    THROTTLING_CODES.contains(&code)
}

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
    causes(err).filter_map(|e| e.downcast_ref::<CredentialsError>()).next().is_some_and(|c| {
        matches!(c, CredentialsError::CredentialsNotLoaded(_) | CredentialsError::InvalidConfiguration(_))
    })
}

/// A TLS handshake refused for the server's certificate.
fn untrusted_certificate(err: &(dyn StdError + 'static)) -> bool {
    causes(err).any(|e| matches!(e.downcast_ref::<rustls::Error>(), Some(rustls::Error::InvalidCertificate(_))))
}

/// `err` and every error under it. An `io::Error`'s `source()` skips the
/// error it wraps (rustls's, inside hyper's), so that payload is the next
/// link instead.
fn causes<'a>(err: &'a (dyn StdError + 'static)) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |&e| match e.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
        Some(payload) => Some(payload as &(dyn StdError + 'static)),
        None => e.source(),
    })
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
    fn throttling_reasons_are_read_in_either_spelling() {
        let upper = br#"{"__type":"x#ProvisionedThroughputExceededException","message":"m","ThrottlingReasons":[{"reason":"TableWriteKeyRangeThroughputExceeded","resource":"arn:aws:dynamodb:r:1:table/Students"},{"reason":"TableWriteProvisionedThroughputExceeded"}]}"#;
        assert_eq!(
            throttling_reasons(upper),
            ["TableWriteKeyRangeThroughputExceeded", "TableWriteProvisionedThroughputExceeded"]
        );
        let lower = br#"{"__type":"x#ThrottlingException","throttlingReasons":[{"reason":"AccountWriteThroughputLimitExceeded"}]}"#;
        assert_eq!(throttling_reasons(lower), ["AccountWriteThroughputLimitExceeded"]);
        assert!(throttling_reasons(br#"{"__type":"x#ThrottlingException"}"#).is_empty());
        assert!(throttling_reasons(b"not json").is_empty());
    }

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
    }

    #[test]
    fn one_list_says_what_a_throttle_is() {
        let with_code = |code: &str| AwsError {
            throttling_reasons: ThrottlingReasons::default(),
            kind: kind_of_code(code),
            action: "dynamodb:PutItem",
            resource: "table Students".into(),
            region: "ap-northeast-2".into(),
            code: Some(code.into()),
            message: "slow down".into(),
        };
        for code in THROTTLING_CODES {
            let e = with_code(code);
            assert!(e.is_throttling() && e.action() == Action::Retry, "{code}");
        }
        for code in ["InternalServerError", "ValidationException", "AccessDeniedException", "ServiceUnavailable"] {
            assert!(!with_code(code).is_throttling(), "{code}");
        }
        assert!(names_the_key("One or more parameter values were invalid: Missing the key id in the item"));
        assert!(names_the_key("The provided key element does not match the schema"));
        assert!(names_the_key("Type mismatch for key StudentID expected: N actual: S"));
        assert!(!names_the_key("Item size has exceeded the maximum allowed size"));
    }

    #[test]
    fn fatal_message_says_cause_and_fix() {
        let e = AwsError {
            throttling_reasons: ThrottlingReasons::default(),
            kind: Kind::AccessDenied,
            action: "dynamodb:PutItem",
            resource: "table Students".into(),
            region: "ap-northeast-2".into(),
            code: Some("AccessDeniedException".into()),
            message: "User is not authorized".into(),
        };
        assert!(
            e.to_string().starts_with(
                "AccessDeniedException on dynamodb:PutItem for table Students: the role lacks dynamodb:PutItem on table Students; add \"dynamodb:PutItem\" on arn:aws:dynamodb:ap-northeast-2:<account-id>:table/Students to the task role's IAM policy"
            ),
            "{e}"
        );
    }
}
