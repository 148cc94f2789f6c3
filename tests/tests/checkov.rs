//! checkov, run on every deployment artifact it knows: both CloudFormation
//! templates and the Dockerfile end with 0 failed checks, at most two skips
//! in all (each on its resource in the template, with its reason), and the
//! encryption and IAM checks named below really ran (an intrinsic function
//! checkov cannot read makes it drop a check silently rather than fail it).
//! checkov comes from `<repo>/.venv-checkov` (`scripts/emulator install`; its
//! pins conflict with moto's); a missing checkov fails the tests. It runs
//! with `--skip-download`, or it tries to reach its vendor's service.
//!
//! Also the customer managed key: with `KmsKeyArn` empty the templates keep
//! today's encryption and grant no KMS permission; given, the queues, the
//! table and the log groups use that key, and each role (and the operators'
//! extra managed policy) gets exactly `kms:Decrypt` and `kms:GenerateDataKey`
//! on it, through SQS only.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use student_worker_tests::emulator::workspace_root;

const ECS: &str = "deploy/student-worker.cfn.json";
const LAMBDA: &str = "deploy/student-worker-lambda.cfn.json";
/// The most skips allowed over all the files checkov checks.
const MAX_SKIPS: usize = 2;
/// checkov's IAM policy checks (privilege escalation, data exfiltration,
/// credentials exposure, permissions management, unconstrained writes).
const IAM_CHECKS: [&str; 5] = ["CKV_AWS_107", "CKV_AWS_108", "CKV_AWS_109", "CKV_AWS_110", "CKV_AWS_111"];

/// What checkov said about one file.
#[derive(Debug)]
struct Scan {
    summary: Value,
    /// (check id, resource) of every passed check.
    passed: BTreeSet<(String, String)>,
    /// (check id, resource, reason) of every skipped check.
    skipped: Vec<(String, String, String)>,
    failed: Vec<Value>,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// checkov on one file of the repo, with one framework.
fn checkov(path: &str, framework: &str) -> Scan {
    let exe = workspace_root().join(".venv-checkov/bin/checkov");
    assert!(
        exe.exists(),
        "\n\n*** {} is missing: run `scripts/emulator install` (it installs scripts/requirements-checkov.txt) ***\n",
        exe.display()
    );
    let out = Command::new(&exe)
        .args(["--skip-download", "--output", "json", "--framework", framework, "--file", path])
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", exe.display()));
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("checkov {path}: not JSON ({e}):\n{}{}", text(&out.stdout), text(&out.stderr)));
    // One framework gives one report (a list when checkov ran several).
    let report = match report {
        Value::Array(mut reports) => {
            assert_eq!(reports.len(), 1, "checkov {path}: one report per framework: {reports:?}");
            reports.remove(0)
        }
        report => report,
    };
    assert_eq!(report["check_type"], framework, "checkov {path}: {report}");
    let results = &report["results"];
    let list = |key: &str| results[key].as_array().cloned().unwrap_or_default();
    let id_and_resource = |c: &Value| {
        (c["check_id"].as_str().expect("check_id").to_owned(), c["resource"].as_str().expect("resource").to_owned())
    };
    let scan = Scan {
        summary: report["summary"].clone(),
        passed: list("passed_checks").iter().map(id_and_resource).collect(),
        skipped: list("skipped_checks")
            .iter()
            .map(|c| {
                let (id, resource) = id_and_resource(c);
                (id, resource, c["check_result"]["suppress_comment"].as_str().unwrap_or("").to_owned())
            })
            .collect(),
        failed: list("failed_checks"),
    };
    let s = &scan.summary;
    println!(
        "checkov {path}: Passed checks: {}, Failed checks: {}, Skipped checks: {}",
        s["passed"], s["failed"], s["skipped"]
    );
    assert!(out.status.success(), "checkov {path} exited with {}:\n{}", out.status, text(&out.stderr));
    assert_eq!(s["parsing_errors"], 0, "checkov {path} could not parse it: {report}");
    let failed: Vec<String> =
        scan.failed.iter().map(|c| format!("{} {} ({})", c["check_id"], c["resource"], c["check_name"])).collect();
    assert!(failed.is_empty() && s["failed"] == 0, "checkov {path} failed checks:\n{}", failed.join("\n"));
    scan
}

