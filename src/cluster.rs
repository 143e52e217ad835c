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

use crate::admission::{CapabilitySource, Environment, NamespaceLookup};
use crate::config::{Policy, ResourceDefaults};
use crate::mutate::{
    DEFAULT_PROBES_ANNOTATION, DEFAULT_REQUESTS_ANNOTATION, DEFAULT_SIDECAR_REQUESTS_ANNOTATION,
    NAMESPACE_OPT_OUT_ANNOTATION, NamespaceSettings, NativeSidecars,
};

/// The first Kubernetes `major.minor` whose API server and kubelet run native sidecars
/// (the `SidecarContainers` feature is on by default from 1.29).
pub const NATIVE_SIDECARS_SINCE: (u32, u32) = (1, 29);

/// Prefix of every podmedic annotation; the namespace cache keeps only these.
const ANNOTATION_PREFIX: &str = "podmedic.io/";

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
// Namespace annotations (pure)
// ---------------------------------------------------------------------------------------------

/// Parses a namespace's annotations into its settings, with one message per value that was ignored.
///
/// Bad values never fail: each is ignored (the policy applies) and reported. The opt-out is the
/// exception that errs on the safe side: any value of `podmedic.io/disabled` other than `false`
/// opts the namespace out, since the user plainly meant to say something about turning podmedic off.
pub fn namespace_settings(annotations: &BTreeMap<String, String>) -> (NamespaceSettings, Vec<String>) {
    let mut settings = NamespaceSettings::default();
    let mut problems = Vec::new();
    for (key, value) in annotations.iter().filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX)) {
        let trimmed = value.trim();
        match key.as_str() {
            NAMESPACE_OPT_OUT_ANNOTATION => {
                settings.opted_out = !trimmed.eq_ignore_ascii_case("false");
                if !trimmed.eq_ignore_ascii_case("true") && !trimmed.eq_ignore_ascii_case("false") {
                    problems.push(format!(
                        "{key}: `{value}` is neither \"true\" nor \"false\"; treating the namespace as opted out"
                    ));
                }
            }
            DEFAULT_REQUESTS_ANNOTATION => match ResourceDefaults::parse_annotation(trimmed) {
                Ok(r) => settings.default_requests = Some(r),
                Err(e) => problems.push(format!("{key}: `{value}`: {e}; ignored")),
            },
            DEFAULT_SIDECAR_REQUESTS_ANNOTATION => match ResourceDefaults::parse_annotation(trimmed) {
                Ok(r) => settings.default_sidecar_requests = Some(r),
                Err(e) => problems.push(format!("{key}: `{value}`: {e}; ignored")),
            },
            DEFAULT_PROBES_ANNOTATION => match parse_probe_setting(trimmed) {
                Ok((readiness, liveness)) => {
                    settings.readiness_probes = Some(readiness);
                    settings.liveness_probes = Some(liveness);
                }
                Err(e) => problems.push(format!("{key}: `{value}`: {e}; ignored")),
            },
            // Object-level annotations are harmless on a namespace; only point out the likely mistake.
            crate::mutate::SKIP_ANNOTATION => problems.push(format!(
                "{key} has no effect on a namespace; use {NAMESPACE_OPT_OUT_ANNOTATION}: \"true\" to opt it out"
            )),
            _ if is_object_annotation(key) => {}
            _ => problems.push(format!("{key} is not a namespace setting podmedic knows; ignored")),
        }
    }
    (settings, problems)
}

/// Annotations that belong on workloads, which a namespace may carry without it being a mistake
/// (for example copied by a tool that annotates everything).
fn is_object_annotation(key: &str) -> bool {
    matches!(
        key,
        crate::mutate::SIDECARS_ANNOTATION
            | crate::mutate::SIDECAR_POSITION_ANNOTATION
            | crate::mutate::CHANGES_ANNOTATION
    )
}

