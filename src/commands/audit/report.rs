//! The audit's report, computed from what was read: what the engine would change, which Jobs
//! look stuck on a sidecar, and why the Pods that do not run do not (`explain.rs`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use podmedic_engine::annotations::{ENABLED_LABEL, namespace_settings};
use podmedic_engine::cluster::NodeFacts;
use podmedic_engine::kubernetes::{NodeKubelet, decide_native_sidecars};
use podmedic_engine::{
    Change, ChangeKind, Context, NamespaceSettings, NativeSidecars, Policy, WarningKind, mutate_value,
};
use serde::Serialize;
use serde_json::Value;

use super::events::PodEvents;
use super::explain::{Explaining, NotRunning, explain_pod};
use super::vpa::vpa_notes;

/// Most Pods the report explains; the count of the others goes into a note.
pub const MAX_NOT_RUNNING: usize = 1000;

/// Everything `podmedic audit` reports.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditReport {
    /// Whether the cluster runs native sidecars.
    pub native_sidecars: CapabilityReport,
    /// Objects podmedic would change at admission.
    pub would_change: Vec<WouldChange>,
    /// Jobs that look stuck on a sidecar.
    pub stuck: Vec<StuckJob>,
    /// Pods that are not running as they should, each with its cause and fix.
    pub not_running: Vec<NotRunning>,
    /// What the audit could not see (missing permissions, for example).
    pub notes: Vec<String>,
}

/// The cluster's native-sidecar capability as the audit found it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CapabilityReport {
    /// True when the API server and every kubelet checked run 1.29 or newer.
    pub available: bool,
    /// Why not, when not available.
    pub reason: Option<String>,
    /// The API server's version.
    pub api_server: String,
    /// Number of Nodes whose kubelet was checked; `None` when Nodes could not be listed.
    pub nodes_checked: Option<usize>,
}

impl CapabilityReport {
    /// The capability decided from the API server's version and the kubelets (`None`: not listable).
    pub fn decide(api_server: String, kubelets: Option<&[NodeKubelet]>) -> CapabilityReport {
        let decision = decide_native_sidecars(&api_server, kubelets.unwrap_or_default());
        let (available, reason) = match decision {
            NativeSidecars::Available => (true, None),
            NativeSidecars::Unavailable(reason) => (false, Some(reason)),
        };
        CapabilityReport { available, reason, api_server, nodes_checked: kubelets.map(<[_]>::len) }
    }

    fn native_sidecars(&self) -> NativeSidecars {
        match &self.reason {
            None if self.available => NativeSidecars::Available,
            reason => NativeSidecars::Unavailable(reason.clone().unwrap_or_default()),
        }
    }
}

/// An object podmedic would change.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WouldChange {
    /// Its namespace.
    pub namespace: String,
    /// `Job`, `CronJob` or `Pod`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Whether the namespace carries `podmedic.io/enabled: "true"` (`None`: namespace not readable).
    pub namespace_enabled: Option<bool>,
    /// The changes the engine would make.
    pub changes: Vec<Change>,
    /// The warnings the engine would return.
    pub warnings: Vec<String>,
    /// What each warning is about, in the same order (the reports' rule ids).
    #[serde(skip)]
    pub warning_kinds: Vec<WarningKind>,
    /// What else to know: a VerticalPodAutoscaler that stops sizing a sidecar once it moves.
    pub notes: Vec<String>,
}

/// A Job that looks stuck: its Pod's main containers finished, a sidecar still runs.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StuckJob {
    /// The namespace.
    pub namespace: String,
    /// The Job.
    pub job: String,
    /// The stuck Pod.
    pub pod: String,
    /// What the Pod shows.
    #[serde(flatten)]
    pub stuck: StuckPod,
}

/// Why a Pod looks stuck on a sidecar.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StuckPod {
    /// The main containers, all finished, with their exit codes.
    pub finished: Vec<FinishedContainer>,
    /// The sidecars still running.
    pub running_sidecars: Vec<String>,
    /// When the last main container finished.
    pub finished_at: Option<Timestamp>,
}

/// A main container that has terminated.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FinishedContainer {
    /// The container name.
    pub name: String,
    /// Its exit code.
    pub exit_code: i32,
}

/// What the audit read from the cluster. Jobs, CronJobs and Pods are raw JSON, as the API server
/// sent them (with `apiVersion` and `kind`): the engine reads them as the webhook would.
#[derive(Debug, Default, Clone)]
pub struct ClusterObjects {
    /// The namespaces in scope that could be read.
    pub namespaces: Vec<Namespace>,
    /// Jobs in scope.
    pub jobs: Vec<Value>,
    /// CronJobs in scope.
    pub cron_jobs: Vec<Value>,
    /// Run-to-completion Pods in scope (restartPolicy Never or OnFailure).
    pub pods: Vec<Value>,
    /// Long-running Pods (restartPolicy Always) that looked troubled when read; the others are
    /// not kept.
    pub troubled_pods: Vec<Value>,
    /// The Events of the Pods in scope.
    pub events: PodEvents,
    /// Every Node's facts, when Nodes could be listed.
    pub nodes: Option<Vec<Arc<NodeFacts>>>,
    /// VerticalPodAutoscalers in scope (none where the VPA is not installed).
    pub vpas: Vec<Value>,
}

