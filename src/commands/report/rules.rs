//! Every rule a report can name: id, title and help. The ids are stable (SARIF `ruleId`, JUnit
//! failure `type`, `--report json`'s `rule`).

use podmedic_engine::{ChangeKind, WarningKind};

/// One rule of a report.
#[derive(Debug, PartialEq, Eq)]
pub struct Rule {
    /// Stable id.
    pub id: &'static str,
    /// Short title.
    pub title: &'static str,
    /// What it means and what to do.
    pub help: &'static str,
    /// The README section that explains it.
    pub anchor: &'static str,
}

const CHANGES: &str = "what-podmedic-changes-and-when";
const CHECKS: &str = "beyond-sidecars-pending-and-crashloopbackoff";
const AUDIT: &str = "why-is-my-pod-not-running";
const GITOPS: &str = "gitops";

/// Every rule, in the order SARIF lists them (`ruleIndex` is the position here).
pub const RULES: [Rule; 29] = [
    Rule {
        id: "sidecar-moved",
        title: "A long-running sidecar of a run-to-completion Pod becomes a native sidecar",
        help: "Move the container to initContainers with restartPolicy: Always (run `podmedic fix`), \
               so the Job completes when its main containers do.",
        anchor: CHANGES,
    },
    Rule {
        id: "probe-added",
        title: "A startup probe is added to a native sidecar",
        help: "Add the startup probe `podmedic fix` writes, so the main containers start once the sidecar is ready.",
        anchor: CHANGES,
    },
    Rule {
        id: "health-check-enabled",
        title: "A sidecar's health endpoint is switched on so that it can be probed",
        help: "Add the flag or environment variable `podmedic fix` writes.",
        anchor: CHANGES,
    },
    Rule {
        id: "requests-added",
        title: "Default resource requests are added to a container",
        help: "Set resource requests on the container (or accept the defaults `podmedic fix` writes).",
        anchor: CHANGES,
    },
    Rule {
        id: "exit-zero-on-sigterm",
        title: "A database proxy is told to exit 0 when the kubelet stops it",
        help: "Add the flag `podmedic fix` writes, so a stopped proxy does not fail the Job with exit code 143.",
        anchor: CHANGES,
    },
    Rule {
        id: "sidecar-kept",
        title: "A re-applied sidecar podmedic had moved stays a native sidecar",
        help: "Nothing to do: the stored native sidecar is kept while the applied container is unchanged.",
        anchor: GITOPS,
    },
    Rule {
        id: "sidecar-restored",
        title: "A re-applied sidecar an earlier podmedic had moved goes back to containers as applied",
        help: "Nothing to do: podmedic undoes its own earlier move so the object can be re-applied.",
        anchor: GITOPS,
    },
    Rule {
        id: "sidecar-removed",
        title: "A sidecar no longer applied leaves initContainers too",
        help: "Nothing to do: the native sidecar podmedic placed follows the sidecar out of Git.",
        anchor: GITOPS,
    },
    Rule {
        id: "node-fit",
        title: "The Pod's effective request fits no node",
        help: "Lower the requests or add nodes large enough.",
        anchor: CHECKS,
    },
    Rule {
        id: "node-selector",
        title: "nodeSelector or required node affinity matches no node",
        help: "Fix the selector or label a node.",
        anchor: CHECKS,
    },
    Rule {
        id: "node-taints",
        title: "Every node the Pod may use has a taint it does not tolerate",
        help: "Add the toleration or use other nodes.",
        anchor: CHECKS,
    },
    Rule {
        id: "references",
        title: "A ConfigMap, Secret, PersistentVolumeClaim or ServiceAccount the Pod needs was not seen",
        help: "Create the object or fix its name.",
        anchor: CHECKS,
    },
    Rule {
        id: "probe-identical",
        title: "The liveness probe is identical to the readiness probe",
        help: "Make the liveness probe check only that the process is alive.",
        anchor: CHECKS,
    },
    Rule {
        id: "probe-window",
        title: "The liveness probe gives up before the application can start",
        help: "Add a startup probe or widen the liveness probe's window.",
        anchor: CHECKS,
    },
    Rule {
        id: "probe-port",
        title: "A probe names a port the container does not declare",
        help: "Declare the port or probe a number.",
        anchor: CHECKS,
    },
    Rule {
        id: "backgrounded-entrypoint",
        title: "A shell command ends with a backgrounded process",
        help: "Run the last process in the foreground (drop the trailing &, or `exec` it), so the container \
               does not exit before its work is done.",
        anchor: CHECKS,
    },
    Rule {
        id: "latest-tag",
        title: "An image has the latest tag or none",
        help: "Pin a version (or a digest), so every node runs the same image.",
        anchor: CHECKS,
    },
    Rule {
        id: "missing-requests",
        title: "Containers have no resource requests",
        help: "Set CPU and memory requests, so the scheduler reserves what the containers need.",
        anchor: CHECKS,
    },
    Rule {
        id: "stops-sidecars-itself",
        title: "A main container still stops its sidecars itself",
        help: "Drop the shutdown hand-off (/quitquitquit, kubexit, kill): a native sidecar is stopped by the \
               kubelet, and stopping it from inside makes the kubelet restart it.",
        anchor: CHANGES,
    },
    Rule {
        id: "native-sidecars-unavailable",
        title: "Native sidecars are not available where this Pod may run",
        help: "Upgrade the API server and the kubelets to 1.29 or later; until then the sidecars stay where they are.",
        anchor: CHANGES,
    },
    Rule {
        id: "pod-failure-policy",
        title: "A podFailurePolicy rule can match a native sidecar's exit code",
        help: "Set containerName on the rule's onExitCodes, so a sidecar stopped with 143 does not fail the Job.",
        anchor: CHANGES,
    },
    Rule {
        id: "annotation",
        title: "A podmedic.io annotation names something that is not there, or has an unknown value",
        help: "Fix the annotation: the message names it and the value podmedic did not use.",
        anchor: CHANGES,
    },
    Rule {
        id: "sidecar-not-moved",
        title: "A sidecar podmedic recognised was not moved",
        help: "Read why in the message (its restartPolicy, a name clash, too many sidecars, every container a \
               sidecar); name the main container in podmedic.io/not-sidecars where that is the cause.",
        anchor: CHANGES,
    },
    Rule {
        id: "probe-not-added",
        title: "A moved sidecar got no startup probe",
        help: "Give the sidecar a startup probe yourself, or make its health endpoint reachable.",
        anchor: CHANGES,
    },
    Rule {
        id: "template-reapplied",
        title: "A re-applied template's sidecar an earlier podmedic had moved",
        help: "Nothing to do for a CronJob; a Job's template cannot change: delete and re-create the Job.",
        anchor: GITOPS,
    },
    Rule {
        id: "more-warnings",
        title: "More warnings than podmedic shows for one object",
        help: "Fix the ones shown and run again.",
        anchor: CHECKS,
    },
    Rule {
        id: ADVICE,
        title: "podmedic saw something it cannot safely fix",
        help: "Read the message: it names the container and what to do.",
        anchor: CHECKS,
    },
    Rule {
        id: "stuck-on-sidecar",
        title: "A Job's Pod is held open by a sidecar after its main containers finished",
        help: "Delete the Pod's sidecar process or the Pod, then label the namespace podmedic.io/enabled=true \
               so new Jobs get native sidecars.",
        anchor: AUDIT,
    },
    Rule {
        id: "not-running",
        title: "A Pod is not running (Pending, CrashLoopBackOff, ImagePullBackOff, ...)",
        help: "Read the cause and the fix in the message.",
        anchor: AUDIT,
    },
];

