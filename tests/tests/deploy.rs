//! The deployment artifacts, each checked by a real tool: the Dockerfile by
//! hadolint and by replaying its build stage without Docker, the task definition by boto3's ECS model and the emulator's
//! RegisterTaskDefinition, the IAM policies by parliament and by recording
//! every AWS call `run` and `healthcheck` (task role) and `doctor` and `dlq`
//! (operator) make, the CloudFormation template by cfn-lint.
//! The linters come from the repo's `.venv` (`scripts/emulator install`); a
//! missing one fails the test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use clap::CommandFactory;
use serde_json::{Value, json};
use student_worker::cli::Cli;
use student_worker::commands::doctor::probes::SENTINEL_STUDENT_ID;
use student_worker_tests::emulator::{python, workspace_root};
use student_worker_tests::world::{World, worker_binary};

/// The placeholders an operator fills in (docs/deploy.md), and test values for them.
const PLACEHOLDERS: [(&str, &str); 3] = [
    ("${AWS_ACCOUNT_ID}", "123456789012"),
    ("${AWS_REGION}", "ap-northeast-2"),
    ("${IMAGE_URI}", "123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/student-worker:0.1.0"),
];
/// Names the AWS SDK's default chain reads (region, endpoints, credentials are never set in a task definition).
const SDK_ENV: [&str; 1] = ["AWS_REGION"];
/// The User-Agent app id that marks the worker's own calls in the emulator's recording.
const APP_ID: &str = "iam-recording";

