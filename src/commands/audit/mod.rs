//! `podmedic audit`: what podmedic would do in a live cluster, before anyone labels a namespace.
//!
//! It lists the Jobs, CronJobs and run-to-completion Pods that the engine would change, with the
//! changes, and the Jobs that look stuck because of a sidecar: a Pod whose main containers have
//! finished while a container the engine would treat as a sidecar keeps running, so the Job never
//! completes. It also says whether the cluster can run native sidecars at all.
//!
//! Fetching is a thin layer ([`run`]); everything it prints is computed by pure functions
//! ([`build_report`], [`stuck_on_sidecar`] in `report.rs`, [`render_table`] in `table.rs`) over
//! typed objects, which the tests feed with fixtures.

mod report;
mod table;

pub use report::{
    AuditReport, CapabilityReport, ClusterObjects, FinishedContainer, StuckJob, StuckPod, WouldChange, build_report,
    stuck_on_sidecar,
};
pub use table::render_table;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client};

use podmedic_engine::Policy;
use podmedic_engine::kubernetes::NodeKubelet;

use crate::cluster;

/// How `podmedic audit` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// One JSON document for scripts.
    Json,
}

/// What `podmedic audit` looks at (from `cli::AuditArgs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// Namespace to audit (default: the kubeconfig context's namespace).
    pub namespace: Option<String>,
    /// Audit every namespace.
    pub all_namespaces: bool,
    /// Output format.
    pub output: OutputFormat,
    /// Policy file merged over the built-in policy.
    pub policy: Option<PathBuf>,
    /// Kubeconfig to use.
    pub kubeconfig: Option<PathBuf>,
}

/// Objects per page when listing, so that large clusters are read in bounded pieces.
const PAGE_SIZE: u32 = 500;

/// Runs `podmedic audit` against the configured cluster and prints the report.
pub async fn run(config: &AuditConfig) -> anyhow::Result<ExitCode> {
    let policy = Policy::load_or_builtin(config.policy.as_deref())?;
    let client = cluster::connect(config.kubeconfig.as_deref())
        .await?
        .context("no Kubernetes cluster configured: set KUBECONFIG or pass --kubeconfig")?;
    let namespace = match (config.all_namespaces, &config.namespace) {
        (true, _) => None,
        (false, Some(ns)) => Some(ns.clone()),
        (false, None) => Some(client.default_namespace().to_owned()),
    };

    let mut notes = Vec::new();
    let capability = read_capability(&client, &mut notes).await?;
    let objects = read_objects(&client, namespace.as_deref(), &mut notes).await?;
    let report = build_report(&objects, &policy, capability, notes);
    match config.output {
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
mod tests;
