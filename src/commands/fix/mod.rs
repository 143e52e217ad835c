//! `podmedic fix`: the engine offline, on YAML or JSON files, with no cluster.
//!
//! Reads every document of every file (and the items of `kind: List`), runs the engine on each,
//! applies the patch, and writes the objects back in the same order. Kinds podmedic does not act
//! on pass through unchanged. `--check` turns it into a CI gate, with a report for people or CI
//! systems (`report.rs`: text, JSON, SARIF with the line of each container, JUnit); `--diff`
//! shows what would change.

mod positions;
mod report;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use podmedic_engine::{
    Change, Context, KubeVersion, NativeSidecars, Policy, WarningKind, diagnose_value, mutate_value,
};
use serde::Deserialize;
use serde_json::Value;

use super::report::{ADVICE, ReportFormat, warning_rule, write_report};

/// Output format of `podmedic fix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// YAML documents separated by `---`.
    Yaml,
    /// JSON: the object, or a `v1` `List` when there are several.
    Json,
}

/// What `podmedic fix` does (from `cli::FixArgs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixConfig {
    /// Files or directories to read; `-` or nothing reads standard input.
    pub files: Vec<PathBuf>,
    /// Output format.
    pub output: OutputFormat,
    /// Print a unified diff instead of the objects.
    pub diff: bool,
    /// Write no manifests; exit 1 when anything would change.
    pub check: bool,
    /// How `--check` reports what it found.
    pub report: ReportFormat,
    /// The target cluster's Kubernetes version (`MAJOR.MINOR`), as given.
    pub kubernetes_version: Option<String>,
    /// A policy file merged over the built-in policy.
    pub policy: Option<PathBuf>,
    /// Also print notes.
    pub verbose: bool,
}

/// Why `podmedic fix` failed. Every error names the input and the document.
#[derive(Debug, thiserror::Error)]
pub enum FixError {
    /// An input could not be read.
    #[error("{input}: {source}")]
    Read {
        /// The file, or `<stdin>`.
        input: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A document is not valid YAML or JSON.
    #[error("{input}: document {document}: {message}")]
    Parse {
        /// The file.
        input: String,
        /// 1-based document number.
        document: usize,
        /// What is wrong.
        message: String,
    },
    /// The engine could not read an object.
    #[error("{input}: document {document} ({object}): {message}")]
    Object {
        /// The file.
        input: String,
        /// 1-based document number.
        document: usize,
        /// `Kind/name`.
        object: String,
        /// What is wrong.
        message: String,
    },
    /// `--kubernetes-version` is not `MAJOR.MINOR`.
    #[error("--kubernetes-version {0:?}: expected MAJOR.MINOR, for example 1.28")]
    Version(String),
}

/// One fixed document.
struct Fixed {
    input: String,
    document: usize,
    label: String,
    before: Value,
    after: Value,
    warnings: Vec<String>,
    notes: Vec<String>,
    /// The document's object, or each item of a `List`, with what the engine found.
    objects: Vec<Outcome>,
}

/// What the engine did to one object (a document, or an item of a `List`).
struct Outcome {
    /// The position in the `List`'s `items`, for an item.
    item: Option<usize>,
    /// The object after the fix (its kind, name and namespace name it in reports).
    kind: String,
    name: String,
    namespace: Option<String>,
    changes: Vec<Change>,
    /// Each warning with the rule that gave it and, for a check's, the container it names.
    warnings: Vec<(&'static str, Option<String>, String)>,
}

impl Fixed {
    fn changed(&self) -> bool {
        self.before != self.after
    }
}

/// Runs `podmedic fix`: exit 0, or 1 with `--check` when something would change.
pub fn run(config: &FixConfig) -> anyhow::Result<ExitCode> {
    let policy = Policy::load_or_builtin(config.policy.as_deref())?;
    let native = match &config.kubernetes_version {
        Some(v) => {
            let version = KubeVersion::parse(v).ok_or_else(|| FixError::Version(v.clone()))?;
            NativeSidecars::for_version(version.major, version.minor)
        }
        None => NativeSidecars::Available,
    };
    let ctx = Context::new(&policy, &native);

    let inputs: Vec<PathBuf> = if config.files.is_empty() { vec![PathBuf::from("-")] } else { config.files.clone() };
    let mut documents = Vec::new();
    let mut positions = std::collections::HashMap::new();
    for input in expand_directories(&inputs)? {
        let (name, text) = read_input(&input)?;
        documents.extend(fix_text(&name, &text, &ctx)?);
        if config.check {
            positions.insert(name, positions::FilePositions::read(&text));
        }
    }

    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    // The text report says the warnings itself, at their lines.
    let warnings_in_report = config.check && !config.diff && config.report == ReportFormat::Text;
    for doc in &documents {
        for w in doc.warnings.iter().filter(|_| !warnings_in_report) {
            writeln!(err, "warning: {}: {}: {w}", doc.input, doc.label)?;
        }
        if config.verbose {
            for n in &doc.notes {
                writeln!(err, "note: {}: {}: {n}", doc.input, doc.label)?;
            }
        }
    }
    let changed = documents.iter().filter(|d| d.changed()).count();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if config.diff {
        for doc in documents.iter().filter(|d| d.changed()) {
            write!(out, "{}", diff(doc)?)?;
        }
    } else if !config.check {
        write_documents(&mut out, &documents, config.output)?;
    }
    out.flush()?;
    if config.check {
        if !config.diff {
            write_report(&mut out, &report::build(&documents, &positions), config.report)?;
            out.flush()?;
        }
        writeln!(err, "{changed} of {} object(s) would change", documents.len())?;
        return Ok(if changed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS });
    }
    Ok(ExitCode::SUCCESS)
}

/// Replaces each directory by the manifest files below it, sorted by path.
fn expand_directories(inputs: &[PathBuf]) -> Result<Vec<PathBuf>, FixError> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found = Vec::new();
            collect_manifests(input, &mut HashSet::new(), &mut found)?;
            found.sort();
            out.extend(found);
        } else {
            out.push(input.clone());
        }
    }
    Ok(out)
}

