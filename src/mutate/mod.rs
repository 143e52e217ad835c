//! The mutation engine: pure functions from an object's raw JSON to the JSON Patch that fixes it.
//!
//! Nothing in this module performs I/O. The webhook ([`crate::admission`]) and the offline
//! `podmedic fix` command both call [`mutate_json`] (or [`mutate_value`]) with a [`Context`]
//! that carries the policy, the cluster's capabilities and the namespace's settings.
//!
//! The engine reads a borrowed, partial view of the object (see [`view`]) and emits
//! `move`/`add` operations against the object exactly as it was received, so fields that our
//! types do not know survive untouched.

mod image;
mod patch;
mod pod;
mod probes;
mod quantity;
mod resources;
mod sidecars;
pub mod view;
mod warnings;

use std::fmt;

use serde::Serialize;

use crate::config::{Policy, ResourceDefaults};

pub use image::ImageRef;
pub use patch::{Location, PatchBuilder, escape_pointer_token};
pub use probes::{STARTUP_FAILURE_THRESHOLD, STARTUP_PERIOD_SECONDS};
pub use quantity::Quantity;
pub use warnings::shorten as shorten_warning;

/// Annotation that turns podmedic off for one object or pod template.
pub const SKIP_ANNOTATION: &str = "podmedic.io/skip";
/// Annotation naming the containers that are long-running sidecars (comma separated).
pub const SIDECARS_ANNOTATION: &str = "podmedic.io/sidecars";
/// Annotation that places moved sidecars before the regular init containers (`first`).
pub const SIDECAR_POSITION_ANNOTATION: &str = "podmedic.io/sidecar-position";
/// Annotation on which podmedic records what it changed.
pub const CHANGES_ANNOTATION: &str = "podmedic.io/changes";
/// Annotation (on a namespace or a pod template) with default requests for regular containers.
pub const DEFAULT_REQUESTS_ANNOTATION: &str = "podmedic.io/default-requests";
/// Annotation (on a namespace) with default requests for sidecars.
pub const DEFAULT_SIDECAR_REQUESTS_ANNOTATION: &str = "podmedic.io/default-sidecar-requests";
/// Annotation (on a namespace) that turns on default probes for long-running Pods:
/// `readiness` or `readiness,liveness`, or `none`.
pub const DEFAULT_PROBES_ANNOTATION: &str = "podmedic.io/default-probes";
/// Annotation (on a namespace) that opts the namespace out even though it carries the label.
pub const NAMESPACE_OPT_OUT_ANNOTATION: &str = "podmedic.io/disabled";

/// Longest warning podmedic emits; Kubernetes asks admission warnings to stay under 120 characters.
pub const MAX_WARNING_LEN: usize = 119;

/// Whether the cluster can run native sidecars (restartable init containers, Kubernetes 1.29+).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NativeSidecars {
    /// The API server and every kubelet support native sidecars.
    Available,
    /// Native sidecars cannot be used; the reason is shown to users (for example
    /// `node worker-3 runs kubelet v1.28.5`).
    Unavailable(String),
}

impl NativeSidecars {
    /// What a cluster of the given `major.minor` Kubernetes version supports.
    pub fn for_version(major: u32, minor: u32) -> Self {
        if (major, minor) >= (1, 29) {
            NativeSidecars::Available
        } else {
            NativeSidecars::Unavailable(format!("Kubernetes {major}.{minor} is older than 1.29"))
        }
    }

    /// True when sidecars may be moved.
    pub fn is_available(&self) -> bool {
        matches!(self, NativeSidecars::Available)
    }
}

/// Per-namespace settings, read from namespace annotations by the cluster layer.
///
/// Every field is an override: `None` means "use the policy".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NamespaceSettings {
    /// The namespace opted out (`podmedic.io/disabled: "true"`).
    pub opted_out: bool,
    /// Default requests for regular and init containers.
    pub default_requests: Option<ResourceDefaults>,
    /// Default requests for sidecars.
    pub default_sidecar_requests: Option<ResourceDefaults>,
    /// Readiness probes for long-running Pods.
    pub readiness_probes: Option<bool>,
    /// TCP liveness probes for long-running Pods.
    pub liveness_probes: Option<bool>,
}

