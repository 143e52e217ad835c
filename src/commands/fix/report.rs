//! `podmedic fix --check`'s report: every object read, with the changes podmedic would make
//! (failing the check) and its warnings, each at the line of its container.

use std::collections::HashMap;

use super::positions::FilePositions;
use super::{Fixed, Outcome};
use crate::commands::report::{Finding, Level, Report, ReportedObject, change_rule};

/// The report of the fixed documents; `positions` holds the lines of each input file read.
pub(super) fn build(documents: &[Fixed], positions: &HashMap<String, FilePositions>) -> Report {
    let mut objects = Vec::new();
    // The index of each document among the non-empty documents of its file, as positions count.
    let mut index_in_file: HashMap<&str, usize> = HashMap::new();
    for doc in documents {
        let counter = index_in_file.entry(doc.input.as_str()).or_default();
        let index = *counter;
        *counter += 1;
        let lines = positions.get(&doc.input);
        let from_file = doc.input != "<stdin>";
        for outcome in &doc.objects {
            objects.push(reported(doc, outcome, from_file.then_some(lines).flatten(), index, from_file));
        }
    }
    Report { command: "podmedic fix --check".into(), objects }
}

fn reported(
    doc: &Fixed,
    outcome: &Outcome,
    lines: Option<&FilePositions>,
    index: usize,
    from_file: bool,
) -> ReportedObject {
    let object_line = lines.and_then(|p| p.object_line(index, outcome.item));
    let line_of = |container: Option<&str>| {
        container.and_then(|c| lines.and_then(|p| p.container_line(index, outcome.item, c))).or(object_line)
    };
    let mut findings: Vec<Finding> = outcome
        .changes
        .iter()
        .map(|change| Finding {
            rule: change_rule(change.kind),
            level: Level::Error,
            container: Some(change.container.clone()),
            message: format!("{}; run `podmedic fix` to apply", change.detail),
            line: line_of(Some(&change.container)),
        })
        .collect();
    findings.extend(outcome.warnings.iter().map(|(rule, container, text)| {
        let container = container.clone().or_else(|| container_named_in(text));
        Finding { rule, level: Level::Warning, line: line_of(container.as_deref()), container, message: text.clone() }
    }));
    ReportedObject {
        namespace: outcome.namespace.clone(),
        kind: outcome.kind.clone(),
        name: outcome.name.clone(),
        file: from_file.then(|| doc.input.clone()),
        document: Some(doc.document),
        line: object_line,
        findings,
    }
}

/// The container a warning starts with (`container NAME: ...`), to place it on that line.
fn container_named_in(warning: &str) -> Option<String> {
    let rest = warning.strip_prefix("container ")?;
    let (name, _) = rest.split_once(':')?;
    (!name.is_empty() && !name.contains(' ')).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_about_one_container_are_placed_on_it() {
        assert_eq!(container_named_in("container web: image web has no tag; pin a version").as_deref(), Some("web"));
        assert_eq!(container_named_in("no resource requests on a, b: set requests"), None);
        assert_eq!(container_named_in("container : odd"), None);
    }
}
