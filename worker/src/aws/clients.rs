//! AWS clients from the SDK's default chain: region, credentials (the ECS
//! task role in production) and endpoints (`AWS_ENDPOINT_URL` for the local
//! emulator) all come from it; no keys in code.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;

use crate::config::{ConfigError, RunConfig};
use crate::limits::{DYNAMODB_ATTEMPT_TIMEOUT, SQS_ATTEMPT_SLACK};

/// Loads the shared SDK configuration; a missing region or a wrong
/// `AWS_CA_BUNDLE` stops start-up.
pub async fn load_sdk_config() -> Result<SdkConfig, ConfigError> {
    let sdk = super::trust::load_defaults().await?;
    if sdk.region().is_none() {
        return Err(ConfigError {
            variable: "AWS_REGION",
            flag: "",
            problem: "is not set and no profile names a region".into(),
            fix: "set AWS_REGION to the region of the table and queue, e.g. ap-northeast-2 (ECS sets it for tasks)"
                .into(),
        });
    }
    Ok(sdk)
}

/// The region the SDK resolved, for messages.
pub fn region_of(sdk: &SdkConfig) -> String {
    sdk.region().map_or_else(|| "(no region)".to_owned(), ToString::to_string)
}

/// The clients the runtimes use.
#[derive(Debug, Clone)]
pub struct Clients {
    /// SQS, with the SDK's standard retries on.
    pub sqs: aws_sdk_sqs::Client,
    /// DynamoDB, with SDK retries off: the worker's own backoff is the only retry layer.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// The region, for error messages.
    pub region: String,
}

impl Clients {
    /// Builds `run`'s clients from the shared configuration.
    ///
    /// Stalled-stream protection is off: it watches the throughput of
    /// request and response bodies, which here are a few KB at most, and its
    /// per-call bookkeeping cost 2-6 % of the CPU per message; a stalled
    /// answer is already cut short by the attempt timeouts below.
    pub fn for_worker(sdk: &SdkConfig, config: &RunConfig) -> Self {
        Self::new(sdk, Duration::from_secs(u64::try_from(config.wait_time_seconds).unwrap_or(0)))
    }

    /// The handler's clients for a runtime whose receives wait up to
    /// `long_poll` (zero for Lambda, whose event source mapping receives).
    pub fn new(sdk: &SdkConfig, long_poll: Duration) -> Self {
        let sqs_timeouts = TimeoutConfig::builder().operation_attempt_timeout(long_poll + SQS_ATTEMPT_SLACK).build();
        let sqs = aws_sdk_sqs::config::Builder::from(sdk)
            .timeout_config(sqs_timeouts)
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .build();
        let dynamodb_timeouts = TimeoutConfig::builder().operation_attempt_timeout(DYNAMODB_ATTEMPT_TIMEOUT).build();
        let dynamodb = aws_sdk_dynamodb::config::Builder::from(sdk)
            .retry_config(RetryConfig::disabled())
            .timeout_config(dynamodb_timeouts)
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .build();
        Self {
            sqs: aws_sdk_sqs::Client::from_conf(sqs),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb),
            region: region_of(sdk),
        }
    }
}
