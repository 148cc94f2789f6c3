//! `student-worker doctor`: the checklist of docs/setup.md as one command, with
//! the same configuration and SDK chain as `run`; and [`preflight`], the
//! fatal subset `run` performs before its first receive.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::timeout::TimeoutConfig;
use clap::Args;

use super::error::{DoctorFailed, PreflightError};
use super::report::{Check, Report};
use super::resources::{self, QueueAttributes};
use super::{identity, probes};
use crate::aws::explain::Subject;
use crate::aws::{region_of, trust};
use crate::commands::error::CommandError;
use crate::commands::output;
use crate::config::RunArgs;
use crate::config::error::NOT_SET;
use crate::config::run::DEFAULT_VISIBILITY_TIMEOUT_SECONDS;
use crate::config::{ConfigError, RunConfig};

/// One doctor call may take this long (SDK retries included) before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// `doctor`'s flags: `run`'s own (same variables), and `--json`.
#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// The configuration `run` would use.
    #[command(flatten)]
    pub run: RunArgs,
    /// Print the checks as one JSON object, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `doctor --help`'s examples.
pub const EXAMPLES: &str = "\
  student-worker doctor
  student-worker doctor --json | jq '.checks[] | select(.status == \"fail\")'
  AWS_PROFILE=ops AWS_REGION=ap-northeast-2 student-worker doctor";

/// The flags `doctor` reads: the resources it checks. `run`'s other
/// settings are still read from the environment, for the configuration
/// check, but have no place in doctor's help.
const DOCTOR_FLAGS: [&str; 5] = ["queue-url", "table-name", "dlq-url", "visibility-timeout-seconds", "json"];

/// `doctor`'s help lists only the flags it uses.
pub fn describe(cmd: clap::Command) -> clap::Command {
    let unused: Vec<String> = cmd
        .get_arguments()
        .filter(|a| !a.is_global_set() && a.get_long().is_some_and(|l| !DOCTOR_FLAGS.contains(&l)))
        .map(|a| a.get_id().to_string())
        .collect();
    unused.iter().fold(cmd, |cmd, id| cmd.mut_arg(id, |a| a.hide(true)))
}

/// Runs every check, prints them, and fails if any check failed.
pub async fn doctor(args: &DoctorArgs) -> Result<(), CommandError> {
    let report = match trust::load_defaults().await {
        Ok(sdk) => diagnose(&sdk, &args.run).await,
        Err(e) => untrusted(&args.run, e),
    };
    if args.json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| CommandError::Io { what: "printing the report".into(), source: e.into() })?;
        output::line(json)?;
    } else {
        output::line(report.to_text())?;
    }
    match report.ok {
        true => Ok(()),
        false => Err(DoctorFailed { failed: report.checks.iter().filter(|c| c.failed()).count() }.into()),
    }
}

/// The report when `AWS_CA_BUNDLE` is wrong: no call is made, since every
/// one of them would fail its TLS handshake for a reason the report could
/// not name.
fn untrusted(args: &RunArgs, e: ConfigError) -> Report {
    let cause = format!("{} {}", e.setting(), e.problem);
    Report::new(vec![
        configuration(args).0,
        Check::fail("trusted CAs", format!("{} is wrong", e.variable), cause, e.fix, true),
        Check::skip("region, credentials and resources", format!("not checked: {} is wrong", e.variable)),
    ])
}

/// What the checks are about, read leniently so that a broken configuration
/// still lets the other checks run.
#[derive(Debug, Clone, Default)]
struct Targets {
    table: Option<String>,
    queue: Option<String>,
    dlq: Option<String>,
    visibility_seconds: i32,
}

