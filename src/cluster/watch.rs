//! [`ClusterWatch`]: the Node and Namespace watches and the API server's version, kept current in
//! the background, read by admission through memory only.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use podmedic_engine::NativeSidecars;
use podmedic_engine::admission::{CapabilitySource, ClusterSource, NamespaceLookup, NamespaceState, NodeList};
use podmedic_engine::cluster::NamespaceObjects;
use podmedic_engine::kubernetes::NodeKubelet;
use tokio::task::JoinHandle;

use super::capability::{Capability, CapabilityReason, old_nodes};
use super::connection::{ClusterError, Connection, connect};
use super::failure::{ApiFailure, warn_retrying};
use super::namespaces::{NamespaceCache, strip_namespace};
use super::nodes::{NodeFactsTracker, api_server_version_text, node_kubelet, strip_node};
use super::references::{ReferenceWatches, ReferenceWatching};

/// Whether podmedic may move sidecars into `initContainers` (`--native-sidecars`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NativeSidecarsMode {
    /// Decide from the API server's and every kubelet's version (assume available when there is
    /// no cluster at all; unavailable while a cluster has not answered).
    #[default]
    Auto,
    /// Always move sidecars (you know every node runs Kubernetes 1.29 or newer).
    On,
    /// Never move sidecars.
    Off,
}

/// How often the API server's version is read again (control planes are upgraded in place).
const API_SERVER_VERSION_REFRESH: Duration = Duration::from_secs(600);

/// What reading the API server's version needs (granted to every identity by the default
/// `system:public-info-viewer` ClusterRole).
const VERSION_PERMISSION: &str = "get on the non-resource URL /version";

/// Longest wait between two failed attempts to read the API server's version.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// Counters of the cluster layer, for the metrics endpoint. Plain atomics, read with `Relaxed`.
#[derive(Debug, Default)]
pub struct ClusterCounters {
    /// Errors of the Node watch (each is retried with backoff).
    pub node_watch_errors: AtomicU64,
    /// Errors of the Namespace watch (each is retried with backoff).
    pub namespace_watch_errors: AtomicU64,
    /// Failed reads of the API server's version.
    pub api_server_version_errors: AtomicU64,
    /// Node events received.
    pub node_events: AtomicU64,
    /// Namespace events received.
    pub namespace_events: AtomicU64,
    /// Namespace annotation values that were ignored or corrected.
    pub namespace_annotation_problems: AtomicU64,
    /// Times the native-sidecar capability changed.
    pub capability_changes: AtomicU64,
    /// Errors of the ConfigMap, Secret, PVC and ServiceAccount watches (`--watch-references`).
    pub reference_watch_errors: Arc<AtomicU64>,
}

