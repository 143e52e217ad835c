//! What the engine knows about the cluster, as plain data: the Nodes ([`NodeFacts`]: labels,
//! taints, readiness, allocatable) and which objects exist in the request's namespace
//! ([`NamespaceObjects`]). The webhook fills a [`ClusterView`] from its watches (`src/cluster/`);
//! without one (no cluster, not listed yet) the checks that need it say nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

use crate::kubernetes::quantity::parse_value;

/// The resources the fit check compares (extended resources and hugepages are left out: a device
/// plugin may not have registered yet, and hugepages are set up per node).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// CPU, in millicores.
    Cpu,
    /// Memory, in bytes.
    Memory,
    /// Local ephemeral storage, in bytes.
    EphemeralStorage,
}

impl Resource {
    /// Every resource compared.
    pub const ALL: [Resource; 3] = [Resource::Cpu, Resource::Memory, Resource::EphemeralStorage];

    /// The resource name Kubernetes uses.
    pub fn name(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
            Resource::EphemeralStorage => "ephemeral-storage",
        }
    }

    /// The resource with this Kubernetes name.
    pub fn from_name(name: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.name() == name)
    }

    /// A quantity in this resource's unit (millicores or bytes), rounded up as the API server
    /// rounds requests; `None` when the text is not a quantity.
    pub fn amount(self, quantity: &str) -> Option<u64> {
        let value = parse_value(quantity)?;
        let scaled = match self {
            Resource::Cpu => value * 1000.0,
            Resource::Memory | Resource::EphemeralStorage => value,
        };
        // Quantities parse through f64: `0.1 * 1000` must stay 100, not become 101.
        let rounded = (scaled - 1e-6).ceil().max(0.0);
        Some(if rounded >= u64::MAX as f64 { u64::MAX } else { rounded as u64 })
    }

    /// An amount for people: cores (`2`, `15.8`) or binary units (`32Gi`, `23.4Gi`), with
    /// `decimals` digits after the point at most.
    pub fn format(self, amount: u64, decimals: usize) -> String {
        let (value, unit) = match self {
            Resource::Cpu => (amount as f64 / 1000.0, ""),
            Resource::Memory | Resource::EphemeralStorage => {
                let units = [("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)];
                let (unit, shift) = units.into_iter().find(|(_, s)| amount >> s > 0).unwrap_or(("", 0));
                (amount as f64 / (1u64 << shift) as f64, unit)
            }
        };
        let text = format!("{value:.decimals$}");
        let text = if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { &text };
        format!("{text}{unit}")
    }

    /// Two amounts formatted alike, with as many decimals as it takes to tell them apart.
    pub fn format_pair(self, a: u64, b: u64) -> (String, String) {
        for decimals in 1..=3 {
            let pair = (self.format(a, decimals), self.format(b, decimals));
            if pair.0 != pair.1 || a == b {
                return pair;
            }
        }
        (format!("{a}"), format!("{b}"))
    }
}

/// An amount per [`Resource`]; `None` where nothing is known (a node that reports no
/// ephemeral-storage) or nothing is asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Amounts([Option<u64>; 3]);

impl Amounts {
    /// The amount of `resource`.
    pub fn get(&self, resource: Resource) -> Option<u64> {
        self.0[resource as usize]
    }

    /// Sets the amount of `resource`.
    pub fn set(&mut self, resource: Resource, amount: Option<u64>) {
        self.0[resource as usize] = amount;
    }

    /// The amounts of a resource list (`{cpu: "2", memory: "24581256Ki", pods: "50"}`); names
    /// that are not compared and values that are not quantities are left out.
    pub fn from_list<'q>(list: impl IntoIterator<Item = (&'q str, &'q str)>) -> Amounts {
        let mut amounts = Amounts::default();
        for (name, quantity) in list {
            if let Some(resource) = Resource::from_name(name) {
                amounts.set(resource, resource.amount(quantity));
            }
        }
        amounts
    }
}