fn assert_passed(scan: &Scan, path: &str, checks: &[&str], resource: &str) {
    for check in checks {
        assert!(
            scan.passed.contains(&((*check).to_owned(), resource.to_owned())),
            "checkov {path}: {check} did not run (or pass) on {resource}"
        );
    }
}

#[test]
fn checkov_passes_both_templates_and_the_dockerfile_with_at_most_two_skips_each_explained_in_its_template() {
    let ecs = checkov(ECS, "cloudformation");
    let lambda = checkov(LAMBDA, "cloudformation");
    let docker = checkov("Dockerfile", "dockerfile");
    assert!(
        docker.summary["passed"].as_u64().is_some_and(|n| n > 0),
        "the Dockerfile was checked: {:?}",
        docker.summary
    );

    // The four checks of the issue, and the same on the Lambda template.
    assert_passed(&ecs, ECS, &["CKV_AWS_27"], "AWS::SQS::Queue.Queue");
    assert_passed(&ecs, ECS, &["CKV_AWS_27"], "AWS::SQS::Queue.DeadLetterQueue");
    assert_passed(&ecs, ECS, &["CKV_AWS_119", "CKV_AWS_28"], "AWS::DynamoDB::Table.StudentsTable");
    assert_passed(&ecs, ECS, &["CKV_AWS_158", "CKV_AWS_66"], "AWS::Logs::LogGroup.LogGroup");
    assert_passed(&lambda, LAMBDA, &["CKV_AWS_158", "CKV_AWS_66"], "AWS::Logs::LogGroup.LambdaLogGroup");
    assert_passed(
        &lambda,
        LAMBDA,
        &["CKV_AWS_173", "CKV_AWS_115", "CKV_AWS_45"],
        "AWS::Lambda::Function.LambdaFunction",
    );
    // The roles' policies were read: the conditional KMS policy must not hide them from checkov.
    assert_passed(&ecs, ECS, &IAM_CHECKS, "AWS::IAM::Role.TaskRole");
    assert_passed(&lambda, LAMBDA, &IAM_CHECKS, "AWS::IAM::Role.LambdaRole");
    assert_passed(&ecs, ECS, &IAM_CHECKS, "AWS::IAM::ManagedPolicy.OperatorKmsPolicy");

    // The skips: each in its template, on its resource, with a reason.
    let mut skips = Vec::new();
    for (path, scan) in [(ECS, &ecs), (LAMBDA, &lambda), ("Dockerfile", &docker)] {
        for (id, resource, reason) in &scan.skipped {
            assert!(reason.len() > 40, "{path}: skip of {id} on {resource} without a real reason: {reason:?}");
            skips.push(format!("{path}: {id} on {resource}"));
        }
    }
    assert!(skips.len() <= MAX_SKIPS, "at most {MAX_SKIPS} skips in all: {skips:#?}");
    let lambda_template = json_file(LAMBDA);
    let declared = &lambda_template["Resources"]["LambdaFunction"]["Metadata"]["checkov"]["skip"];
    let declared: BTreeSet<String> =
        declared.as_array().into_iter().flatten().map(|s| s["id"].as_str().expect("id").to_owned()).collect();
    let taken: BTreeSet<String> = lambda.skipped.iter().map(|(id, _, _)| id.clone()).collect();
    assert_eq!(declared, taken, "the Lambda function's declared skips are the ones checkov took");
    assert_eq!(taken, BTreeSet::from(["CKV_AWS_116".to_owned(), "CKV_AWS_117".to_owned()]));
}

// ------------------------------------------------------- the customer key

