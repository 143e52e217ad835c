//! The native-sidecar capability as podmedic knows it, and why: the reason is the `reason` label of
//! the `podmedic_native_sidecars_available` gauge, from a fixed set; node names go to the log only.

use std::sync::Arc;

use podmedic_engine::NativeSidecars;
use podmedic_engine::kubernetes::{KubeVersion, NodeKubelet, decide_native_sidecars};

use super::watch::NativeSidecarsMode;

/// Why native sidecars are available or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CapabilityReason {
    /// The API server and every kubelet run 1.29 or newer.
    Available,
    /// `--native-sidecars on`.
    ForcedOn,
    /// No cluster is configured and podmedic does not run in one: `auto` assumes they are.
    NoCluster,
    /// `--native-sidecars off`.
    ForcedOff,
    /// The API server is older than 1.29 (or reports a version podmedic cannot read).
    OldApiServer,
    /// A kubelet is older than 1.29 (or reports a version podmedic cannot read).
    OldKubelet,
    /// podmedic has not learned the versions: the API server has not answered yet, or podmedic
    /// runs in a Pod without a usable configuration.
    Unknown,
}

impl CapabilityReason {
    /// Every reason, for documentation and tests.
    pub const ALL: [CapabilityReason; 7] = [
        CapabilityReason::Available,
        CapabilityReason::ForcedOn,
        CapabilityReason::NoCluster,
        CapabilityReason::ForcedOff,
        CapabilityReason::OldApiServer,
        CapabilityReason::OldKubelet,
        CapabilityReason::Unknown,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            CapabilityReason::Available => "available",
            CapabilityReason::ForcedOn => "forced_on",
            CapabilityReason::NoCluster => "no_cluster",
            CapabilityReason::ForcedOff => "forced_off",
            CapabilityReason::OldApiServer => "old_apiserver",
            CapabilityReason::OldKubelet => "old_kubelet",
            CapabilityReason::Unknown => "unknown",
        }
    }

    /// True when sidecars are moved for this reason.
    pub fn is_available(self) -> bool {
        matches!(self, CapabilityReason::Available | CapabilityReason::ForcedOn | CapabilityReason::NoCluster)
    }
}

/// What the engine is told (with the reason shown to users) and why, swapped as one.
#[derive(Debug)]
pub(super) struct Capability {
    pub native: Arc<NativeSidecars>,
    pub reason: CapabilityReason,
}

impl Capability {
    /// Nothing learned yet: not available.
    pub fn unknown() -> Capability {
        Capability {
            native: Arc::new(NativeSidecars::Unavailable("podmedic does not know the cluster's versions yet".into())),
            reason: CapabilityReason::Unknown,
        }
    }

    /// What a mode decides without asking the cluster: `on` and `off` always, `auto` only when
    /// there is no cluster at all (`offline`); otherwise the capability is unknown until decided.
    pub fn before_deciding(mode: NativeSidecarsMode, offline: bool) -> Capability {
        match mode {
            NativeSidecarsMode::On => {
                Capability { native: Arc::new(NativeSidecars::Available), reason: CapabilityReason::ForcedOn }
            }
            NativeSidecarsMode::Off => Capability {
                native: Arc::new(NativeSidecars::Unavailable(
                    "native sidecars are turned off (--native-sidecars off)".into(),
                )),
                reason: CapabilityReason::ForcedOff,
            },
            NativeSidecarsMode::Auto if offline => {
                Capability { native: Arc::new(NativeSidecars::Available), reason: CapabilityReason::NoCluster }
            }
            NativeSidecarsMode::Auto => Capability::unknown(),
        }
    }

    /// The capability decided from the API server's version and every Node's kubelet.
    pub fn decided(api_server: &str, kubelets: &[NodeKubelet]) -> Capability {
        let native = decide_native_sidecars(api_server, kubelets);
        let reason = if native.is_available() {
            CapabilityReason::Available
        } else if KubeVersion::parse(api_server).is_some_and(|v| v.supports_native_sidecars()) {
            CapabilityReason::OldKubelet
        } else {
            CapabilityReason::OldApiServer
        };
        Capability { native: Arc::new(native), reason }
    }
}

/// Most node names one log line lists.
const LOGGED_NODES: usize = 20;

/// The Nodes whose kubelet is older than 1.29 (or unreadable), for the log: `name (version)`, at
/// most [`LOGGED_NODES`] of them, then how many more.
pub(super) fn old_nodes(kubelets: &[NodeKubelet]) -> String {
    let mut old = kubelets
        .iter()
        .filter(|k| !KubeVersion::parse(&k.kubelet_version).is_some_and(|v| v.supports_native_sidecars()));
    let mut listed: Vec<String> =
        old.by_ref().take(LOGGED_NODES).map(|k| format!("{} ({})", k.node, k.kubelet_version)).collect();
    let more = old.count();
    if more > 0 {
        listed.push(format!("and {more} more"));
    }
    listed.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubelet(node: &str, version: &str) -> NodeKubelet {
        NodeKubelet { node: node.into(), kubelet_version: version.into() }
    }

    #[test]
    fn the_reason_tells_the_api_server_from_a_kubelet() {
        let nodes = [kubelet("a", "v1.30.1"), kubelet("b", "v1.28.9")];
        assert_eq!(Capability::decided("v1.30.2", &nodes[..1]).reason, CapabilityReason::Available);
        assert_eq!(Capability::decided("v1.30.2", &nodes).reason, CapabilityReason::OldKubelet);
        assert_eq!(Capability::decided("v1.28.3", &nodes[..1]).reason, CapabilityReason::OldApiServer);
        assert_eq!(Capability::decided("unreadable", &nodes[..1]).reason, CapabilityReason::OldApiServer);
        assert_eq!(Capability::decided("v1.30.2", &[kubelet("c", "?")]).reason, CapabilityReason::OldKubelet);
    }

    #[test]
    fn only_no_cluster_at_all_lets_auto_assume() {
        let reason = |mode, offline| Capability::before_deciding(mode, offline).reason;
        assert_eq!(reason(NativeSidecarsMode::Auto, true), CapabilityReason::NoCluster);
        assert_eq!(reason(NativeSidecarsMode::Auto, false), CapabilityReason::Unknown);
        assert!(!Capability::before_deciding(NativeSidecarsMode::Auto, false).native.is_available());
        assert_eq!(reason(NativeSidecarsMode::On, false), CapabilityReason::ForcedOn);
        assert_eq!(reason(NativeSidecarsMode::Off, true), CapabilityReason::ForcedOff);
        let labels: std::collections::HashSet<_> = CapabilityReason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), CapabilityReason::ALL.len());
    }

    #[test]
    fn the_log_names_at_most_twenty_old_nodes() {
        let mut nodes: Vec<NodeKubelet> = (0..25).map(|i| kubelet(&format!("old-{i}"), "v1.28.1")).collect();
        nodes.push(kubelet("new", "v1.31.0"));
        let text = old_nodes(&nodes);
        assert!(text.starts_with("old-0 (v1.28.1), old-1 (v1.28.1)") && text.ends_with("old-19 (v1.28.1), and 5 more"));
        assert!(!text.contains("new"));
    }
}