/// A node taint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taint {
    /// The key.
    pub key: String,
    /// The value (often empty).
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

impl fmt::Display for Taint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}:{}", self.key, self.effect)
        } else {
            write!(f, "{}={}:{}", self.key, self.value, self.effect)
        }
    }
}

/// What the checks need of one Node, and nothing more (a Node object lists every image it holds).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.taints`.
    pub taints: Vec<Taint>,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// `status.allocatable`.
    pub allocatable: Amounts,
}

impl NodeFacts {
    /// The facts of a Node as the API server returns it (`kubectl get node -o json`); `None` when
    /// it is not a Node object (no name). Fields the checks do not read are skipped unparsed.
    pub fn from_node_json(node: &serde_json::Value) -> Option<NodeFacts> {
        let node = NodeView::deserialize(node).ok()?;
        let name = node.metadata.name.filter(|n| !n.is_empty())?;
        let taints = node
            .spec
            .taints
            .into_iter()
            .map(|t| Taint { key: t.key, value: t.value.unwrap_or_default(), effect: t.effect })
            .collect();
        let ready = node.status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        let allocatable = Amounts::from_list(node.status.allocatable.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        Some(NodeFacts {
            name,
            labels: node.metadata.labels,
            taints,
            ready,
            unschedulable: node.spec.unschedulable.unwrap_or(false),
            allocatable,
        })
    }
}

/// The parts of a Node object [`NodeFacts`] reads.
#[derive(Deserialize)]
struct NodeView {
    #[serde(default)]
    metadata: NodeMeta,
    #[serde(default)]
    spec: NodeSpecView,
    #[serde(default)]
    status: NodeStatusView,
}

#[derive(Default, Deserialize)]
struct NodeMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    labels: BTreeMap<String, String>,
}

#[derive(Default, Deserialize)]
struct NodeSpecView {
    #[serde(default, deserialize_with = "null_as_default")]
    taints: Vec<TaintView>,
    #[serde(default)]
    unschedulable: Option<bool>,
}

#[derive(Deserialize)]
struct TaintView {
    key: String,
    #[serde(default)]
    value: Option<String>,
    effect: String,
}

#[derive(Default, Deserialize)]
struct NodeStatusView {
    #[serde(default, deserialize_with = "null_as_default")]
    allocatable: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    conditions: Vec<ConditionView>,
}

#[derive(Deserialize)]
struct ConditionView {
    #[serde(rename = "type")]
    type_: String,
    status: String,
}

fn null_as_default<'de, D: serde::Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The kinds of object a Pod refers to by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReferenceKind {
    /// A ConfigMap.
    ConfigMap,
    /// A Secret.
    Secret,
    /// A PersistentVolumeClaim.
    PersistentVolumeClaim,
    /// A ServiceAccount.
    ServiceAccount,
}

impl ReferenceKind {
    /// Every kind.
    pub const ALL: [ReferenceKind; 4] = [
        ReferenceKind::ConfigMap,
        ReferenceKind::Secret,
        ReferenceKind::PersistentVolumeClaim,
        ReferenceKind::ServiceAccount,
    ];

    /// The Kubernetes kind.
    pub fn kind(self) -> &'static str {
        match self {
            ReferenceKind::ConfigMap => "ConfigMap",
            ReferenceKind::Secret => "Secret",
            ReferenceKind::PersistentVolumeClaim => "PersistentVolumeClaim",
            ReferenceKind::ServiceAccount => "ServiceAccount",
        }
    }
}

/// The objects of one namespace that podmedic has seen (names only: it never reads their data).
pub trait NamespaceObjects {
    /// Whether an object of `kind` named `name` exists in the namespace.
    fn contains(&self, kind: ReferenceKind, name: &str) -> bool;
}

