//! Each AWS failure's cause and fix, worded once: `run` prints them when it
//! stops on a fatal error, `doctor` prints them per failed check, and
//! docs/setup.md's error table says the same. The failure itself is
//! classified in [`super::error`]; this module only words it.

use std::fmt;

use student_shared::item::attr::STUDENT_ID;

use super::error::{Action, AwsError, Kind};
use super::trust::CA_BUNDLE_VARIABLE;

/// `CODE on ACTION for RESOURCE: ` and AWS's message; for a fatal error,
/// the problem and the fix `doctor` prints too.
impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {} for {}: ", self.code_or_kind(), self.action, self.resource)?;
        match self.action() {
            Action::Stop => {
                let explained = explain(self, Subject::of(self));
                write!(f, "{}; {} (AWS said: {})", explained.problem, explained.fix, self.message)
            }
            _ => f.write_str(&self.message),
        }
    }
}

/// What a call was about, for the wording.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// A DynamoDB table, by name.
    Table(&'a str),
    /// An SQS queue, by URL, and what names it (a variable, or a policy's field).
    Queue(&'a str, &'a str),
    /// The credential chain itself.
    Credentials,
}

impl<'a> Subject<'a> {
    /// The subject of `e` as its resource names it (`table NAME`, `queue URL`).
    pub fn of(e: &'a AwsError) -> Self {
        if let Some(name) = e.resource.strip_prefix("table ") {
            Self::Table(name)
        } else if let Some(url) = e.resource.strip_prefix("queue ") {
            Self::Queue(url, "the queue URL")
        } else {
            Self::Credentials
        }
    }
}

/// A failure's cause, fix, and whether `run` must refuse to start on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained {
    /// What went wrong, with AWS's own words at the end.
    pub cause: String,
    /// What went wrong, without AWS's words.
    pub problem: String,
    /// What to do.
    pub fix: String,
    /// `run` refuses to start.
    pub fatal: bool,
}

/// Words `e`, a failure of a call about `subject`.
pub fn explain(e: &AwsError, subject: Subject<'_>) -> Explained {
    let code = e.code_or_kind();
    // One line: the SDK's chain of attempts comes on several lines.
    let said = e.message.split_whitespace().collect::<Vec<_>>().join(" ");
    let (problem, fix) = problem_and_fix(e, subject);
    let cause = match e.kind {
        Kind::NoCredentials => format!("{problem} ({said})"),
        Kind::Transient => format!("{code}: {said}"),
        _ => format!("{code}: {problem} (AWS said: {said})"),
    };
    // A refused probe of a valid request can only mean a key that does not fit.
    let fatal = e.action() == Action::Stop || e.kind == Kind::Rejected;
    Explained { cause, problem, fix, fatal }
}

fn problem_and_fix(e: &AwsError, subject: Subject<'_>) -> (String, String) {
    let region = &e.region;
    match e.kind {
        Kind::NoCredentials => (
            "Unable to locate credentials: no IAM role is attached and no keys are configured".to_owned(),
            "attach a task role (taskRoleArn) in the task definition; for local use configure a profile \
             (`aws configure`) or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                .to_owned(),
        ),
        Kind::BadCredentials => (
            "the credentials were rejected: wrong, expired, or of another account".to_owned(),
            "in ECS rely on the task role and set no keys in the task definition; locally refresh the profile's keys or session".to_owned(),
        ),
        Kind::AccessDenied => (
            format!("the role lacks {} on {}", e.action, e.resource),
            format!(
                "add \"{}\" on {} to the task role's IAM policy (on Lambda: the function's role; locally: your profile's user or role)",
                e.action,
                resource_arn(subject, region)
            ),
        ),
        Kind::NotFound => not_found(subject, region),
        Kind::WrongKeySchema | Kind::Rejected => wrong_key_schema(),
        Kind::UntrustedCertificate => (
            "the endpoint's TLS certificate is not signed by a trusted CA: a TLS-inspecting proxy, \
             or a private endpoint signed by your own CA"
                .to_owned(),
            format!(
                "put that CA's certificate in a PEM file and set {CA_BUNDLE_VARIABLE} to its path (the system's roots \
                 stay trusted); if nothing should intercept, check HTTPS_PROXY and AWS_ENDPOINT_URL"
            ),
        ),
        Kind::Transient => (
            "a network or service problem".to_owned(),
            "check that the AWS endpoint is reachable (and AWS_ENDPOINT_URL, if set), then run doctor again".to_owned(),
        ),
    }
}

