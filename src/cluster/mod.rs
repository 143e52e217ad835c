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
//! The Nodes are also kept as the facts the checks of workloads read (labels, taints, readiness,
//! allocatable; `nodes.rs`), and with `--watch-references` the names of the labelled namespaces'
//! ConfigMaps, Secrets, PVCs and ServiceAccounts (metadata only; `references.rs`). The watch
//! implements the engine's `ClusterSource` with them.
//!
//! What podmedic does not know, it does not assume (`capability.rs`): before the API server has
//! answered, or in a Pod that cannot reach it, native sidecars count as unavailable and every
//! namespace as unknown (podmedic then changes nothing). Only with no cluster at all (`podmedic
//! serve` on a laptop) does `auto` assume native sidecars, as `podmedic fix` does.
//!
//! RBAC: `get`, `list` and `watch` on `nodes` and `namespaces`; with `--watch-references`, `list`
//! and `watch` on those four kinds in the labelled namespaces (deploy/components/reference-checks).
//! A failed call is logged with what kind of failure it was ([`ApiFailure`]: network, forbidden,
//! unauthorized, ...), so that only a 403 sends the reader to RBAC.

mod capability;
mod connection;
mod failure;
mod namespaces;
mod nodes;
mod references;
mod watch;

pub use capability::CapabilityReason;
pub use connection::{ClusterError, Connection, connect, in_a_pod};
pub use failure::ApiFailure;
pub use namespaces::NamespaceCache;
pub use nodes::{api_server_version_text, node_facts, node_kubelet};
pub use references::{NameSet, NamespaceNames, ReferenceWatches, ReferenceWatching};
pub use watch::{ClusterCounters, ClusterWatch, NativeSidecarsMode};
