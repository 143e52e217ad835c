//! Opt-in default resource requests for containers that have none.
//!
//! A container without requests is scheduled as if it needed nothing, which overcommits nodes and
//! hides why Pods later sit in Pending. podmedic adds the configured defaults only where a request
//! is missing; it never changes a request or a limit a user set.
//!
//! A resource with a limit and no request gets no default: when Kubernetes creates a Pod it sets
//! each such request to its limit (`SetDefaults_Pod`; it does not do that for the templates of
//! Jobs, CronJobs or Deployments), and a smaller default would turn a Guaranteed Pod into a
//! Burstable one and shrink its reservation. A container with limits and no requests at all is left
//! alone for the same reason. With pod-level resources (`spec.resources`, Kubernetes 1.32+) set at
//! all, no container gets defaults: with pod-level limits and no pod-level requests, Kubernetes
//! derives the Pod's requests from the containers' ones, so defaults would shrink it.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::mutation::{Change, ChangeKind, Context};
use crate::patch::PatchBuilder;
use crate::policy::ResourceDefaults;
use crate::target::{PodTarget, Slot};

/// Effective default-request settings: the policy, overridden by the namespace.
#[derive(Debug)]
pub(crate) struct Settings<'c> {
    /// Defaults are on (policy switch or a namespace annotation).
    pub enabled: bool,
    /// For regular and init containers.
    pub containers: &'c ResourceDefaults,
    /// For native sidecars.
    pub sidecars: &'c ResourceDefaults,
}

impl<'c> Settings<'c> {
    /// The settings in force for this namespace.
    pub fn effective(ctx: &Context<'c>) -> Settings<'c> {
        let policy = &ctx.policy.default_requests;
        let ns = ctx.namespace;
        let containers = ns.and_then(|n| n.default_requests.as_ref()).unwrap_or(&policy.containers);
        let sidecars = ns
            .and_then(|n| n.default_sidecar_requests.as_ref())
            .or(if policy.sidecars.0.is_empty() { None } else { Some(&policy.sidecars) })
            .unwrap_or(containers);
        let enabled = (policy.enabled || ns.is_some_and(|n| n.default_requests.is_some())) && !containers.0.is_empty();
        Settings { enabled, containers, sidecars }
    }
}

/// Adds default requests where they are missing.
pub(crate) fn add_default_requests(
    target: &PodTarget<'_>,
    slots: &[Slot<'_>],
    settings: &Settings<'_>,
    patch: &mut PatchBuilder,
    changes: &mut Vec<Change>,
    notes: &mut Vec<String>,
) {
    if !settings.enabled {
        return;
    }
    if has_pod_level_resources(target) {
        notes.push("pod-level resources are set: no container defaults added".into());
        return;
    }
    for slot in slots {
        let c = slot.container;
        let defaults = if slot.is_native_sidecar() { settings.sidecars } else { settings.containers };
        let resources = c.resources.as_ref();
        let requests = resources.and_then(|r| r.requests.as_ref()).filter(|r| !r.is_empty());
        let limits = resources.and_then(|r| r.limits.as_ref()).filter(|l| !l.is_empty());
        if limits.is_some() && requests.is_none() {
            notes.push(format!(
                "{}: no default requests: it has limits and no requests, and Kubernetes sets its requests to its \
                 limits when it creates the Pod",
                c.name
            ));
            continue;
        }
        let mut added: BTreeMap<&str, String> = BTreeMap::new();
        for (name, default) in &defaults.0 {
            let requested = requests.is_some_and(|r| r.contains_key(name));
            // Kubernetes fills this request from the limit when it creates the Pod.
            let from_limit = limits.is_some_and(|l| l.contains_key(name));
            if !(requested || from_limit) {
                added.insert(name, default.as_str().to_owned());
            }
        }
        if added.is_empty() {
            continue;
        }
        let at = slot.location(&target.spec_loc).child("resources");
        let as_map = || {
            Value::Object(added.iter().map(|(k, v)| ((*k).to_owned(), Value::String(v.clone()))).collect::<Map<_, _>>())
        };
        match (resources, requests) {
            (None, _) => patch.add(&at, serde_json::json!({ "requests": as_map() })),
            (Some(_), None) => patch.add(&at.child("requests"), as_map()),
            (Some(_), Some(_)) => {
                for (name, value) in &added {
                    patch.add(&at.child("requests").child(*name), Value::String(value.clone()));
                }
            }
        }
        let shown: Vec<String> = added.iter().map(|(k, v)| format!("{k}={v}")).collect();
        changes.push(Change {
            kind: ChangeKind::RequestsAdded,
            container: c.name.to_string(),
            detail: format!("default requests {}", shown.join(",")),
        });
    }
}

/// Whether the Pod sets pod-level resources at all (`spec.resources`).
pub(crate) fn has_pod_level_resources(target: &PodTarget<'_>) -> bool {
    target.spec.resources.is_some()
}

/// Whether a container reserves nothing: no requests, and no limits Kubernetes would turn into
/// requests.
pub(crate) fn reserves_nothing(c: &crate::object::Container<'_>) -> bool {
    let empty = |m: Option<&crate::object::StrMap<'_>>| m.is_none_or(|m| m.is_empty());
    c.resources.as_ref().is_none_or(|r| empty(r.requests.as_ref()) && empty(r.limits.as_ref()))
}
