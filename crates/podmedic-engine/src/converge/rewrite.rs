//! The mechanics of a convergence on parsed JSON: the `podmedic.io/changes` text of moves that
//! were undone, the position of a re-placed sidecar, and the patch from the object as received
//! to the converged one.

use std::collections::{BTreeMap, BTreeSet};

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
use serde_json::Value;

use super::verdict::name_of;

/// The segments of a `podmedic.io/changes` text (`container: what; container: what`).
fn segments(text: &str) -> impl Iterator<Item = &str> {
    text.split("; ").map(str::trim).filter(|s| !s.is_empty())
}

/// The containers a `podmedic.io/changes` text says podmedic moved (every release wrote
/// `<name>: moved to initContainers ...`).
pub(super) fn said_moved(text: &str) -> impl Iterator<Item = &str> {
    segments(text).filter_map(|s| {
        let (name, what) = s.split_once(": ")?;
        what.starts_with("moved to initContainers").then_some(name)
    })
}

/// The text without the segments about `names`; `None` when nothing is left.
pub(super) fn without_segments_of(text: &str, names: &BTreeSet<&str>) -> Option<String> {
    let kept: Vec<&str> =
        segments(text).filter(|s| s.split_once(": ").is_none_or(|(name, _)| !names.contains(name))).collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// Puts each re-placed sidecar back where its init container stood: right after the init
/// container that preceded it (`anchors`: name, and the preceding name or `None` for the front).
/// Entries the plan did not move again are not in `init`; the others keep the plan's order.
pub(super) fn reposition(init: &mut Vec<Value>, anchors: &[(&str, Option<&str>)]) {
    if anchors.is_empty() {
        return;
    }
    let wanted: BTreeMap<&str, Option<&str>> = anchors.iter().copied().collect();
    let (mut moved, rest): (Vec<Value>, Vec<Value>) =
        std::mem::take(init).into_iter().partition(|c| name_of(c).is_some_and(|n| wanted.contains_key(n)));
    // Moved entries in their original order, grouped by the entry they follow.
    let order: BTreeMap<&str, usize> = anchors.iter().enumerate().map(|(i, (n, _))| (*n, i)).collect();
    moved.sort_by_key(|c| name_of(c).and_then(|n| order.get(n)).copied());
    let mut after: BTreeMap<Option<String>, Vec<Value>> = BTreeMap::new();
    for entry in moved {
        let anchor = name_of(&entry).and_then(|n| wanted.get(n).copied().flatten()).map(str::to_owned);
        after.entry(anchor).or_default().push(entry);
    }
    let mut out = after.remove(&None).unwrap_or_default();
    for entry in rest {
        let followers = name_of(&entry).and_then(|n| after.remove(&Some(n.to_owned())));
        out.push(entry);
        out.extend(followers.into_iter().flatten());
    }
    // An anchor that is gone: the entry stays at the end, where the plan put it.
    out.extend(after.into_values().flatten());
    *init = out;
}

/// A JSON Patch that turns `from` into `to`: members added, removed or replaced, and arrays (the
/// container lists) replaced whole, so that each operation reads as one decision.
pub(super) fn patch_between(from: &Value, to: &Value) -> Patch {
    let mut ops = Vec::new();
    diff(from, to, &mut PointerBuf::new(), &mut ops);
    Patch(ops)
}

fn diff(from: &Value, to: &Value, at: &mut PointerBuf, ops: &mut Vec<PatchOperation>) {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in b {
                at.push_back(key.as_str());
                match a.get(key) {
                    Some(old) => diff(old, value, at, ops),
                    None => ops.push(PatchOperation::Add(AddOperation { path: at.clone(), value: value.clone() })),
                }
                at.pop_back();
            }
            for key in a.keys().filter(|k| !b.contains_key(*k)) {
                at.push_back(key.as_str());
                ops.push(PatchOperation::Remove(RemoveOperation { path: at.clone() }));
                at.pop_back();
            }
        }
        _ if from == to => {}
        _ => ops.push(PatchOperation::Replace(ReplaceOperation { path: at.clone(), value: to.clone() })),
    }
}

/// The value at `path` (object keys).
pub(super) fn at<'v>(value: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

/// The value at `path`, mutably.
pub(super) fn at_mut<'v>(value: &'v mut Value, path: &[&str]) -> Option<&'v mut Value> {
    path.iter().try_fold(value, |v, key| v.get_mut(key))
}

/// The array at `path`, or an empty slice.
pub(super) fn list_at<'v>(value: &'v Value, path: &[&str]) -> &'v [Value] {
    at(value, path).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

