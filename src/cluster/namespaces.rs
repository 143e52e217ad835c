//! The namespace cache: every namespace's podmedic settings, parsed once per change.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podmedic_engine::NamespaceSettings;
use podmedic_engine::annotations::{ENABLED_LABEL, is_podmedic_key, namespace_settings};

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

    /// The settings of `namespace`, if it is known.
    pub fn settings(&self, namespace: &str) -> Option<Arc<NamespaceSettings>> {
        self.read().get(namespace).map(|cached| cached.settings.clone())
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

fn podmedic_annotations(annotations: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    annotations.into_iter().flatten().filter(|(k, _)| is_podmedic_key(k)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Whether the namespace carries `podmedic.io/enabled: "true"` (the webhooks' namespaceSelector).
pub(super) fn is_labelled(ns: &Namespace) -> bool {
    ns.metadata.labels.as_ref().and_then(|l| l.get(ENABLED_LABEL)).is_some_and(|v| v == "true")
}

/// Keeps only what the namespace cache reads (name, podmedic annotations, the opt-in label):
/// namespaces can carry large annotations such as `kubectl.kubernetes.io/last-applied-configuration`.
pub(super) fn strip_namespace(ns: &mut Namespace) {
    let annotations = podmedic_annotations(ns.metadata.annotations.as_ref());
    let enabled = ns.metadata.labels.as_mut().and_then(|l| l.remove_entry(ENABLED_LABEL));
    ns.metadata = ObjectMeta {
        name: ns.metadata.name.take(),
        annotations: (!annotations.is_empty()).then_some(annotations),
        labels: enabled.map(|entry| BTreeMap::from([entry])),
        ..ObjectMeta::default()
    };
    ns.spec = None;
    ns.status = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use podmedic_engine::annotations::{DEFAULT_PROBES_ANNOTATION, NAMESPACE_OPT_OUT_ANNOTATION};

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
        bare.metadata.labels =
            Some(BTreeMap::from([(ENABLED_LABEL.to_owned(), "true".to_owned()), ("team".to_owned(), "b".to_owned())]));
        strip_namespace(&mut bare);
        assert_eq!(bare.metadata.annotations, None);
        assert_eq!(bare.metadata.labels, Some(BTreeMap::from([(ENABLED_LABEL.to_owned(), "true".to_owned())])));
        assert!(is_labelled(&bare) && !is_labelled(&ns));
    }
}
