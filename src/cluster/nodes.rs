//! What podmedic reads from Nodes and the API server: versions, for the native-sidecar decision.

use k8s_openapi::api::core::v1::{Node, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::version::Info;
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

/// Keeps only the Node's name and kubelet version: a Node's status lists every image it holds and
/// can weigh tens of kilobytes.
pub(super) fn strip_node(node: &mut Node) {
    let kubelet_version = node.status.as_ref().and_then(|s| s.node_info.as_ref()).map(|i| i.kubelet_version.clone());
    node.metadata = ObjectMeta { name: node.metadata.name.take(), ..ObjectMeta::default() };
    node.spec = None;
    node.status = kubelet_version.map(|kubelet_version| NodeStatus {
        node_info: Some(NodeSystemInfo { kubelet_version, ..NodeSystemInfo::default() }),
        ..NodeStatus::default()
    });
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
        assert!(node.spec.is_none() && node.metadata.labels.is_none());
        assert!(node.status.as_ref().unwrap().images.is_none());
        assert_eq!(node_kubelet(&Node::default()), None);
    }
}
