//! The first checks: which region the SDK resolved and where from, which
//! endpoint it talks to, whether the default credential chain finds
//! credentials and from which provider (environment, profile, ECS task role,
//! instance role, ...), which account they belong to, and whether the queue
//! URL's region is the one configured.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::meta::region::ProvideRegion;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::Credentials;
use aws_credential_types::credential_feature::AwsCredentialFeature as Feature;
use aws_credential_types::provider::ProvideCredentials;

use super::report::Check;
use crate::aws::error::AwsError;
use crate::aws::explain::{Subject, explain};
use crate::aws::trust::{self, CA_BUNDLE_VARIABLE};

/// ECS sets this in a task's environment when a task role is attached.
const ECS_CREDENTIALS_VARIABLES: [&str; 2] =
    ["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"];

/// The region check: the region and which setting gave it.
pub async fn region(sdk: &SdkConfig) -> Check {
    match sdk.region() {
        Some(region) => Check::pass("region", format!("{region} (from {})", region_source().await)),
        None => Check::fail(
            "region",
            "none resolved",
            "AWS_REGION and AWS_DEFAULT_REGION are unset and no profile names a region".into(),
            "set AWS_REGION to the region of the table and queue, e.g. ap-northeast-2 (ECS sets it for tasks)".into(),
            true,
        ),
    }
}

/// The SDK's region chain, worked out again to name the source: the
/// environment, then the profile file, then instance metadata.
async fn region_source() -> String {
    for variable in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
        if std::env::var(variable).is_ok_and(|v| !v.trim().is_empty()) {
            return variable.to_owned();
        }
    }
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".to_owned());
    if aws_config::profile::ProfileFileRegionProvider::new().region().await.is_some() {
        return format!("profile {profile} in ~/.aws/config");
    }
    "EC2 instance metadata".to_owned()
}

/// The endpoint check: where every call goes.
pub fn endpoint(sdk: &SdkConfig, region: &str) -> Check {
    match sdk.endpoint_url() {
        Some(url) => {
            let source = match std::env::var("AWS_ENDPOINT_URL") {
                Ok(v) if v.trim() == url => "AWS_ENDPOINT_URL",
                _ => "the profile's endpoint_url",
            };
            Check::pass("endpoint", format!("{url} (from {source}){}", trusting()))
        }
        None => Check::pass("endpoint", format!("AWS's own endpoints for {region}{}", trusting())),
    }
}

/// The extra CAs trusted, when `AWS_CA_BUNDLE` names some.
fn trusting() -> String {
    trust::bundle_path()
        .map_or_else(String::new, |path| format!(", trusting the CAs of {CA_BUNDLE_VARIABLE}={} too", path.display()))
}

/// The account check: whose account the credentials act in, by
/// `sts:GetCallerIdentity` (which no IAM policy can deny). When STS cannot
/// be reached it is a warning: the checks that matter go on without it.
pub async fn account(sdk: &SdkConfig, timeout: Duration) -> Check {
    let config = aws_sdk_sts::config::Builder::from(sdk)
        .timeout_config(TimeoutConfig::builder().operation_timeout(timeout).build())
        .build();
    match aws_sdk_sts::Client::from_conf(config).get_caller_identity().send().await {
        Ok(me) => Check::pass(
            "account",
            format!("{} as {}", me.account().unwrap_or("(unknown)"), me.arn().unwrap_or("(unknown)")),
        ),
        Err(e) => Check::warn(
            "account",
            "unknown",
            format!("sts:GetCallerIdentity failed: {}", aws_sdk_sts::error::DisplayErrorContext(&e)),
            "nothing to fix for the worker (it never calls STS); if the other checks fail too, check the network path to AWS".into(),
        ),
    }
}

/// The region a queue URL names: `https://sqs.REGION.amazonaws.com/…`, or
/// the legacy `https://REGION.queue.amazonaws.com/…`; `None` for any other
/// host (a local emulator).
pub fn region_in_queue_url(url: &str) -> Option<&str> {
    let host = url.split_once("://")?.1.split('/').next()?;
    let host = host.strip_suffix(".amazonaws.com").or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    host.strip_prefix("sqs.").or_else(|| host.strip_suffix(".queue")).filter(|r| !r.contains('.'))
}

/// A failure when `url` (the value of `variable`) names another region
/// than the one configured; nothing to say otherwise.
pub fn queue_region(url: &str, variable: &str, region: &str) -> Option<Check> {
    let named = region_in_queue_url(url)?;
    (named != region).then(|| {
        Check::fail(
            "queue region",
            format!("{variable} is in {named}, the worker is configured for {region}"),
            format!("the queue URL names region {named}, but calls go to {region} (AWS_REGION or the profile)"),
            format!("set AWS_REGION={named}, or use the queue in {region} (the table and queue must be in the task's region)"),
            false,
        )
    })
}

