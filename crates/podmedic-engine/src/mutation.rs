//! What the engine takes besides the object ([`Context`]) and what it returns ([`Mutation`], made
//! of [`Change`]s, warnings and notes, or a [`MutateError`]).

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use crate::annotations::NamespaceSettings;
use crate::cluster::ClusterView;
use crate::kubernetes::NativeSidecars;
use crate::policy::Policy;

/// Everything the engine needs besides the object itself.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// Sidecar catalogue and defaults.
    pub policy: &'a Policy,
    /// Whether native sidecars may be used.
    pub native_sidecars: &'a NativeSidecars,
    /// Settings of the object's namespace, if known.
    pub namespace: Option<&'a NamespaceSettings>,
    /// What is known about the cluster's nodes and the namespace's objects (nothing by default).
    pub cluster: ClusterView<'a>,
    /// Containers that stay regular in this request whatever the catalogue and the annotations
    /// say (none by default): on the UPDATE of a Job or CronJob, those the user stopped applying
    /// while another field manager keeps them in `containers`. A move of one would be undone as
    /// "deleted from Git" by the next request, so podmedic's answer on its own output would not
    /// be empty.
    pub held_regular: &'a BTreeSet<String>,
}

/// No names: the default [`Context::held_regular`].
static NO_NAMES: BTreeSet<String> = BTreeSet::new();

impl<'a> Context<'a> {
    /// A context with this policy and capability, and nothing known about the namespace or the
    /// cluster: what `podmedic fix` and a webhook with no cluster use.
    pub fn new(policy: &'a Policy, native_sidecars: &'a NativeSidecars) -> Self {
        Context { policy, native_sidecars, namespace: None, cluster: ClusterView::default(), held_regular: &NO_NAMES }
    }
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
    /// A database proxy was told to exit 0 instead of 143 when the kubelet stops it.
    ExitZeroOnSigterm,
    /// An update re-applied a sidecar podmedic had moved, unchanged: the stored native sidecar
    /// stays and the re-applied copy leaves `containers` (see `converge`).
    SidecarKept,
    /// An update re-applied a sidecar an earlier podmedic had moved into a template: it stays in
    /// `containers` as applied, and podmedic's native sidecar leaves (pods mode).
    SidecarRestored,
    /// An update no longer applies a sidecar podmedic had moved: its native sidecar leaves too.
    SidecarRemoved,
}

impl ChangeKind {
    /// Stable label value for metrics.
    pub fn label(self) -> &'static str {
        match self {
            ChangeKind::SidecarMoved => "sidecar_moved",
            ChangeKind::ProbeAdded => "probe_added",
            ChangeKind::HealthCheckEnabled => "health_check_enabled",
            ChangeKind::RequestsAdded => "requests_added",
            ChangeKind::ExitZeroOnSigterm => "exit_zero_on_sigterm",
            ChangeKind::SidecarKept => "sidecar_kept",
            ChangeKind::SidecarRestored => "sidecar_restored",
            ChangeKind::SidecarRemoved => "sidecar_removed",
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

impl Change {
    /// `container: detail`, the entry of `podmedic.io/changes` (what [`fmt::Display`] writes), built
    /// in one allocation of the right size: `to_string` grows it from nothing, four or five
    /// reallocations for every change of every admission.
    pub fn entry(&self) -> String {
        [self.container.as_str(), ": ", self.detail.as_str()].concat()
    }
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
    /// What each warning is about, in the same order (for reports; the API gets the text only).
    pub warning_kinds: Vec<crate::warnings::WarningKind>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_entry_is_its_display_form() {
        let change = Change {
            kind: ChangeKind::SidecarMoved,
            container: "cloud-sql-proxy".into(),
            detail: "moved to initContainers as a native sidecar (restartPolicy: Always)".into(),
        };
        assert_eq!(change.entry(), change.to_string());
        assert_eq!(
            change.entry(),
            "cloud-sql-proxy: moved to initContainers as a native sidecar (restartPolicy: Always)"
        );
    }
}
