//! The published JSON Schema of event contract v1
//! (`shared/schema/student-event.v1.schema.json`) and the Rust decoder
//! (`student_shared::decode`) agree on every sample event in
//! `shared/samples/{valid,invalid}/`.
//!
//! For each sample, three verdicts must be equal: the folder it lives in, the
//! schema's (with `format` validation on), and the decoder's. Every rejection
//! by the decoder must name the offending field.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Root of the shared crate, where the schema and the samples live.
fn shared_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

/// Reads and parses the contract schema.
fn load_schema() -> Value {
    let path = shared_dir().join("schema/student-event.v1.schema.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read schema {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("schema {} is not JSON: {e}", path.display()))
}

/// Compiles the contract schema the way upstream teams are told to use it:
/// draft 2020-12, `format` assertions on (so `occurredAt` is checked).
fn compile_schema(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("schema does not compile: {e}"))
}

/// One sample event file.
struct Sample {
    /// `valid/<name>.json` or `invalid/<name>.json`, for messages.
    name: String,
    /// The raw message body, exactly as read from disk.
    body: Vec<u8>,
    /// The verdict implied by the folder.
    expected_valid: bool,
}

/// Loads every `*.json` file of `samples/<kind>/`, sorted by name.
fn load_samples(kind: &str, expected_valid: bool) -> Vec<Sample> {
    let dir = shared_dir().join("samples").join(kind);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list samples in {}: {e}", dir.display()));
    let mut samples: Vec<Sample> = entries
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            let body = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read sample {}: {e}", path.display()));
            let file = path.file_name().expect("sample path has a file name").to_string_lossy();
            Sample { name: format!("{kind}/{file}"), body, expected_valid }
        })
        .collect();
    samples.sort_by(|a, b| a.name.cmp(&b.name));
    samples
}

fn verdict(valid: bool) -> &'static str {
    if valid { "valid" } else { "invalid" }
}

#[test]
fn schema_and_decoder_agree_on_every_sample() {
    let schema = load_schema();
    let validator = compile_schema(&schema);

    let valid = load_samples("valid", true);
    let invalid = load_samples("invalid", false);
    assert!(valid.len() >= 10, "expected at least 10 valid samples, found {}", valid.len());
    assert!(invalid.len() >= 10, "expected at least 10 invalid samples, found {}", invalid.len());

    let mut table = String::new();
    let mut failures = Vec::new();
    for sample in valid.iter().chain(&invalid) {
        let instance: Value =
            serde_json::from_slice(&sample.body).unwrap_or_else(|e| panic!("{}: sample is not JSON: {e}", sample.name));
        let schema_errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| {
                let at = e.instance_path().to_string();
                format!("{e} at {}", if at.is_empty() { "/" } else { &at })
            })
            .collect();
        let schema_valid = schema_errors.is_empty();
        let decoded = student_shared::decode(&sample.body);
        let rust_valid = decoded.is_ok();
        let rust_error = decoded.as_ref().err().map_or_else(|| "-".to_owned(), ToString::to_string);

        let mut problems = Vec::new();
        if schema_valid != sample.expected_valid || rust_valid != sample.expected_valid {
            problems.push(format!(
                "verdicts disagree: expected {}, schema says {}, Rust says {}",
                verdict(sample.expected_valid),
                verdict(schema_valid),
                verdict(rust_valid),
            ));
        }
        if let Err(err) = &decoded
            && err.field().trim().is_empty()
        {
            problems.push(format!("Rust error names no field: {err}"));
        }

        let status = if problems.is_empty() { "pass" } else { "FAIL" };
        writeln!(
            table,
            "{status}  {:<55} expected={:<7} schema={:<7} rust={:<7} rust_error={rust_error}",
            sample.name,
            verdict(sample.expected_valid),
            verdict(schema_valid),
            verdict(rust_valid),
        )
        .expect("writing to a String cannot fail");

        if !problems.is_empty() {
            failures.push(format!(
                "{}:\n    {}\n    schema errors: {}\n    Rust error: {rust_error}",
                sample.name,
                problems.join("\n    "),
                if schema_errors.is_empty() { "-".to_owned() } else { schema_errors.join("; ") },
            ));
        }
    }

    println!("{table}");
    assert!(
        failures.is_empty(),
        "{} of {} samples failed:\n{}",
        failures.len(),
        valid.len() + invalid.len(),
        failures.join("\n")
    );
}

#[test]
fn schema_is_valid_draft_2020_12() {
    let schema = load_schema();

    assert_eq!(
        schema.get("$schema").and_then(Value::as_str),
        Some("https://json-schema.org/draft/2020-12/schema"),
        "the schema must declare draft 2020-12"
    );
    if let Err(err) = jsonschema::draft202012::meta::validate(&schema) {
        panic!("schema violates the draft 2020-12 meta-schema at {}: {err}", err.instance_path());
    }
    // Compiling also checks what the meta-schema cannot, e.g. that every
    // `pattern` is a valid regular expression and every `$ref` resolves.
    let _ = compile_schema(&schema);
}
