//! The names of the ConfigMaps, Secrets, PersistentVolumeClaims and ServiceAccounts of the
//! labelled namespaces, for the `references` check (`podmedic serve --watch-references`).
//!
//! Metadata only: each kind is watched through `Api<PartialObjectMeta<K>>`, so the API server sends
//! `metadata` and never a Secret's `data`, and only the name of each object is kept, in a set per
//! kind ([`NameSet`]): about 120 bytes an object where a reflector store of the same objects,
//! even stripped to name and namespace, holds about 840 (`tools/podmedic-load/src/bin/
//! reference-memory.rs` measures both). One watch per kind and namespace, started when a namespace gets the
//! `podmedic.io/enabled: "true"` label and stopped when it loses it or is deleted: the RBAC this
//! needs can be granted per namespace (`deploy/components/reference-checks`). A namespace counts
//! as known only once all four kinds are listed; until then, and when a list is forbidden, the
//! check says nothing there.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Secret, ServiceAccount};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use podmedic_engine::cluster::{NamespaceObjects, ReferenceKind};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use super::namespaces::is_labelled;

/// Whether podmedic watches the names of the objects Pods refer to (`--watch-references`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReferenceWatching {
    /// Not watched (the default): the `references` check says nothing, and podmedic needs no
    /// access to ConfigMaps, Secrets, PersistentVolumeClaims or ServiceAccounts.
    #[default]
    Off,
    /// Watched, metadata only, in every namespace labelled `podmedic.io/enabled: "true"`.
    LabelledNamespaces,
}

/// The names of one kind's objects in one namespace, kept from a watch's events.
#[derive(Debug, Default)]
pub struct NameSet {
    names: RwLock<HashSet<String>>,
    /// The names of a list in progress (a watch (re)start), replacing `names` once complete.
    relisting: Mutex<Option<HashSet<String>>>,
    /// The first list is complete.
    listed: AtomicBool,
}

impl NameSet {
    /// Applies one event of a metadata watch.
    pub fn apply<K>(&self, event: &watcher::Event<PartialObjectMeta<K>>) {
        let name = |object: &PartialObjectMeta<K>| object.metadata.name.clone();
        match event {
            watcher::Event::Init => *lock(&self.relisting) = Some(HashSet::new()),
            watcher::Event::InitApply(object) => {
                if let (Some(list), Some(name)) = (lock(&self.relisting).as_mut(), name(object)) {
                    list.insert(name);
                }
            }
            watcher::Event::InitDone => {
                if let Some(list) = lock(&self.relisting).take() {
                    *self.names.write().unwrap_or_else(PoisonError::into_inner) = list;
                }
                self.listed.store(true, Ordering::Release);
            }
            watcher::Event::Apply(object) => {
                if let Some(name) = name(object) {
                    self.names.write().unwrap_or_else(PoisonError::into_inner).insert(name);
                }
            }
            watcher::Event::Delete(object) => {
                if let Some(name) = object.metadata.name.as_deref() {
                    self.names.write().unwrap_or_else(PoisonError::into_inner).remove(name);
                }
            }
        }
    }

    /// Whether an object of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.names.read().unwrap_or_else(PoisonError::into_inner).contains(name)
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.names.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// True when no name is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the first list is complete.
    pub fn is_listed(&self) -> bool {
        self.listed.load(Ordering::Acquire)
    }
}

// A panic while holding one of these locks cannot leave the data half-changed (each change is one
// insert, remove or swap), so a poisoned lock is still safe to use.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The names of one namespace's objects, as the four watches see them.
#[derive(Debug)]
pub struct NamespaceNames {
    namespace: String,
    /// One set per kind, in the order of [`ReferenceKind::ALL`].
    kinds: [NameSet; 4],
}

impl NamespaceNames {
    fn new(namespace: &str) -> NamespaceNames {
        NamespaceNames { namespace: namespace.to_owned(), kinds: Default::default() }
    }

    fn set(&self, kind: ReferenceKind) -> &NameSet {
        &self.kinds[kind as usize]
    }

    /// True once every kind has been listed.
    pub fn is_listed(&self) -> bool {
        self.kinds.iter().all(NameSet::is_listed)
    }