/// Every check, in order: configuration, region, credentials, table, queue,
/// redrive, visibility, DLQ, permissions.
pub async fn diagnose(sdk: &SdkConfig, args: &RunArgs) -> Report {
    let (config_check, targets) = configuration(args);
    let mut checks = vec![config_check, identity::region(sdk).await];
    if sdk.region().is_none() {
        checks.push(Check::skip("credentials and resources", "not checked: no region"));
        return Report::new(checks);
    }
    let region = region_of(sdk);
    checks.push(identity::endpoint(sdk, &region));
    let credentials = identity::credentials(sdk, &region).await;
    let have_credentials = !credentials.failed();
    checks.push(credentials);
    if !have_credentials {
        checks.push(Check::skip("table, queue and permissions", "not checked: no credentials"));
        return Report::new(checks);
    }
    checks.push(identity::account(sdk, CALL_TIMEOUT).await);
    if let Some(url) = &targets.queue {
        checks.extend(identity::queue_region(url, "SQS_QUEUE_URL", &region));
    }
    let (dynamodb, sqs) = clients(sdk);
    let table_ok = match &targets.table {
        Some(name) => push_ok(&mut checks, resources::table(&dynamodb, name, &region).await),
        None => push_ok(&mut checks, Check::skip("table", "not checked: DYNAMODB_TABLE_NAME is not set")),
    };
    let attrs = queue_checks(&sqs, &targets, &region, &mut checks).await;
    checks.extend(permission_checks(&dynamodb, &sqs, &targets, table_ok, attrs.is_some(), &region).await);
    Report::new(checks)
}

fn push_ok(checks: &mut Vec<Check>, check: Check) -> bool {
    let ok = check.status != super::report::Status::Fail && check.status != super::report::Status::Skip;
    checks.push(check);
    ok
}

fn configuration(args: &RunArgs) -> (Check, Targets) {
    match RunConfig::from_args(args) {
        Ok(c) => {
            let detail = format!(
                "DYNAMODB_TABLE_NAME={}, SQS_QUEUE_URL={}, SQS_DLQ_URL={}",
                c.table_name,
                c.queue_url,
                c.dlq_url.as_deref().unwrap_or("(unset)")
            );
            let targets = Targets {
                table: Some(c.table_name),
                queue: Some(c.queue_url),
                dlq: c.dlq_url,
                visibility_seconds: c.visibility_timeout_seconds,
            };
            (Check::pass("configuration", detail), targets)
        }
        Err(e) => {
            let given = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
            let targets = Targets {
                table: given(&args.handler.table_name),
                queue: given(&args.queue_url),
                dlq: given(&args.handler.dlq_url),
                visibility_seconds: given(&args.visibility_timeout_seconds)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(DEFAULT_VISIBILITY_TIMEOUT_SECONDS),
            };
            let cause = format!("{} {}", e.setting(), e.problem);
            let detail = match e.problem.as_str() {
                NOT_SET => format!("{} {NOT_SET}", e.variable),
                _ => format!("{} is wrong", e.variable),
            };
            (Check::fail("configuration", detail, cause, e.fix, true), targets)
        }
    }
}

/// Clients with a bound on every call, so a hung endpoint fails a check instead of hanging.
fn clients(sdk: &SdkConfig) -> (aws_sdk_dynamodb::Client, aws_sdk_sqs::Client) {
    let timeouts = TimeoutConfig::builder().operation_timeout(CALL_TIMEOUT).build();
    let dynamodb = aws_sdk_dynamodb::config::Builder::from(sdk).timeout_config(timeouts.clone()).build();
    let sqs = aws_sdk_sqs::config::Builder::from(sdk).timeout_config(timeouts).build();
    (aws_sdk_dynamodb::Client::from_conf(dynamodb), aws_sdk_sqs::Client::from_conf(sqs))
}

async fn queue_checks(
    sqs: &aws_sdk_sqs::Client,
    targets: &Targets,
    region: &str,
    checks: &mut Vec<Check>,
) -> Option<QueueAttributes> {
    let Some(url) = &targets.queue else {
        checks.push(Check::skip("queue", "not checked: SQS_QUEUE_URL is not set"));
        return None;
    };
    let (check, attrs) = resources::queue(sqs, url, "SQS_QUEUE_URL", region).await;
    checks.push(check);
    let redrive = attrs.as_ref().and_then(resources::redrive_of);
    match &attrs {
        Some(a) => {
            checks.push(resources::redrive(sqs, a, url, region).await);
            checks.push(resources::visibility(targets.visibility_seconds, a));
        }
        None => checks.push(Check::skip("redrive and visibility", "not checked: the queue check failed")),
    }
    if let Some(dlq) = &targets.dlq {
        checks.push(resources::forward_dlq(sqs, dlq, redrive.as_ref(), region).await);
    }
    attrs
}