/// Collects the manifests below `dir`. Symlinked directories are followed (kustomize trees use
/// them), but each real directory is read once: a link back up the tree (`overlay/base -> ..`)
/// would otherwise recurse until the path is too long, multiplying the files read at each level.
fn collect_manifests(dir: &Path, visited: &mut HashSet<PathBuf>, found: &mut Vec<PathBuf>) -> Result<(), FixError> {
    let read_error = |source| FixError::Read { input: dir.display().to_string(), source };
    if !visited.insert(std::fs::canonicalize(dir).map_err(read_error)?) {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        if path.is_dir() {
            collect_manifests(&path, visited, found)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json") {
            found.push(path);
        }
    }
    Ok(())
}

fn read_input(input: &Path) -> Result<(String, String), FixError> {
    if input.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|source| FixError::Read { input: "<stdin>".into(), source })?;
        return Ok(("<stdin>".into(), text));
    }
    let name = input.display().to_string();
    let text = std::fs::read_to_string(input).map_err(|source| FixError::Read { input: name.clone(), source })?;
    Ok((name, text))
}

/// Fixes every document of one input.
fn fix_text(input: &str, text: &str, ctx: &Context<'_>) -> Result<Vec<Fixed>, FixError> {
    let mut out = Vec::new();
    for (i, de) in yaml_serde::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let value = Value::deserialize(de).map_err(|e| FixError::Parse {
            input: input.to_owned(),
            document,
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue; // an empty document (`---` at the end of a file)
        }
        out.push(fix_document(input, document, value, ctx)?);
    }
    Ok(out)
}

fn fix_document(input: &str, document: usize, before: Value, ctx: &Context<'_>) -> Result<Fixed, FixError> {
    let label = label(&before);
    let error =
        |message: String| FixError::Object { input: input.to_owned(), document, object: label.clone(), message };
    let mut after = before.clone();
    let mut warnings = Vec::new();
    let mut notes = Vec::new();
    let mut objects = Vec::new();
    if before.get("kind").and_then(Value::as_str).is_some_and(|k| k == "List" || k.ends_with("List")) {
        if let Some(items) = after.get_mut("items").and_then(Value::as_array_mut) {
            for (j, item) in items.iter_mut().enumerate() {
                let m = mutate_value(item, ctx).map_err(|e| error(format!("items[{j}]: {e}")))?;
                let item_before = item.clone();
                json_patch::patch(item, &m.patch).map_err(|e| error(format!("items[{j}]: {e}")))?;
                let item_label = self::label(item);
                warnings.extend(m.warnings.iter().map(|w| format!("{item_label}: {w}")));
                notes.extend(m.notes.iter().map(|n| format!("{item_label}: {n}")));
                objects.push(outcome(Some(j), &item_before, item, m.changes, m.warnings, &m.warning_kinds, ctx));
            }
        }
    } else {
        let m = mutate_value(&before, ctx).map_err(|e| error(e.to_string()))?;
        json_patch::patch(&mut after, &m.patch).map_err(|e| error(e.to_string()))?;
        warnings.clone_from(&m.warnings);
        notes = m.notes;
        objects.push(outcome(None, &before, &after, m.changes, m.warnings, &m.warning_kinds, ctx));
    }
    Ok(Fixed { input: input.to_owned(), document, label, before, after, warnings, notes, objects })
}

