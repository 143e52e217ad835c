//! What podmedic learns from the API server: whether native sidecars are safe in this cluster, and
//! the per-namespace settings. Both are kept current by watches (kube's `watcher` + `reflector`),
//! so the admission path reads memory and never calls the API server.
//!
//! Native sidecars (restartable init containers) need Kubernetes 1.29 on the API server *and* on
//! every kubelet: an older kubelet runs a restartable init container as an ordinary one, waits for
//! it to exit, and the Pod stays in `Init` forever. So in `auto` mode the capability is decided from
//! the API server's version and the `status.nodeInfo.kubeletVersion` of every Node.
//!
//! The decision and the annotation parsing are pure functions of the engine
//! (`podmedic_engine::kubernetes::decide_native_sidecars`, `podmedic_engine::annotations::namespace_settings`);
//! [`ClusterWatch`] only feeds them from the watches (`watch.rs`), with Nodes reduced to their
//! kubelet version (`nodes.rs`) and Namespaces to their podmedic annotations (`namespaces.rs`).
//!
//! RBAC: `get`, `list` and `watch` on `nodes` and `namespaces`, nothing else.

mod connection;
mod namespaces;
mod nodes;
mod watch;

use std::path::PathBuf;

use kube::config::KubeconfigError;

pub use connection::connect;
pub use namespaces::NamespaceCache;
pub use nodes::{api_server_version_text, node_kubelet};
pub use watch::{ClusterCounters, ClusterWatch};

/// Whether podmedic may move sidecars into `initContainers` (`--native-sidecars`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NativeSidecarsMode {
    /// Decide from the API server's and every kubelet's version (assume available when there is
    /// no cluster to ask).
    #[default]
    Auto,
    /// Always move sidecars (you know every node runs Kubernetes 1.29 or newer).
    On,
    /// Never move sidecars.
    Off,
}

/// Why the cluster layer could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The kubeconfig given explicitly could not be read or used.
    #[error("cannot use kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What kube said.
        source: KubeconfigError,
    },
    /// A client could not be built from the configuration.
    #[error("cannot build a Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}
