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
use podmedic_engine::admission::{CapabilitySource, ClusterSource, NamespaceLookup, NodeList};
use podmedic_engine::cluster::NamespaceObjects;
use podmedic_engine::kubernetes::{NodeKubelet, decide_native_sidecars};
use podmedic_engine::{NamespaceSettings, NativeSidecars};
use tokio::task::JoinHandle;

use super::connection::{ClusterError, connect};
use super::failure::{ApiFailure, warn_retrying};
use super::namespaces::{NamespaceCache, strip_namespace};
use super::nodes::{NodeFactsTracker, api_server_version_text, node_kubelet, strip_node};
use super::references::{ReferenceWatches, ReferenceWatching};

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
    capability: ArcSwap<NativeSidecars>,
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
            .field("native_sidecars", &self.shared.capability.load())
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl ClusterWatch {
    /// Connects (see [`connect`]) and starts watching. With no cluster configured it returns an
    /// offline watch (see [`ClusterWatch::offline`]) and logs that once. Must run inside a Tokio
    /// runtime; the watches run as background tasks until the `ClusterWatch` is dropped.
    pub async fn start(
        mode: NativeSidecarsMode,
        kubeconfig: Option<&Path>,
        references: ReferenceWatching,
    ) -> Result<ClusterWatch, ClusterError> {
        match connect(kubeconfig).await? {
            Some(client) => Ok(ClusterWatch::with_client(client, mode, references)),
            None => {
                let watch = ClusterWatch::offline(mode);
                match mode {
                    NativeSidecarsMode::Auto => tracing::info!(
                        "no Kubernetes cluster configured (no kubeconfig, not in a cluster): assuming native \
                         sidecars are available (--native-sidecars auto); namespace annotations are not read"
                    ),
                    _ => tracing::info!("no Kubernetes cluster configured: namespace annotations are not read"),
                }
                Ok(watch)
            }
        }
    }

    /// A watch with no cluster: ready at once, no namespace settings, and native sidecars available
    /// in `auto` and `on` modes.
    pub fn offline(mode: NativeSidecarsMode) -> ClusterWatch {
        let capability = match mode {
            NativeSidecarsMode::Auto | NativeSidecarsMode::On => NativeSidecars::Available,
            NativeSidecarsMode::Off => off_reason(),
        };
        let shared = Shared::new(mode, true, capability, None, None);
        ClusterWatch { shared: Arc::new(shared), tasks: Vec::new() }
    }

    /// Starts watching the cluster behind `client`. Must run inside a Tokio runtime.
    ///
    /// In `auto` mode native sidecars count as unavailable until the API server's version and the
    /// first full Node list are in (a wrong "available" leaves Pods stuck in `Init`), except when the
    /// first attempt to reach the API server fails: then, as with no cluster at all, they are assumed
    /// available (logged once) until it answers. Either way [`ClusterWatch::is_ready`] stays false
    /// until the real answer is in, so in a cluster a readiness probe keeps traffic away meanwhile.
    ///
    /// Nodes are watched in every mode: the checks of workloads read their labels, taints and
    /// allocatable. With [`ReferenceWatching::LabelledNamespaces`], the names of the labelled
    /// namespaces' ConfigMaps, Secrets, PVCs and ServiceAccounts are watched too.
    pub fn with_client(client: Client, mode: NativeSidecarsMode, references: ReferenceWatching) -> ClusterWatch {
        let capability = match mode {
            NativeSidecarsMode::Auto => {
                NativeSidecars::Unavailable("podmedic has not learned the cluster's versions yet".into())
            }
            NativeSidecarsMode::On => NativeSidecars::Available,
            NativeSidecarsMode::Off => off_reason(),
        };
        let (node_reader, node_writer) = reflector::store::<Node>();
        let references =
            (references == ReferenceWatching::LabelledNamespaces).then(|| ReferenceWatches::new(client.clone()));
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
            || (s.namespaces_listed.load(Ordering::Acquire)
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
        self.shared.capability.load_full()
    }
}

impl NamespaceLookup for ClusterWatch {
    fn settings(&self, namespace: &str) -> Option<Arc<NamespaceSettings>> {
        self.shared.namespaces.settings(namespace)
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

fn off_reason() -> NativeSidecars {
    NativeSidecars::Unavailable("native sidecars are turned off (--native-sidecars off)".into())
}

impl Shared {
    fn new(
        mode: NativeSidecarsMode,
        offline: bool,
        capability: NativeSidecars,
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

    /// The API server did not answer the first time: behave as with no cluster (native sidecars
    /// assumed available) until it does, unless the real answer is already in.
    fn assume_available_while_unreachable(&self, error: &kube::Error) {
        let _one_at_a_time = self.deciding.lock().unwrap_or_else(PoisonError::into_inner);
        if self.capability_known.load(Ordering::Acquire) {
            return;
        }
        let failure = ApiFailure::of_client(error);
        tracing::info!(
            failure = failure.label(),
            "assuming native sidecars are available until the API server answers (--native-sidecars auto); \
             not ready until then. Reading its version failed: {}",
            failure.explain(VERSION_PERMISSION)
        );
        self.capability.store(Arc::new(NativeSidecars::Available));
    }

    /// Decides the capability again from the latest API server version and Node list, once both
    /// are known, and logs when it changes.
    fn decide(&self) {
        let _one_at_a_time = self.deciding.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(api_server) = self.api_server.lock().unwrap_or_else(PoisonError::into_inner).clone() else {
            return;
        };
        let Some(nodes) = self.nodes.as_ref().filter(|_| self.nodes_listed.load(Ordering::Acquire)) else {
            return;
        };
        let kubelets: Vec<NodeKubelet> = nodes.state().iter().filter_map(|n| node_kubelet(n)).collect();
        let decided = decide_native_sidecars(&api_server, &kubelets);
        let first = !self.capability_known.load(Ordering::Acquire);
        if first || **self.capability.load() != decided {
            if !first {
                self.counters.capability_changes.fetch_add(1, Ordering::Relaxed);
            }
            match &decided {
                NativeSidecars::Available => tracing::info!(
                    api_server = %api_server,
                    nodes = kubelets.len(),
                    "native sidecars are available: the API server and every kubelet run 1.29 or newer"
                ),
                NativeSidecars::Unavailable(reason) => tracing::warn!(
                    api_server = %api_server,
                    nodes = kubelets.len(),
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
    let mut first_attempt = true;
    loop {
        match client.apiserver_version().await {
            Ok(info) => {
                first_attempt = false;
                let text = api_server_version_text(&info);
                *shared.api_server.lock().unwrap_or_else(PoisonError::into_inner) = Some(text);
                shared.decide();
                retry = Duration::from_secs(1);
                tokio::time::sleep(API_SERVER_VERSION_REFRESH).await;
            }
            Err(error) => {
                if std::mem::take(&mut first_attempt) {
                    shared.assume_available_while_unreachable(&error);
                }
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
        assert!(auto.settings("default").is_none());
        let off = ClusterWatch::offline(NativeSidecarsMode::Off);
        assert!(!off.native_sidecars().is_available());
        let on: Arc<dyn CapabilitySource> = Arc::new(ClusterWatch::offline(NativeSidecarsMode::On));
        assert!(on.native_sidecars().is_available());
    }

    #[tokio::test]
    async fn an_unreachable_cluster_is_not_ready_and_assumes_native_sidecars() {
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
        assert!(watch.native_sidecars().is_available(), "an unreachable cluster is treated as no cluster");
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
