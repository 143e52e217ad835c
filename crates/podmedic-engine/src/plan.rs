//! Locating the pod spec in an object and running every concern on it in order.

use serde_json::Value;

use crate::annotations::{CHANGES_ANNOTATION, SKIP_ANNOTATION, is_true};
use crate::object::{Container, Metadata, Object, Spec};
use crate::patch::{Location, PatchBuilder};
use crate::policy::SidecarProfile;
use crate::{Change, Context, Mutation, probes, resources, sidecars, warnings};

/// What kind of object holds the pod spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Holder {
    /// A bare Pod.
    Pod,
    /// A Job's pod template.
    Job,
    /// A CronJob's job template's pod template.
    CronJob,
    /// A long-running workload's pod template (Deployment, StatefulSet, ...): inspected, and
    /// mutated only by the opt-in long-running features.
    Workload,
}

/// A pod spec located in an object, with the JSON Pointer locations patches need.
pub(crate) struct PodTarget<'v> {
    pub holder: Holder,
    pub object_meta: Option<&'v Metadata<'v>>,
    pub pod_meta: Option<&'v Metadata<'v>>,
    pub pod_meta_loc: Location,
    pub spec: &'v Spec<'v>,
    pub spec_loc: Location,
    /// The Job spec, for Jobs and CronJobs (podFailurePolicy lives there).
    pub job_spec: Option<&'v Spec<'v>>,
    /// Pods that run to completion: the sidecar rules apply.
    pub run_to_completion: bool,
}

impl<'v> PodTarget<'v> {
    /// Finds the pod spec in the object; `None` for kinds podmedic does not look at.
    pub fn locate(object: &'v Object<'v>) -> Option<PodTarget<'v>> {
        let kind = object.kind.as_deref()?;
        let api_version = object.api_version.as_deref();
        let version_is = |expected: &str| api_version.is_none_or(|v| v == expected);
        let spec = object.spec.as_ref()?;
        let object_meta = object.metadata.as_ref();
        let template_target = |template: &'v crate::object::Template<'v>, base: Location, holder, job_spec| {
            let pod_spec = template.spec.as_ref()?;
            Some(PodTarget {
                holder,
                object_meta,
                pod_meta: template.metadata.as_ref(),
                pod_meta_loc: base.child("metadata"),
                spec: pod_spec,
                spec_loc: base.child("spec"),
                job_spec,
                run_to_completion: holder != Holder::Workload,
            })
        };
        match kind {
            "Pod" if version_is("v1") => Some(PodTarget {
                holder: Holder::Pod,
                object_meta,
                pod_meta: object_meta,
                pod_meta_loc: Location::new(["metadata"]),
                spec,
                spec_loc: Location::new(["spec"]),
                job_spec: None,
                run_to_completion: matches!(spec.restart_policy.as_deref(), Some("Never" | "OnFailure")),
            }),
            "Job" if version_is("batch/v1") => {
                template_target(spec.template.as_deref()?, Location::new(["spec", "template"]), Holder::Job, Some(spec))
            }
            "CronJob" if version_is("batch/v1") => {
                let job_template = spec.job_template.as_deref()?;
                let job_spec = job_template.spec.as_ref()?;
                template_target(
                    job_spec.template.as_deref()?,
                    Location::new(["spec", "jobTemplate", "spec", "template"]),
                    Holder::CronJob,
                    Some(job_spec),
                )
            }
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" if version_is("apps/v1") => {
                template_target(spec.template.as_deref()?, Location::new(["spec", "template"]), Holder::Workload, None)
            }
            "ReplicationController" if version_is("v1") => {
                template_target(spec.template.as_deref()?, Location::new(["spec", "template"]), Holder::Workload, None)
            }
            _ => None,
        }
    }

    /// Regular containers.
    pub fn containers(&self) -> &'v [Container<'v>] {
        self.spec.containers.as_deref().unwrap_or_default()
    }

    /// Init containers (including native sidecars).
    pub fn init_containers(&self) -> &'v [Container<'v>] {
        self.spec.init_containers.as_deref().unwrap_or_default()
    }

    /// An annotation of the pod (template), falling back to the object's.
    pub fn annotation(&self, key: &str) -> Option<&'v str> {
        self.pod_meta.and_then(|m| m.annotation(key)).or_else(|| self.object_meta.and_then(|m| m.annotation(key)))
    }
}

