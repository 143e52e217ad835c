//! The names of the ConfigMaps, Secrets, PersistentVolumeClaims and ServiceAccounts of the
//! labelled namespaces, for the `references` check (`podmedic serve --watch-references`).
//!
//! Metadata only: each kind is watched through `Api<PartialObjectMeta<K>>`, so the API server sends
//! `metadata` and never a Secret's `data`, and each object is stripped to its name and namespace
//! before it is stored. One watch per kind and namespace, started when a namespace gets the
//! `podmedic.io/enabled: "true"` label and stopped when it loses it or is deleted: the RBAC this
//! needs can be granted per namespace (`deploy/components/reference-checks`). A namespace counts
//! as known only once all four kinds are listed; until then, and when a list is forbidden, the
//! check says nothing there.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use podmedic_engine::cluster::{NamespaceObjects, ReferenceKind};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

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

/// A metadata-only store of one kind in one namespace.
type MetaStore<K> = Store<PartialObjectMeta<K>>;

/// The names of one namespace's objects, as the four watches see them.
pub struct NamespaceNames {
    namespace: String,
    config_maps: MetaStore<ConfigMap>,
    secrets: MetaStore<Secret>,
    claims: MetaStore<PersistentVolumeClaim>,
    service_accounts: MetaStore<ServiceAccount>,
    /// Per kind (in the order of [`ReferenceKind::ALL`]): its first list is in.
    listed: [AtomicBool; 4],
}

impl NamespaceNames {
    /// Empty stores for `namespace`, with their writers.
    fn new(namespace: &str) -> (NamespaceNames, Writers) {
        let (config_maps, cm) = reflector::store();
        let (secrets, s) = reflector::store();
        let (claims, c) = reflector::store();
        let (service_accounts, sa) = reflector::store();
        let names = NamespaceNames {
            namespace: namespace.to_owned(),
            config_maps,
            secrets,
            claims,
            service_accounts,
            listed: Default::default(),
        };
        (names, Writers { cm, s, c, sa })
    }

    /// True once every kind has been listed.
    pub fn is_listed(&self) -> bool {
        self.listed.iter().all(|l| l.load(Ordering::Acquire))
    }

    /// Number of objects known, all kinds together.
    pub fn len(&self) -> usize {
        self.config_maps.len() + self.secrets.len() + self.claims.len() + self.service_accounts.len()
    }

    /// True when no object is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl NamespaceObjects for NamespaceNames {
    fn contains(&self, kind: ReferenceKind, name: &str) -> bool {
        fn has<K: Resource<DynamicType = ()> + Clone>(store: &MetaStore<K>, ns: &str, name: &str) -> bool {
            store.get(&ObjectRef::new(name).within(ns)).is_some()
        }
        let ns = &self.namespace;
        match kind {
            ReferenceKind::ConfigMap => has(&self.config_maps, ns, name),
            ReferenceKind::Secret => has(&self.secrets, ns, name),
            ReferenceKind::PersistentVolumeClaim => has(&self.claims, ns, name),
            ReferenceKind::ServiceAccount => has(&self.service_accounts, ns, name),
        }
    }
}

/// The writers of a [`NamespaceNames`], handed to its watch tasks.
struct Writers {
    cm: reflector::store::Writer<PartialObjectMeta<ConfigMap>>,
    s: reflector::store::Writer<PartialObjectMeta<Secret>>,
    c: reflector::store::Writer<PartialObjectMeta<PersistentVolumeClaim>>,
    sa: reflector::store::Writer<PartialObjectMeta<ServiceAccount>>,
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
        let (names, writers) = NamespaceNames::new(namespace);
        let names = Arc::new(names);
        let tasks = vec![
            tokio::spawn(self.watch(names.clone(), 0, writers.cm)),
            tokio::spawn(self.watch(names.clone(), 1, writers.s)),
            tokio::spawn(self.watch(names.clone(), 2, writers.c)),
            tokio::spawn(self.watch(names.clone(), 3, writers.sa)),
        ];
        tracing::info!(namespace, "watching the names of the namespace's ConfigMaps, Secrets, PVCs, ServiceAccounts");
        watched.insert(namespace.to_owned(), Watched { names, tasks });
    }

    /// Keeps only the namespaces for which `labelled` holds (after a full namespace list).
    pub fn retain(&self, labelled: impl Fn(&str) -> bool) {
        self.lock().retain(|namespace, _| labelled(namespace));
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
        // Each change is one insert, remove or retain: a panic cannot leave the map half-changed.
        self.watched.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One kind's metadata watch in one namespace, into its store.
    fn watch<K>(
        &self,
        names: Arc<NamespaceNames>,
        kind: usize,
        writer: reflector::store::Writer<PartialObjectMeta<K>>,
    ) -> impl Future<Output = ()> + Send + 'static
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
            let events = watcher(api, watcher::Config::default().page_size(500))
                .map_ok(|event| event.modify(strip))
                .default_backoff()
                .reflect(writer);
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => names.listed[kind].store(true, Ordering::Release),
                    Ok(_) => {}
                    Err(error) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            namespace = %names.namespace,
                            kind = ReferenceKind::ALL[kind].kind(),
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

/// Keeps only the name and namespace: the store is a set of names. (Public for the memory harness,
/// `tools/podmedic-load/src/bin/reference-memory.rs`, which measures what the stores cost.)
pub fn strip<K>(object: &mut PartialObjectMeta<K>) {
    object.types = None;
    object.metadata = ObjectMeta {
        name: object.metadata.name.take(),
        namespace: object.metadata.namespace.take(),
        ..ObjectMeta::default()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A metadata-only object as the API server sends it in a `PartialObjectMetadataList`.
    fn meta<K>(name: &str, namespace: &str) -> PartialObjectMeta<K> {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": name, "namespace": namespace, "uid": "6f1c", "resourceVersion": "42",
                         "labels": {"app": "shop"}, "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                         "managedFields": [{"manager": "kubectl", "operation": "Apply"}]}
        }))
        .unwrap()
    }

    #[test]
    fn a_namespace_is_known_once_every_kind_is_listed_and_finds_names_by_kind() {
        let (names, mut writers) = NamespaceNames::new("shop");
        let mut config = meta::<ConfigMap>("app-config", "shop");
        strip(&mut config);
        assert_eq!(
            config.metadata,
            ObjectMeta { name: Some("app-config".into()), namespace: Some("shop".into()), ..ObjectMeta::default() }
        );
        writers.cm.apply_watcher_event(&watcher::Event::Apply(config));
        let mut token = meta::<Secret>("api-token", "shop");
        strip(&mut token);
        writers.s.apply_watcher_event(&watcher::Event::Apply(token));
        assert!(names.contains(ReferenceKind::ConfigMap, "app-config"));
        assert!(!names.contains(ReferenceKind::Secret, "app-config"), "names are per kind");
        assert!(names.contains(ReferenceKind::Secret, "api-token"));
        assert!(!names.contains(ReferenceKind::ServiceAccount, "builder"));
        assert_eq!(names.len(), 2);
        assert!(!names.is_listed());
        for listed in &names.listed {
            listed.store(true, Ordering::Release);
        }
        assert!(names.is_listed());
    }
}