    /// Number of objects known, all kinds together.
    pub fn len(&self) -> usize {
        self.kinds.iter().map(NameSet::len).sum()
    }

    /// True when no object is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl NamespaceObjects for NamespaceNames {
    fn contains(&self, kind: ReferenceKind, name: &str) -> bool {
        self.set(kind).contains(name)
    }
}

/// The watches of one namespace; dropping it stops them.
struct Watched {
    names: Arc<NamespaceNames>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Every labelled namespace's watches, started and stopped as namespaces change.
pub struct ReferenceWatches {
    client: Client,
    watched: Mutex<HashMap<String, Watched>>,
    /// Errors of these watches (each is retried with backoff).
    pub errors: Arc<AtomicU64>,
}

impl ReferenceWatches {
    /// No namespace watched yet.
    pub fn new(client: Client) -> ReferenceWatches {
        ReferenceWatches { client, watched: Mutex::default(), errors: Arc::default() }
    }

    /// Starts watching `namespace` when `labelled` and not watched yet; stops when not labelled.
    /// Must run inside a Tokio runtime.
    pub fn set(&self, namespace: &str, labelled: bool) {
        let mut watched = self.lock();
        if !labelled {
            if watched.remove(namespace).is_some() {
                tracing::info!(
                    namespace,
                    "stopped watching the namespace's ConfigMaps, Secrets, PVCs, ServiceAccounts"
                );
            }
            return;
        }
        if watched.contains_key(namespace) {
            return;
        }
        let names = Arc::new(NamespaceNames::new(namespace));
        let tasks = vec![
            tokio::spawn(self.watch::<ConfigMap>(names.clone(), ReferenceKind::ConfigMap)),
            tokio::spawn(self.watch::<Secret>(names.clone(), ReferenceKind::Secret)),
            tokio::spawn(self.watch::<PersistentVolumeClaim>(names.clone(), ReferenceKind::PersistentVolumeClaim)),
            tokio::spawn(self.watch::<ServiceAccount>(names.clone(), ReferenceKind::ServiceAccount)),
        ];
        tracing::info!(namespace, "watching the names of the namespace's ConfigMaps, Secrets, PVCs, ServiceAccounts");
        watched.insert(namespace.to_owned(), Watched { names, tasks });
    }

    /// Watches a namespace that was added or changed if it is labelled, stops if it is not.
    pub fn follow(&self, namespace: &Namespace) {
        if let Some(name) = namespace.metadata.name.as_deref() {
            self.set(name, is_labelled(namespace));
        }
    }

    /// Watches exactly the labelled namespaces of a full namespace list (namespaces deleted or
    /// unlabelled while the Namespace watch was down are let go here).
    pub fn follow_list<'a>(&self, namespaces: impl IntoIterator<Item = &'a Namespace>) {
        let labelled: HashSet<&str> =
            namespaces.into_iter().filter(|n| is_labelled(n)).filter_map(|n| n.metadata.name.as_deref()).collect();
        self.lock().retain(|namespace, _| labelled.contains(namespace.as_str()));
        for name in labelled {
            self.set(name, true);
        }
    }

    /// The names of `namespace`'s objects, once all four kinds are listed there.
    pub fn names(&self, namespace: &str) -> Option<Arc<NamespaceNames>> {
        self.lock().get(namespace).map(|w| w.names.clone()).filter(|n| n.is_listed())
    }