fn root_file(path: &str) -> PathBuf {
    workspace_root().join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root_file(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn json_file(path: &str) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// `text` with every placeholder replaced by its test value.
fn filled(text: &str) -> String {
    PLACEHOLDERS.iter().fold(text.to_owned(), |t, (placeholder, value)| t.replace(placeholder, value))
}

/// A linter from the repo's virtualenv; a missing one is a loud failure.
fn venv_tool(name: &str) -> Command {
    let path = workspace_root().join(".venv/bin").join(name);
    assert!(
        path.exists(),
        "\n\n*** {} is missing: run `scripts/emulator install` (it installs the pinned linters) ***\n",
        path.display()
    );
    Command::new(path)
}

fn output(mut command: Command) -> Output {
    command.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("run {command:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------- Dockerfile

/// Instructions of a Dockerfile (continuations joined, comments dropped).
fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                let (op, args) = current.trim().split_once(' ').unwrap_or((current.trim(), ""));
                out.push((op.to_ascii_uppercase(), args.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

#[test]
fn dockerfile_is_hadolint_clean_and_builds_a_minimal_non_root_image_that_runs_the_worker() {
    let mut hadolint = venv_tool("hadolint");
    hadolint.args(["--no-color", "--failure-threshold", "style"]).arg(root_file("Dockerfile"));
    let out = output(hadolint);
    assert!(out.status.success(), "hadolint findings:\n{}{}", text(&out.stdout), text(&out.stderr));

    let steps = instructions(&read("Dockerfile"));
    let froms: Vec<&str> = steps.iter().filter(|(op, _)| op == "FROM").map(|(_, a)| a.as_str()).collect();
    assert_eq!(froms.len(), 2, "a build stage and a runtime stage: {froms:?}");
    assert!(froms[0].starts_with("rust:") && froms[0].ends_with(" AS build"), "{froms:?}");
    assert!(
        froms[1].starts_with("gcr.io/distroless/") || froms[1] == "scratch",
        "the runtime is distroless or scratch: {froms:?}"
    );
    assert!(froms.iter().all(|f| f.contains(':') || *f == "scratch"), "images pinned by tag: {froms:?}");
    let runtime = steps.iter().rposition(|(op, _)| op == "FROM").expect("runtime stage");
    let runs: Vec<&str> = steps[..runtime].iter().filter(|(op, _)| op == "RUN").map(|(_, a)| a.as_str()).collect();
    assert!(runs.len() >= 2, "dependencies build in their own layer before the sources are copied");
    assert!(runs.iter().all(|r| !r.contains("cargo build") || r.contains("--locked")), "{runs:?}");

    let final_stage = &steps[runtime + 1..];
    let copies: Vec<&str> = final_stage.iter().filter(|(op, _)| op == "COPY").map(|(_, a)| a.as_str()).collect();
    assert_eq!(copies.len(), 1, "the runtime holds only the binary (CA certificates come with the base): {copies:?}");
    assert!(copies[0].starts_with("--from=build "), "{copies:?}");
    let user = final_stage.iter().find(|(op, _)| op == "USER").map(|(_, a)| a.as_str()).expect("USER");
    let uid: u32 = user.split(':').next().and_then(|u| u.parse().ok()).expect("numeric uid");
    assert_ne!(uid, 0, "not root");
    let entry = final_stage.iter().find(|(op, _)| op == "ENTRYPOINT").map(|(_, a)| a.as_str()).expect("ENTRYPOINT");
    let cmd = final_stage.iter().find(|(op, _)| op == "CMD").map(|(_, a)| a.as_str()).expect("CMD");
    let entry: Vec<String> = serde_json::from_str(entry).expect("exec-form ENTRYPOINT (no shell)");
    let cmd: Vec<String> = serde_json::from_str(cmd).expect("exec-form CMD");
    assert_eq!((entry[0].as_str(), cmd.as_slice()), ("/usr/local/bin/student-worker", ["run".to_owned()].as_slice()));
    assert!(copies[0].ends_with(&entry[0]), "the binary is copied where ENTRYPOINT starts it: {copies:?}");
}

#[test]
fn the_build_context_holds_what_the_dockerfile_copies() {
    let allowed = build_context_paths();
    for (op, args) in instructions(&read("Dockerfile")) {
        if op != "COPY" || args.starts_with("--from") {
            continue;
        }
        let sources: Vec<&str> = args.split_whitespace().collect();
        for source in &sources[..sources.len() - 1] {
            assert!(root_file(source).exists(), "COPY {source}: no such path in the repository");
            let kept = allowed.iter().any(|a| a == source || a.starts_with(&format!("{source}/")));
            assert!(kept, "COPY {source}: .dockerignore keeps it out of the build context");
        }
    }
}

/// The repository paths `.dockerignore` lets into the build context: it
/// shuts everything out (`*`) and lets exceptions back in (`!path`).
fn build_context_paths() -> Vec<String> {
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "*"), "everything else stays out of the context");
    ignore.lines().filter_map(|l| l.trim().strip_prefix('!')).map(|p| p.trim_end_matches('/').to_owned()).collect()
}

/// Copies a file, or a directory with everything under it.
fn copy_path(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
        for entry in std::fs::read_dir(from).expect("read_dir").map(|e| e.expect("dir entry")) {
            copy_path(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir parent");
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
    }
}

/// `path` of the image's file system, under the replay's stand-in root.
fn in_root(root: &Path, workdir: &Path, path: &str) -> PathBuf {
    if path.starts_with('/') { root.join(path.trim_start_matches('/')) } else { workdir.join(path) }
}

#[test]
fn the_build_stage_replayed_without_docker_builds_a_worker_that_runs() {
    // No Docker engine runs here, so the build stage's WORKDIR, COPY and RUN
    // steps are replayed with `sh` in a stand-in root, on exactly what
    // .dockerignore lets into the context: a workspace member or a source
    // left out of the context fails here as it would in `docker build`. Only
    // the release profile is made cheap (no LTO, no optimisation): the steps
    // and the manifests are the Dockerfile's own.
    let steps = instructions(&read("Dockerfile"));
    let runtime = steps.iter().rposition(|(op, _)| op == "FROM").expect("runtime stage");
    let (_, from_build) = steps[runtime..]
        .iter()
        .find(|(op, args)| op == "COPY" && args.starts_with("--from=build "))
        .expect("the runtime copies the binary from the build stage");
    let built = from_build.split_whitespace().nth(1).expect("COPY --from=build SOURCE DEST").to_owned();

    let scratch = std::env::temp_dir().join(format!("student-worker-docker-replay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let (context, root) = (scratch.join("context"), scratch.join("root"));
    for path in build_context_paths() {
        copy_path(&root_file(&path), &context.join(&path));
    }
    let mut workdir = root.clone();
    for (op, args) in &steps[1..runtime] {
        match op.as_str() {
            "WORKDIR" => {
                workdir = in_root(&root, &workdir, args);
                std::fs::create_dir_all(&workdir).expect("WORKDIR");
            }
            "COPY" => {
                let parts: Vec<&str> = args.split_whitespace().collect();
                let (sources, dest) = parts.split_at(parts.len() - 1);
                for source in sources {
                    let into = in_root(&root, &workdir, dest[0]);
                    let target = if dest[0].ends_with('/') && !context.join(source).is_dir() {
                        into.join(Path::new(source).file_name().expect("file name"))
                    } else {
                        into
                    };
                    assert!(context.join(source).exists(), "COPY {source}: not in the build context");
                    copy_path(&context.join(source), &target);
                }
            }
            "RUN" => {
                let script =
                    args.replace(&format!(" {built}"), &format!(" {}", in_root(&root, &workdir, &built).display()));
                let mut sh = Command::new("sh");
                sh.arg("-ec").arg(&script).current_dir(&workdir).env_remove("CARGO_TARGET_DIR");
                sh.env("CARGO_PROFILE_RELEASE_LTO", "false")
                    .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "0")
                    .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "16")
                    .env("CARGO_PROFILE_RELEASE_DEBUG", "false");
                student_worker_tests::world::strip_test_crate_env(&mut sh);
                let out = output(sh);
                assert!(out.status.success(), "RUN {script}\n{}{}", text(&out.stdout), text(&out.stderr));
            }
            other => panic!("the replay does not know the build stage's {other} instruction: teach it"),
        }
    }
    let binary = in_root(&root, &workdir, &built);
    let out = output({
        let mut c = Command::new(&binary);
        c.arg("--version");
        c
    });
    assert!(out.status.success() && text(&out.stdout).starts_with("student-worker "), "{}", text(&out.stderr));
    let _ = std::fs::remove_dir_all(&scratch);
}

// ---------------------------------------------------------- task definition

/// Every environment variable the worker's command line reads (`run`'s flags and the global ones).
fn worker_env_names() -> BTreeSet<String> {
    let cli = Cli::command();
    let run = cli.find_subcommand("run").expect("run subcommand");
    cli.get_arguments()
        .chain(run.get_arguments())
        .filter_map(|arg| arg.get_env().map(|e| e.to_string_lossy().into_owned()))
        .chain(["RUST_LOG".to_owned()])
        .collect()
}

fn container(task_definition: &Value) -> &Value {
    let containers = task_definition["containerDefinitions"].as_array().expect("containerDefinitions");
    assert_eq!(containers.len(), 1);
    &containers[0]
}

fn environment(container: &Value) -> BTreeMap<String, String> {
    container["environment"]
        .as_array()
        .expect("environment")
        .iter()
        .map(|e| (e["name"].as_str().expect("name").to_owned(), e["value"].as_str().expect("value").to_owned()))
        .collect()
}

#[test]
fn task_definition_configures_the_worker_for_fargate_without_secrets() {
    let raw = read("task-definition.json");
    let placeholders: BTreeSet<&str> =
        raw.match_indices("${").map(|(i, _)| &raw[i..=i + raw[i..].find('}').expect("closed placeholder")]).collect();
    let expected: BTreeSet<&str> = PLACEHOLDERS.iter().map(|(p, _)| *p).collect();
    assert_eq!(placeholders, expected, "the only placeholders are account, region and image");

    let td: Value = serde_json::from_str(&raw).expect("JSON");
    assert_eq!(td["requiresCompatibilities"], json!(["FARGATE"]));
    assert_eq!(td["networkMode"], "awsvpc");
    assert_eq!((td["cpu"].as_str(), td["memory"].as_str()), (Some("256"), Some("512")));
    assert!(td["taskRoleArn"].as_str().is_some_and(|a| a.ends_with(":role/ecs-task-dynamodb-role")), "{td}");
    assert!(td["executionRoleArn"].as_str().is_some_and(|a| a.contains(":role/")), "{td}");
    let c = container(&td);
    assert_eq!(c["readonlyRootFilesystem"], true);
    let uid: u32 = c["user"].as_str().and_then(|u| u.split(':').next()?.parse().ok()).expect("numeric user");
    assert_ne!(uid, 0, "not root");
    assert!(c.get("secrets").is_none(), "the worker needs no secrets: the task role gives the credentials");

    let env = environment(c);
    let known = worker_env_names();
    for name in env.keys() {
        assert!(
            known.contains(name) || SDK_ENV.contains(&name.as_str()),
            "{name} is read by neither the worker nor the SDK"
        );
        let upper = name.to_ascii_uppercase();
        assert!(
            !["KEY", "SECRET", "TOKEN", "PASSWORD"].iter().any(|s| upper.contains(s)),
            "{name}: no credentials in the environment"
        );
    }
    assert_eq!(env["DYNAMODB_TABLE_NAME"], "Students");
    for required in ["SQS_QUEUE_URL", "SQS_DLQ_URL", "AWS_REGION"] {
        assert!(env.contains_key(required), "{required} missing");
    }

    let grace: u64 = env["WORKER_SHUTDOWN_GRACE_SECONDS"].parse().expect("grace");
    assert!(c["stopTimeout"].as_u64().expect("stopTimeout") > grace, "ECS must wait out the drain");
    assert_eq!(
        c["healthCheck"]["command"],
        json!(["CMD", "/usr/local/bin/student-worker", "healthcheck"]),
        "exec form: there is no shell in the image"
    );
    let health_file = &env["WORKER_HEALTH_FILE"];
    let writable = c["mountPoints"].as_array().expect("mountPoints").iter().any(|m| {
        m["readOnly"] == false && m["containerPath"].as_str().is_some_and(|p| health_file.starts_with(&format!("{p}/")))
    });
    assert!(writable, "the health file {health_file} must be on a writable volume (readonlyRootFilesystem)");
    let logs = &c["logConfiguration"];
    assert_eq!(logs["logDriver"], "awslogs");
    assert!(logs["options"]["awslogs-group"].as_str().is_some_and(|g| !g.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_definition_registers_with_ecs_through_boto3() {
    let w = World::new().await;
    let file = std::env::temp_dir().join(format!("student-worker-task-definition-{}.json", std::process::id()));
    std::fs::write(&file, filled(&read("task-definition.json"))).expect("write");
    let mut register = Command::new(python());
    register.arg(root_file("tests/e2e/register_task_definition.py")).arg(&file).envs(w.emulator.env_vars());
    let out = output(register);
    assert!(out.status.success(), "RegisterTaskDefinition refused it:\n{}", text(&out.stderr));
    let registered: Value = serde_json::from_slice(&out.stdout).expect("registered task definition");
    assert_eq!(registered["family"], "student-worker");
    assert_eq!(registered["revision"], 1);
    assert!(registered["taskDefinitionArn"].as_str().is_some_and(|a| a.contains(":task-definition/student-worker:1")));
    let c = container(&registered);
    assert_eq!(c["image"], PLACEHOLDERS[2].1);
    assert_eq!(environment(c)["SQS_QUEUE_URL"], "https://sqs.ap-northeast-2.amazonaws.com/123456789012/students");

    // The same client refuses a definition with a mistyped field: the check is real.
    let mut broken: Value = serde_json::from_str(&filled(&read("task-definition.json"))).expect("JSON");
    broken["containerDefinitions"][0]["readOnlyRootFileSystem"] = json!(true);
    std::fs::write(&file, broken.to_string()).expect("write");
    let mut register = Command::new(python());
    register.arg(root_file("tests/e2e/register_task_definition.py")).arg(&file).envs(w.emulator.env_vars());
    let out = output(register);
    assert!(!out.status.success() && text(&out.stderr).contains("readOnlyRootFileSystem"), "{}", text(&out.stderr));
    let _ = std::fs::remove_file(file);
}

// ---------------------------------------------------------------------- IAM

/// (IAM action, resource name) pairs allowed by a policy file.
fn allowed(policy: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for statement in policy["Statement"].as_array().expect("Statement") {
        assert_eq!(statement["Effect"], "Allow");
        let list = |v: &Value| -> Vec<String> {
            match v {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a.iter().map(|s| s.as_str().expect("string").to_owned()).collect(),
                other => panic!("not a string or list: {other}"),
            }
        };
        for action in list(&statement["Action"]) {
            for resource in list(&statement["Resource"]) {
                out.insert((action.clone(), resource_name(&resource)));
            }
        }
    }
    out
}

/// `arn:aws:sqs:REGION:ACCOUNT:students` → `students`; `...:table/Students` → `Students`.
fn resource_name(arn: &str) -> String {
    let last = arn.rsplit(':').next().unwrap_or(arn);
    last.strip_prefix("table/").unwrap_or(last).to_owned()
}

#[test]
fn policies_pass_parliament_and_grant_no_wildcards() {
    for path in ["iam/task-role-policy.json", "iam/operator-policy.json"] {
        let mut parliament = venv_tool("parliament");
        parliament.args(["--minimum_severity", "LOW"]);
        let policy = filled(&read(path));
        let out = {
            let mut child = parliament
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run parliament");
            std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), policy.as_bytes()).expect("feed");
            child.wait_with_output().expect("parliament")
        };
        assert!(out.status.success(), "{path}: parliament findings:\n{}{}", text(&out.stdout), text(&out.stderr));
        for (action, resource) in allowed(&json_file(path)) {
            assert!(!action.contains('*') && !resource.contains('*'), "{path}: wildcard in {action} on {resource}");
        }
    }
    let trust = json_file("iam/task-role-trust-policy.json");
    let statement = &trust["Statement"][0];
    assert_eq!(trust["Statement"].as_array().map(Vec::len), Some(1));
    assert_eq!(statement["Principal"], json!({"Service": "ecs-tasks.amazonaws.com"}));
    assert_eq!(statement["Action"], "sts:AssumeRole");
    assert_eq!(statement["Condition"]["StringEquals"]["aws:SourceAccount"], "${AWS_ACCOUNT_ID}");
}

/// The IAM action a recorded request needs: batch calls are authorised by
/// their single-message action (SQS has no `DeleteMessageBatch` permission).
fn iam_action(target: &str) -> String {
    let (prefix, operation) = target.split_once('.').expect("Service.Operation");
    let service = if prefix.starts_with("DynamoDB") { "dynamodb" } else { "sqs" };
    let operation = operation.strip_suffix("Batch").unwrap_or(operation);
    format!("{service}:{operation}")
}

/// What a recorded request's body names: its queue's or table's name.
fn request_resource(body: &Value) -> String {
    if let Some(url) = body["QueueUrl"].as_str() {
        return url.rsplit('/').next().unwrap_or(url).to_owned();
    }
    body["TableName"].as_str().expect("QueueUrl or TableName").to_owned()
}

async fn moto_api(endpoint: &str, path: &str, method: &str) -> String {
    let mut curl = Command::new(python());
    curl.args([
        "-c",
        "import sys, urllib.request as u; print(u.urlopen(u.Request(sys.argv[1], method=sys.argv[2])).read().decode())",
        &format!("{endpoint}/moto-api/recorder/{path}"),
        method,
    ]);
    let out = tokio::task::spawn_blocking(move || output(curl)).await.expect("join");
    assert!(out.status.success(), "moto recorder {path}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// (IAM action, resource name) of every call made with User-Agent app id [`APP_ID`].
fn recorded_calls(recording: &str) -> BTreeSet<(String, String)> {
    let mut calls = BTreeSet::new();
    for line in recording.lines().filter(|l| !l.trim().is_empty()) {
        let request: Value = serde_json::from_str(line).expect("recording line");
        let headers = &request["headers"];
        let agent = headers["User-Agent"].as_str().or(headers["user-agent"].as_str()).unwrap_or("");
        if !agent.contains(&format!("app/{APP_ID}")) {
            continue;
        }
        let body = request["body"].as_str().unwrap_or("");
        let body = if request["body_encoded"] == true { decode_base64(body) } else { body.to_owned() };
        // doctor's sts:GetCallerIdentity (query protocol) needs no IAM
        // permission: AWS answers it for any credentials.
        if body.split('&').any(|pair| pair == "Action=GetCallerIdentity") {
            continue;
        }
        // Every other call of ours is JSON protocol; one that is not would escape the check.
        let target = headers["X-Amz-Target"].as_str().unwrap_or_else(|| panic!("a call without X-Amz-Target: {line}"));
        let body: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{target} body ({e}): {body}"));
        calls.insert((iam_action(target), request_resource(&body)));
    }
    calls
}

fn decode_base64(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for byte in text.bytes().filter(|b| *b != b'=' && !b.is_ascii_whitespace()) {
        let value = ALPHABET.iter().position(|a| *a == byte).expect("base64") as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    String::from_utf8(out).expect("UTF-8 body")
}

/// Runs the real binary with the task's environment, marked for the recording.
fn worker(w: &World, args: &[&str]) -> Command {
    let mut cmd = Command::new(worker_binary());
    cmd.env_clear()
        .envs(w.emulator.env_vars())
        .env("AWS_SDK_UA_APP_ID", APP_ID)
        .env("SQS_QUEUE_URL", &w.queue_url)
        .env("DYNAMODB_TABLE_NAME", &w.table)
        .env("SQS_DLQ_URL", &w.dlq_url)
        .env("SQS_WAIT_TIME_SECONDS", "1")
        .env("SQS_VISIBILITY_TIMEOUT_SECONDS", "15")
        .env("WORKER_METRICS_INTERVAL_SECONDS", "0")
        .env("WORKER_HEALTH_FILE", std::env::temp_dir().join(format!("student-worker-iam-{}.json", std::process::id())))
        .args(args);
    cmd
}

/// One recording at a time: every emulator of this test binary writes its
/// recording to the same file (`moto_recording` in this crate's directory).
static RECORDER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Records the AWS calls `steps` makes with [`APP_ID`] on `w`'s emulator.
async fn recording<F: std::future::Future<Output = ()>>(w: &World, steps: F) -> BTreeSet<(String, String)> {
    let _one_at_a_time = RECORDER.lock().await;
    let endpoint = &w.emulator.endpoint;
    moto_api(endpoint, "reset-recording", "POST").await;
    moto_api(endpoint, "start-recording", "POST").await;
    steps.await;
    moto_api(endpoint, "stop-recording", "POST").await;
    let recording = moto_api(endpoint, "download-recording", "GET").await;
    let _ = std::fs::remove_file(concat!(env!("CARGO_MANIFEST_DIR"), "/moto_recording"));
    recorded_calls(&recording)
}

/// Runs a command to its end off the async runtime and returns its output.
async fn finish(command: Command) -> Output {
    tokio::task::spawn_blocking(move || output(command)).await.expect("join")
}

/// Every path of `run` that calls AWS: the pre-flight probes, writes of each
/// kind, duplicates, an invalid message dead-lettered, a patch deferred until
/// redrive takes it, exit-when-empty's queue counts; then `healthcheck`,
/// which calls nothing.
async fn record_run_and_healthcheck(w: &World) -> BTreeSet<(String, String)> {
    let events = [
        r#"{"type":"StudentUpserted","eventId":"e1","studentId":"101","version":1,"student":{"name":"Alice"}}"#,
        r#"{"type":"StudentUpserted","eventId":"e1","studentId":"101","version":1,"student":{"name":"Alice"}}"#,
        r#"{"type":"StudentPatched","eventId":"e2","studentId":"101","version":2,"student":{"grade":3}}"#,
        r#"{"type":"StudentDeleted","eventId":"e3","studentId":"102","version":1}"#,
        r#"{"type":"StudentPatched","eventId":"e4","studentId":"103","version":5,"student":{"grade":1}}"#,
        "not json",
    ];
    w.send(&events.map(str::to_owned)).await;
    recording(w, async {
        let mut run = worker(w, &["run"]);
        run.env("WORKER_EXIT_WHEN_EMPTY", "true");
        let out = finish(run).await;
        assert!(out.status.success(), "run failed: {}", text(&out.stderr));
        let health = finish(worker(w, &["healthcheck"])).await;
        assert_eq!(health.status.code(), Some(1), "stopped worker: {}", text(&health.stderr));
    })
    .await
}

/// `expected` as the (action, resource) set `allowed` and `recorded_calls` return.
fn pairs(expected: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    expected.iter().map(|(a, r)| ((*a).to_owned(), (*r).to_owned())).collect()
}

/// The policy grants every call made and nothing else.
fn assert_exactly(policy: &str, called: &BTreeSet<(String, String)>) {
    let granted = allowed(&json_file(policy));
    let missing: Vec<_> = called.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(called).collect();
    assert!(missing.is_empty(), "{policy} lacks {missing:?}");
    assert!(unused.is_empty(), "{policy} grants what nobody calls: {unused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_role_policy_allows_exactly_what_run_and_healthcheck_call() {
    // maxReceiveCount 2: the orphan patch reaches the DLQ by redrive, and the queue drains.
    let w = World::with_max_receive_count(2).await;
    let called = record_run_and_healthcheck(&w).await;
    let expected = pairs(&[
        ("dynamodb:PutItem", "Students"),
        ("dynamodb:UpdateItem", "Students"),
        ("sqs:ReceiveMessage", "students"),
        ("sqs:DeleteMessage", "students"),
        ("sqs:ChangeMessageVisibility", "students"),
        ("sqs:GetQueueAttributes", "students"),
        ("sqs:SendMessage", "students-dlq"),
    ]);
    assert_eq!(called, expected, "the scenario exercises every call of run (else the check below proves little)");
    assert_exactly("iam/task-role-policy.json", &called);
}

// ------------------------------------------------------------ operator IAM

/// A dead letter as `run` forwards one.
async fn dead_letter(w: &World, dlq: &str, body: &str, code: &str, group: Option<&str>) {
    let attribute = |v: &str| {
        aws_sdk_sqs::types::MessageAttributeValue::builder().data_type("String").string_value(v).build().expect("attr")
    };
    let mut send = w
        .sqs
        .send_message()
        .queue_url(dlq)
        .message_body(body)
        .message_attributes("ErrorCode", attribute(code))
        .message_attributes("ErrorMessage", attribute("why"));
    if let Some(group) = group {
        send = send.message_group_id(group).message_deduplication_id(format!("{group}-{code}"));
    }
    send.send().await.expect("send a dead letter");
}

/// Runs an operator command with the task's environment and asserts it succeeded.
async fn operator(w: &World, args: &[&str]) -> String {
    let out = finish(worker(w, args)).await;
    assert!(out.status.success(), "{args:?} failed:\n{}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// `students.fifo` → `students`: a FIFO setup's policy names its `.fifo` queues in the same places.
fn without_fifo(calls: BTreeSet<(String, String)>) -> BTreeSet<(String, String)> {
    calls.into_iter().map(|(a, r)| (a, r.strip_suffix(".fifo").unwrap_or(&r).to_owned())).collect()
}

/// Every path of `doctor` (all checks on a good setup, `--json` and text),
/// `dlq` (`stats`, `peek`, `replay` with `--dry-run`, filters, `--max`,
/// with and without `--to`, to a FIFO queue too) and `get`.
async fn record_doctor_and_dlq(w: &World) -> BTreeSet<(String, String)> {
    let upsert = |id: &str| {
        format!(r#"{{"type":"StudentUpserted","eventId":"e{id}","studentId":"{id}","version":1,"student":{{}}}}"#)
    };
    dead_letter(w, &w.dlq_url, &upsert("201"), "ItemRejected", None).await;
    dead_letter(w, &w.dlq_url, &upsert("202"), "InvalidMessage", None).await;
    dead_letter(w, &w.dlq_url, "not json", "InvalidMessage", None).await;
    let fifo = student_worker::commands::setup::ensure(
        &w.sdk,
        &student_worker::commands::setup::SetupArgs {
            table_name: w.table.clone(),
            queue_name: "students.fifo".into(),
            dlq_name: None,
            max_receive_count: 5,
            visibility_timeout_seconds: 60,
        },
    )
    .await
    .expect("FIFO setup");
    dead_letter(w, &fifo.dlq_url, &upsert("301"), "ItemRejected", Some("301")).await;

    let standard = recording(w, async {
        let doctor: Value = serde_json::from_str(&operator(w, &["doctor", "--json"]).await).expect("JSON");
        assert_eq!(doctor["ok"], true, "{doctor}");
        let failed: Vec<&Value> = doctor["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .filter(|c| c["status"] != "pass" && c["status"] != "skip")
            .collect();
        assert!(failed.is_empty(), "a good setup: {failed:?}");
        operator(w, &["doctor"]).await;
        let stats = operator(w, &["dlq", "stats", "--json"]).await;
        assert!(stats.contains("\"scanned\":3"), "{stats}");
        assert_eq!(operator(w, &["dlq", "peek", "--json"]).await.lines().count(), 3);
        operator(w, &["dlq", "replay", "--dry-run"]).await;
        // Without --to: the target is the queue whose redrive policy names the DLQ.
        operator(w, &["dlq", "replay", "--error-code", "ItemRejected", "--max", "1"]).await;
        operator(w, &["dlq", "replay", "--student-id", "202", "--to", &w.queue_url]).await;
        // get: a student that is not there exits 1, and still took one GetItem.
        let missing = finish(worker(w, &["get", "201"])).await;
        assert_eq!(missing.status.code(), Some(1), "{}", text(&missing.stderr));
    })
    .await;
    let fifo_replay = recording(w, async {
        let mut replay = worker(w, &["dlq", "replay", "--to", &fifo.queue_url, "--rate", "5/s"]);
        replay.env("SQS_DLQ_URL", &fifo.dlq_url);
        let out = finish(replay).await;
        assert!(out.status.success(), "FIFO replay failed: {}", text(&out.stderr));
    })
    .await;
    let fifo_replay = without_fifo(fifo_replay);
    assert!(fifo_replay.contains(&("sqs:SendMessage".to_owned(), "students".to_owned())), "{fifo_replay:?}");
    let (left, _) = w.queue_counts().await;
    assert_eq!(left, 2, "the two replayed dead letters are back on the source queue");
    standard.union(&fifo_replay).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_policy_allows_exactly_what_doctor_dlq_and_get_call() {
    let w = World::new().await;
    let called = record_doctor_and_dlq(&w).await;
    let expected = pairs(&[
        // doctor: the table's key schema, and the worker's writes probed on the sentinel key; get: one read.
        ("dynamodb:DescribeTable", "Students"),
        ("dynamodb:GetItem", "Students"),
        ("dynamodb:PutItem", "Students"),
        ("dynamodb:UpdateItem", "Students"),
        // doctor: both queues' attributes; the worker's batch calls probed with a bogus receipt handle.
        ("sqs:GetQueueAttributes", "students"),
        ("sqs:GetQueueAttributes", "students-dlq"),
        ("sqs:ChangeMessageVisibility", "students"),
        ("sqs:DeleteMessage", "students"),
        // dlq: look at, release and remove dead letters; find the source; send them back.
        ("sqs:ListDeadLetterSourceQueues", "students-dlq"),
        ("sqs:ReceiveMessage", "students-dlq"),
        ("sqs:ChangeMessageVisibility", "students-dlq"),
        ("sqs:DeleteMessage", "students-dlq"),
        ("sqs:SendMessage", "students"),
    ]);
    assert_eq!(called, expected, "the scenario exercises every call of doctor and dlq");
    assert_exactly("iam/operator-policy.json", &called);
}

/// The operator's table writes exist only for doctor's probes: they are held
/// to the sentinel key, so an operator can change no student.
#[test]
fn the_operator_policy_writes_only_doctors_sentinel_key() {
    let policy = json_file("iam/operator-policy.json");
    for statement in policy["Statement"].as_array().expect("Statement") {
        let actions = statement["Action"].to_string();
        if !actions.contains("dynamodb:PutItem") && !actions.contains("dynamodb:UpdateItem") {
            continue;
        }
        assert_eq!(
            statement["Condition"],
            json!({"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [SENTINEL_STUDENT_ID]}}),
            "{statement}"
        );
    }
    for (action, _) in allowed(&policy) {
        assert_ne!(action, "dynamodb:DeleteItem", "operators never delete students");
    }
}

// ----------------------------------------------------------- CloudFormation

/// A template value with `Fn::Sub` unwrapped and CloudFormation's pseudo
/// parameters turned back into the iam/ files' placeholders.
fn unsub(value: &Value) -> Value {
    match value {
        Value::Object(map) if map.len() == 1 && map.contains_key("Fn::Sub") => {
            let s = map["Fn::Sub"].as_str().expect("simple Fn::Sub");
            Value::String(
                s.replace("arn:${AWS::Partition}:", "arn:aws:")
                    .replace("${AWS::AccountId}", "${AWS_ACCOUNT_ID}")
                    .replace("${AWS::Region}", "${AWS_REGION}"),
            )
        }
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), unsub(v))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(unsub).collect()),
        other => other.clone(),
    }
}

#[test]
fn the_cloudformation_template_is_cfn_lint_clean_and_deploys_the_same_artifacts() {
    let path = "deploy/student-worker.cfn.json";
    let mut lint = venv_tool("cfn-lint");
    lint.arg(root_file(path));
    let out = output(lint);
    assert!(out.status.success(), "cfn-lint findings:\n{}{}", text(&out.stdout), text(&out.stderr));

    let template = json_file(path);
    let resources = &template["Resources"];
    let of_type = |t: &str| -> Vec<&Value> {
        resources.as_object().expect("Resources").values().filter(|r| r["Type"] == t).collect()
    };
    // The task role is iam/'s, statement for statement.
    let role = &resources["TaskRole"]["Properties"];
    assert_eq!(role["RoleName"], "ecs-task-dynamodb-role");
    assert_eq!(unsub(&role["AssumeRolePolicyDocument"]), json_file("iam/task-role-trust-policy.json"));
    assert_eq!(unsub(&role["Policies"][0]["PolicyDocument"]), json_file("iam/task-role-policy.json"));
    assert_eq!(
        unsub(&resources["OperatorPolicy"]["Properties"]["PolicyDocument"]),
        json_file("iam/operator-policy.json")
    );

    // The task definition is task-definition.json's.
    let td = json_file("task-definition.json");
    let c = container(&td);
    let cfn = &resources["TaskDefinition"]["Properties"];
    let cfn_c = &cfn["ContainerDefinitions"][0];
    assert_eq!((&cfn["Cpu"], &cfn["Memory"], &cfn["NetworkMode"]), (&td["cpu"], &td["memory"], &td["networkMode"]));
    assert_eq!((&cfn_c["User"], &cfn_c["StopTimeout"]), (&c["user"], &c["stopTimeout"]));
    assert_eq!(cfn_c["ReadonlyRootFilesystem"], true);
    assert_eq!(cfn_c["HealthCheck"]["Command"], c["healthCheck"]["command"]);
    let cfn_env: BTreeMap<String, Value> = cfn_c["Environment"]
        .as_array()
        .expect("Environment")
        .iter()
        .map(|e| (e["Name"].as_str().expect("Name").to_owned(), unsub(&e["Value"])))
        .collect();
    let env: BTreeMap<String, Value> = environment(c).into_iter().map(|(k, v)| (k, Value::String(v))).collect();
    assert_eq!(cfn_env, env);

    // Queue with redrive to the DLQ, log group, scaling on backlog per task, both alarms.
    assert!(resources["Queue"]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"].is_object());
    assert_eq!(of_type("AWS::Logs::LogGroup").len(), 1);
    let scaling = &of_type("AWS::ApplicationAutoScaling::ScalingPolicy")[0]["Properties"];
    let metrics = scaling["TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"]["Metrics"]
        .as_array()
        .expect("metric math");
    let names: BTreeSet<&str> =
        metrics.iter().filter_map(|m| m["MetricStat"]["Metric"]["MetricName"].as_str()).collect();
    assert_eq!(names, BTreeSet::from(["ApproximateNumberOfMessagesVisible", "RunningTaskCount"]));
    let alarms: BTreeSet<&str> =
        of_type("AWS::CloudWatch::Alarm").iter().filter_map(|a| a["Properties"]["MetricName"].as_str()).collect();
    assert_eq!(alarms, BTreeSet::from(["ApproximateAgeOfOldestMessage", "ApproximateNumberOfMessagesVisible"]));
}

#[test]
fn placeholder_helper_leaves_nothing_to_fill() {
    for path in ["task-definition.json", "iam/task-role-policy.json", "iam/operator-policy.json"] {
        let text = filled(&read(path));
        assert!(!text.contains("${"), "{path} has an unknown placeholder");
    }
}

// ----------------------------------------------------------- Lambda role IAM

/// (action, resource name) pairs the Lambda template's role allows, its
/// parameters resolved as this test's world names them.
fn lambda_role_allows() -> BTreeSet<(String, String)> {
    let template = json_file("deploy/student-worker-lambda.cfn.json");
    let role = &template["Resources"]["LambdaRole"]["Properties"];
    let policies = role["Policies"].as_array().expect("the role's inline policies");
    let resource = |value: &Value| -> String {
        match (value.get("Ref"), value.get("Fn::Sub"), value.get("Fn::GetAtt")) {
            (Some(r), _, _) if r == "QueueArn" => "students".into(),
            (Some(r), _, _) if r == "DlqArn" => "students-dlq".into(),
            (_, Some(sub), _) if sub.as_str().is_some_and(|s| s.ends_with(":table/${TableName}")) => "Students".into(),
            (_, _, Some(att)) if att == &json!(["LambdaLogGroup", "Arn"]) => "log-group".into(),
            _ => panic!("a resource this test does not resolve: {value}"),
        }
    };
    let mut out = BTreeSet::new();
    // The KMS policy, present only with a KmsKeyArn, holds no call of the
    // handler's (SQS calls KMS on the role's behalf): tests/tests/checkov.rs
    // asserts it exactly.
    for policy in policies.iter().filter(|p| p.get("Fn::If").is_none_or(|f| f[0] != "HasKmsKey")) {
        for statement in policy["PolicyDocument"]["Statement"].as_array().expect("Statement") {
            assert_eq!(statement["Effect"], "Allow", "{statement}");
            let actions: Vec<&str> = match &statement["Action"] {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().map(|s| s.as_str().expect("action")).collect(),
                other => panic!("Action: {other}"),
            };
            for action in actions {
                out.insert((action.to_owned(), resource(&statement["Resource"])));
            }
        }
    }
    out
}

/// Every path of the Lambda handler that calls AWS, through the real binary
/// and a local Runtime API: writes of each kind, a duplicate, a deferred
/// patch (its visibility change), an invalid message dead-lettered.
async fn record_lambda(w: &World) -> BTreeSet<(String, String)> {
    use student_worker_tests::lambda_api::{FunctionProcess, RuntimeApi, delete_unreported, receive_event};
    let events = [
        r#"{"type":"StudentUpserted","eventId":"e1","studentId":"101","version":1,"student":{"name":"Alice"}}"#,
        r#"{"type":"StudentPatched","eventId":"e2","studentId":"101","version":2,"student":{"grade":3}}"#,
        r#"{"type":"StudentDeleted","eventId":"e3","studentId":"102","version":1}"#,
        r#"{"type":"StudentPatched","eventId":"e4","studentId":"103","version":5,"student":{"grade":1}}"#,
        "not json",
    ];
    w.send(&events.map(str::to_owned)).await;
    let api = RuntimeApi::start().await;
    let env =
        [("AWS_SDK_UA_APP_ID", APP_ID), ("DYNAMODB_TABLE_NAME", w.table.as_str()), ("SQS_DLQ_URL", w.dlq_url.as_str())];
    let function = FunctionProcess::spawn(&api, &w.emulator.endpoint, &["lambda"], &env);
    let called = recording(w, async {
        let (event, received) = receive_event(&w.sqs, &w.queue_url, events.len(), 60).await;
        assert_eq!(received.len(), events.len());
        let answer = api.invoke(event, std::time::Duration::from_secs(60)).await;
        assert_eq!(answer.failures().len(), 1, "the orphan patch: {answer:?}");
        delete_unreported(&w.sqs, &w.queue_url, &received, &answer).await;
    })
    .await;
    function.stop().await;
    called
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_role_allows_exactly_the_handler_s_calls_the_mapping_s_polling_and_its_logs() {
    let w = World::new().await;
    let called = record_lambda(&w).await;
    let handler = pairs(&[
        ("dynamodb:PutItem", "Students"),
        ("dynamodb:UpdateItem", "Students"),
        ("sqs:ChangeMessageVisibility", "students"),
        ("sqs:SendMessage", "students-dlq"),
    ]);
    assert_eq!(called, handler, "the scenario exercises every call of the handler on Lambda");
    // The event source mapping polls and deletes with the function's role;
    // Lambda writes the function's logs with it.
    let platform = pairs(&[
        ("sqs:ReceiveMessage", "students"),
        ("sqs:DeleteMessage", "students"),
        ("sqs:GetQueueAttributes", "students"),
        ("logs:CreateLogStream", "log-group"),
        ("logs:PutLogEvents", "log-group"),
    ]);
    let expected: BTreeSet<_> = handler.union(&platform).cloned().collect();
    assert_eq!(lambda_role_allows(), expected, "the role holds exactly these");
}