/// What the checks may know about the cluster for one request. `None` means unknown: the checks
/// that need it say nothing.
#[derive(Clone, Copy, Default)]
pub struct ClusterView<'a> {
    /// Every Node, once the first full list is in.
    pub nodes: Option<&'a [Arc<NodeFacts>]>,
    /// The objects of the request's namespace, when podmedic watches that namespace and has
    /// listed it.
    pub objects: Option<&'a dyn NamespaceObjects>,
}

impl fmt::Debug for ClusterView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterView")
            .field("nodes", &self.nodes.map(<[_]>::len))
            .field("objects", &self.objects.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_round_up_like_the_api_server_and_read_like_kubectl() {
        assert_eq!(Resource::Cpu.amount("100m"), Some(100));
        assert_eq!(Resource::Cpu.amount("0.1"), Some(100));
        assert_eq!(Resource::Cpu.amount("1.0001"), Some(1001));
        assert_eq!(Resource::Cpu.amount("64"), Some(64_000));
        assert_eq!(Resource::Memory.amount("24581256Ki"), Some(24_581_256 * 1024));
        assert_eq!(Resource::Memory.amount("lots"), None);
        assert_eq!(Resource::Cpu.format(15_800, 1), "15.8");
        assert_eq!(Resource::Cpu.format(2000, 1), "2");
        assert_eq!(Resource::Memory.format(32 << 30, 1), "32Gi");
        assert_eq!(Resource::Memory.format(24_581_256 * 1024, 1), "23.4Gi");
        assert_eq!(Resource::Memory.format(512, 1), "512");
        let (a, b) = Resource::Memory.format_pair((23.45 * (1u64 << 30) as f64) as u64, 24_581_256 * 1024);
        assert_ne!(a, b, "close amounts get the decimals that tell them apart");
    }

    #[test]
    fn allocatable_keeps_only_compared_resources() {
        let a = Amounts::from_list([("cpu", "2"), ("memory", "1Gi"), ("pods", "50"), ("nvidia.com/gpu", "1")]);
        assert_eq!(a.get(Resource::Cpu), Some(2000));
        assert_eq!(a.get(Resource::Memory), Some(1 << 30));
        assert_eq!(a.get(Resource::EphemeralStorage), None);
    }

    #[test]
    fn a_node_as_the_api_server_returns_it() {
        let node = serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "pool-b-7", "labels": {"disktype": "nvme"}, "annotations": {"x": "y"}},
            "spec": {"unschedulable": true, "taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule",
                     "timeAdded": null}]},
            "status": {"allocatable": {"cpu": "15800m", "memory": "60Gi", "pods": "110"},
                       "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                       "images": [{"names": ["a"], "sizeBytes": 1}]}
        });
        let facts = NodeFacts::from_node_json(&node).unwrap();
        assert_eq!(facts.name, "pool-b-7");
        assert!(facts.ready && facts.unschedulable);
        assert_eq!(facts.taints[0].to_string(), "dedicated=db:NoSchedule");
        assert_eq!(facts.allocatable.get(Resource::Cpu), Some(15_800));
        assert_eq!(facts.labels["disktype"], "nvme");
        let not_ready = serde_json::json!({"metadata": {"name": "n"}, "spec": {}, "status": {"conditions": [
            {"type": "Ready", "status": "Unknown"}]}});
        assert!(!NodeFacts::from_node_json(&not_ready).unwrap().ready);
        assert!(NodeFacts::from_node_json(&serde_json::json!({"kind": "Node"})).is_none());
    }

    #[test]
    fn taints_read_like_kubectl() {
        let t = |k: &str, v: &str| Taint { key: k.into(), value: v.into(), effect: "NoSchedule".into() };
        assert_eq!(t("dedicated", "gpu").to_string(), "dedicated=gpu:NoSchedule");
        assert_eq!(
            t("node.kubernetes.io/unschedulable", "").to_string(),
            "node.kubernetes.io/unschedulable:NoSchedule"
        );
    }
}