/// Keeps the native-sidecar capability and the namespace settings current.
///
/// Implements [`CapabilitySource`] and [`NamespaceLookup`]; both read memory only. Dropping it stops
/// the watches.
pub struct ClusterWatch {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

struct Shared {
    mode: NativeSidecarsMode,
    /// No cluster is configured: nothing is watched and everything is ready at once.
    offline: bool,
    /// In a Pod without a usable configuration: nothing can be watched, nothing is ever ready.
    unconfigured: bool,
    capability: ArcSwap<Capability>,
    /// Set once the capability has been decided from a full node list and an API server version.
    capability_known: AtomicBool,
    /// The API server's version text, once read.
    api_server: Mutex<Option<String>>,
    nodes: Option<Store<Node>>,
    nodes_listed: AtomicBool,
    /// Every Node's facts for the checks, once the first list is in.
    node_facts: ArcSwapOption<Vec<Arc<podmedic_engine::cluster::NodeFacts>>>,
    /// The names of the labelled namespaces' objects (`--watch-references`).
    references: Option<ReferenceWatches>,
    namespaces: NamespaceCache,
    namespaces_listed: AtomicBool,
    /// Serialises capability decisions made by the version and node tasks.
    deciding: Mutex<()>,
    counters: ClusterCounters,
}

impl std::fmt::Debug for ClusterWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterWatch")
            .field("mode", &self.shared.mode)
            .field("offline", &self.shared.offline)
            .field("native_sidecars", &self.shared.capability.load().reason)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl ClusterWatch {
    /// Connects (see [`connect`]) and starts watching. With no cluster configured it returns an
    /// offline watch (see [`ClusterWatch::offline`]) and logs that once; in a Pod without a usable
    /// configuration, an unconfigured one (see [`ClusterWatch::unconfigured`]). Must run inside a
    /// Tokio runtime; the watches run as background tasks until the `ClusterWatch` is dropped.
    pub async fn start(
        mode: NativeSidecarsMode,
        kubeconfig: Option<&Path>,
        references: ReferenceWatching,
    ) -> Result<ClusterWatch, ClusterError> {
        match connect(kubeconfig).await? {
            Connection::Client(client) => Ok(ClusterWatch::with_client(client, mode, references)),
            Connection::NoCluster => {
                match mode {
                    NativeSidecarsMode::Auto => tracing::info!(
                        "no Kubernetes cluster configured (no kubeconfig, not in a cluster): assuming native \
                         sidecars are available (--native-sidecars auto); namespace annotations are not read"
                    ),
                    _ => tracing::info!("no Kubernetes cluster configured: namespace annotations are not read"),
                }
                Ok(ClusterWatch::offline(mode))
            }
            Connection::InClusterWithoutConfig(error) => {
                tracing::error!(
                    %error,
                    "podmedic runs in a Pod (KUBERNETES_SERVICE_HOST is set) but has no usable Kubernetes \
                     configuration (is the service account token mounted?): it cannot learn the cluster's \
                     versions or the namespaces' settings, so it changes nothing and stays not ready"
                );
                Ok(ClusterWatch::unconfigured(mode))
            }
        }
    }

    /// A watch with no cluster: ready at once, the policy for every namespace, and native sidecars
    /// available in `auto` and `on` modes.
    pub fn offline(mode: NativeSidecarsMode) -> ClusterWatch {
        let shared = Shared::new(mode, true, Capability::before_deciding(mode, true), None, None);
        ClusterWatch { shared: Arc::new(shared), tasks: Vec::new() }
    }

    /// A watch of a cluster podmedic cannot reach: never ready, every namespace unknown (so nothing
    /// changes), native sidecars unknown in `auto` mode.
    pub fn unconfigured(mode: NativeSidecarsMode) -> ClusterWatch {
        let mut shared = Shared::new(mode, false, Capability::before_deciding(mode, false), None, None);
        shared.unconfigured = true;
        ClusterWatch { shared: Arc::new(shared), tasks: Vec::new() }
    }

    /// Starts watching the cluster behind `client`. Must run inside a Tokio runtime.
    ///
    /// In `auto` mode native sidecars count as unavailable until the API server's version and the
    /// first full Node list are in (a wrong "available" leaves Pods stuck in `Init`), and every
    /// namespace counts as unknown (podmedic changes nothing there) until the first Namespace list
    /// is in: a namespace that opted out must never be changed. [`ClusterWatch::is_ready`] stays
    /// false until then, so in a cluster a readiness probe keeps traffic away meanwhile.
    ///
    /// Nodes are watched in every mode: the checks of workloads read their labels, taints and
    /// allocatable (the capability is decided from them only in `auto` mode, where the API server's
    /// version is read too). With [`ReferenceWatching::LabelledNamespaces`], the names of the
    /// labelled namespaces' ConfigMaps, Secrets, PVCs and ServiceAccounts are watched too.
    pub fn with_client(client: Client, mode: NativeSidecarsMode, references: ReferenceWatching) -> ClusterWatch {
        let (node_reader, node_writer) = reflector::store::<Node>();
        let references =
            (references == ReferenceWatching::LabelledNamespaces).then(|| ReferenceWatches::new(client.clone()));
        let capability = Capability::before_deciding(mode, false);
        let shared = Arc::new(Shared::new(mode, false, capability, Some(node_reader), references));
        let (namespace_reader, namespace_writer) = reflector::store::<Namespace>();
        let mut tasks = vec![
            tokio::spawn(watch_namespaces(shared.clone(), client.clone(), namespace_writer, namespace_reader)),
            tokio::spawn(watch_nodes(shared.clone(), client.clone(), node_writer)),
        ];
        if mode == NativeSidecarsMode::Auto {
            tasks.push(tokio::spawn(track_api_server(shared.clone(), client)));
        }
        ClusterWatch { shared, tasks }
    }

    /// True once podmedic knows what it needs to answer correctly: the first Namespace list and, in
    /// `auto` mode, the API server's version and the first Node list. True at once when offline.
    pub fn is_ready(&self) -> bool {
        let s = &self.shared;
        s.offline
            || (!s.unconfigured
                && s.namespaces_listed.load(Ordering::Acquire)
                && (s.mode != NativeSidecarsMode::Auto || s.capability_known.load(Ordering::Acquire)))
    }

    /// The counters, for metrics.
    pub fn counters(&self) -> &ClusterCounters {
        &self.shared.counters
    }

    /// The mode this watch runs in.
    pub fn mode(&self) -> NativeSidecarsMode {
        self.shared.mode
    }

    /// True when no cluster is configured and nothing is watched.
    pub fn is_offline(&self) -> bool {
        self.shared.offline
    }

    /// Why native sidecars are available or not (the gauge's `reason`).
    pub fn capability_reason(&self) -> CapabilityReason {
        self.shared.capability.load().reason
    }
}

impl Drop for ClusterWatch {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl CapabilitySource for ClusterWatch {
    fn native_sidecars(&self) -> Arc<NativeSidecars> {
        self.shared.capability.load().native.clone()
    }
}

impl NamespaceLookup for ClusterWatch {
    fn settings(&self, namespace: &str) -> NamespaceState {
        let s = &self.shared;
        if s.offline {
            return NamespaceState::Unwatched;
        }
        if !s.namespaces_listed.load(Ordering::Acquire) {
            return NamespaceState::Unknown;
        }
        // Listed, yet missing: created a moment ago, and the watch has not delivered it yet.
        s.namespaces.settings(namespace).map_or(NamespaceState::Unknown, NamespaceState::Known)
    }
}

impl ClusterSource for ClusterWatch {
    fn nodes(&self) -> Option<NodeList> {
        self.shared.node_facts.load_full()
    }

