//! The setup guide's error table as cause → fix wording for a failed AWS call
//! in a check. The failure itself is classified in `crate::error`; this
//! module only words it for the resource the check was about.

use crate::error::{Action, AwsError, Kind};

/// What a check was about, for the wording.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// A DynamoDB table, by name.
    Table(&'a str),
    /// An SQS queue, by URL, and the variable that names it.
    Queue(&'a str, &'static str),
    /// The credential chain itself.
    Credentials,
}

/// A failure's cause, fix, and whether `run` must refuse to start on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained {
    /// What went wrong, with AWS's own words at the end.
    pub cause: String,
    /// What to do.
    pub fix: String,
    /// `run` refuses to start.
    pub fatal: bool,
}

/// Words `e`, a failure of a call about `subject`.
pub fn explain(e: &AwsError, subject: Subject<'_>) -> Explained {
    let code = e.code.as_deref().unwrap_or(match e.kind {
        Kind::NoCredentials => "NoCredentials",
        _ => "error",
    });
    // One line per check: the SDK's chain of attempts comes on several lines.
    let said = &e.message.split_whitespace().collect::<Vec<_>>().join(" ");
    let region = &e.region;
    let (cause, fix) = match e.kind {
        Kind::NoCredentials => (
            format!("Unable to locate credentials: no IAM role is attached and no keys are configured ({said})"),
            "attach a task role (taskRoleArn) in the task definition; for local use configure a profile \
             (`aws configure`) or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                .to_owned(),
        ),
        Kind::BadCredentials => (
            format!("{code}: the credentials were rejected: wrong, expired, or of another account (AWS said: {said})"),
            "in ECS rely on the task role and set no keys in the task definition; locally refresh the profile's keys or session".to_owned(),
        ),
        Kind::AccessDenied => (
            format!("AccessDeniedException: the role lacks {} on {} (AWS said: {said})", e.action, e.resource),
            format!(
                "add \"{}\" on {} to the task role's IAM policy (locally: to your profile's user or role)",
                e.action,
                resource_arn(subject, region)
            ),
        ),
        Kind::NotFound => not_found(code, subject, region, said),
        Kind::WrongKeySchema | Kind::Rejected => (
            format!(
                "{code}: the table's key is not the setup guide's: partition key StudentID of type S, no sort key (AWS said: {said})"
            ),
            "recreate the table with partition key StudentID (String) (`student-worker setup` in dev accounts), \
             or point DYNAMODB_TABLE_NAME at the right table"
                .to_owned(),
        ),
        Kind::Transient => (
            format!("{code}: {said}"),
            "a network or service problem: check that the AWS endpoint is reachable (and AWS_ENDPOINT_URL, if set), then run doctor again".to_owned(),
        ),
    };
    // A refused probe of a valid request can only mean a key that does not fit.
    let fatal = e.action() == Action::Stop || e.kind == Kind::Rejected;
    Explained { cause, fix, fatal }
}

fn not_found(code: &str, subject: Subject<'_>, region: &str, said: &str) -> (String, String) {
    match subject {
        Subject::Table(name) => (
            format!(
                "{code}: table {name} does not exist in region {region} (the region asked): a table name typo or a region mismatch (AWS said: {said})"
            ),
            "check DYNAMODB_TABLE_NAME and AWS_REGION: the table must be in the same region as the ECS task \
             (create it with partition key StudentID, type String)"
                .to_owned(),
        ),
        Subject::Queue(url, variable) => (
            format!(
                "{code}: queue {url} does not exist in region {region} (the region asked): a URL typo or a region mismatch (AWS said: {said})"
            ),
            format!("check {variable} and AWS_REGION: use the URL `aws sqs get-queue-url` prints in the task's region"),
        ),
        Subject::Credentials => (format!("{code}: {said}"), "check the credential configuration".to_owned()),
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
            "add \"dynamodb:PutItem\" on arn:aws:dynamodb:ap-northeast-2:<account-id>:table/Students to the task role's IAM policy (locally: to your profile's user or role)"
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
}
