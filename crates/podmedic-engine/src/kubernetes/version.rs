//! Kubernetes versions, and the one rule that depends on them: native sidecars (restartable init
//! containers) need Kubernetes 1.29 on the API server *and* on every kubelet. An older kubelet runs
//! a restartable init container as an ordinary one, waits for it to exit, and the Pod stays in
//! `Init` forever.

/// The first Kubernetes `major.minor` whose API server and kubelet run native sidecars
/// (the `SidecarContainers` feature is on by default from 1.29).
pub const NATIVE_SIDECARS_SINCE: (u32, u32) = (1, 29);

/// A Kubernetes version as reported by the API server or a kubelet, reduced to its numbers.
///
/// Distribution suffixes are ignored: `v1.30.1-gke.1234`, `v1.28.5+k3s1` and `v1.29.3-eks-a1b2c3`
/// read as 1.30.1, 1.28.5 and 1.29.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KubeVersion {
    /// Major version (1).
    pub major: u32,
    /// Minor version (29 in `v1.29.3`).
    pub minor: u32,
    /// Patch version (0 when absent).
    pub patch: u32,
}

impl KubeVersion {
    /// Parses `v1.29.3`, `1.29`, `v1.30.1-gke.1234`, `v1.28.5+k3s1`; `None` when there is no
    /// `major.minor` at the start.
    pub fn parse(text: &str) -> Option<KubeVersion> {
        let text = text.trim();
        let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
        // Everything from the first character that is neither a digit nor a dot is a pre-release
        // or build suffix (`-gke.1234`, `+k3s1`, `-eks-...`).
        let end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
        let mut numbers = text[..end].split('.');
        let major = numbers.next()?.parse().ok()?;
        let minor = numbers.next()?.parse().ok()?;
        let patch = match numbers.next() {
            None | Some("") => 0,
            Some(p) => p.parse().ok()?,
        };
        if numbers.any(|n| !n.is_empty()) {
            return None;
        }
        Some(KubeVersion { major, minor, patch })
    }

    /// True when this version runs native sidecars (1.29 or newer).
    pub fn supports_native_sidecars(&self) -> bool {
        (self.major, self.minor) >= NATIVE_SIDECARS_SINCE
    }
}

/// Whether the cluster can run native sidecars (restartable init containers, Kubernetes 1.29+).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NativeSidecars {
    /// The API server and every kubelet support native sidecars.
    Available,
    /// Native sidecars cannot be used; the reason is shown to users (for example
    /// `node worker-3 runs kubelet v1.28.5`).
    Unavailable(String),
}

impl NativeSidecars {
    /// What a cluster of the given `major.minor` Kubernetes version supports.
    pub fn for_version(major: u32, minor: u32) -> Self {
        if (KubeVersion { major, minor, patch: 0 }).supports_native_sidecars() {
            NativeSidecars::Available
        } else {
            let (since_major, since_minor) = NATIVE_SIDECARS_SINCE;
            NativeSidecars::Unavailable(format!("Kubernetes {major}.{minor} is older than {since_major}.{since_minor}"))
        }
    }

    /// True when sidecars may be moved.
    pub fn is_available(&self) -> bool {
        matches!(self, NativeSidecars::Available)
    }
}

/// One Node's kubelet version, as reported in `status.nodeInfo.kubeletVersion`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeKubelet {
    /// The Node's name.
    pub node: String,
    /// The kubelet version text, for example `v1.29.3-gke.1234`.
    pub kubelet_version: String,
}