    fn objects(&self, namespace: &str) -> Option<Arc<dyn NamespaceObjects + Send + Sync>> {
        let names = self.shared.references.as_ref()?.names(namespace)?;
        Some(names)
    }
}

impl Shared {
    fn new(
        mode: NativeSidecarsMode,
        offline: bool,
        capability: Capability,
        nodes: Option<Store<Node>>,
        references: Option<ReferenceWatches>,
    ) -> Self {
        let counters = ClusterCounters {
            reference_watch_errors: references.as_ref().map(|r| r.errors.clone()).unwrap_or_default(),
            ..ClusterCounters::default()
        };
        Shared {
            mode,
            offline,
            unconfigured: false,
            capability: ArcSwap::from_pointee(capability),
            capability_known: AtomicBool::new(false),
            api_server: Mutex::new(None),
            nodes,
            nodes_listed: AtomicBool::new(false),
            node_facts: ArcSwapOption::empty(),
            references,
            namespaces: NamespaceCache::default(),
            namespaces_listed: AtomicBool::new(false),
            deciding: Mutex::new(()),
            counters,
        }
    }

    /// Decides the capability again from the latest API server version and Node list, once both
    /// are known, and logs when it changes.
    fn decide(&self) {
        // `on` and `off` are decided by the flag; Nodes are watched in every mode for the checks.
        if self.mode != NativeSidecarsMode::Auto {
            return;
        }
        let _one_at_a_time = self.deciding.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(api_server) = self.api_server.lock().unwrap_or_else(PoisonError::into_inner).clone() else {
            return;
        };
        let Some(nodes) = self.nodes.as_ref().filter(|_| self.nodes_listed.load(Ordering::Acquire)) else {
            return;
        };
        let kubelets: Vec<NodeKubelet> = nodes.state().iter().filter_map(|n| node_kubelet(n)).collect();
        let decided = Capability::decided(&api_server, &kubelets);
        let first = !self.capability_known.load(Ordering::Acquire);
        let current = self.capability.load();
        if first || current.native != decided.native || current.reason != decided.reason {
            if !first {
                self.counters.capability_changes.fetch_add(1, Ordering::Relaxed);
            }
            match &*decided.native {
                NativeSidecars::Available => tracing::info!(
                    api_server = %api_server,
                    nodes = kubelets.len(),
                    "native sidecars are available: the API server and every kubelet run 1.29 or newer"
                ),
                NativeSidecars::Unavailable(reason) => tracing::warn!(
                    api_server = %api_server,
                    nodes = kubelets.len(),
                    old_nodes = %old_nodes(&kubelets),
                    cause = decided.reason.label(),
                    %reason,
                    "native sidecars are unavailable: podmedic will not move sidecars"
                ),
            }
            self.capability.store(Arc::new(decided));
        }
        // Only after the store: readiness must never expose the placeholder capability.
        self.capability_known.store(true, Ordering::Release);
    }
}

/// Every object of a cluster-wide kind, listed then watched, stripped to what podmedic reads,
/// applied to a reflector store, with failures retried under kube's default backoff. The stream
/// yields each event after the store has seen it, and each error (it then carries on).
fn watch_into_store<K>(
    client: Client,
    strip: fn(&mut K),
    writer: reflector::store::Writer<K>,
) -> impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher(Api::<K>::all(client), watcher::Config::default())
        .map_ok(move |event| event.modify(strip))
        .default_backoff()
        .reflect(writer)
}

/// Watches Nodes into a reflector store, re-decides the capability on every change and keeps the
/// checks' node facts current.
async fn watch_nodes(shared: Arc<Shared>, client: Client, writer: reflector::store::Writer<Node>) {
    let mut events = std::pin::pin!(watch_into_store(client, strip_node, writer));
    let mut facts = NodeFactsTracker::default();
    let publish = |list: Option<NodeList>| {
        if let Some(list) = list {
            shared.node_facts.store(Some(list));
        }
    };
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::InitDone) => {
                publish(Some(facts.end_list()));
                shared.nodes_listed.store(true, Ordering::Release);
                shared.decide();
            }
            Ok(watcher::Event::Apply(node)) => {
                shared.counters.node_events.fetch_add(1, Ordering::Relaxed);
                publish(facts.applied(&node));
                shared.decide();
            }
            Ok(watcher::Event::Delete(node)) => {
                shared.counters.node_events.fetch_add(1, Ordering::Relaxed);
                publish(facts.deleted(&node));
                shared.decide();
            }
            Ok(watcher::Event::Init) => facts.begin_list(),
            Ok(watcher::Event::InitApply(node)) => facts.listed(&node),
            Err(error) => {
                shared.counters.node_watch_errors.fetch_add(1, Ordering::Relaxed);
                warn_retrying("watching Nodes", "list and watch on nodes", &ApiFailure::of_watch(&error), &error);
            }
        }
    }
    tracing::error!("the Node watch ended; the native-sidecar capability is no longer updated");
}

