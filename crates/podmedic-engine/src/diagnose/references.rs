//! `references`: objects a Pod needs that podmedic has not seen in the namespace. A container
//! whose ConfigMap or Secret is missing stays in CreateContainerConfigError (environment) or
//! ContainerCreating (volumes); a Pod whose PersistentVolumeClaim is missing is not scheduled; a
//! Pod whose ServiceAccount is missing is not even created.
//!
//! Tools that sync a whole application (Helm, Argo CD, `kubectl apply -k`) create these together
//! with the workload, and a watch lags behind the API server, so the warning says "not seen yet",
//! never "missing". Optional references are never reported.

use std::collections::BTreeSet;

use super::Finding;
use crate::checks::CheckId;
use crate::cluster::{NamespaceObjects, ReferenceKind};
use crate::target::{PodTarget, Slot};

/// A name the Pod needs and where it is used, in the order the spec names them.
struct Use<'v> {
    kind: ReferenceKind,
    name: &'v str,
    container: Option<&'v str>,
    place: String,
}

/// Reports each needed object not seen in the namespace, once, at its first use.
pub(super) fn check(
    target: &PodTarget<'_>,
    slots: &[Slot<'_>],
    objects: &dyn NamespaceObjects,
    out: &mut Vec<Finding>,
) {
    let mut reported = BTreeSet::new();
    for u in uses(target, slots) {
        if objects.contains(u.kind, u.name) || !reported.insert((u.kind, u.name)) {
            continue;
        }
        let fix = match u.kind {
            ReferenceKind::ConfigMap | ReferenceKind::Secret => "create it or mark it optional",
            ReferenceKind::PersistentVolumeClaim => "create it; the Pod will not be scheduled without it",
            ReferenceKind::ServiceAccount => "create it; no Pod can be created without it",
        };
        out.push(Finding::new(
            CheckId::References,
            u.container,
            format!("{} {} ({}) not seen yet: {fix}", u.kind.kind(), u.name, u.place),
        ));
    }
}

/// Every non-optional reference of the pod spec.
fn uses<'v>(target: &PodTarget<'v>, slots: &[Slot<'v>]) -> Vec<Use<'v>> {
    let spec = target.spec;
    let mut uses = Vec::new();
    let service_account = spec.service_account_name.as_deref().or(spec.deprecated_service_account.as_deref());
    // Every namespace gets `default` from the ServiceAccount controller, a moment after it is made.
    if let Some(name) = service_account.filter(|n| !n.is_empty() && *n != "default") {
        uses.push(Use {
            kind: ReferenceKind::ServiceAccount,
            name,
            container: None,
            place: "serviceAccountName".into(),
        });
    }
    for slot in slots {
        let c = slot.container;
        let container = Some(c.name.as_str());
        for env in c.env() {
            let Some(source) = env.value_from.as_ref() else { continue };
            let refs = [
                (ReferenceKind::ConfigMap, source.config_map_key_ref.as_ref()),
                (ReferenceKind::Secret, source.secret_key_ref.as_ref()),
            ];
            for (kind, reference) in refs {
                if let Some(name) = reference.and_then(|r| r.required_name()) {
                    uses.push(Use { kind, name, container, place: format!("env {} of {}", env.name, c.name) });
                }
            }
        }
        for source in c.env_from() {
            let refs = [
                (ReferenceKind::ConfigMap, source.config_map_ref.as_ref()),
                (ReferenceKind::Secret, source.secret_ref.as_ref()),
            ];
            for (kind, reference) in refs {
                if let Some(name) = reference.and_then(|r| r.required_name()) {
                    uses.push(Use { kind, name, container, place: format!("envFrom of {}", c.name) });
                }
            }
        }
    }
    for volume in spec.volumes() {
        let place = || format!("volume {}", volume.name);
        let mut push = |kind, reference: Option<&'v crate::object::Reference<'v>>| {
            if let Some(name) = reference.and_then(|r| r.required_name()) {
                uses.push(Use { kind, name, container: None, place: place() });
            }
        };
        push(ReferenceKind::ConfigMap, volume.config_map.as_ref());
        push(ReferenceKind::Secret, volume.secret.as_ref());
        push(ReferenceKind::PersistentVolumeClaim, volume.persistent_volume_claim.as_ref());
        let sources = volume.projected.as_ref().and_then(|p| p.sources.as_deref()).unwrap_or_default();
        for source in sources {
            push(ReferenceKind::ConfigMap, source.config_map.as_ref());
            push(ReferenceKind::Secret, source.secret.as_ref());
        }
    }
    uses
}