/// Whether native sidecars are safe, given the API server's version text and every Node's kubelet.
///
/// Unreadable versions count as too old: wrongly moving a sidecar leaves Pods stuck in `Init`,
/// while wrongly not moving it only leaves things as they were. The reason names the oldest
/// offending node, for example `node pool-a-3 runs kubelet v1.28.9 (and 2 more nodes older than 1.29)`.
pub fn decide_native_sidecars(api_server: &str, kubelets: &[NodeKubelet]) -> NativeSidecars {
    let (since_major, since_minor) = NATIVE_SIDECARS_SINCE;
    match KubeVersion::parse(api_server) {
        None => {
            return NativeSidecars::Unavailable(format!("the API server reports an unreadable version `{api_server}`"));
        }
        Some(v) if !v.supports_native_sidecars() => {
            return NativeSidecars::Unavailable(format!("the API server runs {api_server}"));
        }
        Some(_) => {}
    }
    // Sort key: unreadable versions first (they are the least known), then oldest, then by name.
    let mut too_old: Vec<(Option<KubeVersion>, &NodeKubelet)> = kubelets
        .iter()
        .map(|k| (KubeVersion::parse(&k.kubelet_version), k))
        .filter(|(v, _)| !v.is_some_and(|v| v.supports_native_sidecars()))
        .collect();
    too_old.sort_by(|(va, a), (vb, b)| va.cmp(vb).then_with(|| a.node.cmp(&b.node)));
    let Some((version, first)) = too_old.first() else {
        return NativeSidecars::Available;
    };
    let mut reason = match version {
        Some(_) => format!("node {} runs kubelet {}", first.node, first.kubelet_version),
        None => format!("node {} reports an unreadable kubelet version `{}`", first.node, first.kubelet_version),
    };
    match too_old.len() - 1 {
        0 => {}
        1 => reason.push_str(&format!(" (and 1 more node older than {since_major}.{since_minor})")),
        more => reason.push_str(&format!(" (and {more} more nodes older than {since_major}.{since_minor})")),
    }
    NativeSidecars::Unavailable(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubelet(node: &str, version: &str) -> NodeKubelet {
        NodeKubelet { node: node.into(), kubelet_version: version.into() }
    }

    #[test]
    fn parses_versions_of_every_distribution() {
        let v = |major, minor, patch| Some(KubeVersion { major, minor, patch });
        assert_eq!(KubeVersion::parse("v1.29.3"), v(1, 29, 3));
        assert_eq!(KubeVersion::parse("v1.30.1-gke.1234"), v(1, 30, 1));
        assert_eq!(KubeVersion::parse("v1.28.5+k3s1"), v(1, 28, 5));
        assert_eq!(KubeVersion::parse("v1.29.10-eks-59bf375"), v(1, 29, 10));
        assert_eq!(KubeVersion::parse("1.31"), v(1, 31, 0));
        assert_eq!(KubeVersion::parse(" V1.33.0-rc.1 "), v(1, 33, 0));
        assert_eq!(KubeVersion::parse("v1.28 (emulated by v1.31.0)"), v(1, 28, 0));
        for bad in ["", "v", "latest", "v1", "1.x.3", "v1.29.3.4", "vv1.29"] {
            assert_eq!(KubeVersion::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn native_sidecars_start_at_1_29() {
        assert!(!KubeVersion::parse("v1.28.15").unwrap().supports_native_sidecars());
        assert!(KubeVersion::parse("v1.29.0").unwrap().supports_native_sidecars());
        assert!(KubeVersion::parse("v2.0.0").unwrap().supports_native_sidecars());
    }

    #[test]
    fn available_when_the_api_server_and_every_kubelet_are_new_enough() {
        let nodes = [kubelet("pool-a-1", "v1.29.3-gke.1234"), kubelet("pool-b-1", "v1.30.1+k3s1")];
        assert_eq!(decide_native_sidecars("v1.30.2", &nodes), NativeSidecars::Available);
        assert_eq!(decide_native_sidecars("v1.30.2", &[]), NativeSidecars::Available);
    }

    #[test]
    fn an_old_api_server_is_named() {
        assert_eq!(
            decide_native_sidecars("v1.28.9-eks-1", &[kubelet("n", "v1.29.0")]),
            NativeSidecars::Unavailable("the API server runs v1.28.9-eks-1".into())
        );
    }

    #[test]
    fn the_oldest_kubelet_is_named_and_the_others_counted() {
        let nodes = [
            kubelet("pool-b-7", "v1.28.12"),
            kubelet("pool-a-1", "v1.30.1"),
            kubelet("pool-a-3", "v1.27.9"),
            kubelet("pool-c-2", "v1.28.12"),
        ];
        assert_eq!(
            decide_native_sidecars("v1.30.2", &nodes),
            NativeSidecars::Unavailable("node pool-a-3 runs kubelet v1.27.9 (and 2 more nodes older than 1.29)".into())
        );
        assert_eq!(
            decide_native_sidecars("v1.30.2", &[kubelet("pool-a-3", "v1.28.9"), kubelet("x", "v1.29.0")]),
            NativeSidecars::Unavailable("node pool-a-3 runs kubelet v1.28.9".into())
        );
        assert_eq!(
            decide_native_sidecars("v1.30.2", &[kubelet("b", "v1.28.9"), kubelet("a", "v1.28.9")]),
            NativeSidecars::Unavailable("node a runs kubelet v1.28.9 (and 1 more node older than 1.29)".into())
        );
    }

    #[test]
    fn unreadable_versions_count_as_too_old() {
        assert!(matches!(
            decide_native_sidecars("v1.30.0", &[kubelet("odd", "custom-build")]),
            NativeSidecars::Unavailable(r) if r == "node odd reports an unreadable kubelet version `custom-build`"
        ));
        assert!(!decide_native_sidecars("garbage", &[]).is_available());
    }

    #[test]
    fn a_cluster_version_gives_the_capability() {
        assert_eq!(NativeSidecars::for_version(1, 29), NativeSidecars::Available);
        assert_eq!(
            NativeSidecars::for_version(1, 28),
            NativeSidecars::Unavailable("Kubernetes 1.28 is older than 1.29".into())
        );
    }
}