/// Whether a Pod looks stuck on a sidecar: it is `Running`, runs to completion, every main
/// container has terminated and at least one container the engine would move as a sidecar is
/// still running. Native sidecars (already in `initContainers`) never count: the kubelet stops them.
///
/// Which containers are sidecars is decided by the engine itself, run on the Pod with native
/// sidecars available, so the audit and the webhook never disagree.
pub fn stuck_on_sidecar(pod: &Value, policy: &Policy) -> Option<StuckPod> {
    let restart_policy = pod.pointer("/spec/restartPolicy").and_then(Value::as_str);
    if pod.pointer("/status/phase").and_then(Value::as_str) != Some("Running")
        || !matches!(restart_policy, Some("Never" | "OnFailure"))
    {
        return None;
    }
    let sidecars = sidecars_of(pod, policy);
    if sidecars.is_empty() {
        return None;
    }
    // Container name → its `state`, from `status.containerStatuses`.
    let states: HashMap<&str, &Value> = list(pod, "/status/containerStatuses")
        .filter_map(|s| Some((s.get("name")?.as_str()?, s.get("state")?)))
        .collect();
    let state_of = |name: &str, state: &str| states.get(name).and_then(|s| s.get(state)).filter(|s| s.is_object());
    let mut finished = Vec::new();
    let mut finished_at: Option<Timestamp> = None;
    let mains = list(pod, "/spec/containers")
        .filter_map(|c| c.get("name")?.as_str())
        .filter(|n| !sidecars.iter().any(|s| s == n));
    for main in mains {
        let terminated = state_of(main, "terminated")?;
        let exit_code = terminated.get("exitCode").and_then(Value::as_i64).and_then(|c| i32::try_from(c).ok())?;
        finished.push(FinishedContainer { name: main.to_owned(), exit_code });
        if let Some(at) = terminated.get("finishedAt").and_then(Value::as_str).and_then(|t| t.parse::<Timestamp>().ok())
        {
            finished_at = Some(finished_at.map_or(at, |prev| prev.max(at)));
        }
    }
    let running_sidecars: Vec<String> =
        sidecars.into_iter().filter(|name| state_of(name, "running").is_some()).collect();
    if finished.is_empty() || running_sidecars.is_empty() {
        return None;
    }
    Some(StuckPod { finished, running_sidecars, finished_at })
}

/// The containers the engine would move as sidecars.
fn sidecars_of(pod: &Value, policy: &Policy) -> Vec<String> {
    let ctx = Context::new(policy, &NativeSidecars::Available);
    match mutate_value(pod, &ctx) {
        Ok(m) => m.changes.into_iter().filter(|c| c.kind == ChangeKind::SidecarMoved).map(|c| c.container).collect(),
        Err(_) => Vec::new(),
    }
}

/// The items of the array at `pointer` (none when it is missing or not an array).
fn list<'v>(object: &'v Value, pointer: &str) -> impl Iterator<Item = &'v Value> {
    object.pointer(pointer).and_then(Value::as_array).into_iter().flatten()
}

/// A string at `pointer`, for example `/metadata/name`.
fn text<'v>(object: &'v Value, pointer: &str) -> Option<&'v str> {
    object.pointer(pointer).and_then(Value::as_str)
}

/// The name of the owner of kind `kind` (`Job`, `CronJob`) in the `batch` group, if any.
fn owning(kind: &str, object: &Value) -> Option<String> {
    list(object, "/metadata/ownerReferences")
        .find(|o| text(o, "/kind") == Some(kind) && text(o, "/apiVersion").is_some_and(|v| v.starts_with("batch/")))
        .and_then(|o| Some(text(o, "/name")?.to_owned()))
}

