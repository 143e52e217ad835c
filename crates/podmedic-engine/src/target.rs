//! Locating the pod spec in an object ([`PodTarget`]) and where each container stands once the
//! sidecars have moved ([`Slot`]): what every concern of the plan reads.

use crate::object::{Container, Metadata, Object, Spec};
use crate::patch::Location;
use crate::policy::SidecarProfile;

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
    /// The object's kind (`Pod`, `Job`, `Deployment`, `DaemonSet`, ...).
    pub kind: &'v str,
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
                kind,
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
                kind,
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
    /// The catalogue entry the container matches (for a moved sidecar named only by
    /// `podmedic.io/sidecars`, none).
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
