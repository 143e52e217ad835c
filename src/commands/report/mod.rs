//! Reports for CI systems and code review: what `podmedic fix --check` and `podmedic audit` found,
//! as a list of objects with their findings, written as text, JSON, SARIF 2.1.0 (GitHub code
//! scanning and other SARIF viewers) or JUnit XML (GitLab's test reports, JUnit viewers).
//!
//! Each finding names a [`Rule`] by a stable id: the kind of change podmedic would make
//! (`sidecar-moved`, `probe-added`, ...), the check that warns (`node-fit`, `references`, ...),
//! `advice` for podmedic's other warnings, and the audit's `stuck-on-sidecar` and `not-running`.
//! Ids never change once released; a new rule gets a new id.

mod junit;
mod rules;
mod sarif;

use std::io::Write;

use serde::Serialize;

pub use junit::write_junit;
pub use rules::{ADVICE, RULES, Rule, change_rule, warning_rule};
pub use sarif::{sarif_log, write_sarif};

/// How a report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// One line per finding, `file:line: rule: object: message`, for people.
    Text,
    /// The report as one JSON document.
    Json,
    /// SARIF 2.1.0.
    Sarif,
    /// JUnit XML: one test case per object.
    Junit,
}

/// How serious a finding is. `Error` is what makes `podmedic fix --check` exit 1 (and a JUnit
/// test case fail); `Warning` is said but does not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Level {
    /// Fails the check.
    Error,
    /// Worth a look; does not fail the check.
    Warning,
}

impl Level {
    /// The SARIF `level` value.
    pub fn sarif(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
        }
    }
}

/// What was run, for the report's header.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// `podmedic fix --check` or `podmedic audit`.
    pub command: String,
    /// Every object looked at, in input order, with or without findings.
    pub objects: Vec<ReportedObject>,
}

/// One object and what was found on it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportedObject {
    /// The object's namespace, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its kind.
    pub kind: String,
    /// Its name (`generateName*` when it has none).
    pub name: String,
    /// The file it was read from, as given on the command line (`None`: a cluster or stdin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// 1-based document number in that file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<usize>,
    /// 1-based line of the object in the file, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// What was found.
    pub findings: Vec<Finding>,
}

impl ReportedObject {
    /// `namespace/Kind/name`, or `Kind/name` without a namespace: the object's unique name in a
    /// report (JUnit test case names, SARIF fingerprints).
    pub fn qualified_name(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}/{}", self.kind, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }

    /// Whether any finding fails the check.
    pub fn fails(&self) -> bool {
        self.findings.iter().any(|f| f.level == Level::Error)
    }
}

/// One thing found on an object.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// The rule's stable id.
    pub rule: &'static str,
    /// How serious it is.
    pub level: Level,
    /// The container concerned, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// What podmedic does or would do, or what is wrong and the fix.
    pub message: String,
    /// 1-based line in the file: the container's, or the object's when there is no container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
}

impl Finding {
    /// The message, led by `container NAME:` when it concerns a container and does not say so.
    pub fn text(&self) -> String {
        match &self.container {
            Some(c) if !self.message.starts_with(&format!("container {c}:")) => {
                format!("container {c}: {}", self.message)
            }
            _ => self.message.clone(),
        }
    }
}

/// Writes `report` in `format`.
pub fn write_report(out: &mut impl Write, report: &Report, format: ReportFormat) -> anyhow::Result<()> {
    match format {
        ReportFormat::Text => write_text(out, report)?,
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, report)?;
            writeln!(out)?;
        }
        ReportFormat::Sarif => write_sarif(out, report)?,
        ReportFormat::Junit => write_junit(out, report)?,
    }
    Ok(())
}

/// One line per finding, in the `file:line:` form editors and terminals link to.
fn write_text(out: &mut impl Write, report: &Report) -> std::io::Result<()> {
    for object in &report.objects {
        for f in &object.findings {
            let place = match &object.file {
                Some(file) => {
                    let line = f.line.or(object.line).map(|l| format!(":{l}")).unwrap_or_default();
                    format!("{file}{line}: ")
                }
                None => object.namespace.as_deref().map(|ns| format!("{ns}: ")).unwrap_or_default(),
            };
            let level = f.level.sarif();
            writeln!(out, "{place}{level}: {}: {}/{}: {}", f.rule, object.kind, object.name, f.text())?;
        }
    }
    Ok(())
}
