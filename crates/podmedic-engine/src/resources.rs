//! Opt-in default resource requests for containers that have none.
//!
//! A container without requests is scheduled as if it needed nothing, which overcommits nodes and
//! hides why Pods later sit in Pending. podmedic adds the configured defaults only where a request
//! is missing; it never changes a request or a limit a user set, and never requests more than a
//! limit allows (where a limit is below the default, the request equals the limit).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::kubernetes::quantity;
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
    if target.spec.resources.as_ref().is_some_and(|r| r.requests.as_ref().is_some_and(|m| !m.is_empty())) {
        notes.push("pod-level resource requests are set: no container defaults added".into());
        return;
    }
    for slot in slots {
        let c = slot.container;
        let defaults = if slot.is_native_sidecar() { settings.sidecars } else { settings.containers };
        let resources = c.resources.as_ref();
        let requests = resources.and_then(|r| r.requests.as_ref());
        let limits = resources.and_then(|r| r.limits.as_ref());
        let mut added: BTreeMap<&str, String> = BTreeMap::new();
        for (name, default) in &defaults.0 {
            if requests.is_some_and(|r| r.contains_key(name)) {
                continue;
            }
            let limit = limits.and_then(|l| l.get(name));
            let value = match limit.and_then(|l| quantity::parse_value(l).map(|v| (l, v))) {
                Some((text, limit_value)) if limit_value < default.value() => text.to_owned(),
                _ => default.as_str().to_owned(),
            };
            added.insert(name, value);
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
