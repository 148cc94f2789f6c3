//! One line per check with a mark, and for a failure its cause and fix; the
//! same lines as JSON for scripts (`doctor --json`), and as the message with
//! which `run` refuses to start.

use std::fmt;

use serde::Serialize;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// All good.
    Pass,
    /// Works, but deserves a look; does not fail `doctor`.
    Warn,
    /// Broken: `doctor` exits non-zero.
    Fail,
    /// Not checked (an earlier check failed, or it cannot be probed harmlessly).
    Skip,
}

impl Status {
    /// The mark at the start of a text line.
    pub fn mark(self) -> &'static str {
        match self {
            Self::Pass => "[pass]",
            Self::Warn => "[warn]",
            Self::Fail => "[FAIL]",
            Self::Skip => "[skip]",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked: `region`, `credentials`, `table`, `queue`, `redrive`,
    /// `visibility`, `dlq`, `permission dynamodb:PutItem`, ...
    pub check: String,
    /// How it ended.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// Why it failed (failures and warnings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// What to do about it (failures and warnings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Whether `run` refuses to start on this failure.
    #[serde(skip)]
    pub fatal: bool,
}

impl Check {
    /// A passed check.
    pub fn pass(check: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { check: check.into(), status: Status::Pass, detail: detail.into(), cause: None, fix: None, fatal: false }
    }

    /// A skipped check, with the reason in `detail`.
    pub fn skip(check: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { status: Status::Skip, ..Self::pass(check, detail) }
    }

    /// A failed check; `fatal` when `run` must not start with it.
    pub fn fail(check: impl Into<String>, detail: impl Into<String>, cause: String, fix: String, fatal: bool) -> Self {
        Self {
            check: check.into(),
            status: Status::Fail,
            detail: detail.into(),
            cause: Some(cause),
            fix: Some(fix),
            fatal,
        }
    }

    /// A warning.
    pub fn warn(check: impl Into<String>, detail: impl Into<String>, cause: String, fix: String) -> Self {
        Self { status: Status::Warn, ..Self::fail(check, detail, cause, fix, false) }
    }

    /// Whether this check failed.
    pub fn failed(&self) -> bool {
        self.status == Status::Fail
    }
}

impl fmt::Display for Check {
    /// `[FAIL] table: ...` and, indented below, `cause: ...` and `fix: ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.mark(), self.check, self.detail)?;
        if let Some(cause) = &self.cause {
            write!(f, "\n       cause: {cause}")?;
        }
        if let Some(fix) = &self.fix {
            write!(f, "\n       fix: {fix}")?;
        }
        Ok(())
    }
}

/// Every check, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// `true` when no check failed.
    pub ok: bool,
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// A report over `checks`.
    pub fn new(checks: Vec<Check>) -> Self {
        Self { ok: !checks.iter().any(Check::failed), checks }
    }

    /// How many checks ended with `status`.
    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// The text form: one line per check, then a summary line.
    pub fn to_text(&self) -> String {
        let mut out: Vec<String> = self.checks.iter().map(ToString::to_string).collect();
        out.push(format!(
            "doctor: {} passed, {} failed, {} warnings, {} skipped",
            self.count(Status::Pass),
            self.count(Status::Fail),
            self.count(Status::Warn),
            self.count(Status::Skip)
        ));
        out.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_prints_its_cause_and_fix_below_the_mark() {
        let c = Check::fail("table", "Studnets in ap-northeast-2", "not found".into(), "check the name".into(), true);
        assert_eq!(
            c.to_string(),
            "[FAIL] table: Studnets in ap-northeast-2\n       cause: not found\n       fix: check the name"
        );
        let r = Report::new(vec![Check::pass("region", "ap-northeast-2"), c]);
        assert!(!r.ok);
        assert!(r.to_text().ends_with("doctor: 1 passed, 1 failed, 0 warnings, 0 skipped"), "{}", r.to_text());
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["checks"][1]["status"], "fail");
        assert_eq!(json["checks"][0].get("cause"), None);
    }
}