    /// Number of namespaces watched.
    pub fn namespaces(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Watched>> {
        lock(&self.watched)
    }

    /// One kind's metadata watch in one namespace, into its name set.
    fn watch<K>(&self, names: Arc<NamespaceNames>, kind: ReferenceKind) -> impl Future<Output = ()> + Send + 'static
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + Sync
            + 'static,
    {
        let api: Api<PartialObjectMeta<K>> = Api::namespaced(self.client.clone(), &names.namespace);
        let errors = self.errors.clone();
        async move {
            let events = watcher(api, watcher::Config::default().page_size(500)).default_backoff();
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => names.set(kind).apply(&event),
                    Err(error) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            namespace = %names.namespace,
                            kind = kind.kind(),
                            %error,
                            "watching object names failed; retrying with backoff (needs list/watch on configmaps, \
                             secrets, persistentvolumeclaims and serviceaccounts there: deploy/components/reference-checks)"
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A metadata-only object as the API server sends it in a `PartialObjectMetadataList`.
    fn meta<K>(name: &str) -> PartialObjectMeta<K> {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": name, "namespace": "shop", "uid": "6f1c", "resourceVersion": "42",
                         "labels": {"app": "shop"}, "managedFields": [{"manager": "kubectl", "operation": "Apply"}]}
        }))
        .unwrap()
    }

    #[test]
    fn a_name_set_follows_lists_and_changes() {
        let set = NameSet::default();
        set.apply(&watcher::Event::<PartialObjectMeta<ConfigMap>>::Init);
        set.apply(&watcher::Event::InitApply(meta::<ConfigMap>("app-config")));
        assert!(!set.contains("app-config") && !set.is_listed(), "a list in progress is not visible");
        set.apply(&watcher::Event::<PartialObjectMeta<ConfigMap>>::InitDone);
        assert!(set.contains("app-config") && set.is_listed());
        set.apply(&watcher::Event::Apply(meta::<ConfigMap>("extra")));
        set.apply(&watcher::Event::Delete(meta::<ConfigMap>("app-config")));
        assert!(!set.contains("app-config") && set.contains("extra"));
        // A relist (the watch restarted) replaces everything: names deleted meanwhile disappear.
        set.apply(&watcher::Event::<PartialObjectMeta<ConfigMap>>::Init);
        set.apply(&watcher::Event::InitApply(meta::<ConfigMap>("fresh")));
        set.apply(&watcher::Event::<PartialObjectMeta<ConfigMap>>::InitDone);
        assert_eq!((set.len(), set.contains("fresh"), set.contains("extra")), (1, true, false));
    }

    #[test]
    fn a_namespace_is_known_once_every_kind_is_listed_and_finds_names_by_kind() {
        let names = NamespaceNames::new("shop");
        names.set(ReferenceKind::ConfigMap).apply(&watcher::Event::Apply(meta::<ConfigMap>("app-config")));
        names.set(ReferenceKind::Secret).apply(&watcher::Event::Apply(meta::<Secret>("api-token")));
        assert!(names.contains(ReferenceKind::ConfigMap, "app-config"));
        assert!(!names.contains(ReferenceKind::Secret, "app-config"), "names are per kind");
        assert!(names.contains(ReferenceKind::Secret, "api-token"));
        assert!(!names.contains(ReferenceKind::ServiceAccount, "builder"));
        assert_eq!(names.len(), 2);
        assert!(!names.is_listed());
        for set in &names.kinds {
            set.apply(&watcher::Event::<PartialObjectMeta<Secret>>::InitDone);
        }
        assert!(names.is_listed());
    }

    #[tokio::test]
    async fn only_labelled_namespaces_are_watched_and_none_counts_before_it_is_listed() {
        // An API server nobody answers at: the watches start, fail and retry in the background.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let watches = ReferenceWatches::new(Client::try_from(config).unwrap());
        let namespace = |name: &str, labelled: bool| -> Namespace {
            let labels =
                if labelled { serde_json::json!({"podmedic.io/enabled": "true"}) } else { serde_json::json!({}) };
            serde_json::from_value(serde_json::json!({"metadata": {"name": name, "labels": labels}})).unwrap()
        };
        watches.follow_list([&namespace("shop", true), &namespace("plain", false)]);
        assert_eq!(watches.namespaces(), 1);
        watches.follow(&namespace("plain", true));
        assert_eq!(watches.namespaces(), 2);
        watches.follow(&namespace("shop", false));
        assert_eq!(watches.namespaces(), 1, "the label was removed: the watches stop");
        assert!(watches.names("plain").is_none(), "not listed yet: the check says nothing there");
        watches.follow_list([&namespace("other", true)]);
        assert_eq!(watches.namespaces(), 1, "a full list lets go of what it does not name");
        assert!(watches.names("plain").is_none() && watches.names("shop").is_none());
    }
}
