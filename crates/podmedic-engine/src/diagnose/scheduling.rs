//! `node-selector`, `node-taints` and `node-fit`: Pods that no current node will take.
//!
//! Each claim is one the scheduler cannot prove wrong later without a change to the nodes: no
//! node has the labels; every node with the labels has a taint the Pod does not tolerate; the
//! effective request is larger than the allocatable of every node that is left (allocatable, not
//! what is free: other Pods' usage is not counted, so a "fits" here may still pend on a full
//! cluster, never the reverse). While a node that matches is not Ready, nothing is said about
//! taints or fit: its state is changing.

use std::sync::Arc;

use super::Finding;
use super::placement::{Tolerations, affinity_matches, has_required_affinity, selector_matches, unmatched_pairs};
use super::requests::{Blame, EffectiveRequest};
use crate::checks::{CheckId, CheckSet};
use crate::cluster::{NodeFacts, Resource, Taint};
use crate::target::{PodTarget, Slot};

/// How the warnings name the nodes and what happens to the Pods.
struct Wording {
    /// `no node` or, with an autoscaler, `no current node`.
    no_node: &'static str,
    /// What the user will see.
    effect: &'static str,
}

impl Wording {
    fn new(target: &PodTarget<'_>, autoscaling: bool) -> Wording {
        Wording {
            no_node: if autoscaling { "no current node" } else { "no node" },
            effect: if target.kind == "DaemonSet" { "the DaemonSet runs nowhere" } else { "Pods stay Pending" },
        }
    }
}

