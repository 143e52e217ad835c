//! The three answers one podmedic serves, by path, and which requests each acts on. The mode a
//! cluster runs in lives in its webhook configuration (deploy/), not in a server flag.
//!
//! - `/mutate` patches what it is sent: Pods, Jobs and CronJobs on CREATE; on UPDATE, Jobs and
//!   CronJobs are converged with podmedic's earlier moves ([`UpdateMode::Template`]), and a
//!   CronJob's template is also fixed as on CREATE.
//! - `/warn` never patches: it answers CREATEs and UPDATEs of the workloads people write (Jobs,
//!   CronJobs, Deployments, StatefulSets, DaemonSets) with what podmedic will change in their
//!   Pods and the warnings, among them the checks that say those Pods will not start
//!   (`diagnose`). Not Pods: their warnings come with `/mutate`'s answer, and a controller's Pods
//!   would repeat what their workload was told. Meant for a ValidatingWebhookConfiguration, which
//!   sees the object after every mutating webhook and never triggers a reinvocation.
//! - `/converge` patches UPDATEs of Jobs and CronJobs only, to undo what an earlier podmedic did
//!   to their templates as the user re-applies them ([`UpdateMode::Undo`]).
//!
//! Dry runs (`dryRun: true`: `kubectl diff`, `--dry-run=server`, Argo CD's and Flux's diffs) get
//! exactly the answer the real request would get.

use serde_json::value::RawValue;

use super::envelope::{Operation, ReceivedObject, RequestEnvelope};
use crate::converge::{UpdateMode, converge_update};
use crate::mutation::{Change, ChangeKind, Context, MutateError, Mutation};

/// The path an AdmissionReview was sent to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `/mutate`: patches.
    Mutate,
    /// `/warn`: warnings only, for a ValidatingWebhookConfiguration.
    Warn,
    /// `/converge`: undoes an earlier podmedic's template changes on UPDATE.
    Converge,
}

impl Endpoint {
    /// Every endpoint.
    pub const ALL: [Endpoint; 3] = [Endpoint::Mutate, Endpoint::Warn, Endpoint::Converge];

    /// The HTTP path it is served on.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Mutate => "/mutate",
            Endpoint::Warn => "/warn",
            Endpoint::Converge => "/converge",
        }
    }

    /// Stable label value for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Mutate => "mutate",
            Endpoint::Warn => "warn",
            Endpoint::Converge => "converge",
        }
    }
}

/// The kinds podmedic reads, by `request.kind`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pod,
    Job,
    CronJob,
    /// Deployments, StatefulSets and DaemonSets: warned about (`/warn`), never patched; their
    /// Pods are fixed when they are created.
    AppsWorkload,
}

fn kind_of<O>(req: &RequestEnvelope<'_, O>) -> Option<Kind> {
    match (req.kind.group.as_str(), req.kind.version.as_str(), req.kind.kind.as_str()) {
        ("", "v1", "Pod") => Some(Kind::Pod),
        ("batch", "v1", "Job") => Some(Kind::Job),
        ("batch", "v1", "CronJob") => Some(Kind::CronJob),
        ("apps", "v1", "Deployment" | "StatefulSet" | "DaemonSet") => Some(Kind::AppsWorkload),
        _ => None,
    }
}

/// Whether the request's object is a workload with a pod template, which the checks of
/// `diagnose` look at against the cluster (Pods never are: their controller's template was).
pub(super) fn holds_template<O>(req: &RequestEnvelope<'_, O>) -> bool {
    kind_of(req).is_some_and(|kind| kind != Kind::Pod)
}

/// Whether `endpoint` acts on the request. Subresources (status, ephemeralcontainers, binding,
/// scale) never are; a Pod's UPDATE has nothing podmedic may change; `/warn` reads workloads,
/// and Deployments, StatefulSets and DaemonSets get nothing else.
pub(super) fn acts_on<O>(endpoint: Endpoint, req: &RequestEnvelope<'_, O>) -> bool {
    if req.sub_resource.as_deref().is_some_and(|s| !s.is_empty()) {
        return false;
    }
    let Some(kind) = kind_of(req) else { return false };
    match (endpoint, req.operation) {
        (Endpoint::Warn, Operation::Create | Operation::Update) => kind != Kind::Pod,
        (Endpoint::Mutate, Operation::Create) => kind != Kind::AppsWorkload,
        (Endpoint::Mutate | Endpoint::Converge, Operation::Update) => matches!(kind, Kind::Job | Kind::CronJob),
        _ => false,
    }
}

/// Whether answering needs the object's JSON text (to converge an UPDATE) rather than the view
/// the fast path decodes.
pub(super) fn needs_raw<O>(endpoint: Endpoint, req: &RequestEnvelope<'_, O>) -> bool {
    endpoint != Endpoint::Warn && req.operation == Operation::Update && acts_on(endpoint, req)
}

/// Runs the engine as `endpoint` answers the request.
pub(super) fn decide(
    endpoint: Endpoint,
    operation: Operation,
    object: &impl ReceivedObject,
    old_object: Option<&RawValue>,
    ctx: &Context<'_>,
) -> Result<Mutation, MutateError> {
    let mode = match endpoint {
        Endpoint::Converge => UpdateMode::Undo,
        Endpoint::Mutate | Endpoint::Warn => UpdateMode::Template,
    };
    match (endpoint, operation, object.raw()) {
        (Endpoint::Mutate | Endpoint::Converge, Operation::Update, Some(raw)) => {
            converge_update(raw, old_object.map(RawValue::get), mode, ctx)
        }
        (Endpoint::Converge, _, _) => Ok(Mutation::default()),
        _ => object.mutate(ctx),
    }
}

/// The warnings `/warn` answers with: what podmedic would change, then the engine's warnings.
pub(super) fn warnings_only(kind: &str, mutation: Mutation) -> Vec<String> {
    let mut out = Vec::with_capacity(mutation.warnings.len() + 1);
    if let Some(summary) = summary(&mutation.changes) {
        // `/warn` reads workloads only (Jobs, CronJobs, Deployments, StatefulSets, DaemonSets):
        // what podmedic changes is what their Pods get when `/mutate` sees them.
        out.push(crate::warnings::shorten(format!("podmedic will fix this {kind}'s Pods: {summary}")));
    }
    out.extend(mutation.warnings);
    out
}

/// `cloud-sql-proxy (native sidecar, health check, startup probe); job (requests)`.
fn summary(changes: &[Change]) -> Option<String> {
    let mut per_container: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut index = std::collections::BTreeMap::new();
    for change in changes {
        let what = match change.kind {
            ChangeKind::SidecarMoved => "native sidecar",
            ChangeKind::HealthCheckEnabled => "health check",
            ChangeKind::ProbeAdded => "probe",
            ChangeKind::RequestsAdded => "requests",
            ChangeKind::ExitZeroOnSigterm => "exit 0 on stop",
            ChangeKind::SidecarKept | ChangeKind::SidecarRestored | ChangeKind::SidecarRemoved => continue,
        };
        let slot = *index.entry(change.container.as_str()).or_insert_with(|| {
            per_container.push((change.container.as_str(), Vec::new()));
            per_container.len() - 1
        });
        if !per_container[slot].1.contains(&what) {
            per_container[slot].1.push(what);
        }
    }
    let parts: Vec<String> = per_container.iter().map(|(name, what)| format!("{name} ({})", what.join(", "))).collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}
