//! What podmedic reads from Nodes and the API server: versions, for the native-sidecar decision,
//! and each Node's labels, taints, readiness and allocatable, for the checks of workloads
//! ([`NodeFacts`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::version::Info;
use podmedic_engine::admission::NodeList;
use podmedic_engine::cluster::NodeFacts;
use podmedic_engine::kubernetes::{KubeVersion, NodeKubelet};

/// The version text the capability decision should use for an API server.
///
/// An API server that runs with an emulated (older) version behaves like that version, so the
/// emulated `major.minor` wins over `gitVersion` when present. Managed control planes report a
/// `minor` like `29+`, so `gitVersion` is preferred over the `major`/`minor` fields.
pub fn api_server_version_text(info: &Info) -> String {
    if let (Some(major), Some(minor)) = (&info.emulation_major, &info.emulation_minor)
        && KubeVersion::parse(&format!("{major}.{minor}")).is_some()
    {
        let emulated = format!("v{major}.{}", minor.trim_end_matches(|c: char| !c.is_ascii_digit()));
        if KubeVersion::parse(&emulated) != KubeVersion::parse(&info.git_version).map(|v| KubeVersion { patch: 0, ..v })
        {
            return format!("{emulated} (emulated by {})", info.git_version);
        }
    }
    if KubeVersion::parse(&info.git_version).is_some() {
        return info.git_version.clone();
    }
    format!("v{}.{}", info.major, info.minor.trim_end_matches(|c: char| !c.is_ascii_digit()))
}

/// The kubelet a Node reports, if it has reported one yet (a Node registers its `nodeInfo` before
/// it can become Ready, so a Node without one cannot run Pods).
pub fn node_kubelet(node: &Node) -> Option<NodeKubelet> {
    let info = node.status.as_ref()?.node_info.as_ref()?;
    if info.kubelet_version.is_empty() {
        return None;
    }
    Some(NodeKubelet {
        node: node.metadata.name.clone().unwrap_or_default(),
        kubelet_version: info.kubelet_version.clone(),
    })
}

/// The facts the checks read from a Node (after [`strip_node`] too).
pub fn node_facts(node: &Node) -> Option<NodeFacts> {
    // One reading of a Node, the engine's, whether it comes from a watch or `podmedic audit`.
    NodeFacts::from_node_json(&serde_json::to_value(node).ok()?)
}

/// Keeps only what podmedic reads: the name and kubelet version, and the labels, taints, cordon,
/// `Ready` condition and allocatable of the checks. A Node's status lists every image it holds
/// and can weigh tens of kilobytes.
pub(super) fn strip_node(node: &mut Node) {
    let status = node.status.take().unwrap_or_default();
    let kubelet_version = status.node_info.map(|i| i.kubelet_version);
    let ready = status.conditions.into_iter().flatten().find(|c| c.type_ == "Ready");
    node.metadata =
        ObjectMeta { name: node.metadata.name.take(), labels: node.metadata.labels.take(), ..ObjectMeta::default() };
    node.spec = node.spec.take().map(|spec| NodeSpec {
        taints: spec.taints,
        unschedulable: spec.unschedulable,
        ..NodeSpec::default()
    });
    node.status = Some(NodeStatus {
        node_info: kubelet_version
            .map(|kubelet_version| NodeSystemInfo { kubelet_version, ..NodeSystemInfo::default() }),
        allocatable: status.allocatable,
        conditions: ready.map(|c| vec![NodeCondition { type_: c.type_, status: c.status, ..NodeCondition::default() }]),
        ..NodeStatus::default()
    });
}

/// Every Node's facts, kept by the Node watch: it converts only the Node an event is about, and
/// publishes a new list only when some facts changed (a Node's status heartbeat changes none).
#[derive(Debug, Default)]
pub(super) struct NodeFactsTracker {
    current: BTreeMap<String, Arc<NodeFacts>>,
    /// The Nodes of a list in progress (a watch restart), replacing `current` once complete.
    relisting: Option<BTreeMap<String, Arc<NodeFacts>>>,
}

impl NodeFactsTracker {
    /// A (re)list begins.
    pub fn begin_list(&mut self) {
        self.relisting = Some(BTreeMap::new());
    }

    /// A Node of the list in progress.
    pub fn listed(&mut self, node: &Node) {
        if let (Some(list), Some(facts)) = (self.relisting.as_mut(), node_facts(node)) {
            list.insert(facts.name.clone(), Arc::new(facts));
        }
    }

    /// The list is complete: the list to publish.
    pub fn end_list(&mut self) -> NodeList {
        if let Some(list) = self.relisting.take() {
            self.current = list;
        }
        self.snapshot()
    }

    /// A Node was added or changed: the list to publish, if its facts changed.
    pub fn applied(&mut self, node: &Node) -> Option<NodeList> {
        let facts = node_facts(node)?;
        if self.current.get(&facts.name).is_some_and(|known| **known == facts) {
            return None;
        }
        self.current.insert(facts.name.clone(), Arc::new(facts));
        Some(self.snapshot())
    }

