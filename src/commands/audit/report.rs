//! The audit's report, computed from what was read: what the engine would change, and which Jobs
//! look stuck on a sidecar.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::jiff::Timestamp;
use podmedic_engine::annotations::{ENABLED_LABEL, namespace_settings};
use podmedic_engine::kubernetes::{NodeKubelet, decide_native_sidecars};
use podmedic_engine::{Change, ChangeKind, Context, NamespaceSettings, NativeSidecars, Policy, mutate_value};
use serde::Serialize;

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

/// What the audit read from the cluster.
#[derive(Debug, Default, Clone)]
pub struct ClusterObjects {
    /// The namespaces in scope that could be read.
    pub namespaces: Vec<Namespace>,
    /// Jobs in scope.
    pub jobs: Vec<Job>,
    /// CronJobs in scope.
    pub cron_jobs: Vec<CronJob>,
    /// Run-to-completion Pods in scope (restartPolicy Never or OnFailure).
    pub pods: Vec<Pod>,
}

/// Whether a Pod looks stuck on a sidecar: it is `Running`, runs to completion, every main
/// container has terminated and at least one container the engine would move as a sidecar is
/// still running. Native sidecars (already in `initContainers`) never count: the kubelet stops them.
///
/// Which containers are sidecars is decided by the engine itself, run on the Pod with native
/// sidecars available, so the audit and the webhook never disagree.
pub fn stuck_on_sidecar(pod: &Pod, policy: &Policy) -> Option<StuckPod> {
    let spec = pod.spec.as_ref()?;
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Running")
        || !matches!(spec.restart_policy.as_deref(), Some("Never" | "OnFailure"))
    {
        return None;
    }
    let sidecars = sidecars_of(pod, policy);
    if sidecars.is_empty() {
        return None;
    }
    let states: HashMap<&str, _> =
        status.container_statuses.iter().flatten().map(|s| (s.name.as_str(), s.state.as_ref())).collect();
    let mut finished = Vec::new();
    let mut finished_at: Option<Timestamp> = None;
    for main in spec.containers.iter().filter(|c| !sidecars.contains(&c.name)) {
        let terminated = states.get(main.name.as_str()).copied().flatten().and_then(|s| s.terminated.as_ref())?;
        finished.push(FinishedContainer { name: main.name.clone(), exit_code: terminated.exit_code });
        if let Some(at) = terminated.finished_at.as_ref().map(|t| t.0) {
            finished_at = Some(finished_at.map_or(at, |prev| prev.max(at)));
        }
    }
    let running_sidecars: Vec<String> = sidecars
        .into_iter()
        .filter(|name| states.get(name.as_str()).copied().flatten().is_some_and(|s| s.running.is_some()))
        .collect();
    if finished.is_empty() || running_sidecars.is_empty() {
        return None;
    }
    Some(StuckPod { finished, running_sidecars, finished_at })
}

/// The containers the engine would move as sidecars.
fn sidecars_of(pod: &Pod, policy: &Policy) -> Vec<String> {
    let Ok(value) = serde_json::to_value(pod) else { return Vec::new() };
    let ctx = Context { policy, native_sidecars: &NativeSidecars::Available, namespace: None };
    match mutate_value(&value, &ctx) {
        Ok(m) => m.changes.into_iter().filter(|c| c.kind == ChangeKind::SidecarMoved).map(|c| c.container).collect(),
        Err(_) => Vec::new(),
    }
}

/// The name of the owner of kind `kind` (`Job`, `CronJob`) in the `batch` group, if any.
fn owning(
    kind: &str,
    owners: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>,
) -> Option<String> {
    owners?.iter().find(|o| o.kind == kind && o.api_version.starts_with("batch/")).map(|o| o.name.clone())
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
    let mut consider =
        |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, kind: &str, value: serde_json::Value| {
            let namespace = meta.namespace.clone().unwrap_or_default();
            let ns = namespaces.get(namespace.as_str());
            if ns.is_some_and(|(_, s)| s.opted_out) {
                return;
            }
            let ctx = Context { policy, native_sidecars: &capability, namespace: ns.map(|(_, s)| s) };
            let Ok(mutation) = mutate_value(&value, &ctx) else { return };
            if mutation.changes.is_empty() {
                return;
            }
            would_change.push(WouldChange {
                namespace,
                kind: kind.to_owned(),
                name: meta.name.clone().unwrap_or_default(),
                namespace_enabled: ns.map(|(enabled, _)| *enabled),
                changes: mutation.changes,
                warnings: mutation.warnings,
            });
        };
    for cron_job in &objects.cron_jobs {
        if let Ok(value) = serde_json::to_value(cron_job) {
            consider(&cron_job.metadata, "CronJob", value);
        }
    }
    for job in objects.jobs.iter().filter(|j| owning("CronJob", j.metadata.owner_references.as_ref()).is_none()) {
        if let Ok(value) = serde_json::to_value(job) {
            consider(&job.metadata, "Job", value);
        }
    }
    for pod in objects.pods.iter().filter(|p| owning("Job", p.metadata.owner_references.as_ref()).is_none()) {
        if let Ok(value) = serde_json::to_value(pod) {
            consider(&pod.metadata, "Pod", value);
        }
    }
    would_change.sort_by(|a, b| (&a.namespace, &a.kind, &a.name).cmp(&(&b.namespace, &b.kind, &b.name)));

    let active_jobs: BTreeMap<(&str, &str), &Job> = objects
        .jobs
        .iter()
        .filter(|j| j.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0)
        .filter_map(|j| Some(((j.metadata.namespace.as_deref()?, j.metadata.name.as_deref()?), j)))
        .collect();
    let mut stuck: Vec<StuckJob> = objects
        .pods
        .iter()
        .filter_map(|pod| {
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let job = owning("Job", pod.metadata.owner_references.as_ref())?;
            if !active_jobs.contains_key(&(namespace.as_str(), job.as_str())) {
                return None;
            }
            let stuck = stuck_on_sidecar(pod, policy)?;
            Some(StuckJob { namespace, job, pod: pod.metadata.name.clone().unwrap_or_default(), stuck })
        })
        .collect();
    stuck.sort_by(|a, b| (&a.namespace, &a.job, &a.pod).cmp(&(&b.namespace, &b.job, &b.pod)));

    AuditReport { native_sidecars, would_change, stuck, notes }
}