/// Runs the node checks against the current nodes.
pub(super) fn check(
    target: &PodTarget<'_>,
    slots: &[Slot<'_>],
    autoscaling: bool,
    nodes: &[Arc<NodeFacts>],
    enabled: CheckSet,
    out: &mut Vec<Finding>,
) {
    let spec = target.spec;
    // A node chosen by hand bypasses the scheduler; another scheduler may place Pods its own way.
    let scheduler = spec.scheduler_name.as_deref().unwrap_or_default();
    if spec.node_name.as_deref().is_some_and(|n| !n.is_empty()) || !matches!(scheduler, "" | "default-scheduler") {
        return;
    }
    if nodes.is_empty() {
        return;
    }
    let wording = Wording::new(target, autoscaling);
    let nodes: Vec<&NodeFacts> = nodes.iter().map(|n| &**n).collect();
    let matching: Vec<&NodeFacts> =
        nodes.iter().copied().filter(|n| selector_matches(spec, n) && affinity_matches(spec, n)).collect();
    // The nodes the fit is judged on: those the Pod may use or, when the selection or the taints
    // leave none, the wider set it failed on (no node of the cluster fits is still worth knowing).
    let fit_on = if matching.is_empty() {
        if enabled.contains(CheckId::NodeSelector) {
            out.push(no_match(target, &nodes, &wording));
        }
        nodes
    } else if matching.iter().any(|n| !n.ready) {
        return;
    } else {
        let tolerations = Tolerations::of(spec, target.kind == "DaemonSet");
        let blocking: Vec<Option<Taint>> = matching.iter().map(|n| tolerations.blocking_taint(n)).collect();
        if blocking.iter().all(Option::is_some) {
            if enabled.contains(CheckId::NodeTaints) {
                out.push(untolerated(&blocking, &wording));
            }
            matching
        } else {
            matching.into_iter().zip(blocking).filter(|(_, b)| b.is_none()).map(|(n, _)| n).collect()
        }
    };
    // A node that is not Ready may come back bigger or smaller: say nothing about fit meanwhile.
    if enabled.contains(CheckId::NodeFit) && fit_on.iter().all(|n| n.ready) {
        fit(&EffectiveRequest::of(target, slots), &fit_on, &wording, out);
    }
}

/// The `node-taints` finding, naming the taint every node has or, when they differ, one of them.
fn untolerated(blocking: &[Option<Taint>], wording: &Wording) -> Finding {
    let first = blocking.iter().flatten().next().map(ToString::to_string).unwrap_or_default();
    let shared = blocking.iter().flatten().all(|t| t.to_string() == first);
    let what =
        if shared { format!("has taint {first}") } else { format!("has a taint it does not tolerate, like {first}") };
    Finding::new(CheckId::NodeTaints, None, format!("every node it may use {what}: {}; tolerate it", wording.effect))
}

/// The `node-selector` finding: which part of the selection matches no node.
fn no_match(target: &PodTarget<'_>, nodes: &[&NodeFacts], wording: &Wording) -> Finding {
    let spec = target.spec;
    let selector_alone = nodes.iter().any(|n| selector_matches(spec, n));
    let affinity_alone = nodes.iter().any(|n| affinity_matches(spec, n));
    let what = if !selector_alone {
        let mut pairs = unmatched_pairs(spec, nodes);
        if pairs.is_empty() {
            "nodeSelector (its pairs together)".to_owned()
        } else {
            pairs.truncate(2);
            format!("nodeSelector {}", pairs.join(","))
        }
    } else if !affinity_alone || !has_required_affinity(spec) {
        "required node affinity".to_owned()
    } else {
        "nodeSelector with required node affinity".to_owned()
    };
    Finding::new(
        CheckId::NodeSelector,
        None,
        format!("{what} matches {}: {}; fix it or label a node", wording.no_node, wording.effect),
    )
}

/// The `node-fit` findings: a resource whose request is above every usable node's allocatable, or
/// else requests that no usable node has room for together.
fn fit(request: &EffectiveRequest<'_>, usable: &[&NodeFacts], wording: &Wording, out: &mut Vec<Finding>) {
    let mut found = false;
    for resource in Resource::ALL {
        let Some(asked) = request.amounts.get(resource).filter(|a| *a > 0) else { continue };
        // A node that does not report the resource might have any amount of it: say nothing.
        let Some(largest) = usable.iter().map(|n| n.allocatable.get(resource)).collect::<Option<Vec<u64>>>() else {
            continue;
        };
        let Some(largest) = largest.into_iter().max().filter(|l| asked > *l) else { continue };
        found = true;
        let (asked_text, largest_text) = resource.format_pair(asked, largest);
        let fix = match request.blame(resource) {
            Some(Blame::Container(name, own)) if own == asked => {
                format!("container {name} requests {asked_text}; lower it or add nodes")
            }
            Some(Blame::Container(name, _)) => format!("largest: container {name}; lower requests or add nodes"),
            Some(Blame::PodLevel) => "lower spec.resources.requests or add nodes".to_owned(),
            None => "lower the requests or add nodes".to_owned(),
        };
        let container = match request.blame(resource) {
            Some(Blame::Container(name, _)) => Some(name),
            _ => None,
        };
        out.push(Finding::new(
            CheckId::NodeFit,
            container,
            format!(
                "{} can fit {} {asked_text} (largest allocatable: {largest_text}): {fix}",
                wording.no_node,
                resource.name()
            ),
        ));
    }
    if found {
        return;
    }
    // Each resource fits somewhere, but maybe not all of them on any one node.
    let short = |n: &NodeFacts, r: Resource| match (request.amounts.get(r), n.allocatable.get(r)) {
        (Some(asked), Some(allocatable)) => asked > allocatable,
        _ => false,
    };
    if usable.iter().all(|n| Resource::ALL.iter().any(|r| short(n, *r))) {
        let asked: Vec<String> = Resource::ALL
            .iter()
            .filter_map(|r| Some(format!("{} {}", r.name(), r.format(request.amounts.get(*r).filter(|a| *a > 0)?, 1))))
            .collect();
        out.push(Finding::new(
            CheckId::NodeFit,
            None,
            format!(
                "{} can fit {} at once: {}; lower the requests or add nodes",
                wording.no_node,
                asked.join(" and "),
                wording.effect
            ),
        ));
    }
}
