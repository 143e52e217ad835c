//! The Pod's effective request, computed the way the scheduler does
//! (`k8s.io/component-helpers/resource.PodRequests` with the scheduler's default options), from a
//! pod template as the API server will turn it into Pods.
//!
//! For each resource: the regular containers and every native sidecar add up; each regular init
//! container needs its own request plus the sidecars started before it; the larger of the two wins.
//! A pod-level `spec.resources.requests` (cpu, memory) replaces the containers' total; pod
//! overhead is added. A container's limit stands in for a missing request, as the API server
//! defaults Pods (`SetDefaults_Pod`; templates are not defaulted, their Pods are).

use crate::cluster::{Amounts, Resource};
use crate::object::{Container, Resources, StrMap};
use crate::target::{PodTarget, Section, Slot};

/// The effective request, and who asks for the most of each resource.
#[derive(Debug, Default)]
pub(super) struct EffectiveRequest<'v> {
    /// Per resource; `None` where nothing is requested or a quantity cannot be read.
    pub amounts: Amounts,
    /// The container with the largest own request of each resource.
    largest: [Option<(&'v str, u64)>; 3],
    /// Whether the pod-level request decided the amount.
    pod_level: [bool; 3],
}

/// Who to name in a warning about one resource.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Blame<'v> {
    /// `spec.resources.requests`.
    PodLevel,
    /// A container and its own request.
    Container(&'v str, u64),
}

impl<'v> EffectiveRequest<'v> {
    /// Computes it for the containers at their final places.
    pub fn of(target: &PodTarget<'v>, slots: &[Slot<'v>]) -> EffectiveRequest<'v> {
        let mut out = EffectiveRequest::default();
        for resource in Resource::ALL {
            let amount = out.aggregate(resource, slots).and_then(|containers| {
                let pod_level = pod_level(target.spec.resources.as_ref(), resource, containers);
                out.pod_level[resource as usize] = pod_level.is_some();
                let base = pod_level.unwrap_or(containers)?;
                let overhead = target.spec.overhead.as_ref().map_or(Some(0), |o| amount_in(o, resource));
                Some(base.saturating_add(overhead?))
            });
            out.amounts.set(resource, amount);
        }
        out
    }

    /// The container aggregate: `Some(None)` when nothing asks for the resource, `None` when a
    /// quantity cannot be read (then nothing is claimed about it).
    #[allow(clippy::option_option)]
    fn aggregate(&mut self, resource: Resource, slots: &[Slot<'v>]) -> Option<Option<u64>> {
        let mut any = false;
        let mut request = |c: &'v Container<'v>| -> Option<u64> {
            let amount = container_request(c, resource)?;
            if let Some(a) = amount {
                any = true;
                let largest = &mut self.largest[resource as usize];
                if largest.is_none_or(|(_, l)| a > l) {
                    *largest = Some((c.name.as_str(), a));
                }
            }
            Some(amount.unwrap_or(0))
        };
        let mut total: u64 = 0;
        for slot in slots.iter().filter(|s| s.section == Section::Regular) {
            total = total.saturating_add(request(slot.container)?);
        }
        let mut inits: Vec<&Slot<'v>> = slots.iter().filter(|s| s.section == Section::Init).collect();
        inits.sort_by_key(|s| s.index);
        let (mut sidecars, mut init_peak) = (0u64, 0u64);
        for slot in inits {
            let own = request(slot.container)?;
            let in_use = if slot.is_native_sidecar() {
                total = total.saturating_add(own);
                sidecars = sidecars.saturating_add(own);
                sidecars
            } else {
                sidecars.saturating_add(own)
            };
            init_peak = init_peak.max(in_use);
        }
        Some(any.then_some(total.max(init_peak)))
    }

    /// Who to name for a resource.
    pub fn blame(&self, resource: Resource) -> Option<Blame<'v>> {
        if self.pod_level[resource as usize] {
            return Some(Blame::PodLevel);
        }
        self.largest[resource as usize].map(|(name, amount)| Blame::Container(name, amount))
    }
}

/// A container's request of one resource, its limit standing in for a missing one: `Some(None)`
/// when it asks for none, `None` when the quantity cannot be read.
#[allow(clippy::option_option)]
fn container_request(c: &Container<'_>, resource: Resource) -> Option<Option<u64>> {
    let Some(resources) = c.resources.as_ref() else { return Some(None) };
    let text = resources.requests.as_ref().and_then(|r| r.get(resource.name()));
    let text = text.or_else(|| resources.limits.as_ref().and_then(|l| l.get(resource.name())));
    match text {
        None => Some(None),
        Some(t) => resource.amount(t).map(Some),
    }
}

/// The pod-level request that replaces the containers' total (cpu and memory only): the request
/// when set, else the limit when no container asks (the API server's `defaultPodRequests`).
fn pod_level(resources: Option<&Resources<'_>>, resource: Resource, containers: Option<u64>) -> Option<Option<u64>> {
    if resource == Resource::EphemeralStorage {
        return None;
    }
    let resources = resources?;
    if let Some(request) = resources.requests.as_ref().and_then(|r| r.get(resource.name())) {
        return Some(resource.amount(request));
    }
    let limit = resources.limits.as_ref().and_then(|l| l.get(resource.name()))?;
    if containers.is_some() {
        return None;
    }
    Some(resource.amount(limit))
}

fn amount_in(list: &StrMap<'_>, resource: Resource) -> Option<u64> {
    match list.get(resource.name()) {
        None => Some(0),
        Some(text) => resource.amount(text),
    }
}