fn json_file(path: &str) -> Value {
    let raw = std::fs::read_to_string(workspace_root().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// `value` as CloudFormation deploys it with `KmsKeyArn` given (`has_key`)
/// or empty: `Fn::If` on `HasKmsKey` resolved, `AWS::NoValue` dropped.
fn deployed(value: &Value, has_key: bool) -> Option<Value> {
    match value {
        Value::Object(map) if map.get("Ref") == Some(&json!("AWS::NoValue")) => None,
        Value::Object(map) if map.len() == 1 && map.get("Fn::If").is_some_and(|f| f[0] == "HasKmsKey") => {
            deployed(&map["Fn::If"][if has_key { 1 } else { 2 }], has_key)
        }
        Value::Object(map) => {
            Some(Value::Object(map.iter().filter_map(|(k, v)| Some((k.clone(), deployed(v, has_key)?))).collect()))
        }
        Value::Array(items) => Some(Value::Array(items.iter().filter_map(|v| deployed(v, has_key)).collect())),
        other => Some(other.clone()),
    }
}

/// The KMS policy each role gets with a key, and only then.
fn kms_policy(name: &str) -> Value {
    json!({
        "PolicyName": name,
        "PolicyDocument": {
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "UseTheQueuesKeyThroughSqs",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": {"Ref": "KmsKeyArn"},
                "Condition": {"StringEquals": {"kms:ViaService": {"Fn::Sub": "sqs.${AWS::Region}.amazonaws.com"}}}
            }]
        }
    })
}

/// Every `kms:` action anywhere in `value`.
fn kms_actions(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) if s.starts_with("kms:") => vec![s.clone()],
        Value::Object(map) => map.values().flat_map(kms_actions).collect(),
        Value::Array(items) => items.iter().flat_map(kms_actions).collect(),
        _ => Vec::new(),
    }
}

/// The parameter and its condition, the same in both templates.
fn assert_key_parameter(template: &Value) {
    let p = &template["Parameters"]["KmsKeyArn"];
    assert_eq!((&p["Type"], &p["Default"]), (&json!("String"), &json!("")), "{p}");
    assert_eq!(template["Conditions"]["HasKmsKey"], json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "KmsKeyArn"}, ""]}]}));
    // A key ARN or nothing: an alias would not match the roles' Resource.
    let pattern = p["AllowedPattern"].as_str().expect("AllowedPattern");
    assert!(pattern.starts_with("^$|") && pattern.contains(":key/"), "{pattern}");
}

