//! `podmedic audit`: what podmedic would do in a live cluster, before anyone labels a namespace.
//!
//! It lists the Jobs, CronJobs and run-to-completion Pods that the engine would change, with the
//! changes, and the Jobs that look stuck because of a sidecar: a Pod whose main containers have
//! finished while a container the engine would treat as a sidecar keeps running, so the Job never
//! completes. It also says whether the cluster can run native sidecars at all.
//!
//! Fetching is a thin layer ([`run`]); everything it prints is computed by pure functions
//! ([`build_report`], [`stuck_on_sidecar`]) over typed objects, which the tests feed with fixtures.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client};
use serde::Serialize;

use podmedic_engine::annotations::{ENABLED_LABEL, namespace_settings};
use podmedic_engine::kubernetes::{NodeKubelet, decide_native_sidecars};
use podmedic_engine::{Change, ChangeKind, Context, NamespaceSettings, NativeSidecars, Policy, mutate_value};

use crate::cluster;

/// Objects per page when listing, so that large clusters are read in bounded pieces.
const PAGE_SIZE: u32 = 500;

/// Arguments of `podmedic audit`.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    /// Namespace to audit (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// Audit every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Policy file merged over the built-in policy (the same file `podmedic serve` uses).
    #[arg(long, env = "PODMEDIC_POLICY")]
    pub policy: Option<PathBuf>,
    /// Kubeconfig to use (default: `KUBECONFIG`, `~/.kube/config`, or the in-cluster account).
    #[arg(long, env = "PODMEDIC_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}

/// How `podmedic audit` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// One JSON document for scripts.
    Json,
}

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