/// `none`, `readiness`, `readiness,liveness` (any order) into (readiness, liveness).
fn parse_probe_setting(value: &str) -> Result<(bool, bool), String> {
    if value.eq_ignore_ascii_case("none") {
        return Ok((false, false));
    }
    let (mut readiness, mut liveness) = (false, false);
    for word in value.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match word.to_ascii_lowercase().as_str() {
            "readiness" => readiness = true,
            "liveness" => liveness = true,
            _ => return Err(format!("unknown probe `{word}` (expected none, readiness or readiness,liveness)")),
        }
    }
    if !(readiness || liveness) {
        return Err("empty (expected none, readiness or readiness,liveness)".into());
    }
    Ok((readiness, liveness))
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
    annotations
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
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
    fn no_annotations_means_the_policy_applies() {
        assert_eq!(namespace_settings(&BTreeMap::new()), (NamespaceSettings::default(), vec![]));
    }

    #[test]
    fn reads_every_namespace_setting() {
        let (settings, problems) = namespace_settings(&annotations(&[
            (DEFAULT_REQUESTS_ANNOTATION, "cpu=100m, memory=128Mi"),
            (DEFAULT_SIDECAR_REQUESTS_ANNOTATION, "cpu=10m,memory=32Mi"),
            (DEFAULT_PROBES_ANNOTATION, "readiness,liveness"),
            (NAMESPACE_OPT_OUT_ANNOTATION, "false"),
            ("team.example.com/owner", "payments"),
        ]));
        assert_eq!(problems, Vec::<String>::new());
        assert!(!settings.opted_out);
        assert_eq!(
            settings.default_requests,
            Some(ResourceDefaults::parse_annotation("cpu=100m,memory=128Mi").unwrap())
        );
        assert_eq!(
            settings.default_sidecar_requests,
            Some(ResourceDefaults::parse_annotation("cpu=10m,memory=32Mi").unwrap())
        );
        assert_eq!((settings.readiness_probes, settings.liveness_probes), (Some(true), Some(true)));
    }

    #[test]
    fn probe_settings() {
        let probes = |v: &str| {
            let (s, p) = namespace_settings(&annotations(&[(DEFAULT_PROBES_ANNOTATION, v)]));
            (s.readiness_probes, s.liveness_probes, p.len())
        };
        assert_eq!(probes("none"), (Some(false), Some(false), 0));
        assert_eq!(probes("readiness"), (Some(true), Some(false), 0));
        assert_eq!(probes("Liveness, readiness"), (Some(true), Some(true), 0));
        assert_eq!(probes("startup"), (None, None, 1));
        assert_eq!(probes(""), (None, None, 1));
    }

    #[test]
    fn bad_values_are_ignored_and_reported() {
        let (settings, problems) = namespace_settings(&annotations(&[
            (DEFAULT_REQUESTS_ANNOTATION, "cpu=lots"),
            (DEFAULT_SIDECAR_REQUESTS_ANNOTATION, "memory"),
            (DEFAULT_PROBES_ANNOTATION, "readyness"),
            ("podmedic.io/default-request", "cpu=1"),
            (crate::mutate::SKIP_ANNOTATION, "true"),
            (crate::mutate::SIDECARS_ANNOTATION, "proxy"),
        ]));
        assert_eq!(settings, NamespaceSettings::default());
        assert_eq!(problems.len(), 5, "{problems:#?}");
        assert!(problems.iter().any(|p| p.starts_with("podmedic.io/default-requests: `cpu=lots`")));
        assert!(problems.iter().any(|p| p.contains("podmedic.io/default-request is not a namespace setting")));
        assert!(problems.iter().any(|p| p.contains("use podmedic.io/disabled")));
    }

    #[test]
    fn opt_out_errs_on_the_side_of_leaving_the_namespace_alone() {
        let opt_out = |v: &str| {
            let (s, p) = namespace_settings(&annotations(&[(NAMESPACE_OPT_OUT_ANNOTATION, v)]));
            (s.opted_out, p.len())
        };
        assert_eq!(opt_out("true"), (true, 0));
        assert_eq!(opt_out("True"), (true, 0));
        assert_eq!(opt_out("false"), (false, 0));
        assert_eq!(opt_out("yes"), (true, 1));
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