/// A role's policies as deployed, with and without the key.
fn assert_role(template: &Value, role: &str, kms_policy_name: &str) {
    let policies = &template["Resources"][role]["Properties"]["Policies"];
    let without = deployed(policies, false).expect("policies");
    let with = deployed(policies, true).expect("policies");
    assert_eq!(without.as_array().map(Vec::len), Some(1), "{role}: one policy without a key");
    assert!(kms_actions(&without).is_empty(), "{role}: no KMS permission without a key: {without}");
    assert_eq!(with.as_array().map(Vec::len), Some(2), "{role}: the KMS policy is added with a key");
    assert_eq!(with[0], without[0], "{role}: the key changes nothing else");
    assert_eq!(with[1], kms_policy(kms_policy_name), "{role}");
    // The policy names exactly one Fn::If, on HasKmsKey, with nothing otherwise.
    let conditional: Vec<&Value> =
        policies.as_array().expect("Policies").iter().filter(|p| p.get("Fn::If").is_some()).collect();
    assert_eq!(conditional.len(), 1, "{role}");
    assert_eq!(conditional[0]["Fn::If"][0], "HasKmsKey");
    assert_eq!(conditional[0]["Fn::If"][2], json!({"Ref": "AWS::NoValue"}));
    assert_eq!(kms_actions(&json!(policies)), ["kms:Decrypt", "kms:GenerateDataKey"], "{role}: no other KMS grant");

    // parliament on the KMS policy with sample values.
    let document = serde_json::to_string(&with[1]["PolicyDocument"])
        .expect("JSON")
        .replace(
            r#"{"Ref":"KmsKeyArn"}"#,
            r#""arn:aws:kms:ap-northeast-2:123456789012:key/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d""#,
        )
        .replace(r#"{"Fn::Sub":"sqs.${AWS::Region}.amazonaws.com"}"#, r#""sqs.ap-northeast-2.amazonaws.com""#);
    let exe = workspace_root().join(".venv/bin/parliament");
    assert!(exe.exists(), "\n\n*** {} is missing: run `scripts/emulator install` ***\n", exe.display());
    let out = Command::new(&exe)
        .args(["--minimum_severity", "LOW", "--string", &document])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run parliament: {e}"));
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "parliament on {document}:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn the_ecs_template_encrypts_with_the_customer_key_when_given_and_keeps_todays_encryption_without() {
    let t = json_file(ECS);
    assert_key_parameter(&t);
    let r = &t["Resources"];
    let key = json!({"Ref": "KmsKeyArn"});
    for queue in ["Queue", "DeadLetterQueue"] {
        let props = &r[queue]["Properties"];
        let (without, with) = (deployed(props, false).expect("queue"), deployed(props, true).expect("queue"));
        assert_eq!((&without["SqsManagedSseEnabled"], without.get("KmsMasterKeyId")), (&json!(true), None), "{queue}");
        assert_eq!((with.get("SqsManagedSseEnabled"), &with["KmsMasterKeyId"]), (None, &key), "{queue}");
    }
    let sse = &r["StudentsTable"]["Properties"]["SSESpecification"];
    assert_eq!(deployed(sse, false), Some(json!({"SSEEnabled": true})), "the AWS managed key, as before");
    assert_eq!(deployed(sse, true), Some(json!({"SSEEnabled": true, "SSEType": "KMS", "KMSMasterKeyId": key})));
    let logs = &r["LogGroup"]["Properties"];
    assert_eq!(deployed(logs, false).expect("logs").get("KmsKeyId"), None);
    assert_eq!(deployed(logs, true).expect("logs")["KmsKeyId"], key);
    assert_role(&t, "TaskRole", "student-worker-task-kms");
    // Operators' `dlq` receives and sends through SQS too: their own policy, only with a key.
    let operator = &r["OperatorKmsPolicy"];
    assert_eq!((&operator["Type"], &operator["Condition"]), (&json!("AWS::IAM::ManagedPolicy"), &json!("HasKmsKey")));
    assert_eq!(operator["Properties"]["ManagedPolicyName"], "student-worker-operator-kms");
    assert_eq!(operator["Properties"]["PolicyDocument"], kms_policy("")["PolicyDocument"]);
    // Nothing else grants KMS: not the execution role (CloudWatch Logs encrypts
    // with its own principal), not the operator policy kept equal to iam/.
    for (id, resource) in r.as_object().expect("Resources") {
        if !["TaskRole", "LambdaRole", "OperatorKmsPolicy"].contains(&id.as_str()) {
            assert!(kms_actions(resource).is_empty(), "{id} grants KMS");
        }
    }
}

#[test]
fn the_lambda_template_encrypts_its_logs_and_environment_with_the_key_and_lets_its_role_use_it_through_sqs() {
    let t = json_file(LAMBDA);
    assert_key_parameter(&t);
    let r = &t["Resources"];
    let key = json!({"Ref": "KmsKeyArn"});
    let logs = &r["LambdaLogGroup"]["Properties"];
    assert_eq!(deployed(logs, false).expect("logs").get("KmsKeyId"), None);
    assert_eq!(deployed(logs, true).expect("logs")["KmsKeyId"], key);
    let function = &r["LambdaFunction"]["Properties"];
    assert_eq!(deployed(function, false).expect("function").get("KmsKeyArn"), None);
    assert_eq!(deployed(function, true).expect("function")["KmsKeyArn"], key);
    // Reserved concurrency equal to the mapping's cap: never below it (that would throttle the mapping).
    assert_eq!(
        function["ReservedConcurrentExecutions"],
        r["LambdaEventSourceMapping"]["Properties"]["ScalingConfig"]["MaximumConcurrency"]
    );
    assert_role(&t, "LambdaRole", "student-worker-lambda-kms");
    for (id, resource) in r.as_object().expect("Resources") {
        assert!(id == "LambdaRole" || kms_actions(resource).is_empty(), "{id} grants KMS");
    }
}