/// The cause and fix of a table whose key does not fit.
pub fn wrong_key_schema() -> (String, String) {
    (
        format!("the table's key is not partition key {STUDENT_ID} of type S with no sort key"),
        format!(
            "point DYNAMODB_TABLE_NAME at a table with partition key {STUDENT_ID} (String) and no sort key, \
             or delete this one and create it so (docs/setup.md)"
        ),
    )
}

fn not_found(subject: Subject<'_>, region: &str) -> (String, String) {
    match subject {
        Subject::Table(name) => (
            format!(
                "table {name} does not exist in region {region} (the region asked): a table name typo or a region mismatch"
            ),
            format!(
                "check DYNAMODB_TABLE_NAME and AWS_REGION: the table must be in the same region as the worker (its ECS task or Lambda function) \
                 (create it with partition key {STUDENT_ID}, type String)"
            ),
        ),
        Subject::Queue(url, variable) => (
            format!(
                "queue {url} does not exist in region {region} (the region asked): a URL typo or a region mismatch"
            ),
            format!(
                "check {variable} and AWS_REGION: use the URL `aws sqs get-queue-url` prints in the worker's region"
            ),
        ),
        Subject::Credentials => ("not found".to_owned(), "check the credential configuration".to_owned()),
    }
}

/// The ARN to name in a policy fix; the account id is unknown to the worker
/// for tables (queue URLs carry it).
pub fn resource_arn(subject: Subject<'_>, region: &str) -> String {
    match subject {
        Subject::Table(name) => format!("arn:aws:dynamodb:{region}:<account-id>:table/{name}"),
        Subject::Queue(url, _) => {
            let mut parts = url.trim_end_matches('/').rsplit('/');
            let name = parts.next().unwrap_or("<queue>");
            let account = parts.next().filter(|a| a.chars().all(|c| c.is_ascii_digit())).unwrap_or("<account-id>");
            format!("arn:aws:sqs:{region}:{account}:{name}")
        }
        Subject::Credentials => "*".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(kind: Kind, code: &str, action: &'static str, resource: &str) -> AwsError {
        AwsError {
            throttling_reasons: crate::aws::error::ThrottlingReasons::default(),
            kind,
            action,
            resource: resource.into(),
            region: "ap-northeast-2".into(),
            code: Some(code.into()),
            message: "said".into(),
        }
    }

    #[test]
    fn access_denied_names_the_action_and_the_policy_to_fix() {
        let e = error(Kind::AccessDenied, "AccessDeniedException", "dynamodb:PutItem", "table Students");
        let x = explain(&e, Subject::Table("Students"));
        assert!(x.cause.starts_with("AccessDeniedException: the role lacks dynamodb:PutItem on table Students"));
        assert_eq!(
            x.fix,
            "add \"dynamodb:PutItem\" on arn:aws:dynamodb:ap-northeast-2:<account-id>:table/Students to the task role's IAM policy (on Lambda: the function's role; locally: your profile's user or role)"
        );
        assert!(x.fatal);
    }

    #[test]
    fn not_found_says_typo_or_region_and_which_region_was_asked() {
        let e = error(Kind::NotFound, "ResourceNotFoundException", "dynamodb:DescribeTable", "table Studnets");
        let x = explain(&e, Subject::Table("Studnets"));
        assert!(x.cause.contains("table Studnets does not exist in region ap-northeast-2 (the region asked)"));
        assert!(x.cause.contains("a table name typo or a region mismatch"));
        let url = "https://sqs.ap-northeast-2.amazonaws.com/123456789012/students";
        assert_eq!(
            resource_arn(Subject::Queue(url, "SQS_QUEUE_URL"), "ap-northeast-2"),
            "arn:aws:sqs:ap-northeast-2:123456789012:students"
        );
    }

    #[test]
    fn run_and_doctor_word_a_failure_alike() {
        let e = error(Kind::AccessDenied, "AccessDeniedException", "dynamodb:PutItem", "table Students");
        let doctor = explain(&e, Subject::Table("Students"));
        let run = e.to_string();
        assert!(run.contains(&doctor.problem) && run.contains(&doctor.fix), "{run}");
        let e = error(Kind::NotFound, "QueueDoesNotExist", "sqs:ReceiveMessage", "queue https://sqs.x/1/students");
        assert!(matches!(Subject::of(&e), Subject::Queue("https://sqs.x/1/students", _)));
        assert!(e.to_string().contains("a URL typo or a region mismatch"), "{e}");
    }
}
