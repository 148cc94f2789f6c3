//! `student-worker setup`: idempotently creates what the worker needs in a dev
//! or test account: table `Students` (key `StudentID` S, on demand), the source
//! queue, its DLQ (both created with SQS-managed server-side encryption), and
//! the redrive policy between them. Prints the env lines `run` reads.

use aws_config::SdkConfig;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use aws_sdk_sqs::types::QueueAttributeName;
use clap::Args;

use student_shared::item::attr::STUDENT_ID;

use super::error::CommandError;
use super::output;
use crate::aws::error::{AwsError, Kind, Resource};
use crate::aws::region_of;
use crate::aws::table::key_schema_mismatch;
use crate::config::run::DEFAULT_VISIBILITY_TIMEOUT_SECONDS;
use crate::limits::MAX_VISIBILITY_TIMEOUT_SECONDS;

/// The DLQ keeps messages for the SQS maximum, 14 days, to give operators time.
const DLQ_RETENTION_SECONDS: &str = "1209600";

/// SQS's largest redrive `maxReceiveCount`.
const MAX_RECEIVE_COUNT: u32 = 1000;
/// The redrive `maxReceiveCount` unless asked otherwise (the retry budget in docs/reliability.md assumes it).
const DEFAULT_MAX_RECEIVE_COUNT: u32 = 5;

/// `setup`'s flags in `cmd` with their ranges, written from the limits.
pub fn describe(cmd: clap::Command) -> clap::Command {
    cmd.mut_arg("max_receive_count", |a| {
        a.help(format!("Receives before SQS moves a message to the DLQ, 1–{MAX_RECEIVE_COUNT}"))
    })
    .mut_arg("visibility_timeout_seconds", |a| {
        a.help(format!(
            "The queue's default visibility timeout, 0–{MAX_VISIBILITY_TIMEOUT_SECONDS} (`run` asks for its own on each receive)"
        ))
    })
}

/// `setup`'s flags.
#[derive(Debug, Clone, Args)]
pub struct SetupArgs {
    /// Table to create.
    #[arg(long, env = "DYNAMODB_TABLE_NAME", default_value = "Students")]
    pub table_name: String,
    /// Source queue name (a `.fifo` name makes FIFO queues).
    #[arg(long, default_value = "students")]
    pub queue_name: String,
    /// DLQ name [default: <queue>-dlq].
    #[arg(long)]
    pub dlq_name: Option<String>,
    /// Receives before SQS moves a message to the DLQ.
    #[arg(long, default_value_t = DEFAULT_MAX_RECEIVE_COUNT, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_RECEIVE_COUNT)))]
    pub max_receive_count: u32,
    /// The queue's default visibility timeout (`run` asks for its own on each receive).
    #[arg(long, default_value_t = DEFAULT_VISIBILITY_TIMEOUT_SECONDS, value_parser = clap::value_parser!(i32).range(0..=i64::from(MAX_VISIBILITY_TIMEOUT_SECONDS)))]
    pub visibility_timeout_seconds: i32,
}

impl SetupArgs {
    fn dlq_name(&self) -> String {
        self.dlq_name.clone().unwrap_or_else(|| match self.queue_name.strip_suffix(".fifo") {
            Some(base) => format!("{base}-dlq.fifo"),
            None => format!("{}-dlq", self.queue_name),
        })
    }
}

/// What `setup` made (or found).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupOutput {
    /// The table.
    pub table_name: String,
    /// The source queue's URL.
    pub queue_url: String,
    /// The DLQ's URL.
    pub dlq_url: String,
}

/// `setup --help`'s examples.
pub const EXAMPLES: &str = "\
  student-worker setup
  export $(student-worker setup)
  student-worker setup --queue-name students.fifo --max-receive-count 10";

/// Runs `setup` and prints `DYNAMODB_TABLE_NAME=…`, `SQS_QUEUE_URL=…`, `SQS_DLQ_URL=…`.
pub async fn setup(sdk: &SdkConfig, args: &SetupArgs) -> Result<(), CommandError> {
    let out = ensure(sdk, args).await?;
    output::line(format_args!("DYNAMODB_TABLE_NAME={}", out.table_name))?;
    output::line(format_args!("SQS_QUEUE_URL={}", out.queue_url))?;
    output::line(format_args!("SQS_DLQ_URL={}", out.dlq_url))?;
    Ok(())
}