/// Watches Namespaces into a reflector store and keeps the parsed settings current.
async fn watch_namespaces(
    shared: Arc<Shared>,
    client: Client,
    writer: reflector::store::Writer<Namespace>,
    reader: Store<Namespace>,
) {
    let mut events = std::pin::pin!(watch_into_store(client, strip_namespace, writer));
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::InitDone) => {
                // The store now holds exactly the listed namespaces; namespaces deleted while the
                // watch was down disappear here.
                let namespaces = reader.state();
                for (namespace, problems) in shared.namespaces.replace_all(namespaces.iter().map(|n| &**n)) {
                    report_problems(&shared, &namespace, &problems);
                }
                if let Some(references) = &shared.references {
                    references.follow_list(namespaces.iter().map(|n| &**n));
                }
                if !shared.namespaces_listed.swap(true, Ordering::AcqRel) {
                    tracing::info!(namespaces = shared.namespaces.len(), "namespace settings loaded");
                }
            }
            Ok(watcher::Event::Apply(ns)) => {
                shared.counters.namespace_events.fetch_add(1, Ordering::Relaxed);
                let problems = shared.namespaces.upsert(&ns);
                let name = ns.metadata.name.as_deref().unwrap_or_default();
                report_problems(&shared, name, &problems);
                // Before the first full list, InitDone starts the watches of every labelled namespace.
                if let Some(references) = &shared.references
                    && shared.namespaces_listed.load(Ordering::Acquire)
                {
                    references.follow(&ns);
                }
            }
            Ok(watcher::Event::Delete(ns)) => {
                shared.counters.namespace_events.fetch_add(1, Ordering::Relaxed);
                if let Some(name) = ns.metadata.name.as_deref() {
                    shared.namespaces.remove(name);
                    if let Some(references) = &shared.references {
                        references.set(name, false);
                    }
                }
            }
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
            Err(error) => {
                shared.counters.namespace_watch_errors.fetch_add(1, Ordering::Relaxed);
                let failure = ApiFailure::of_watch(&error);
                warn_retrying("watching Namespaces", "list and watch on namespaces", &failure, &error);
            }
        }
    }
    tracing::error!("the Namespace watch ended; namespace settings are no longer updated");
}