/// The rule of a change the engine makes.
pub fn change_rule(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::SidecarMoved => "sidecar-moved",
        ChangeKind::ProbeAdded => "probe-added",
        ChangeKind::HealthCheckEnabled => "health-check-enabled",
        ChangeKind::RequestsAdded => "requests-added",
        ChangeKind::ExitZeroOnSigterm => "exit-zero-on-sigterm",
        ChangeKind::SidecarKept => "sidecar-kept",
        ChangeKind::SidecarRestored => "sidecar-restored",
        ChangeKind::SidecarRemoved => "sidecar-removed",
    }
}

/// The rule of a warning the engine gave: its kind's name (a check's warning: the check's
/// `podmedic.io/disabled-checks` name).
pub fn warning_rule(kind: WarningKind) -> &'static str {
    kind.name()
}

/// The rule of what has no kind of its own: a note of `podmedic audit` (what podmedic saw but did
/// not do).
pub const ADVICE: &str = "advice";

#[cfg(test)]
mod tests {
    use podmedic_engine::checks::CheckId;

    use super::*;

    fn rule(id: &str) -> Option<&'static Rule> {
        RULES.iter().find(|r| r.id == id)
    }

    #[test]
    fn every_change_and_check_has_a_rule_and_ids_are_unique() {
        let kinds = [
            ChangeKind::SidecarMoved,
            ChangeKind::ProbeAdded,
            ChangeKind::HealthCheckEnabled,
            ChangeKind::RequestsAdded,
            ChangeKind::ExitZeroOnSigterm,
            ChangeKind::SidecarKept,
            ChangeKind::SidecarRestored,
            ChangeKind::SidecarRemoved,
        ];
        for kind in kinds {
            let id = change_rule(kind);
            assert!(rule(id).is_some(), "{id}");
            // The id is the change's name in the engine's JSON, with dashes.
            assert_eq!(serde_json::to_value(kind).unwrap(), id);
        }
        for check in CheckId::ALL {
            assert!(rule(warning_rule(WarningKind::Check(check))).is_some(), "{}", check.name());
        }
        for kind in WarningKind::OWN {
            assert!(rule(warning_rule(kind)).is_some(), "{}", kind.name());
        }
        let mut ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len());
    }
}
