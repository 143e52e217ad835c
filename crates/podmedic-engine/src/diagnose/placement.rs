//! Which nodes a Pod may be placed on, with the scheduler's rules: `nodeSelector` and required
//! node affinity (`k8s.io/component-helpers/scheduling/corev1/nodeaffinity`), and taints against
//! tolerations, counting those the API server and the DaemonSet controller add on their own.

use crate::cluster::{NodeFacts, Taint};
use crate::object::{NodeSelectorTerm, SelectorRequirement, Spec, Toleration};

/// Keys of the taints the control plane manages (`k8s.io/api/core/v1` well-known taints).
const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
/// Set by cloud providers until the cloud controller has initialised a new node (seconds).
const UNINITIALIZED: &str = "node.cloudprovider.kubernetes.io/uninitialized";

/// Whether the node's labels have every pair of `nodeSelector`.
pub(super) fn selector_matches(spec: &Spec<'_>, node: &NodeFacts) -> bool {
    spec.node_selector
        .as_ref()
        .is_none_or(|pairs| pairs.0.iter().all(|(k, v)| node.labels.get(k.as_str()).is_some_and(|l| l == v.as_str())))
}

/// The `nodeSelector` pairs that no node has, as `key=value`.
pub(super) fn unmatched_pairs(spec: &Spec<'_>, nodes: &[&NodeFacts]) -> Vec<String> {
    let pairs = spec.node_selector.as_ref().map(|m| m.0.as_slice()).unwrap_or_default();
    pairs
        .iter()
        .filter(|(k, v)| !nodes.iter().any(|n| n.labels.get(k.as_str()).is_some_and(|l| l == v.as_str())))
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// The required node affinity's terms, when there is one.
fn required_terms<'s>(spec: &'s Spec<'_>) -> Option<&'s [NodeSelectorTerm<'s>]> {
    let required = spec.affinity.as_ref()?.node_affinity.as_ref()?.required.as_ref()?;
    Some(required.node_selector_terms.as_deref().unwrap_or_default())
}

/// Whether the Pod has a required node affinity.
pub(super) fn has_required_affinity(spec: &Spec<'_>) -> bool {
    required_terms(spec).is_some()
}

/// Whether the node satisfies the required node affinity (true when there is none).
///
/// Terms are ORed; a term with neither expressions nor fields matches nothing; within a term every
/// expression and field requirement must hold; a requirement the API would not accept makes its
/// term match nothing.
pub(super) fn affinity_matches(spec: &Spec<'_>, node: &NodeFacts) -> bool {
    let Some(terms) = required_terms(spec) else { return true };
    if terms.is_empty() {
        // The API server refuses an empty list; stay silent rather than guess.
        return true;
    }
    terms.iter().any(|term| term_matches(term, node))
}

fn term_matches(term: &NodeSelectorTerm<'_>, node: &NodeFacts) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions.iter().all(|r| label_requirement(r, node.labels.get(r.key.as_str()).map(String::as_str)))
        && fields.iter().all(|r| field_requirement(r, node))
}

/// A label requirement, with apimachinery's label-selector semantics.
fn label_requirement(r: &SelectorRequirement<'_>, label: Option<&str>) -> bool {
    let values = r.values();
    let integer = |text: &str| text.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => label.is_some_and(|l| values.iter().any(|v| v.as_str() == l)),
        "NotIn" => label.is_none_or(|l| !values.iter().any(|v| v.as_str() == l)),
        "Exists" => label.is_some(),
        "DoesNotExist" => label.is_none(),
        op @ ("Gt" | "Lt") => {
            let [bound] = values else { return false };
            let (Some(bound), Some(value)) = (integer(bound), label.and_then(integer)) else { return false };
            if op == "Gt" { value > bound } else { value < bound }
        }
        _ => false,
    }
}

/// A field requirement: only `metadata.name` with `In`/`NotIn` and exactly one value exists.
fn field_requirement(r: &SelectorRequirement<'_>, node: &NodeFacts) -> bool {
    let [value] = r.values() else { return false };
    if r.key.as_str() != "metadata.name" {
        return false;
    }
    match r.operator.as_str() {
        "In" => value.as_str() == node.name,
        "NotIn" => value.as_str() != node.name,
        _ => false,
    }
}

/// The tolerations a Pod ends up with: its own plus those added for it.
pub(super) struct Tolerations<'s> {
    own: &'s [Toleration<'s>],
    /// A DaemonSet's Pod: the DaemonSet controller adds its tolerations.
    daemon: bool,
    host_network: bool,
}

impl<'s> Tolerations<'s> {
    /// The tolerations of Pods made from this template; `daemon` for a DaemonSet's.
    pub fn of(spec: &'s Spec<'s>, daemon: bool) -> Tolerations<'s> {
        Tolerations { own: spec.tolerations(), daemon, host_network: spec.host_network == Some(true) }
    }

    /// The first taint that keeps the Pod off the node (the scheduler's filters: NoSchedule and
    /// NoExecute taints, and a cordon as the taint the node lifecycle controller puts with it).
    pub fn blocking_taint(&self, node: &NodeFacts) -> Option<Taint> {
        let cordon = node.unschedulable.then(|| Taint {
            key: UNSCHEDULABLE.into(),
            value: String::new(),
            effect: "NoSchedule".into(),
        });
        node.taints
            .iter()
            .cloned()
            .chain(cordon)
            .filter(|t| matches!(t.effect.as_str(), "NoSchedule" | "NoExecute"))
            // Present for the seconds a new node takes to initialise: never a reason to warn.
            .filter(|t| t.key != UNINITIALIZED)
            .find(|t| !self.tolerates(t))
    }

    fn tolerates(&self, taint: &Taint) -> bool {
        self.own.iter().any(|t| tolerates(t, taint)) || self.added_for(taint)
    }

    /// The tolerations added without the user writing them: the DefaultTolerationSeconds admission
    /// plugin's on every Pod, the DaemonSet controller's on daemon Pods.
    fn added_for(&self, taint: &Taint) -> bool {
        let key = taint.key.as_str();
        match taint.effect.as_str() {
            "NoExecute" => matches!(key, NOT_READY | UNREACHABLE),
            "NoSchedule" if self.daemon => {
                matches!(key, MEMORY_PRESSURE | DISK_PRESSURE | PID_PRESSURE | UNSCHEDULABLE)
                    || (key == NETWORK_UNAVAILABLE && self.host_network)
            }
            _ => false,
        }
    }
}