/// The report's view of one object: its changes, and its warnings each with its rule (the
/// engine's kind of the warning: a check's name such as `node-fit`, or `latest-tag`, ...). A
/// check's warning also names its container, which the diagnosis gives.
fn outcome(
    item: Option<usize>,
    before: &Value,
    after: &Value,
    changes: Vec<Change>,
    warnings: Vec<String>,
    kinds: &[WarningKind],
    ctx: &Context<'_>,
) -> Outcome {
    let findings = if kinds.iter().any(|k| matches!(k, WarningKind::Check(_))) {
        diagnose_value(before, ctx).map(|d| d.findings).unwrap_or_default()
    } else {
        Vec::new()
    };
    let warnings = warnings
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            let kind = kinds.get(i).copied();
            let container = match kind {
                Some(WarningKind::Check(check)) => {
                    findings.iter().find(|f| f.check == check && f.message == w).and_then(|f| f.container.clone())
                }
                _ => None,
            };
            (kind.map_or(ADVICE, warning_rule), container, w)
        })
        .collect();
    let text = |pointer: &str| after.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
    Outcome {
        item,
        kind: text("/kind").unwrap_or_else(|| "object".into()),
        name: name_of(after),
        namespace: text("/metadata/namespace"),
        changes,
        warnings,
    }
}

/// `Kind/name` for messages.
fn label(value: &Value) -> String {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("object");
    format!("{kind}/{}", name_of(value))
}

/// The object's name, `generateName*`, or `(unnamed)`.
fn name_of(value: &Value) -> String {
    let meta = value.get("metadata");
    meta.and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| meta.and_then(|m| m.get("generateName")).and_then(Value::as_str).map(|g| format!("{g}*")))
        .unwrap_or_else(|| "(unnamed)".into())
}

fn write_documents(out: &mut impl Write, documents: &[Fixed], format: OutputFormat) -> anyhow::Result<()> {
    match format {
        OutputFormat::Yaml => {
            for (i, doc) in documents.iter().enumerate() {
                if i > 0 {
                    writeln!(out, "---")?;
                }
                write!(out, "{}", yaml_serde::to_string(&doc.after).context("cannot write YAML")?)?;
            }
        }
        OutputFormat::Json => {
            let value = match documents {
                [one] => one.after.clone(),
                many => serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "List",
                    "items": many.iter().map(|d| d.after.clone()).collect::<Vec<_>>(),
                }),
            };
            serde_json::to_writer_pretty(&mut *out, &value)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

fn diff(doc: &Fixed) -> anyhow::Result<String> {
    let before = yaml_serde::to_string(&doc.before)?;
    let after = yaml_serde::to_string(&doc.after)?;
    let header_a = format!("{} (document {}: {})", doc.input, doc.document, doc.label);
    let header_b = format!("{header_a} fixed by podmedic");
    Ok(similar::TextDiff::from_lines(&before, &after)
        .unified_diff()
        .context_radius(3)
        .header(&header_a, &header_b)
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_versions() {
        let major_minor = |text: &str| KubeVersion::parse(text).map(|v| (v.major, v.minor));
        assert_eq!(major_minor("1.28"), Some((1, 28)));
        assert_eq!(major_minor("v1.30.2-gke.1"), Some((1, 30)));
        assert_eq!(major_minor("1"), None);
        assert_eq!(major_minor("one.two"), None);
    }

    #[test]
    fn errors_name_the_input_and_the_document() {
        let policy = Policy::builtin();
        let ctx = Context::new(&policy, &NativeSidecars::Available);
        let err = fix_text("jobs.yaml", "kind: ConfigMap\n---\nkind: [unclosed\n", &ctx).err().unwrap();
        assert!(err.to_string().starts_with("jobs.yaml: document 2:"), "{err}");
        let err =
            fix_text("pods.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: {a: 1}}\n", &ctx)
                .err()
                .unwrap();
        assert!(err.to_string().contains("pods.yaml: document 1 (Pod/p)"), "{err}");
    }
}
