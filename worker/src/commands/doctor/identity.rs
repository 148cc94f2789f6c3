//! The first two checks: which region the SDK resolved and where from, and
//! whether the default credential chain finds credentials, and from which
//! provider (environment, profile, ECS task role, instance role, ...).

use aws_config::SdkConfig;
use aws_config::meta::region::ProvideRegion;
use aws_credential_types::Credentials;
use aws_credential_types::credential_feature::AwsCredentialFeature as Feature;
use aws_credential_types::provider::ProvideCredentials;

use super::report::Check;
use crate::aws::error::AwsError;
use crate::aws::explain::{Subject, explain};

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
}