fn report_problems(shared: &Shared, namespace: &str, problems: &[String]) {
    for problem in problems {
        shared.counters.namespace_annotation_problems.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(namespace, %problem, "ignoring a namespace annotation value");
    }
}

/// Reads the API server's version now and then (control planes are upgraded in place), retrying
/// failures with a growing delay.
async fn track_api_server(shared: Arc<Shared>, client: Client) {
    let mut retry = Duration::from_secs(1);
    loop {
        match client.apiserver_version().await {
            Ok(info) => {
                let text = api_server_version_text(&info);
                *shared.api_server.lock().unwrap_or_else(PoisonError::into_inner) = Some(text);
                shared.decide();
                retry = Duration::from_secs(1);
                tokio::time::sleep(API_SERVER_VERSION_REFRESH).await;
            }
            Err(error) => {
                shared.counters.api_server_version_errors.fetch_add(1, Ordering::Relaxed);
                warn_retrying(
                    "reading the API server's version",
                    VERSION_PERMISSION,
                    &ApiFailure::of_client(&error),
                    &error,
                );
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(MAX_RETRY_DELAY);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn offline_watches_are_ready_at_once() {
        let auto = ClusterWatch::offline(NativeSidecarsMode::Auto);
        assert!(auto.is_ready() && auto.is_offline());
        assert_eq!(*auto.native_sidecars(), NativeSidecars::Available);
        assert_eq!(auto.capability_reason(), CapabilityReason::NoCluster);
        assert_eq!(auto.settings("default"), NamespaceState::Unwatched);
        let off = ClusterWatch::offline(NativeSidecarsMode::Off);
        assert!(!off.native_sidecars().is_available());
        let on: Arc<dyn CapabilitySource> = Arc::new(ClusterWatch::offline(NativeSidecarsMode::On));
        assert!(on.native_sidecars().is_available());
    }

    #[tokio::test]
    async fn a_pod_without_configuration_changes_nothing_and_is_never_ready() {
        for mode in [NativeSidecarsMode::Auto, NativeSidecarsMode::On] {
            let watch = ClusterWatch::unconfigured(mode);
            assert!(!watch.is_ready() && !watch.is_offline());
            assert_eq!(watch.settings("batch"), NamespaceState::Unknown);
        }
        let auto = ClusterWatch::unconfigured(NativeSidecarsMode::Auto);
        assert!(!auto.native_sidecars().is_available());
        assert_eq!(auto.capability_reason(), CapabilityReason::Unknown);
    }

    #[tokio::test]
    async fn an_unreachable_cluster_is_not_ready_and_assumes_nothing() {
        // A kubeconfig pointing at a port where nothing listens: the watches fail and retry.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n\
             users: [{name: u, user: {}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
        )
        .unwrap();
        let watch = ClusterWatch::start(NativeSidecarsMode::Auto, Some(&path), ReferenceWatching::Off).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!watch.is_offline());
        assert!(!watch.is_ready(), "not ready until the cluster answers");
        assert!(!watch.native_sidecars().is_available(), "no capability is assumed before the cluster answers");
        assert_eq!(watch.capability_reason(), CapabilityReason::Unknown);
        assert_eq!(watch.settings("batch"), NamespaceState::Unknown, "nor any namespace's settings");
        assert!(watch.counters().namespace_watch_errors.load(Ordering::Relaxed) >= 1);
    }

    #[tokio::test]
    async fn an_explicit_kubeconfig_that_cannot_be_read_is_an_error() {
        let err = ClusterWatch::start(
            NativeSidecarsMode::Auto,
            Some(Path::new("/nonexistent/kubeconfig")),
            ReferenceWatching::Off,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/kubeconfig"), "{err}");
    }
}