/// The string annotation `key` of the metadata at `meta`.
pub(super) fn annotation<'v>(value: &'v Value, meta: &[&str], key: &str) -> Option<&'v str> {
    at(value, meta)?.get("annotations")?.get(key)?.as_str()
}

/// Sets (or, with `None`, removes) the annotation `key` of the metadata at `meta`; an annotations
/// map left empty is removed too.
pub(super) fn set_annotation(value: &mut Value, meta: &[&str], key: &str, text: Option<String>) {
    let Some(Value::Object(metadata)) = at_mut(value, meta) else { return };
    match text {
        Some(text) => {
            let annotations = metadata.entry("annotations").or_insert_with(|| Value::Object(Default::default()));
            if let Value::Object(map) = annotations {
                map.insert(key.to_owned(), Value::String(text));
            }
        }
        None => {
            if let Some(Value::Object(map)) = metadata.get_mut("annotations") {
                map.remove(key);
                if map.is_empty() {
                    metadata.remove("annotations");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const OLD_TEXT: &str = "cloud-sql-proxy: moved to initContainers as a native sidecar (restartPolicy: Always); \
        cloud-sql-proxy: health check enabled (--health-check --http-address=0.0.0.0); \
        job: default requests cpu=100m; fluent-bit: moved to initContainers as a native sidecar";

    #[test]
    fn the_changes_text_names_the_moves_and_loses_only_the_undone_ones() {
        assert_eq!(said_moved(OLD_TEXT).collect::<Vec<_>>(), ["cloud-sql-proxy", "fluent-bit"]);
        let gone = BTreeSet::from(["cloud-sql-proxy"]);
        assert_eq!(
            without_segments_of(OLD_TEXT, &gone).as_deref(),
            Some("job: default requests cpu=100m; fluent-bit: moved to initContainers as a native sidecar")
        );
        let all = BTreeSet::from(["cloud-sql-proxy", "job", "fluent-bit"]);
        assert_eq!(without_segments_of(OLD_TEXT, &all), None);
    }

    #[test]
    fn a_replaced_sidecar_returns_to_its_place() {
        let names = |list: &[Value]| list.iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
        let c = |n: &str| json!({"name": n});
        // istio-proxy and migrate stayed; cloud-sql-proxy (after migrate) and vault (first) were
        // moved again by the plan, which appended them.
        let mut init = vec![c("istio-proxy"), c("migrate"), c("new-sidecar"), c("cloud-sql-proxy"), c("vault")];
        reposition(&mut init, &[("vault", None), ("cloud-sql-proxy", Some("migrate"))]);
        assert_eq!(names(&init), ["vault", "istio-proxy", "migrate", "cloud-sql-proxy", "new-sidecar"]);
        let mut untouched = vec![c("a"), c("b")];
        reposition(&mut untouched, &[("gone", Some("a"))]);
        assert_eq!(names(&untouched), ["a", "b"]);
    }

    #[test]
    fn the_patch_turns_one_into_the_other_and_replaces_lists_whole() {
        let from = json!({"metadata": {"annotations": {"a/b": "1", "gone": "x"}, "managedFields": [{"m": 1}]},
                          "spec": {"containers": [{"name": "job"}, {"name": "proxy"}], "keep": 1}});
        let to = json!({"metadata": {"annotations": {"a/b": "2", "new": "y"}, "managedFields": [{"m": 1}]},
                        "spec": {"containers": [{"name": "job"}], "keep": 1}});
        let patch = patch_between(&from, &to);
        let mut result = from.clone();
        json_patch::patch(&mut result, &patch).unwrap();
        assert_eq!(result, to);
        let paths: Vec<String> = serde_json::to_value(&patch)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|op| format!("{} {}", op["op"].as_str().unwrap(), op["path"].as_str().unwrap()))
            .collect();
        assert_eq!(
            paths,
            [
                "replace /metadata/annotations/a~1b",
                "add /metadata/annotations/new",
                "remove /metadata/annotations/gone",
                "replace /spec/containers",
            ]
        );
        assert!(patch_between(&from, &from).0.is_empty());
    }

    #[test]
    fn annotations_are_set_and_removed_with_an_empty_map() {
        let mut v = json!({"metadata": {}});
        set_annotation(&mut v, &["metadata"], "podmedic.io/moved", Some("{}".into()));
        assert_eq!(v, json!({"metadata": {"annotations": {"podmedic.io/moved": "{}"}}}));
        set_annotation(&mut v, &["metadata"], "podmedic.io/moved", None);
        assert_eq!(v, json!({"metadata": {}}));
    }
}