/// Everything the engine needs besides the object itself.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// Sidecar catalogue and defaults.
    pub policy: &'a Policy,
    /// Whether native sidecars may be used.
    pub native_sidecars: &'a NativeSidecars,
    /// Settings of the object's namespace, if known.
    pub namespace: Option<&'a NamespaceSettings>,
}

/// The kinds of change podmedic makes; used for the metrics label and the changes annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// A container moved from `containers` to `initContainers` with `restartPolicy: Always`.
    SidecarMoved,
    /// A startup probe was added to a moved sidecar.
    ProbeAdded,
    /// A sidecar's health endpoint was switched on (flags or environment) so that it can be probed.
    HealthCheckEnabled,
    /// Default resource requests were added to a container.
    RequestsAdded,
}

impl ChangeKind {
    /// Stable label value for metrics.
    pub fn label(self) -> &'static str {
        match self {
            ChangeKind::SidecarMoved => "sidecar_moved",
            ChangeKind::ProbeAdded => "probe_added",
            ChangeKind::HealthCheckEnabled => "health_check_enabled",
            ChangeKind::RequestsAdded => "requests_added",
        }
    }
}

/// One change podmedic made, with a short human-readable description.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What kind of change this is.
    pub kind: ChangeKind,
    /// The container it applies to.
    pub container: String,
    /// Short description, for example `moved to initContainers as a native sidecar`.
    pub detail: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.container, self.detail)
    }
}

/// What the engine decided for one object.
#[derive(Clone, Debug, Default)]
pub struct Mutation {
    /// RFC 6902 patch against the object as received; empty when nothing changes.
    pub patch: json_patch::Patch,
    /// The changes the patch makes.
    pub changes: Vec<Change>,
    /// Short, actionable messages for the user (each under 120 characters).
    pub warnings: Vec<String>,
    /// Notes about what podmedic saw but deliberately did not do (for `podmedic fix -v` and logs).
    pub notes: Vec<String>,
}

impl Mutation {
    /// True when the patch changes nothing.
    pub fn is_unchanged(&self) -> bool {
        self.patch.0.is_empty()
    }
}

/// Why the engine could not look at an object. The webhook lets such objects through unchanged.
#[derive(Debug, thiserror::Error)]
pub enum MutateError {
    /// The object is not valid JSON or a field has the wrong type.
    #[error("cannot read the object: {0}")]
    Malformed(String),
}

impl MutateError {
    /// Stable label value for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            MutateError::Malformed(_) => "malformed_object",
        }
    }
}

/// Computes the mutation for an object given as raw JSON text.
pub fn mutate_json(raw: &str, ctx: &Context<'_>) -> Result<Mutation, MutateError> {
    let object: view::Object<'_> = view::Object::from_json(raw)?;
    Ok(plan(&object, ctx))
}

/// Computes the mutation for an object already decoded into the engine's view (the webhook decodes
/// it together with the AdmissionReview, in one pass).
pub fn mutate_view(object: &view::Object<'_>, ctx: &Context<'_>) -> Mutation {
    plan(object, ctx)
}

/// Computes the mutation for an object already parsed into a [`serde_json::Value`].
pub fn mutate_value(value: &serde_json::Value, ctx: &Context<'_>) -> Result<Mutation, MutateError> {
    let object = view::Object::from_value(value)?;
    Ok(plan(&object, ctx))
}

/// The engine proper, on the parsed view.
fn plan(object: &view::Object<'_>, ctx: &Context<'_>) -> Mutation {
    pod::plan(object, ctx)
}

#[cfg(test)]
mod tests;
