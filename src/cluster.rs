//! What podmedic learns from the API server: whether native sidecars are safe in this cluster, and
//! the per-namespace settings. Both are kept current by watches (kube's `watcher` + `reflector`),
//! so the admission path reads memory and never calls the API server.
//!
//! Native sidecars (restartable init containers) need Kubernetes 1.29 on the API server *and* on
//! every kubelet: an older kubelet runs a restartable init container as an ordinary one, waits for
//! it to exit, and the Pod stays in `Init` forever. So in `auto` mode the capability is decided from
//! the API server's version and the `status.nodeInfo.kubeletVersion` of every Node.
//!
//! The decision and the annotation parsing are pure functions ([`decide_native_sidecars`],
//! [`namespace_settings`]); [`ClusterWatch`] only feeds them from the watches.
//!
//! RBAC: `get`, `list` and `watch` on `nodes` and `namespaces`, nothing else.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::version::Info;
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Config};
use tokio::task::JoinHandle;

use podmedic_engine::admission::{CapabilitySource, Environment, NamespaceLookup};
use podmedic_engine::annotations::{is_podmedic_key, namespace_settings};
use podmedic_engine::kubernetes::{KubeVersion, NodeKubelet, decide_native_sidecars};
use podmedic_engine::policy::Policy;
use podmedic_engine::{NamespaceSettings, NativeSidecars};

/// How often the API server's version is read again (control planes are upgraded in place).
const API_SERVER_VERSION_REFRESH: Duration = Duration::from_secs(600);

/// Longest wait between two failed attempts to read the API server's version.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// `--native-sidecars`: whether podmedic may move sidecars into `initContainers`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
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

// ---------------------------------------------------------------------------------------------
// Versions and the capability decision (pure)
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Namespace cache
// ---------------------------------------------------------------------------------------------

/// Parsed settings of every known namespace, so that an admission does one map lookup.
///
/// Entries are re-parsed only when a namespace's podmedic annotations change, so problems are
/// reported once per change rather than on every watch event.
#[derive(Debug)]
pub struct NamespaceCache {
    entries: RwLock<HashMap<String, CachedNamespace>>,
    /// Shared by every namespace without podmedic annotations.
    defaults: Arc<NamespaceSettings>,
}

#[derive(Debug)]
struct CachedNamespace {
    /// The podmedic annotations the settings were parsed from.
    source: BTreeMap<String, String>,
    settings: Arc<NamespaceSettings>,
}

impl Default for NamespaceCache {
    fn default() -> Self {
        NamespaceCache { entries: RwLock::default(), defaults: Arc::new(NamespaceSettings::default()) }
    }
}

impl NamespaceCache {
    /// Records a namespace (added or changed). Returns the problems found when its annotations were
    /// parsed, or nothing when they did not change since the last call.
    pub fn upsert(&self, namespace: &Namespace) -> Vec<String> {
        let Some(name) = namespace.metadata.name.as_deref() else {
            return Vec::new();
        };
        let source = podmedic_annotations(namespace.metadata.annotations.as_ref());
        if self.read().get(name).is_some_and(|cached| cached.source == source) {
            return Vec::new();
        }
        let (settings, problems) = if source.is_empty() {
            (self.defaults.clone(), Vec::new())
        } else {
            let (settings, problems) = namespace_settings(&source);
            (Arc::new(settings), problems)
        };
        self.write().insert(name.to_owned(), CachedNamespace { source, settings });
        problems
    }

    /// Forgets a deleted namespace.
    pub fn remove(&self, name: &str) {
        self.write().remove(name);
    }

    /// Makes the cache hold exactly `namespaces` (after a full list). Returns the problems of the
    /// namespaces whose annotations were (re)parsed, by namespace name.
    pub fn replace_all<'a>(&self, namespaces: impl IntoIterator<Item = &'a Namespace>) -> Vec<(String, Vec<String>)> {
        let mut seen = HashSet::new();
        let mut problems = Vec::new();
        for ns in namespaces {
            let Some(name) = ns.metadata.name.clone() else { continue };
            let found = self.upsert(ns);
            if !found.is_empty() {
                problems.push((name.clone(), found));
            }
            seen.insert(name);
        }
        self.write().retain(|name, _| seen.contains(name));
        problems
    }

    /// Number of namespaces known.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// True when no namespace is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // A panic while holding the lock cannot leave the map half-updated (each change is one insert
    // or retain), so a poisoned lock is still safe to use.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, CachedNamespace>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, CachedNamespace>> {
        self.entries.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl NamespaceLookup for NamespaceCache {
    fn settings(&self, namespace: &str) -> Option<Arc<NamespaceSettings>> {
        self.read().get(namespace).map(|cached| cached.settings.clone())
    }
}

