//! SARIF 2.1.0, the small part of it podmedic uses, written with serde.
//!
//! Not `serde-sarif`: its ~100 types are generated at build time from the schema (schemafy), a
//! build cost every CI run would pay for the 15 fields written here. The test
//! `sarif_of_a_real_run_is_valid` (tests/cli/reports.rs) holds this output to the vendored schema.
//!
//! Results of files carry a physical location (the path relative to the working directory with
//! `uriBaseId: %SRCROOT%`, as GitHub code scanning resolves it from the repository root, and the
//! line); every result carries logical locations: the namespace, the kind and the object.

use std::io::Write;
use std::path::{Component, Path};

use serde::Serialize;

use super::rules::RULES;
use super::{Finding, Report, ReportedObject};

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
const HOME: &str = "https://github.com/podmedic/podmedic";
const SRCROOT: &str = "%SRCROOT%";

/// The SARIF log of a report.
pub fn sarif_log(report: &Report) -> serde_json::Value {
    let cwd = std::env::current_dir().ok();
    let results: Vec<SarifResult> = report
        .objects
        .iter()
        .flat_map(|object| object.findings.iter().map(move |f| (object, f)))
        .map(|(object, finding)| result(object, finding, cwd.as_deref()))
        .collect();
    let original_uri_base_ids =
        cwd.as_deref().and_then(directory_uri).map(|uri| serde_json::json!({ SRCROOT: { "uri": uri } }));
    let log = serde_json::json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": driver() },
            "invocations": [{ "executionSuccessful": true, "commandLine": report.command }],
            "originalUriBaseIds": original_uri_base_ids,
            "results": results,
        }],
    });
    without_nulls(log)
}

/// Writes the SARIF log of a report.
pub fn write_sarif(out: &mut impl Write, report: &Report) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, &sarif_log(report))?;
    writeln!(out)?;
    Ok(())
}

fn driver() -> serde_json::Value {
    let rules: Vec<serde_json::Value> = RULES
        .iter()
        .map(|r| {
            serde_json::json!({
                "id": r.id,
                "name": r.id,
                "shortDescription": { "text": r.title },
                "fullDescription": { "text": r.help },
                "help": { "text": r.help },
                "helpUri": format!("{HOME}#{}", r.anchor),
            })
        })
        .collect();
    serde_json::json!({
        "name": "podmedic",
        "version": env!("CARGO_PKG_VERSION"),
        "semanticVersion": env!("CARGO_PKG_VERSION"),
        "informationUri": HOME,
        "rules": rules,
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult {
    rule_id: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_index: Option<usize>,
    level: &'static str,
    message: Text,
    locations: Vec<serde_json::Value>,
    partial_fingerprints: serde_json::Value,
    /// The object and, for a file, its 1-based document number (SARIF regions have no documents).
    properties: serde_json::Value,
}

#[derive(Serialize)]
struct Text {
    text: String,
}

fn result(object: &ReportedObject, finding: &Finding, cwd: Option<&Path>) -> SarifResult {
    let text = format!("{}/{}: {}", object.kind, object.name, finding.text());
    let mut location = serde_json::Map::new();
    if let Some(file) = &object.file {
        let line = finding.line.or(object.line).unwrap_or(1);
        let artifact = match relative_uri(Path::new(file), cwd) {
            Some(uri) => serde_json::json!({ "uri": uri, "uriBaseId": SRCROOT }),
            None => serde_json::json!({ "uri": file_uri(Path::new(file)) }),
        };
        location.insert(
            "physicalLocation".into(),
            serde_json::json!({ "artifactLocation": artifact, "region": { "startLine": line } }),
        );
    }
    let mut logical = Vec::new();
    if let Some(ns) = &object.namespace {
        logical.push(serde_json::json!({ "name": ns, "kind": "namespace" }));
    }
    logical.push(serde_json::json!({ "name": object.kind, "kind": "type" }));
    logical.push(serde_json::json!({
        "name": object.name,
        "kind": "resource",
        "fullyQualifiedName": object.qualified_name(),
    }));
    location.insert("logicalLocations".into(), serde_json::Value::Array(logical));
    let fingerprint =
        format!("{}/{}/{}", object.qualified_name(), finding.container.as_deref().unwrap_or_default(), finding.rule);
    SarifResult {
        rule_id: finding.rule,
        rule_index: RULES.iter().position(|r| r.id == finding.rule),
        level: finding.level.sarif(),
        message: Text { text },
        locations: vec![serde_json::Value::Object(location)],
        partial_fingerprints: serde_json::json!({ "podmedic/v1": fingerprint }),
        properties: match object.document {
            Some(document) => serde_json::json!({ "object": object.qualified_name(), "document": document }),
            None => serde_json::json!({ "object": object.qualified_name() }),
        },
    }
}

/// The path relative to the working directory, as a URI reference with `/` separators; `None`
/// for a path outside it.
fn relative_uri(path: &Path, cwd: Option<&Path>) -> Option<String> {
    let relative = if path.is_absolute() { path.strip_prefix(cwd?).ok()? } else { path };
    let mut parts = Vec::new();
    for component in relative.components() {
        match component {
            Component::CurDir => {}
            Component::Normal(part) => parts.push(percent_encode(&part.to_string_lossy())),
            // `..` leaves the source root, which SARIF viewers cannot resolve.
            _ => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// `file://` URI of an absolute (or made absolute) path.
fn file_uri(path: &Path) -> String {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let encoded: Vec<String> = absolute
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(percent_encode(&part.to_string_lossy())),
            _ => None,
        })
        .collect();
    format!("file:///{}", encoded.join("/"))
}

fn directory_uri(dir: &Path) -> Option<String> {
    dir.is_absolute().then(|| format!("{}/", file_uri(dir)))
}

/// Escapes what a URI path segment cannot hold as is.
fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'+' | b'@' | b'=' | b',' => {
                out.push(char::from(byte));
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// SARIF forbids `null` where a property is absent; drop the ones `json!` wrote for `None`.
fn without_nulls(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, without_nulls(v))).collect(),
        ),
        serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_uris_relative_to_the_source_root() {
        let cwd = Path::new("/repo");
        assert_eq!(relative_uri(Path::new("./deploy/jobs.yaml"), Some(cwd)).as_deref(), Some("deploy/jobs.yaml"));
        assert_eq!(relative_uri(Path::new("/repo/a b/j#1.yaml"), Some(cwd)).as_deref(), Some("a%20b/j%231.yaml"));
        assert_eq!(relative_uri(Path::new("/elsewhere/j.yaml"), Some(cwd)), None);
        assert_eq!(relative_uri(Path::new("../j.yaml"), Some(cwd)), None);
        assert_eq!(file_uri(Path::new("/elsewhere/my jobs.yaml")), "file:///elsewhere/my%20jobs.yaml");
    }
}
