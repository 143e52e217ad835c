//! podmedic's engine: pure functions from a Kubernetes object's raw JSON to the JSON Patch that
//! fixes it, and from an AdmissionReview body to the AdmissionReview answer.
//!
//! Nothing in this crate performs network I/O or depends on an async runtime, a Kubernetes client,
//! TLS or a command-line parser: the webhook (`podmedic serve`), `podmedic fix` and `podmedic audit`
//! all call into it, and its tests, property tests, fuzz replay and benchmarks link nothing else.
//!
//! - [`admission`]: the AdmissionReview envelope in, the wire response out ([`admission::admit`]).
//! - [`object`]: a borrowed, partial view of the object; [`mutate_json`] / [`mutate_value`] /
//!   [`mutate_object`] run the plan on it with a [`Context`] (policy, the cluster's capability,
//!   the namespace's settings).
//! - the plan and its concerns: sidecars, probes, resources, warnings, and the patch builder.
//! - [`policy`]: the sidecar catalogue and defaults (the embedded default plus a user's YAML file).
//! - [`kubernetes`]: Kubernetes value types: image references, quantities, versions and the
//!   native-sidecar rule.
//! - [`annotations`]: every `podmedic.io/*` key, and the namespace settings read from them.
//!
//! The engine reads a borrowed, partial view of the object (see [`object`]) and emits
//! `move`/`add` operations against the object exactly as it was received, so fields that our
//! types do not know survive untouched.

pub mod admission;
pub mod annotations;
pub mod kubernetes;
pub mod object;
mod patch;
mod plan;
pub mod policy;
mod probes;
mod resources;
mod sidecars;
mod warnings;

use std::fmt;

use serde::Serialize;

pub use annotations::NamespaceSettings;
pub use kubernetes::{ImageRef, KubeVersion, NativeSidecars, Quantity};
pub use patch::{Location, PatchBuilder, escape_pointer_token};
pub use policy::Policy;
pub use probes::{STARTUP_FAILURE_THRESHOLD, STARTUP_PERIOD_SECONDS};
pub use warnings::shorten as shorten_warning;

/// Longest warning podmedic emits; Kubernetes asks admission warnings to stay under 120 characters.
pub const MAX_WARNING_LEN: usize = 119;

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
    let object = object::Object::from_json(raw)?;
    Ok(plan::plan(&object, ctx))
}

/// Computes the mutation for an object already decoded into the engine's view (the webhook decodes
/// it together with the AdmissionReview, in one pass).
pub fn mutate_object(object: &object::Object<'_>, ctx: &Context<'_>) -> Mutation {
    plan::plan(object, ctx)
}

/// Computes the mutation for an object already parsed into a [`serde_json::Value`].
pub fn mutate_value(value: &serde_json::Value, ctx: &Context<'_>) -> Result<Mutation, MutateError> {
    let object = object::Object::from_value(value)?;
    Ok(plan::plan(&object, ctx))
}

#[cfg(test)]
mod tests;