/// Whether a toleration tolerates a taint (`k8s.io/api/core/v1` `Toleration.ToleratesTaint`).
fn tolerates(t: &Toleration<'_>, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    let value = t.value.as_deref().unwrap_or_default();
    match t.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => value == taint.value,
        "Exists" => true,
        // Numeric comparisons are newer than most clusters; when either side is not a number,
        // count it as tolerated rather than warn about a Pod that may well schedule.
        op @ ("Lt" | "Gt") => match (taint.value.parse::<i64>(), value.parse::<i64>()) {
            (Ok(taint_value), Ok(bound)) => {
                if op == "Lt" {
                    taint_value < bound
                } else {
                    taint_value > bound
                }
            }
            _ => true,
        },
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::Object;

    fn node(name: &str, labels: &[(&str, &str)]) -> NodeFacts {
        NodeFacts {
            name: name.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ready: true,
            ..NodeFacts::default()
        }
    }

    fn with_spec(spec: serde_json::Value, check: impl FnOnce(&Spec<'_>)) {
        let value = serde_json::json!({"kind": "Pod", "spec": spec});
        let object = Object::from_value(&value).unwrap();
        check(object.spec.as_ref().unwrap());
    }

    #[test]
    fn affinity_follows_the_label_selector_rules() {
        let spec = serde_json::json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "disktype", "operator": "In", "values": ["nvme", "ssd"]},
                                  {"key": "spot", "operator": "DoesNotExist"}]},
            {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["31"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["pinned"]}]},
            {}
        ]}}}});
        with_spec(spec, |spec| {
            assert!(affinity_matches(spec, &node("a", &[("disktype", "ssd")])));
            assert!(!affinity_matches(spec, &node("b", &[("disktype", "ssd"), ("spot", "true")])));
            assert!(affinity_matches(spec, &node("c", &[("cores", "64")])));
            assert!(!affinity_matches(spec, &node("d", &[("cores", "sixty-four")])));
            assert!(!affinity_matches(spec, &node("e", &[("cores", "16")])));
            assert!(affinity_matches(spec, &node("pinned", &[])));
            assert!(!affinity_matches(spec, &node("other", &[])), "an empty term matches nothing");
        });
        let not_in = serde_json::json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}]}}}});
        with_spec(not_in, |spec| {
            assert!(affinity_matches(spec, &node("unlabelled", &[])), "NotIn matches nodes without the key");
            assert!(!affinity_matches(spec, &node("in-a", &[("zone", "a")])));
        });
    }

    #[test]
    fn tolerations_follow_the_api_rules_and_count_the_added_ones() {
        let taint = |key: &str, value: &str, effect: &str| Taint {
            key: key.into(),
            value: value.into(),
            effect: effect.into(),
        };
        let spec = serde_json::json!({"tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
            {"key": "team", "operator": "Exists"}
        ]});
        with_spec(spec, |spec| {
            let pod = Tolerations::of(spec, false);
            assert!(pod.tolerates(&taint("dedicated", "gpu", "NoSchedule")));
            assert!(!pod.tolerates(&taint("dedicated", "db", "NoSchedule")));
            assert!(!pod.tolerates(&taint("dedicated", "gpu", "NoExecute")));
            assert!(pod.tolerates(&taint("team", "a", "NoExecute")));
            assert!(pod.tolerates(&taint(NOT_READY, "", "NoExecute")), "DefaultTolerationSeconds");
            assert!(!pod.tolerates(&taint(NOT_READY, "", "NoSchedule")));
            assert!(!pod.tolerates(&taint(DISK_PRESSURE, "", "NoSchedule")));
            let daemon = Tolerations::of(spec, true);
            for key in [DISK_PRESSURE, MEMORY_PRESSURE, PID_PRESSURE, UNSCHEDULABLE] {
                assert!(daemon.tolerates(&taint(key, "", "NoSchedule")), "{key}");
            }
            assert!(!daemon.tolerates(&taint(NETWORK_UNAVAILABLE, "", "NoSchedule")), "only with hostNetwork");
            assert!(!daemon.tolerates(&taint(NOT_READY, "", "NoSchedule")), "not-ready NoSchedule stays");
        });
        with_spec(serde_json::json!({"hostNetwork": true, "tolerations": [{"operator": "Exists"}]}), |spec| {
            let daemon = Tolerations::of(spec, true);
            assert!(daemon.tolerates(&taint(NETWORK_UNAVAILABLE, "", "NoSchedule")));
            assert!(daemon.tolerates(&taint("anything", "x", "NoExecute")), "an empty key with Exists tolerates all");
        });
    }
}