    /// A Node was deleted: the list to publish, if it was known.
    pub fn deleted(&mut self, node: &Node) -> Option<NodeList> {
        self.current.remove(node.metadata.name.as_deref()?)?;
        Some(self.snapshot())
    }

    fn snapshot(&self) -> NodeList {
        Arc::new(self.current.values().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podmedic_engine::kubernetes::decide_native_sidecars;

    fn kubelet(node: &str, version: &str) -> NodeKubelet {
        NodeKubelet { node: node.into(), kubelet_version: version.into() }
    }

    #[test]
    fn api_server_version_prefers_git_version_and_honours_emulation() {
        let info = |major: &str, minor: &str, git: &str| Info {
            major: major.into(),
            minor: minor.into(),
            git_version: git.into(),
            ..Info::default()
        };
        assert_eq!(api_server_version_text(&info("1", "29+", "v1.29.3-gke.1234")), "v1.29.3-gke.1234");
        assert_eq!(api_server_version_text(&info("1", "28+", "")), "v1.28");
        let mut emulating = info("1", "31", "v1.31.0");
        emulating.emulation_major = Some("1".into());
        emulating.emulation_minor = Some("28".into());
        let text = api_server_version_text(&emulating);
        assert_eq!(text, "v1.28 (emulated by v1.31.0)");
        assert!(!decide_native_sidecars(&text, &[]).is_available());
        emulating.emulation_minor = Some("31".into());
        assert_eq!(api_server_version_text(&emulating), "v1.31.0");
    }

    #[test]
    fn node_kubelet_reads_node_info_and_survives_stripping() {
        let mut node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "pool-a-3", "labels": {"a": "b"}},
            "spec": {"podCIDR": "10.0.0.0/24"},
            "status": {
                "images": [{"names": ["big"], "sizeBytes": 1}],
                "nodeInfo": {"kubeletVersion": "v1.28.9", "kubeProxyVersion": "", "architecture": "amd64",
                    "bootID": "", "containerRuntimeVersion": "containerd://1.7", "kernelVersion": "6.1",
                    "machineID": "", "operatingSystem": "linux", "osImage": "COS", "systemUUID": ""}
            }
        }))
        .unwrap();
        strip_node(&mut node);
        assert_eq!(node_kubelet(&node), Some(kubelet("pool-a-3", "v1.28.9")));
        assert!(node.spec.as_ref().unwrap().pod_cidr.is_none());
        assert!(node.status.as_ref().unwrap().images.is_none());
        assert_eq!(node_kubelet(&Node::default()), None);
    }

    /// The real Node of `tests/fixtures/cluster-objects/node.json`.
    fn real_node() -> Node {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cluster-objects/node.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn stripping_keeps_every_fact_the_checks_read_and_drops_the_rest() {
        let mut node = real_node();
        node.spec = Some(NodeSpec {
            unschedulable: Some(true),
            taints: Some(vec![k8s_openapi::api::core::v1::Taint {
                key: "dedicated".into(),
                value: Some("db".into()),
                effect: "NoSchedule".into(),
                time_added: None,
            }]),
            provider_id: Some("gce://p/z/n".into()),
            ..NodeSpec::default()
        });
        let before = node_facts(&node).unwrap();
        assert_eq!(before.name, "pm-node");
        assert!(before.ready && before.unschedulable);
        assert_eq!(before.allocatable.get(podmedic_engine::cluster::Resource::Cpu), Some(2000));
        assert_eq!(before.labels["kubernetes.io/hostname"], "pm-node");
        let size = |n: &Node| serde_json::to_vec(n).unwrap().len();
        let full = size(&node);
        strip_node(&mut node);
        assert_eq!(node_facts(&node).unwrap(), before, "the checks read the same facts after stripping");
        assert_eq!(node_kubelet(&node), Some(kubelet("pm-node", "v1.36.2")));
        assert!(node.status.as_ref().unwrap().addresses.is_none() && node.metadata.annotations.is_none());
        assert!(size(&node) < full / 2, "{} of {full} bytes kept", size(&node));
    }

    #[test]
    fn the_tracker_publishes_only_when_facts_change() {
        let mut tracker = NodeFactsTracker::default();
        let node = real_node();
        tracker.begin_list();
        tracker.listed(&node);
        assert_eq!(tracker.end_list().len(), 1);
        assert!(tracker.applied(&node).is_none(), "a heartbeat changes no fact");
        let mut cordoned = node.clone();
        cordoned.spec.get_or_insert_with(NodeSpec::default).unschedulable = Some(true);
        assert!(tracker.applied(&cordoned).unwrap()[0].unschedulable);
        let mut other = node.clone();
        other.metadata.name = Some("pm-node-2".into());
        assert_eq!(tracker.applied(&other).unwrap().len(), 2);
        assert_eq!(tracker.deleted(&node).unwrap().len(), 1);
        assert!(tracker.deleted(&node).is_none());
        // A relist replaces everything: nodes gone while the watch was down disappear.
        tracker.begin_list();
        tracker.listed(&node);
        let list = tracker.end_list();
        assert_eq!(list.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["pm-node"]);
    }
}