/// Creates whatever is missing; safe to run again.
pub async fn ensure(sdk: &SdkConfig, args: &SetupArgs) -> Result<SetupOutput, AwsError> {
    let region = region_of(sdk);
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    ensure_table(&dynamodb, &args.table_name, &region).await?;
    let fifo = args.queue_name.ends_with(".fifo");
    let dlq_url = ensure_queue(&sqs, &args.dlq_name(), fifo, &region).await?;
    let dlq_arn = queue_arn(&sqs, &dlq_url, &region).await?;
    let queue_url = ensure_queue(&sqs, &args.queue_name, fifo, &region).await?;
    let redrive = serde_json::json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": args.max_receive_count });
    let set = |url: &str, name: QueueAttributeName, value: String| {
        let resource = Resource::queue(url, &region);
        let call = sqs.set_queue_attributes().queue_url(url.to_owned()).attributes(name, value).send();
        async move { call.await.map(|_| ()).map_err(|e| resource.error(&e, "sqs:SetQueueAttributes")) }
    };
    set(&queue_url, QueueAttributeName::RedrivePolicy, redrive.to_string()).await?;
    set(&queue_url, QueueAttributeName::VisibilityTimeout, args.visibility_timeout_seconds.to_string()).await?;
    set(&dlq_url, QueueAttributeName::MessageRetentionPeriod, DLQ_RETENTION_SECONDS.to_owned()).await?;
    tracing::info!(table = %args.table_name, %queue_url, %dlq_url, max_receive_count = args.max_receive_count, "setup complete");
    Ok(SetupOutput { table_name: args.table_name.clone(), queue_url, dlq_url })
}

async fn ensure_table(dynamodb: &aws_sdk_dynamodb::Client, table: &str, region: &str) -> Result<(), AwsError> {
    let resource = Resource::table(table, region);
    let created = dynamodb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(STUDENT_ID)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| resource.local_error(Kind::Rejected, "dynamodb:CreateTable", e))?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(STUDENT_ID)
                .key_type(KeyType::Hash)
                .build()
                .map_err(|e| resource.local_error(Kind::Rejected, "dynamodb:CreateTable", e))?,
        )
        .send()
        .await;
    match created {
        Ok(_) => tracing::info!(table, "table created"),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {
            check_key_schema(dynamodb, table, &resource).await?;
            tracing::info!(table, "table exists with key {STUDENT_ID} (S)");
        }
        Err(e) => return Err(resource.error(&e, "dynamodb:CreateTable")),
    }
    dynamodb
        .wait_until_table_exists()
        .table_name(table)
        .wait(std::time::Duration::from_secs(120))
        .await
        .map(|_| ())
        .map_err(|e| resource.local_error(Kind::Transient, "dynamodb:DescribeTable", e))
}

/// An existing table must have the worker's key: `StudentID` (S), no sort key.
async fn check_key_schema(
    dynamodb: &aws_sdk_dynamodb::Client,
    table_name: &str,
    table: &Resource,
) -> Result<(), AwsError> {
    let described = dynamodb
        .describe_table()
        .table_name(table_name)
        .send()
        .await
        .map_err(|e| table.error(&e, "dynamodb:DescribeTable"))?;
    match described.table.as_ref().and_then(key_schema_mismatch) {
        Some(found) => Err(table.local_error(Kind::WrongKeySchema, "dynamodb:CreateTable", found)),
        None => Ok(()),
    }
}

async fn ensure_queue(sqs: &aws_sdk_sqs::Client, name: &str, fifo: bool, region: &str) -> Result<String, AwsError> {
    if let Ok(found) = sqs.get_queue_url().queue_name(name).send().await
        && let Some(url) = found.queue_url
    {
        return Ok(url);
    }
    // SQS-managed SSE, asked for explicitly rather than left to the
    // account's default for new queues.
    let mut create = sqs.create_queue().queue_name(name).attributes(QueueAttributeName::SqsManagedSseEnabled, "true");
    if fifo {
        create = create.attributes(QueueAttributeName::FifoQueue, "true");
    }
    let out = create.send().await.map_err(|e| Resource::queue(name, region).error(&e, "sqs:CreateQueue"))?;
    tracing::info!(queue = name, "queue created");
    Ok(out.queue_url.unwrap_or_default())
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str, region: &str) -> Result<String, AwsError> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| Resource::queue(url, region).error(&e, "sqs:GetQueueAttributes"))?;
    Ok(out.attributes.unwrap_or_default().remove(&QueueAttributeName::QueueArn).unwrap_or_default())
}