/// Builds the report from what was read: runs the engine on every Job not made by a CronJob, every
/// CronJob and every run-to-completion Pod not made by a Job (those come from their Job's template),
/// skipping namespaces that opted out; and finds Pods of active Jobs stuck on a sidecar.
pub fn build_report(
    objects: &ClusterObjects,
    policy: &Policy,
    native_sidecars: CapabilityReport,
    notes: Vec<String>,
) -> AuditReport {
    let capability = native_sidecars.native_sidecars();
    let mut namespaces: HashMap<&str, (bool, NamespaceSettings)> = HashMap::new();
    for ns in &objects.namespaces {
        let Some(name) = ns.metadata.name.as_deref() else { continue };
        let enabled = ns.metadata.labels.as_ref().and_then(|l| l.get(ENABLED_LABEL)).is_some_and(|v| v == "true");
        let (settings, _problems) = namespace_settings(&ns.metadata.annotations.clone().unwrap_or_default());
        namespaces.insert(name, (enabled, settings));
    }

    let mut would_change = Vec::new();
    let mut consider = |object: &Value, kind: &str| {
        let namespace = text(object, "/metadata/namespace").unwrap_or_default().to_owned();
        let ns = namespaces.get(namespace.as_str());
        if ns.is_some_and(|(_, s)| s.opted_out) {
            return;
        }
        let ctx = Context { namespace: ns.map(|(_, s)| s), ..Context::new(policy, &capability) };
        let Ok(mutation) = mutate_value(object, &ctx) else { return };
        if mutation.changes.is_empty() {
            return;
        }
        let name = text(object, "/metadata/name").unwrap_or_default().to_owned();
        let moved: Vec<&str> = mutation
            .changes
            .iter()
            .filter(|c| c.kind == ChangeKind::SidecarMoved)
            .map(|c| c.container.as_str())
            .collect();
        let notes = vpa_notes(&objects.vpas, &namespace, kind, &name, &moved);
        would_change.push(WouldChange {
            namespace,
            kind: kind.to_owned(),
            name,
            namespace_enabled: ns.map(|(enabled, _)| *enabled),
            changes: mutation.changes,
            warnings: mutation.warnings,
            warning_kinds: mutation.warning_kinds,
            notes,
        });
    };
    for cron_job in &objects.cron_jobs {
        consider(cron_job, "CronJob");
    }
    for job in objects.jobs.iter().filter(|j| owning("CronJob", j).is_none()) {
        consider(job, "Job");
    }
    for pod in objects.pods.iter().filter(|p| owning("Job", p).is_none()) {
        consider(pod, "Pod");
    }
    would_change.sort_by(|a, b| (&a.namespace, &a.kind, &a.name).cmp(&(&b.namespace, &b.kind, &b.name)));

    let active_jobs: BTreeSet<(&str, &str)> = objects
        .jobs
        .iter()
        .filter(|j| j.pointer("/status/active").and_then(Value::as_i64).unwrap_or(0) > 0)
        .filter_map(|j| Some((text(j, "/metadata/namespace")?, text(j, "/metadata/name")?)))
        .collect();
    let mut stuck: Vec<StuckJob> = objects
        .pods
        .iter()
        .filter_map(|pod| {
            let namespace = text(pod, "/metadata/namespace").unwrap_or_default().to_owned();
            let job = owning("Job", pod)?;
            if !active_jobs.contains(&(namespace.as_str(), job.as_str())) {
                return None;
            }
            let stuck = stuck_on_sidecar(pod, policy)?;
            let name = text(pod, "/metadata/name").unwrap_or_default().to_owned();
            Some(StuckJob { namespace, job, pod: name, stuck })
        })
        .collect();
    stuck.sort_by(|a, b| (&a.namespace, &a.job, &a.pod).cmp(&(&b.namespace, &b.job, &b.pod)));

    let mut notes = notes;
    let not_running = explain_all(objects, policy, &stuck, &mut notes);
    AuditReport { native_sidecars, would_change, stuck, not_running, notes }
}

/// One line per Pod that does not run as it should, Jobs held open by a sidecar included.
fn explain_all(
    objects: &ClusterObjects,
    policy: &Policy,
    stuck: &[StuckJob],
    notes: &mut Vec<String>,
) -> Vec<NotRunning> {
    let with = Explaining { policy, nodes: objects.nodes.as_deref() };
    let mut lines: Vec<NotRunning> = objects
        .pods
        .iter()
        .chain(&objects.troubled_pods)
        .filter_map(|pod| {
            let namespace = text(pod, "/metadata/namespace").unwrap_or_default();
            let name = text(pod, "/metadata/name").unwrap_or_default();
            explain_pod(pod, &objects.events.of(namespace, name), with)
        })
        .collect();
    lines.extend(stuck.iter().map(|s| {
        let finished: Vec<String> =
            s.stuck.finished.iter().map(|f| format!("{} (exit {})", f.name, f.exit_code)).collect();
        let sidecars = s.stuck.running_sidecars.join(", ");
        NotRunning {
            namespace: s.namespace.clone(),
            pod: s.pod.clone(),
            status: "Running".into(),
            container: Some(sidecars.clone()),
            cause: format!(
                "Job {} held open by a sidecar: {} finished, {sidecars} still running, so the Job never completes",
                s.job,
                finished.join(", ")
            ),
            fix: format!(
                "make {sidecars} a native sidecar (initContainers, restartPolicy: Always); podmedic does it in \
                 namespaces labelled {ENABLED_LABEL}=true"
            ),
        }
    }));
    lines.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
    if lines.len() > MAX_NOT_RUNNING {
        notes.push(format!("{} more Pods not running are not listed", lines.len() - MAX_NOT_RUNNING));
        lines.truncate(MAX_NOT_RUNNING);
    }
    lines
}
