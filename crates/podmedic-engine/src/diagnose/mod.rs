//! Checks that warn, when a workload is applied, that its Pods will not start: they would stay
//! Pending (no node fits the effective request, no node matches the selector, every node has a
//! taint the Pod does not tolerate), wait in ContainerCreating or CreateContainerConfigError (a
//! ConfigMap, Secret, PersistentVolumeClaim or ServiceAccount not seen), or loop in
//! CrashLoopBackOff because of their probes.
//!
//! Each check returns [`Finding`]s: the check's id, the container, a message under 120 characters
//! naming the fix. The checks read the pod spec located by `target.rs` (after podmedic's own
//! moves) and a [`ClusterView`](crate::cluster::ClusterView); what a check needs from the cluster
//! and does not have, it does not guess: it says nothing. What each check cannot see is
//! [`CheckId::cannot_see`].
//!
//! They run for the templates people apply (Deployments, StatefulSets, DaemonSets, Jobs, CronJobs),
//! not for the Pods controllers create from them ([`runs_at_admission`]); `podmedic audit` runs
//! them on a stuck Pod to explain it ([`crate::diagnose_value`]).

mod placement;
mod probes;
mod references;
mod requests;
mod scheduling;

use serde::Serialize;

use crate::annotations::DISABLED_CHECKS_ANNOTATION;
use crate::checks::{CheckId, CheckSet};
use crate::mutation::Context;
use crate::object::Object;
use crate::patch::PatchBuilder;
use crate::sidecars::{Profiles, Selection, apply_moves};
use crate::target::{Holder, PodTarget, Slot};
use crate::warnings::{WarningKind, shorten};

/// Most findings reported for one object; the rest are only counted ([`Diagnosis::omitted`]).
pub const MAX_FINDINGS: usize = 10;

/// What the checks found on one object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnosis {
    /// The findings, at most [`MAX_FINDINGS`], in the order of [`CheckId::ALL`].
    pub findings: Vec<Finding>,
    /// How many more were found and left out.
    pub omitted: usize,
}

impl Diagnosis {
    /// The findings as admission warnings with their kinds, and a last line counting those left
    /// out.
    pub fn into_warnings(self) -> impl Iterator<Item = (WarningKind, String)> {
        let more = (self.omitted > 0).then(|| {
            (WarningKind::Omitted, format!("podmedic: {} more problems in this object not shown", self.omitted))
        });
        self.findings.into_iter().map(|f| (WarningKind::Check(f.check), f.message)).chain(more)
    }
}

/// One thing a check found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// The check.
    pub check: CheckId,
    /// The container concerned, when one is.
    pub container: Option<String>,
    /// The warning: what is wrong and the fix, under 120 characters.
    pub message: String,
}

impl Finding {
    fn new(check: CheckId, container: Option<&str>, message: String) -> Finding {
        Finding { check, container: container.map(str::to_owned), message: shorten(message) }
    }

    /// What the check that found this cannot see.
    pub fn cannot_see(&self) -> &'static str {
        self.check.cannot_see()
    }
}

/// Whether the checks run on this object at admission: the pod templates users apply, not the
/// Pods controllers make from them (the user never sees warnings on those), nor ReplicaSets.
pub(crate) fn runs_at_admission(target: &PodTarget<'_>) -> bool {
    match target.holder {
        Holder::Job | Holder::CronJob => true,
        Holder::Workload => matches!(target.kind, "Deployment" | "StatefulSet" | "DaemonSet"),
        Holder::Pod => false,
    }
}

/// The checks in force: the policy's, minus those the namespace or the object turns off.
fn enabled(target: &PodTarget<'_>, ctx: &Context<'_>) -> CheckSet {
    let mut off = ctx.policy.warnings.disabled_checks;
    if let Some(ns) = ctx.namespace {
        off = off.union(ns.disabled_checks);
    }
    for meta in [target.object_meta, target.pod_meta].into_iter().flatten() {
        if let Some(value) = meta.annotation(DISABLED_CHECKS_ANNOTATION) {
            off = off.union(CheckSet::parse_list(value).0);
        }
    }
    CheckId::ALL.into_iter().filter(|c| !off.contains(*c)).collect()
}

/// Runs every enabled check on the pod spec, containers at their final places (`slots`).
pub(crate) fn diagnose(target: &PodTarget<'_>, slots: &[Slot<'_>], ctx: &Context<'_>) -> Diagnosis {
    let enabled = enabled(target, ctx);
    if enabled.is_empty() {
        return Diagnosis::default();
    }
    let mut findings = Vec::new();
    if let Some(nodes) = ctx.cluster.nodes {
        scheduling::check(target, slots, ctx.policy.warnings.node_autoscaling, nodes, enabled, &mut findings);
    }
    if enabled.contains(CheckId::References)
        && let Some(objects) = ctx.cluster.objects
    {
        references::check(target, slots, objects, &mut findings);
    }
    probes::check(slots, enabled, ctx.policy.warnings.min_liveness_window_seconds, &mut findings);
    findings.retain(|f| enabled.contains(f.check));
    let omitted = findings.len().saturating_sub(MAX_FINDINGS);
    findings.truncate(MAX_FINDINGS);
    Diagnosis { findings, omitted }
}

/// Runs the checks on any object with a pod spec, with its containers where they are.
pub(crate) fn diagnose_object(object: &Object<'_>, ctx: &Context<'_>) -> Diagnosis {
    let Some(target) = PodTarget::locate(object) else { return Diagnosis::default() };
    let profiles = Profiles::look_up(&target, ctx.policy);
    let slots =
        apply_moves(&target, &Selection::default(), &profiles, ctx.policy, &mut PatchBuilder::new(), &mut Vec::new());
    diagnose(&target, &slots, ctx)
}

#[cfg(test)]
mod tests;