fn podmedic_annotations(annotations: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    annotations.into_iter().flatten().filter(|(k, _)| is_podmedic_key(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Keeps only what the namespace cache reads (name and podmedic annotations): namespaces can carry
/// large annotations such as `kubectl.kubernetes.io/last-applied-configuration`.
fn strip_namespace(ns: &mut Namespace) {
    let annotations = podmedic_annotations(ns.metadata.annotations.as_ref());
    ns.metadata = ObjectMeta {
        name: ns.metadata.name.take(),
        annotations: (!annotations.is_empty()).then_some(annotations),
        ..ObjectMeta::default()
    };
    ns.spec = None;
    ns.status = None;
}

/// Keeps only the Node's name and kubelet version: a Node's status lists every image it holds and
/// can weigh tens of kilobytes.
fn strip_node(node: &mut Node) {
    let kubelet_version = node.status.as_ref().and_then(|s| s.node_info.as_ref()).map(|i| i.kubelet_version.clone());
    node.metadata = ObjectMeta { name: node.metadata.name.take(), ..ObjectMeta::default() };
    node.spec = None;
    node.status = kubelet_version.map(|kubelet_version| NodeStatus {
        node_info: Some(NodeSystemInfo { kubelet_version, ..NodeSystemInfo::default() }),
        ..NodeStatus::default()
    });
}

// ---------------------------------------------------------------------------------------------
// Connecting
// ---------------------------------------------------------------------------------------------

/// A client for the cluster: from `kubeconfig` when given (an error if it cannot be used), else from
/// `KUBECONFIG`, `~/.kube/config` or the in-cluster service account. `Ok(None)` when no cluster is
/// configured at all.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<Option<Client>, ClusterError> {
    let config = match kubeconfig {
        Some(path) => {
            let wrap = |source| ClusterError::Kubeconfig { path: path.to_owned(), source };
            let file = Kubeconfig::read_from(path).map_err(wrap)?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await.map_err(wrap)?
        }
        None => match Config::infer().await {
            Ok(config) => config,
            Err(error) => {
                // KUBECONFIG set but unusable is a mistake worth seeing; no configuration at all is not.
                if std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty()) {
                    tracing::warn!(%error, "KUBECONFIG is set but no cluster configuration could be loaded from it");
                } else {
                    tracing::debug!(%error, "no Kubernetes configuration found");
                }
                return Ok(None);
            }
        },
    };
    Client::try_from(config).map(Some).map_err(ClusterError::Client)
}

// ---------------------------------------------------------------------------------------------
// The watcher
// ---------------------------------------------------------------------------------------------

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
    pub async fn start(mode: NativeSidecarsMode, kubeconfig: Option<&Path>) -> Result<ClusterWatch, ClusterError> {
        match connect(kubeconfig).await? {
            Some(client) => Ok(ClusterWatch::with_client(client, mode)),
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
        let shared = Shared::new(mode, true, capability, None);
        ClusterWatch { shared: Arc::new(shared), tasks: Vec::new() }
    }

    /// Starts watching the cluster behind `client`. Must run inside a Tokio runtime.
    ///
    /// In `auto` mode native sidecars count as unavailable until the API server's version and the
    /// first full Node list are in (a wrong "available" leaves Pods stuck in `Init`), except when the
    /// first attempt to reach the API server fails: then, as with no cluster at all, they are assumed
    /// available (logged once) until it answers. Either way [`ClusterWatch::is_ready`] stays false
    /// until the real answer is in, so in a cluster a readiness probe keeps traffic away meanwhile.
    pub fn with_client(client: Client, mode: NativeSidecarsMode) -> ClusterWatch {
        let (capability, nodes) = match mode {
            NativeSidecarsMode::Auto => (
                NativeSidecars::Unavailable("podmedic has not learned the cluster's versions yet".into()),
                Some(reflector::store::<Node>()),
            ),
            NativeSidecarsMode::On => (NativeSidecars::Available, None),
            NativeSidecarsMode::Off => (off_reason(), None),
        };
        let (node_reader, node_writer) = match nodes {
            Some((reader, writer)) => (Some(reader), Some(writer)),
            None => (None, None),
        };
        let shared = Arc::new(Shared::new(mode, false, capability, node_reader));
        let (namespace_reader, namespace_writer) = reflector::store::<Namespace>();
        let mut tasks =
            vec![tokio::spawn(watch_namespaces(shared.clone(), client.clone(), namespace_writer, namespace_reader))];
        if let Some(writer) = node_writer {
            tasks.push(tokio::spawn(watch_nodes(shared.clone(), client.clone(), writer)));
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

    /// An admission [`Environment`] that reads this watch.
    pub fn environment(self: &Arc<Self>, policy: Arc<Policy>) -> Environment {
        Environment { policy, capability: self.clone(), namespaces: self.clone() }
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

fn off_reason() -> NativeSidecars {
    NativeSidecars::Unavailable("native sidecars are turned off (--native-sidecars off)".into())
}

impl Shared {
    fn new(mode: NativeSidecarsMode, offline: bool, capability: NativeSidecars, nodes: Option<Store<Node>>) -> Self {
        Shared {
            mode,
            offline,
            capability: ArcSwap::from_pointee(capability),
            capability_known: AtomicBool::new(false),
            api_server: Mutex::new(None),
            nodes,
            nodes_listed: AtomicBool::new(false),
            namespaces: NamespaceCache::default(),
            namespaces_listed: AtomicBool::new(false),
            deciding: Mutex::new(()),
            counters: ClusterCounters::default(),
        }
    }

    /// The API server did not answer the first time: behave as with no cluster (native sidecars
    /// assumed available) until it does, unless the real answer is already in.
    fn assume_available_while_unreachable(&self, error: &kube::Error) {
        let _one_at_a_time = self.deciding.lock().unwrap_or_else(PoisonError::into_inner);
        if self.capability_known.load(Ordering::Acquire) {
            return;
        }
        tracing::info!(
            %error,
            "cannot reach the API server: assuming native sidecars are available until it answers \
             (--native-sidecars auto); not ready until then"
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

/// Watches Nodes into a reflector store and re-decides the capability on every change.
async fn watch_nodes(shared: Arc<Shared>, client: Client, writer: reflector::store::Writer<Node>) {
    let mut events = std::pin::pin!(watch_into_store(client, strip_node, writer));
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::InitDone) => {
                shared.nodes_listed.store(true, Ordering::Release);
                shared.decide();
            }
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                shared.counters.node_events.fetch_add(1, Ordering::Relaxed);
                shared.decide();
            }
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
            Err(error) => {
                shared.counters.node_watch_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "watching Nodes failed; retrying with backoff (needs list/watch on nodes)");
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
                for (namespace, problems) in shared.namespaces.replace_all(reader.state().iter().map(|n| &**n)) {
                    report_problems(&shared, &namespace, &problems);
                }
                if !shared.namespaces_listed.swap(true, Ordering::AcqRel) {
                    tracing::info!(namespaces = shared.namespaces.len(), "namespace settings loaded");
                }
            }
            Ok(watcher::Event::Apply(ns)) => {
                shared.counters.namespace_events.fetch_add(1, Ordering::Relaxed);
                let problems = shared.namespaces.upsert(&ns);
                report_problems(&shared, ns.metadata.name.as_deref().unwrap_or_default(), &problems);
            }
            Ok(watcher::Event::Delete(ns)) => {
                shared.counters.namespace_events.fetch_add(1, Ordering::Relaxed);
                if let Some(name) = ns.metadata.name.as_deref() {
                    shared.namespaces.remove(name);
                }
            }
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
            Err(error) => {
                shared.counters.namespace_watch_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "watching Namespaces failed; retrying with backoff (needs list/watch on namespaces)");
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
                tracing::warn!(%error, retry_in = ?retry, "cannot read the API server's version");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(MAX_RETRY_DELAY);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podmedic_engine::annotations::{DEFAULT_PROBES_ANNOTATION, NAMESPACE_OPT_OUT_ANNOTATION};

    fn kubelet(node: &str, version: &str) -> NodeKubelet {
        NodeKubelet { node: node.into(), kubelet_version: version.into() }
    }

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn namespace(name: &str, pairs: &[(&str, &str)]) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some(name.into()),
                annotations: Some(annotations(pairs)),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        }
    }

    #[test]
    fn the_mode_flag_takes_auto_on_off() {
        use clap::ValueEnum as _;
        for (text, mode) in
            [("auto", NativeSidecarsMode::Auto), ("on", NativeSidecarsMode::On), ("off", NativeSidecarsMode::Off)]
        {
            assert_eq!(NativeSidecarsMode::from_str(text, false), Ok(mode));
        }
        assert_eq!(NativeSidecarsMode::default(), NativeSidecarsMode::Auto);
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

    #[test]
    fn the_cache_parses_once_per_change_and_follows_deletions() {
        let cache = NamespaceCache::default();
        assert!(cache.settings("team-a").is_none());

        let bad = namespace("team-a", &[(DEFAULT_PROBES_ANNOTATION, "bogus")]);
        assert_eq!(cache.upsert(&bad).len(), 1);
        assert!(cache.upsert(&bad).is_empty(), "unchanged annotations are not parsed or reported again");

        let mut fixed = namespace("team-a", &[(DEFAULT_PROBES_ANNOTATION, "readiness")]);
        fixed.metadata.annotations.as_mut().unwrap().insert("unrelated/key".into(), "changed".into());
        assert!(cache.upsert(&fixed).is_empty());
        assert_eq!(cache.settings("team-a").unwrap().readiness_probes, Some(true));

        let plain = namespace("team-b", &[]);
        cache.upsert(&plain);
        assert_eq!(*cache.settings("team-b").unwrap(), NamespaceSettings::default());

        cache.remove("team-b");
        assert!(cache.settings("team-b").is_none());

        let opted_out = namespace("team-c", &[(NAMESPACE_OPT_OUT_ANNOTATION, "true")]);
        let problems = cache.replace_all([&fixed, &opted_out]);
        assert!(problems.is_empty());
        cache.upsert(&plain);
        let problems = cache.replace_all([&opted_out, &namespace("team-d", &[(DEFAULT_PROBES_ANNOTATION, "x")])]);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, "team-d");
        assert!(cache.settings("team-a").is_none() && cache.settings("team-b").is_none());
        assert!(cache.settings("team-c").unwrap().opted_out);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn stripping_a_namespace_keeps_only_podmedic_annotations() {
        let mut ns = namespace(
            "team-a",
            &[("kubectl.kubernetes.io/last-applied-configuration", "{...}"), (DEFAULT_PROBES_ANNOTATION, "none")],
        );
        strip_namespace(&mut ns);
        assert_eq!(ns.metadata.annotations, Some(annotations(&[(DEFAULT_PROBES_ANNOTATION, "none")])));
        let mut bare = namespace("team-b", &[("a/b", "c")]);
        strip_namespace(&mut bare);
        assert_eq!(bare.metadata.annotations, None);
    }

    #[tokio::test]
    async fn offline_watches_are_ready_at_once() {
        let auto = ClusterWatch::offline(NativeSidecarsMode::Auto);
        assert!(auto.is_ready() && auto.is_offline());
        assert_eq!(*auto.native_sidecars(), NativeSidecars::Available);
        assert!(auto.settings("default").is_none());
        let off = ClusterWatch::offline(NativeSidecarsMode::Off);
        assert!(!off.native_sidecars().is_available());
        let policy = Policy::from_yaml_str("apiVersion: podmedic.io/v1alpha1\nkind: Policy\n", "test").unwrap();
        let env = Arc::new(ClusterWatch::offline(NativeSidecarsMode::On)).environment(Arc::new(policy));
        assert!(env.capability.native_sidecars().is_available());
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
        let watch = ClusterWatch::start(NativeSidecarsMode::Auto, Some(&path)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!watch.is_offline());
        assert!(!watch.is_ready(), "not ready until the cluster answers");
        assert!(watch.native_sidecars().is_available(), "an unreachable cluster is treated as no cluster");
        assert!(watch.counters().namespace_watch_errors.load(Ordering::Relaxed) >= 1);
    }

    #[tokio::test]
    async fn an_explicit_kubeconfig_that_cannot_be_read_is_an_error() {
        let err = ClusterWatch::start(NativeSidecarsMode::Auto, Some(Path::new("/nonexistent/kubeconfig")))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/kubeconfig"), "{err}");
    }
}
