//! The audit as a report for CI systems (`-o sarif`, `-o junit`): one object per Job, CronJob or
//! Pod the audit names, with its findings. These come from a cluster, not from files, so SARIF
//! results carry logical locations only (namespace, kind, name).

use crate::commands::report::{ADVICE, Finding, Level, Report, ReportedObject, change_rule, warning_rule};

use super::report::AuditReport;

/// The audit's findings, one object per `namespace/Kind/name` (a Job that would change and is
/// stuck is one object with both findings), in the order the report lists them.
pub fn audit_findings(report: &AuditReport) -> Report {
    let mut objects: Vec<ReportedObject> = Vec::new();
    let mut object = |namespace: &str, kind: &str, name: &str| -> usize {
        let found =
            objects.iter().position(|o| o.namespace.as_deref() == Some(namespace) && o.kind == kind && o.name == name);
        found.unwrap_or_else(|| {
            objects.push(ReportedObject {
                namespace: Some(namespace.to_owned()),
                kind: kind.to_owned(),
                name: name.to_owned(),
                file: None,
                document: None,
                line: None,
                findings: Vec::new(),
            });
            objects.len() - 1
        })
    };
    let mut found: Vec<(usize, Finding)> = Vec::new();
    for w in &report.would_change {
        let at = object(&w.namespace, &w.kind, &w.name);
        let enabled = match w.namespace_enabled {
            Some(true) => "podmedic changes it at the next admission",
            Some(false) => "label the namespace podmedic.io/enabled=true to have podmedic change it",
            None => "podmedic changes it where its namespace is labelled podmedic.io/enabled=true",
        };
        for change in &w.changes {
            let message = format!("{}; {enabled}", change.detail);
            let container = Some(change.container.clone());
            found.push((at, finding(change_rule(change.kind), Level::Error, container, message)));
        }
        for (i, text) in w.warnings.iter().enumerate() {
            let rule = w.warning_kinds.get(i).map_or(ADVICE, |k| warning_rule(*k));
            found.push((at, finding(rule, Level::Warning, None, text.clone())));
        }
        for text in &w.notes {
            found.push((at, finding(ADVICE, Level::Warning, None, text.clone())));
        }
    }
    for s in &report.stuck {
        let at = object(&s.namespace, "Job", &s.job);
        let finished: Vec<String> =
            s.stuck.finished.iter().map(|c| format!("{} (exit {})", c.name, c.exit_code)).collect();
        let message = format!(
            "Pod {}: {} finished, sidecar {} still running; delete the Pod, and let podmedic make it a native sidecar",
            s.pod,
            finished.join(", "),
            s.stuck.running_sidecars.join(", ")
        );
        let container = s.stuck.running_sidecars.first().cloned();
        found.push((at, finding("stuck-on-sidecar", Level::Error, container, message)));
    }
    for n in &report.not_running {
        let at = object(&n.namespace, "Pod", &n.pod);
        let message = format!("{}: {}; fix: {}", n.status, n.cause, n.fix);
        found.push((at, finding("not-running", Level::Error, n.container.clone(), message)));
    }
    for (at, f) in found {
        objects[at].findings.push(f);
    }
    Report { command: "podmedic audit".into(), objects }
}

fn finding(rule: &'static str, level: Level, container: Option<String>, message: String) -> Finding {
    Finding { rule, level, container, message, line: None }
}