/// The credentials check: found, and from which provider.
pub async fn credentials(sdk: &SdkConfig, region: &str) -> Check {
    let found = match sdk.credentials_provider() {
        Some(provider) => provider.provide_credentials().await,
        None => Err(aws_credential_types::provider::error::CredentialsError::not_loaded("no credential provider")),
    };
    match found {
        Ok(creds) => found_check(&creds),
        Err(e) => {
            let x = explain(&AwsError::from_credentials(&e, "credentials", region), Subject::Credentials);
            Check::fail("credentials", "none found", x.cause, x.fix, x.fatal)
        }
    }
}

fn found_check(creds: &Credentials) -> Check {
    let source = source_of(creds);
    let in_ecs = ECS_CREDENTIALS_VARIABLES.iter().any(|v| std::env::var_os(v).is_some());
    if in_ecs && source.starts_with("environment") {
        return Check::warn(
            "credentials",
            format!("found, from {source}"),
            "keys in the environment shadow the ECS task role".into(),
            "remove AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the task definition; the task role is enough"
                .into(),
        );
    }
    Check::pass("credentials", format!("found, from {source}"))
}

/// Plain words for the provider that gave `creds`, from the features the
/// SDK's providers record on the credentials they make.
fn source_of(creds: &Credentials) -> String {
    let features = creds.get_property::<Vec<Feature>>().map_or(&[][..], Vec::as_slice);
    let has = |f: &Feature| features.contains(f);
    if has(&Feature::CredentialsHttp) {
        "the ECS task role (container credentials endpoint)".to_owned()
    } else if has(&Feature::CredentialsImds) {
        "the EC2 instance role (instance metadata)".to_owned()
    } else if [
        Feature::CredentialsStsAssumeRoleWebId,
        Feature::CredentialsEnvVarsStsWebIdToken,
        Feature::CredentialsProfileStsWebIdToken,
    ]
    .iter()
    .any(has)
    {
        "a web identity token (assumed role)".to_owned()
    } else if has(&Feature::CredentialsSso) || has(&Feature::CredentialsProfileSso) {
        format!("SSO ({})", profile_words())
    } else if has(&Feature::CredentialsStsAssumeRole) {
        format!("an assumed role ({})", profile_words())
    } else if has(&Feature::CredentialsProcess) || has(&Feature::CredentialsProfileProcess) {
        format!("credential_process ({})", profile_words())
    } else if has(&Feature::CredentialsEnvVars) {
        "environment variables (AWS_ACCESS_KEY_ID)".to_owned()
    } else if features.iter().any(|f| format!("{f:?}").starts_with("CredentialsProfile")) {
        profile_words()
    } else {
        "a provider set in code".to_owned()
    }
}

fn profile_words() -> String {
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".to_owned());
    format!("profile {profile} in ~/.aws")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_is_named_in_plain_words() {
        let mut creds = Credentials::new("a", "b", None, None, "test");
        assert_eq!(source_of(&creds), "a provider set in code");
        creds.get_property_mut_or_default::<Vec<Feature>>().push(Feature::CredentialsHttp);
        assert_eq!(source_of(&creds), "the ECS task role (container credentials endpoint)");
        let mut env = Credentials::new("a", "b", None, None, "test");
        env.get_property_mut_or_default::<Vec<Feature>>().push(Feature::CredentialsEnvVars);
        assert_eq!(source_of(&env), "environment variables (AWS_ACCESS_KEY_ID)");
    }

    #[test]
    fn a_queue_url_names_its_region_and_a_mismatch_fails() {
        let aws = "https://sqs.us-east-1.amazonaws.com/123456789012/students";
        assert_eq!(region_in_queue_url(aws), Some("us-east-1"));
        assert_eq!(region_in_queue_url("https://eu-west-1.queue.amazonaws.com/1/q"), Some("eu-west-1"));
        assert_eq!(region_in_queue_url("http://127.0.0.1:5000/123456789012/students"), None);
        assert!(queue_region(aws, "SQS_QUEUE_URL", "us-east-1").is_none());
        let check = queue_region(aws, "SQS_QUEUE_URL", "ap-northeast-2").expect("a mismatch");
        assert!(check.failed() && check.fix.as_deref().is_some_and(|f| f.contains("AWS_REGION=us-east-1")), "{check}");
    }
}
