//! The log line of each admission, and which admissions get one at the default level.

use std::collections::BTreeMap;
use std::time::Duration;

use podmedic_engine::ChangeKind;
use podmedic_engine::admission::{Admission, Outcome};

/// One line per admission; never the object itself, which may carry secrets in its environment.
/// At INFO when podmedic did something a user may look for (patched, warned, or let the object
/// through after failing on it); at DEBUG when it had nothing to do (unchanged, ignored): in a
/// cluster that is most Pods, and a line for each of them cost more CPU than reading the Pod
/// (BENCHMARKS.md) and floods log pipelines with lines nobody reads.
pub(super) fn log_admission(admission: &Admission, elapsed: Duration) {
    macro_rules! admission_event {
        ($level:expr) => {
            tracing::event!(
                $level,
                uid = %admission.uid,
                path = admission.endpoint.path(),
                kind = %admission.kind,
                namespace = %admission.namespace,
                name = %admission.name,
                operation = admission.operation,
                dry_run = admission.dry_run,
                result = admission.outcome.label(),
                changes = %ChangeCounts(&admission.changes),
                warnings = admission.warnings,
                duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
                "admission"
            )
        };
    }
    match admission.outcome {
        Outcome::Patched | Outcome::Warned | Outcome::Skipped => admission_event!(tracing::Level::INFO),
        Outcome::Unchanged | Outcome::Ignored => admission_event!(tracing::Level::DEBUG),
    }
    if let Some((label, message)) = &admission.skip_reason {
        tracing::error!(
            uid = %admission.uid,
            path = admission.endpoint.path(),
            kind = %admission.kind,
            namespace = %admission.namespace,
            name = %admission.name,
            reason = label,
            error = %message,
            "podmedic skipped this object and let it through unchanged"
        );
    }
}

/// The `changes` field of the admission line: each kind of change once, with its count when more
/// than one (`sidecar_moved,probe_added*2`): a Pod with thousands of containers makes thousands.
/// Formatted only when the line is written.
struct ChangeCounts<'a>(&'a [ChangeKind]);

impl std::fmt::Display for ChangeCounts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut counted: BTreeMap<&str, usize> = BTreeMap::new();
        for change in self.0 {
            *counted.entry(change.label()).or_default() += 1;
        }
        for (i, (label, n)) in counted.iter().enumerate() {
            f.write_str(if i == 0 { "" } else { "," })?;
            f.write_str(label)?;
            if *n > 1 {
                write!(f, "*{n}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use podmedic_engine::admission::Endpoint;

    use super::*;
    use crate::logging::testing::CapturedLines;

    fn admission(outcome: Outcome, changes: Vec<ChangeKind>) -> Admission {
        Admission {
            body: Vec::new(),
            uid: format!("uid-{}", outcome.label()),
            kind: "Pod".into(),
            namespace: "batch".into(),
            name: "report-*".into(),
            operation: "CREATE",
            endpoint: Endpoint::Mutate,
            dry_run: false,
            outcome,
            changes,
            warnings: 0,
            skip_reason: None,
        }
    }

    #[test]
    fn at_the_default_level_only_admissions_that_did_something_are_logged() {
        let captured = CapturedLines::default();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(captured.clone())
            .finish();
        let moved = vec![ChangeKind::SidecarMoved, ChangeKind::ProbeAdded, ChangeKind::ProbeAdded];
        let mut skipped = admission(Outcome::Skipped, Vec::new());
        skipped.skip_reason = Some(("engine_panic", "internal error (panic in the engine)".into()));
        tracing::subscriber::with_default(subscriber, || {
            for admission in [
                admission(Outcome::Patched, moved),
                admission(Outcome::Unchanged, Vec::new()),
                admission(Outcome::Ignored, Vec::new()),
                admission(Outcome::Warned, Vec::new()),
                skipped,
            ] {
                log_admission(&admission, Duration::from_micros(120));
            }
        });
        let text = captured.text();
        let lines: Vec<&str> = text.lines().collect();
        let uids: Vec<&str> = lines.iter().filter_map(|l| l.split("uid=").nth(1)?.split(' ').next()).collect();
        assert_eq!(uids, ["uid-patched", "uid-warned", "uid-skipped", "uid-skipped"], "{text}");
        assert!(lines[0].contains(" INFO ") && lines[0].contains("changes=probe_added*2,sidecar_moved"), "{text}");
        assert!(lines[3].contains(" ERROR ") && lines[3].contains("panic in the engine"), "{text}");
    }
}
