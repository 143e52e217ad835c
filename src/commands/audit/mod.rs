//! `podmedic audit`: what podmedic would do in a live cluster, before anyone labels a namespace.
//!
//! It lists the Jobs, CronJobs and run-to-completion Pods that the engine would change, with the
//! changes (and a note where a VerticalPodAutoscaler sizes a sidecar that would move: released
//! VPAs ignore init containers, `vpa.rs`), and the Jobs that look stuck because of a sidecar: a
//! Pod whose main containers have finished while a container the engine would treat as a sidecar
//! keeps running, so the Job never completes. It also says whether the cluster can run native
//! sidecars at all, and explains every Pod that is not running (Pending, CrashLoopBackOff,
//! ImagePullBackOff, CreateContainerConfigError, OOMKilled, stuck in Init, a Job held open by a
//! sidecar) in one line with its cause and fix, from the Pod's status and Events (`explain.rs`,
//! `events.rs`).
//!
//! Fetching is a thin layer (`read.rs`): Jobs, CronJobs, Pods and Events are read as raw JSON and handed to
//! the engine as the API server sent them, the way the webhook receives them, so no field is lost
//! to a Kubernetes type that does not know it (a container's `restartPolicyRules`, say, which the
//! engine honours). Everything printed is computed by pure functions ([`build_report`],
//! [`stuck_on_sidecar`] in `report.rs`, [`render_table`] in `table.rs`), which the tests feed with
//! fixtures.

mod ci;
mod events;
mod explain;
mod read;
mod report;
mod table;
mod vpa;

pub use ci::audit_findings;
pub use events::{MAX_EVENTS_PER_POD, PodEvent, PodEvents};
pub use explain::{Explaining, NotRunning, explain_pod, looks_troubled};
pub use report::{
    AuditReport, CapabilityReport, ClusterObjects, FinishedContainer, MAX_NOT_RUNNING, StuckJob, StuckPod, WouldChange,
    build_report, stuck_on_sidecar,
};
pub use table::render_table;

use std::path::PathBuf;
use std::process::ExitCode;

use k8s_openapi::jiff::Timestamp;

use podmedic_engine::Policy;

use crate::cluster;
use crate::commands::report::{ReportFormat, write_report};
use read::{read_capability, read_objects, read_vpas};

/// How `podmedic audit` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// One JSON document for scripts.
    Json,
    /// SARIF 2.1.0, results with logical locations (namespace, kind, name).
    Sarif,
    /// JUnit XML, one test case per object named.
    Junit,
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

/// Runs `podmedic audit` against the configured cluster and prints the report.
pub async fn run(config: &AuditConfig) -> anyhow::Result<ExitCode> {
    let policy = Policy::load_or_builtin(config.policy.as_deref())?;
    let client = match cluster::connect(config.kubeconfig.as_deref()).await? {
        cluster::Connection::Client(client) => client,
        cluster::Connection::NoCluster => {
            anyhow::bail!("no Kubernetes cluster configured: set KUBECONFIG or pass --kubeconfig")
        }
        cluster::Connection::InClusterWithoutConfig(error) => {
            anyhow::bail!("running in a Pod without a usable Kubernetes configuration: {error}")
        }
    };
    let namespace = match (config.all_namespaces, &config.namespace) {
        (true, _) => None,
        (false, Some(ns)) => Some(ns.clone()),
        (false, None) => Some(client.default_namespace().to_owned()),
    };

    let mut notes = Vec::new();
    let (capability, nodes) = read_capability(&client, &mut notes).await?;
    let mut objects = read_objects(&client, namespace.as_deref(), &mut notes).await?;
    objects.nodes = nodes;
    objects.vpas = read_vpas(&client, namespace.as_deref(), &mut notes).await;
    let report = build_report(&objects, &policy, capability, notes);
    match config.output {
        OutputFormat::Table => print!("{}", render_table(&report, Timestamp::now())),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Sarif => {
            write_report(&mut std::io::stdout().lock(), &audit_findings(&report), ReportFormat::Sarif)?
        }
        OutputFormat::Junit => {
            write_report(&mut std::io::stdout().lock(), &audit_findings(&report), ReportFormat::Junit)?
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests;