async fn permission_checks(
    dynamodb: &aws_sdk_dynamodb::Client,
    sqs: &aws_sdk_sqs::Client,
    targets: &Targets,
    table_ok: bool,
    queue_ok: bool,
    region: &str,
) -> Vec<Check> {
    let mut checks = Vec::new();
    match (&targets.table, table_ok) {
        (Some(table), true) => {
            let subject = Subject::Table(table);
            let put = probes::put_item(dynamodb, table, region).await;
            checks.push(probes::permission("dynamodb:PutItem", subject, put, probes::DYNAMODB_HOW));
            let update = probes::update_item(dynamodb, table, region).await;
            checks.push(probes::permission("dynamodb:UpdateItem", subject, update, probes::DYNAMODB_HOW));
        }
        _ => checks.push(Check::skip("permission dynamodb:PutItem, UpdateItem", "not probed: the table check failed")),
    }
    match (&targets.queue, queue_ok) {
        (Some(url), true) => {
            let subject = Subject::Queue(url, "SQS_QUEUE_URL");
            checks.push(Check::pass("permission sqs:GetQueueAttributes", "allowed (the queue check read them)"));
            let change = probes::change_visibility(sqs, url, region).await;
            checks.push(probes::permission("sqs:ChangeMessageVisibility", subject, change, probes::SQS_HOW));
            let delete = probes::delete_message(sqs, url, region).await;
            checks.push(probes::permission("sqs:DeleteMessage", subject, delete, probes::SQS_HOW));
        }
        _ => checks.push(Check::skip("permission sqs:*", "not probed: the queue check failed")),
    }
    checks.push(Check::skip(
        "permission sqs:ReceiveMessage",
        "not probed: a receive takes a message and counts toward its maxReceiveCount; run's first receive proves it, and AccessDenied there stops run with the fix",
    ));
    if targets.dlq.is_some() {
        checks.push(Check::skip(
            "permission sqs:SendMessage (SQS_DLQ_URL)",
            "not probed: only sending a message proves it; the first forward does, and AccessDenied there stops run with the fix",
        ));
    }
    checks
}

/// The checks `run` makes before its first receive, with the actions the
/// worker itself needs only: credentials, the table (by the `PutItem`
/// probe), `UpdateItem`, the queue (by the visibility probe) and
/// `DeleteMessage`. A failure the worker could not run with is fatal; any
/// other (a network hiccup) is logged and `run` goes on.
pub async fn preflight(sdk: &SdkConfig, config: &RunConfig) -> Result<(), PreflightError> {
    let checks = preflight_checks(sdk, config).await;
    let mut inconclusive = 0;
    for check in checks.iter().filter(|c| c.failed() && !c.fatal) {
        inconclusive += 1;
        tracing::warn!(check = %check.check, cause = check.cause.as_deref().unwrap_or(""), "pre-flight check failed; starting anyway");
    }
    let failures: Vec<Check> = checks.into_iter().filter(|c| c.failed() && c.fatal).collect();
    if failures.is_empty() {
        // "Passed" only when every check did: after a failed one, the warning stands.
        if inconclusive == 0 {
            tracing::info!("pre-flight checks passed: credentials, table, queue, write and delete permissions");
        }
        return Ok(());
    }
    Err(PreflightError { failures })
}

async fn preflight_checks(sdk: &SdkConfig, config: &RunConfig) -> Vec<Check> {
    let region = region_of(sdk);
    let credentials = identity::credentials(sdk, &region).await;
    if credentials.failed() {
        return vec![credentials];
    }
    let (dynamodb, sqs) = clients(sdk);
    let table = &config.table_name;
    let url = &config.queue_url;
    // All four calls at once: start-up waits one round trip, not four. The
    // permission probes say nothing useful about a missing table or queue,
    // so then only the resource checks are reported.
    let (table_check, queue_check, update, delete) = tokio::join!(
        resources::table_by_probe(&dynamodb, table, &region),
        resources::queue_by_probe(&sqs, url, &region),
        probes::update_item(&dynamodb, table, &region),
        probes::delete_message(&sqs, url, &region),
    );
    let mut checks = vec![table_check, queue_check];
    if checks.iter().any(Check::failed) {
        return checks;
    }
    checks.push(probes::permission("dynamodb:UpdateItem", Subject::Table(table), update, probes::DYNAMODB_HOW));
    checks.push(probes::permission("sqs:DeleteMessage", Subject::Queue(url, "SQS_QUEUE_URL"), delete, probes::SQS_HOW));
    checks
}