/// Which list a container ends up in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Section {
    /// `spec.containers`.
    Regular,
    /// `spec.initContainers`.
    Init,
}

/// A container at its final position, after the sidecar moves.
pub(crate) struct Slot<'v> {
    pub container: &'v Container<'v>,
    pub section: Section,
    /// Index in its final list.
    pub index: usize,
    /// Moved by podmedic in this mutation.
    pub moved: bool,
    /// The catalogue entry, for moved sidecars.
    pub profile: Option<&'v SidecarProfile>,
    /// A service mesh proxy (by the catalogue).
    pub mesh: bool,
}

impl Slot<'_> {
    /// True for native sidecars, moved or already there.
    pub fn is_native_sidecar(&self) -> bool {
        self.moved || (self.section == Section::Init && self.container.is_restartable())
    }

    /// The container's location in the patched object.
    pub fn location(&self, spec_loc: &Location) -> Location {
        let list = match self.section {
            Section::Regular => "containers",
            Section::Init => "initContainers",
        };
        spec_loc.child(list).index(self.index)
    }
}

/// Runs all concerns on the object.
pub(crate) fn plan(object: &Object<'_>, ctx: &Context<'_>) -> Mutation {
    let Some(target) = PodTarget::locate(object) else {
        return Mutation::default();
    };
    let mut out = Mutation::default();
    if target.containers().is_empty() {
        return out;
    }
    if is_skipped(&target) {
        out.notes.push(format!("{SKIP_ANNOTATION} is set: nothing changed"));
        return out;
    }
    if let Some(workload) = sidecars::self_managed(&target, ctx.policy) {
        out.notes.push(format!("{workload} manages its own containers: nothing changed"));
        return out;
    }

    let mut patch = PatchBuilder::new();
    let selection = if target.run_to_completion {
        sidecars::select(&target, ctx, &mut out.warnings, &mut out.notes)
    } else {
        sidecars::Selection::default()
    };
    let slots = sidecars::apply_moves(&target, &selection, ctx.policy, &mut patch, &mut out.changes);
    let mut probe_notes = Vec::new();
    if !selection.moved.is_empty() {
        probes::add_startup_probes(&target, &slots, &mut patch, &mut out.changes, &mut probe_notes, &mut out.warnings);
    }
    let settings = resources::Settings::effective(ctx);
    resources::add_default_requests(&target, &slots, &settings, &mut patch, &mut out.changes, &mut out.notes);
    if !target.run_to_completion {
        probes::add_long_running_probes(&target, &slots, ctx, &mut patch, &mut out.changes);
    }
    warnings::collect(&target, &slots, &selection, &settings, ctx, &mut out.warnings);
    out.notes.extend(probe_notes.iter().cloned());

    if !out.changes.is_empty() {
        record_changes(&target, &out.changes, &probe_notes, &mut patch);
    }
    out.patch = patch.build();
    out.warnings = warnings::finish(std::mem::take(&mut out.warnings));
    out
}

fn is_skipped(target: &PodTarget<'_>) -> bool {
    let yes = |m: Option<&Metadata<'_>>| m.and_then(|m| m.annotation(SKIP_ANNOTATION)).is_some_and(is_true);
    yes(target.object_meta) || yes(target.pod_meta)
}

/// Records the changes in `podmedic.io/changes` on the object and on its pod template.
fn record_changes(target: &PodTarget<'_>, changes: &[Change], notes: &[String], patch: &mut PatchBuilder) {
    let mut summary: Vec<String> = changes.iter().map(ToString::to_string).collect();
    summary.extend(notes.iter().cloned());
    let summary = summary.join("; ");
    let mut annotate = |meta: Option<&Metadata<'_>>, meta_loc: &Location| {
        let text = match meta.and_then(|m| m.annotation(CHANGES_ANNOTATION)).filter(|s| !s.is_empty()) {
            Some(previous) => format!("{previous}; {summary}"),
            None => summary.clone(),
        };
        match meta {
            None => patch.add(meta_loc, serde_json::json!({ "annotations": { CHANGES_ANNOTATION: text } })),
            Some(m) => patch.set_map_entry(
                &meta_loc.child("annotations"),
                m.annotations.is_some(),
                CHANGES_ANNOTATION,
                Value::String(text),
            ),
        }
    };
    annotate(target.pod_meta, &target.pod_meta_loc);
    if target.holder != Holder::Pod {
        annotate(target.object_meta, &Location::new(["metadata"]));
    }
}