/// The report as aligned tables for people; `now` dates the "stuck for" column.
pub fn render_table(report: &AuditReport, now: Timestamp) -> String {
    let mut out = String::new();
    let cap = &report.native_sidecars;
    let nodes = match cap.nodes_checked {
        Some(1) => "1 node checked".to_owned(),
        Some(n) => format!("{n} nodes checked"),
        None => "kubelets not checked".to_owned(),
    };
    match &cap.reason {
        None => out.push_str(&format!("Native sidecars: available (API server {}, {nodes})\n", cap.api_server)),
        Some(reason) => out.push_str(&format!(
            "Native sidecars: NOT available: {reason} (API server {}, {nodes}); podmedic will not move sidecars\n",
            cap.api_server
        )),
    }
    for note in &report.notes {
        out.push_str(&format!("Note: {note}\n"));
    }

    out.push('\n');
    if report.would_change.is_empty() {
        out.push_str("Nothing podmedic would change.\n");
    } else {
        out.push_str(&format!("Would change ({}):\n", plural(report.would_change.len(), "object")));
        let rows: Vec<Vec<String>> = report
            .would_change
            .iter()
            .flat_map(|w| {
                let enabled = match w.namespace_enabled {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "?",
                };
                w.changes.iter().map(move |c| {
                    vec![w.namespace.clone(), w.kind.clone(), w.name.clone(), enabled.to_owned(), c.to_string()]
                })
            })
            .collect();
        out.push_str(&aligned(&["NAMESPACE", "KIND", "NAME", "ENABLED", "CHANGE"], &rows));
    }

    out.push('\n');
    if report.stuck.is_empty() {
        out.push_str("No Job looks stuck on a sidecar.\n");
    } else {
        out.push_str(&format!(
            "Stuck on a sidecar ({}): main containers finished, a sidecar still running:\n",
            plural(report.stuck.len(), "Pod")
        ));
        let rows: Vec<Vec<String>> = report
            .stuck
            .iter()
            .map(|s| {
                let finished: Vec<String> =
                    s.stuck.finished.iter().map(|f| format!("{} (exit {})", f.name, f.exit_code)).collect();
                let since = s.stuck.finished_at.map_or_else(|| "?".to_owned(), |at| age(at, now));
                vec![
                    s.namespace.clone(),
                    s.job.clone(),
                    s.pod.clone(),
                    finished.join(", "),
                    s.stuck.running_sidecars.join(", "),
                    since,
                ]
            })
            .collect();
        out.push_str(&aligned(&["NAMESPACE", "JOB", "POD", "FINISHED", "STILL RUNNING", "STUCK FOR"], &rows));
    }
    out
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// Columns padded to their widest cell, two spaces apart, no trailing spaces.
fn aligned(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (cell, width) in cells.zip(&widths) {
            text.push_str(cell);
            text.extend(std::iter::repeat_n(' ', width.saturating_sub(cell.chars().count()) + 2));
        }
        let mut text = text.trim_end().to_owned();
        text.push('\n');
        text
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// A kubectl-style age: `45s`, `12m`, `3h12m`, `2d5h`.
fn age(since: Timestamp, now: Timestamp) -> String {
    let secs = now.as_second().saturating_sub(since.as_second()).max(0);
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h{m}m"),
        (d, h, _) => format!("{d}d{h}h"),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the cluster
// ---------------------------------------------------------------------------------------------

/// Runs `podmedic audit` against the configured cluster and prints the report.
pub async fn run(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let policy = Policy::load_or_builtin(args.policy.as_deref())?;
    let client = cluster::connect(args.kubeconfig.as_deref())
        .await?
        .context("no Kubernetes cluster configured: set KUBECONFIG or pass --kubeconfig")?;
    let namespace = match (args.all_namespaces, &args.namespace) {
        (true, _) => None,
        (false, Some(ns)) => Some(ns.clone()),
        (false, None) => Some(client.default_namespace().to_owned()),
    };

    let mut notes = Vec::new();
    let capability = read_capability(&client, &mut notes).await?;
    let objects = read_objects(&client, namespace.as_deref(), &mut notes).await?;
    let report = build_report(&objects, &policy, capability, notes);
    match args.output {
        OutputFormat::Table => print!("{}", render_table(&report, Timestamp::now())),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// The API server's version and every kubelet's; a cluster that does not answer is an error, Nodes
/// that cannot be listed (a user without cluster-wide read) only a note.
async fn read_capability(client: &Client, notes: &mut Vec<String>) -> anyhow::Result<CapabilityReport> {
    let info = client.apiserver_version().await.context("cannot reach the API server")?;
    let api_server = cluster::api_server_version_text(&info);
    match list_all(&Api::<Node>::all(client.clone()), ListParams::default()).await {
        Ok(nodes) => {
            let kubelets: Vec<NodeKubelet> = nodes.iter().filter_map(cluster::node_kubelet).collect();
            Ok(CapabilityReport::decide(api_server, Some(&kubelets)))
        }
        Err(error) => {
            notes.push(format!("cannot list Nodes ({error}): kubelet versions were not checked"));
            Ok(CapabilityReport::decide(api_server, None))
        }
    }
}

/// The namespaces, Jobs, CronJobs and run-to-completion Pods in scope (`None`: all namespaces).
async fn read_objects(
    client: &Client,
    namespace: Option<&str>,
    notes: &mut Vec<String>,
) -> anyhow::Result<ClusterObjects> {
    fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let where_ = namespace.map_or_else(|| "in all namespaces".to_owned(), |ns| format!("in namespace {ns}"));
    let jobs = list_all(&api::<Job>(client, namespace), ListParams::default())
        .await
        .with_context(|| format!("cannot list Jobs {where_}"))?;
    let cron_jobs = list_all(&api::<CronJob>(client, namespace), ListParams::default())
        .await
        .with_context(|| format!("cannot list CronJobs {where_}"))?;
    // The API server filters on restartPolicy, so long-running Pods are never transferred.
    let pods = list_all(&api::<Pod>(client, namespace), ListParams::default().fields("spec.restartPolicy!=Always"))
        .await
        .with_context(|| format!("cannot list Pods {where_}"))?;

    let namespaces_api = Api::<Namespace>::all(client.clone());
    let namespaces = match namespace {
        None => list_all(&namespaces_api, ListParams::default()).await.map_err(|e| e.to_string()),
        Some(ns) => namespaces_api.get_opt(ns).await.map(|n| n.into_iter().collect()).map_err(|e| e.to_string()),
    };
    let namespaces = namespaces.unwrap_or_else(|error| {
        notes.push(format!("cannot read Namespaces ({error}): their labels and podmedic annotations are not known"));
        Vec::new()
    });
    Ok(ClusterObjects { namespaces, jobs, cron_jobs, pods })
}

/// Every object of a list, page by page.
async fn list_all<K>(api: &Api<K>, params: ListParams) -> Result<Vec<K>, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut params = params.limit(PAGE_SIZE);
    let mut items = Vec::new();
    loop {
        let page = api.list(&params).await?;
        items.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(items),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> Pod {
        let path = format!("{}/tests/fixtures/audit/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    fn policy() -> Policy {
        Policy::builtin()
    }

    fn available() -> CapabilityReport {
        CapabilityReport::decide("v1.30.2".into(), Some(&[]))
    }

    fn active_job(namespace: &str, name: &str) -> Job {
        serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "x", "image": "x"}]}}},
            "status": {"active": 1}
        }))
        .unwrap()
    }

    fn proxy_job(namespace: &str, name: &str) -> Job {
        serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "migrate", "image": "ghcr.io/acme/migrate:1.0"},
                {"name": "cloud-sql-proxy", "image": "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1",
                 "args": ["acme:europe-west1:db"]}
            ]}}}
        }))
        .unwrap()
    }

    fn labelled_namespace(name: &str, annotations: serde_json::Value) -> Namespace {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {ENABLED_LABEL: "true"}, "annotations": annotations}
        }))
        .unwrap()
    }

    #[test]
    fn a_cloud_sql_proxy_left_running_after_the_migration_is_stuck() {
        let stuck = stuck_on_sidecar(&fixture("stuck-cloud-sql-proxy-pod.json"), &policy()).unwrap();
        assert_eq!(stuck.finished, [FinishedContainer { name: "migrate".into(), exit_code: 0 }]);
        assert_eq!(stuck.running_sidecars, ["cloud-sql-proxy"]);
        assert_eq!(stuck.finished_at, Some("2025-03-14T02:03:40Z".parse().unwrap()));
    }

    #[test]
    fn a_failed_main_container_with_a_running_proxy_is_stuck_too() {
        let mut pod = fixture("stuck-cloud-sql-proxy-pod.json");
        let statuses = pod.status.as_mut().unwrap().container_statuses.as_mut().unwrap();
        statuses[1].state.as_mut().unwrap().terminated.as_mut().unwrap().exit_code = 1;
        let stuck = stuck_on_sidecar(&pod, &policy()).unwrap();
        assert_eq!(stuck.finished[0].exit_code, 1);
    }

    #[test]
    fn a_completed_pod_with_a_native_sidecar_is_not_stuck() {
        assert_eq!(stuck_on_sidecar(&fixture("completed-native-sidecar-pod.json"), &policy()), None);
    }

    #[test]
    fn a_job_pod_still_working_is_not_stuck() {
        assert_eq!(stuck_on_sidecar(&fixture("running-job-pod.json"), &policy()), None);
    }

    #[test]
    fn a_failed_pod_is_not_stuck() {
        assert_eq!(stuck_on_sidecar(&fixture("failed-job-pod.json"), &policy()), None);
    }

    #[test]
    fn the_sidecars_annotation_names_sidecars_the_catalogue_does_not_know() {
        let mut pod = fixture("running-job-pod.json");
        // The main container finished; a home-made forwarder named in the annotation keeps running.
        let spec = pod.spec.as_mut().unwrap();
        spec.containers[1].image = Some("ghcr.io/acme/log-forwarder:4".into());
        spec.containers[1].name = "forwarder".into();
        let status = pod.status.as_mut().unwrap().container_statuses.as_mut().unwrap();
        status[1].name = "forwarder".into();
        status[0].state = serde_json::from_value(json!({"terminated": {"exitCode": 0}})).unwrap();
        assert_eq!(stuck_on_sidecar(&pod, &policy()), None, "not a sidecar without the annotation");
        pod.metadata.annotations =
            Some([(podmedic_engine::annotations::SIDECARS_ANNOTATION.to_owned(), "forwarder".to_owned())].into());
        assert_eq!(stuck_on_sidecar(&pod, &policy()).unwrap().running_sidecars, ["forwarder"]);
    }

    #[test]
    fn the_report_lists_changes_and_stuck_jobs_of_active_jobs_only() {
        let objects = ClusterObjects {
            namespaces: vec![labelled_namespace("payments", json!({}))],
            jobs: vec![proxy_job("payments", "nightly"), active_job("payments", "db-migrate")],
            cron_jobs: vec![],
            pods: vec![
                fixture("stuck-cloud-sql-proxy-pod.json"),
                fixture("running-job-pod.json"),
                fixture("failed-job-pod.json"),
            ],
        };
        let report = build_report(&objects, &policy(), available(), vec![]);
        assert_eq!(report.would_change.len(), 1, "{:#?}", report.would_change);
        let nightly = &report.would_change[0];
        assert_eq!((nightly.kind.as_str(), nightly.name.as_str()), ("Job", "nightly"));
        assert_eq!(nightly.namespace_enabled, Some(true));
        assert!(nightly.changes.iter().any(|c| c.kind == ChangeKind::SidecarMoved && c.container == "cloud-sql-proxy"));
        // Job-owned Pods are reported through their Job, never on their own.
        assert!(report.would_change.iter().all(|w| w.kind != "Pod"));
        assert_eq!(report.stuck.len(), 1);
        assert_eq!((report.stuck[0].job.as_str(), report.stuck[0].pod.as_str()), ("db-migrate", "db-migrate-x7k2p"));

        // The same Pod under a Job that is no longer active is history, not a stuck Job.
        let mut finished = objects.clone();
        finished.jobs[1].status = None;
        assert!(build_report(&finished, &policy(), available(), vec![]).stuck.is_empty());
    }

    #[test]
    fn opted_out_namespaces_and_unavailable_clusters_change_no_sidecar() {
        let objects = ClusterObjects {
            namespaces: vec![labelled_namespace(
                "payments",
                json!({podmedic_engine::annotations::NAMESPACE_OPT_OUT_ANNOTATION: "true"}),
            )],
            jobs: vec![proxy_job("payments", "nightly"), proxy_job("elsewhere", "nightly")],
            ..ClusterObjects::default()
        };
        let report = build_report(&objects, &policy(), available(), vec![]);
        assert_eq!(report.would_change.len(), 1);
        assert_eq!(report.would_change[0].namespace, "elsewhere");
        assert_eq!(report.would_change[0].namespace_enabled, None);

        let old = CapabilityReport::decide(
            "v1.30.2".into(),
            Some(&[NodeKubelet { node: "pool-a-3".into(), kubelet_version: "v1.28.9".into() }]),
        );
        assert_eq!(old.reason.as_deref(), Some("node pool-a-3 runs kubelet v1.28.9"));
        let report = build_report(&objects, &policy(), old, vec![]);
        assert!(report.would_change.iter().all(|w| w.changes.iter().all(|c| c.kind != ChangeKind::SidecarMoved)));
    }

    #[test]
    fn cron_jobs_are_audited_and_their_jobs_are_not_repeated() {
        let cron: CronJob = serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "report", "namespace": "analytics"},
            "spec": {"schedule": "0 2 * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                "containers": [{"name": "report", "image": "r"},
                    {"name": "proxy", "image": "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1"}]}}}}}
        }))
        .unwrap();
        let mut child = proxy_job("analytics", "report-29034120");
        child.metadata.owner_references = Some(vec![
            serde_json::from_value(json!(
                {"apiVersion": "batch/v1", "kind": "CronJob", "name": "report", "uid": "u", "controller": true}
            ))
            .unwrap(),
        ]);
        let objects = ClusterObjects { cron_jobs: vec![cron], jobs: vec![child], ..ClusterObjects::default() };
        let report = build_report(&objects, &policy(), available(), vec![]);
        let kinds: Vec<&str> = report.would_change.iter().map(|w| w.kind.as_str()).collect();
        assert_eq!(kinds, ["CronJob"]);
    }

    #[test]
    fn the_table_is_aligned_and_says_what_it_found() {
        let objects = ClusterObjects {
            jobs: vec![proxy_job("payments", "nightly"), active_job("payments", "db-migrate")],
            pods: vec![fixture("stuck-cloud-sql-proxy-pod.json")],
            ..ClusterObjects::default()
        };
        let report = build_report(&objects, &policy(), available(), vec!["cannot list Nodes".into()]);
        let now: Timestamp = "2025-03-14T05:15:40Z".parse().unwrap();
        let table = render_table(&report, now);
        assert!(table.starts_with("Native sidecars: available (API server v1.30.2, 0 nodes checked)\n"), "{table}");
        assert!(table.contains("Note: cannot list Nodes\n"));
        assert!(table.contains("STILL RUNNING"));
        assert!(table.contains("migrate (exit 0)"));
        assert!(table.contains("3h12m"), "{table}");
        let lines: Vec<&str> = table.lines().collect();
        let header = lines.iter().position(|l| l.starts_with("NAMESPACE  KIND")).unwrap();
        let column = lines[header].find("CHANGE").unwrap();
        let row = lines[header + 1];
        assert!(row.starts_with("payments") && row[column..].starts_with("cloud-sql-proxy: "), "{table}");
        assert!(table.lines().all(|l| l == l.trim_end()));
    }

    #[test]
    fn the_json_report_is_stable() {
        let objects = ClusterObjects {
            jobs: vec![active_job("payments", "db-migrate")],
            pods: vec![fixture("stuck-cloud-sql-proxy-pod.json")],
            ..ClusterObjects::default()
        };
        let report = build_report(&objects, &policy(), available(), vec![]);
        let value = serde_json::to_value(&report).unwrap();
        assert_eq!(
            value["nativeSidecars"],
            json!({"available": true, "reason": null, "apiServer": "v1.30.2", "nodesChecked": 0})
        );
        assert_eq!(value["stuck"][0]["job"], "db-migrate");
        assert_eq!(value["stuck"][0]["runningSidecars"], json!(["cloud-sql-proxy"]));
        assert_eq!(value["stuck"][0]["finished"], json!([{"name": "migrate", "exitCode": 0}]));
        assert_eq!(value["stuck"][0]["finishedAt"], "2025-03-14T02:03:40Z");
    }

    #[test]
    fn flags_read_like_kubectl() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            audit: AuditArgs,
        }
        let all = Cli::try_parse_from(["audit", "-A", "-o", "json"]).unwrap().audit;
        assert!(all.all_namespaces && all.namespace.is_none());
        assert_eq!(all.output, OutputFormat::Json);
        let one = Cli::try_parse_from(["audit", "-n", "payments", "--kubeconfig", "/tmp/k"]).unwrap().audit;
        assert_eq!(one.namespace.as_deref(), Some("payments"));
        assert_eq!(one.output, OutputFormat::Table);
        assert_eq!(one.kubeconfig.as_deref(), Some(std::path::Path::new("/tmp/k")));
        assert!(Cli::try_parse_from(["audit", "-n", "a", "-A"]).is_err());
        assert!(Cli::try_parse_from(["audit", "-o", "yaml"]).is_err());
    }

    #[test]
    fn ages_read_like_kubectl() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let now = t("2025-03-14T05:00:00Z");
        assert_eq!(age(t("2025-03-14T04:59:15Z"), now), "45s");
        assert_eq!(age(t("2025-03-14T04:48:00Z"), now), "12m");
        assert_eq!(age(t("2025-03-12T00:00:00Z"), now), "2d5h");
        assert_eq!(age(t("2025-03-14T06:00:00Z"), now), "0s");
    }
}
