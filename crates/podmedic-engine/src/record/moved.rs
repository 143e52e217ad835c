//! `podmedic.io/moved`: podmedic's own record of the containers it moved into `initContainers`,
//! each with a fingerprint of the container as the user wrote it.
//!
//! A Pod's record names the moves without fingerprints: a Pod's containers cannot change after
//! its creation, so nothing would ever be compared with them.
//!
//! The record is what lets a later UPDATE be converged (see `converge`): a GitOps re-apply sends
//! the user's container back into `containers`, and podmedic must know that the restartable init
//! container of the same name is its own work, and whether the user changed the container since.
//! `podmedic.io/changes` is written for people and may be shortened; this annotation is JSON and
//! is never shortened:
//!
//! ```json
//! {"cloud-sql-proxy":{"fingerprint":"fnv1a64:5b8d7e8f0a6c2d41"}}
//! ```
//!
//! The fingerprint is FNV-1a (64 bits) over the container's canonical JSON: keys sorted, no
//! whitespace, values as serde_json writes them. FNV-1a is a published algorithm, so the value
//! is the same in every podmedic release and on every platform (std's `DefaultHasher` is not).
//! It detects change; it is not meant to resist a forger, and the only one a forged collision
//! could mislead is the author of the manifest.

use std::collections::BTreeMap;
use std::hash::Hasher as _;

use serde_json::{Map, Value};

use crate::annotations::MOVED_ANNOTATION;
use crate::object::Object;
use crate::patch::PatchBuilder;
use crate::sidecars::Selection;
use crate::target::{Holder, PodTarget};

/// The prefix naming the fingerprint's algorithm, so that another can follow without ambiguity.
const FINGERPRINT_PREFIX: &str = "fnv1a64:";

/// The containers podmedic moved, by name, each with the fingerprint of the user's container
/// when it is known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MovedRecord {
    entries: BTreeMap<String, Option<String>>,
}

impl MovedRecord {
    /// Reads the annotation's value. Entries podmedic cannot read still count as moved, without a
    /// fingerprint; text that is not a JSON object is an error.
    pub fn parse(text: &str) -> Result<MovedRecord, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("{MOVED_ANNOTATION} is not JSON: {e}"))?;
        let Value::Object(map) = value else {
            return Err(format!("{MOVED_ANNOTATION} is not a JSON object"));
        };
        let entries = map
            .into_iter()
            .map(|(name, entry)| {
                let fingerprint = entry.get("fingerprint").and_then(Value::as_str).map(str::to_owned);
                (name, fingerprint)
            })
            .collect();
        Ok(MovedRecord { entries })
    }

    /// The record in an object's or template's annotation, if there is one podmedic can read.
    pub fn from_annotation(text: Option<&str>) -> MovedRecord {
        text.and_then(|t| MovedRecord::parse(t).ok()).unwrap_or_default()
    }

    /// The annotation's value: a JSON object, names sorted.
    pub fn to_json(&self) -> String {
        let map: Map<String, Value> = self
            .entries
            .iter()
            .map(|(name, fingerprint)| {
                let mut entry = Map::new();
                if let Some(f) = fingerprint {
                    entry.insert("fingerprint".into(), Value::String(f.clone()));
                }
                (name.clone(), Value::Object(entry))
            })
            .collect();
        Value::Object(map).to_string()
    }

    /// Whether podmedic recorded moving `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The recorded fingerprint of the user's `name`, if it was recorded.
    pub fn fingerprint(&self, name: &str) -> Option<&str> {
        self.entries.get(name).and_then(Option::as_deref)
    }

    /// Records that `name` was moved, with its fingerprint when known.
    pub fn insert(&mut self, name: &str, fingerprint: Option<String>) {
        self.entries.insert(name.to_owned(), fingerprint);
    }

    /// Forgets `name`; true when it was recorded.
    pub fn remove(&mut self, name: &str) -> bool {
        self.entries.remove(name).is_some()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The fingerprint of a container's JSON: `fnv1a64:` and 16 hex digits.
pub fn fingerprint(container: &Value) -> String {
    let mut canonical = String::new();
    write_canonical(container, &mut canonical);
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(canonical.as_bytes());
    format!("{FINGERPRINT_PREFIX}{:016x}", hasher.finish())
}

/// `value` as JSON with every object's keys sorted and no whitespace: the same text for the same
/// value whatever order the keys arrived in.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Adds the containers this plan moved to the pod (template)'s record, with fingerprints in
/// templates. Runs after the changes were recorded, so the annotations map exists.
pub(crate) fn record_moves(
    object: &Object<'_>,
    target: &PodTarget<'_>,
    selection: &Selection<'_>,
    patch: &mut PatchBuilder,
) {
    if selection.moved.is_empty() {
        return;
    }
    let previous = target.pod_meta.and_then(|m| m.annotation(MOVED_ANNOTATION));
    let mut record = MovedRecord::from_annotation(previous);
    // The containers as received, read again from the raw object: the view keeps only what the
    // rules read, and the fingerprint covers every field. A Pod's containers never change after
    // its CREATE, so there is nothing to compare a fingerprint with later: a Pod's record names
    // the moves only, and the Pods of every Job (the hot path) pay no second read of the body.
    let raw = match target.holder {
        Holder::Pod => None,
        _ => object.source.value_at(&target.spec_loc.child("containers").tokens()),
    };
    let received = raw.as_ref().and_then(Value::as_array);
    for (index, _) in &selection.moved {
        let container = &target.containers()[*index];
        let fingerprint = received.and_then(|list| list.get(*index)).map(fingerprint);
        record.insert(container.name.as_str(), fingerprint);
    }
    patch.set_map_entry(
        &target.pod_meta_loc.child("annotations"),
        true,
        MOVED_ANNOTATION,
        Value::String(record.to_json()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_fingerprint_ignores_key_order_and_nothing_else() {
        let a = json!({"name": "proxy", "image": "gcr.io/p:1", "args": ["--port=5432"], "resources": {}});
        let mut b = Map::new();
        for key in ["resources", "args", "image", "name"] {
            b.insert(key.into(), a[key].clone());
        }
        assert_eq!(fingerprint(&a), fingerprint(&Value::Object(b)));
        let tagged = json!({"name": "proxy", "image": "gcr.io/p:2", "args": ["--port=5432"], "resources": {}});
        assert_ne!(fingerprint(&a), fingerprint(&tagged));
        let reordered_args = json!({"name": "proxy", "image": "gcr.io/p:1", "args": ["x", "--port=5432"]});
        assert_ne!(fingerprint(&a), fingerprint(&reordered_args));
    }

    #[test]
    fn the_fingerprint_is_stable_across_releases() {
        // FNV-1a 64 of the canonical text, fixed: a change here breaks every stored record.
        assert_eq!(fingerprint(&json!({})), "fnv1a64:08f44b07b5901a25");
        assert_eq!(fingerprint(&json!({"name": "a"})), fingerprint(&json!({"name": "a"})));
        let mut hasher = fnv::FnvHasher::default();
        hasher.write(br#"{"image":"i","name":"n"}"#);
        assert_eq!(fingerprint(&json!({"name": "n", "image": "i"})), format!("fnv1a64:{:016x}", hasher.finish()));
    }

    #[test]
    fn the_record_reads_what_it_writes_and_tolerates_what_it_cannot_read() {
        let mut record = MovedRecord::default();
        record.insert("cloud-sql-proxy", Some("fnv1a64:0123456789abcdef".into()));
        record.insert("fluent-bit", None);
        let text = record.to_json();
        assert_eq!(text, r#"{"cloud-sql-proxy":{"fingerprint":"fnv1a64:0123456789abcdef"},"fluent-bit":{}}"#);
        assert_eq!(MovedRecord::parse(&text).unwrap(), record);

        let odd = MovedRecord::parse(r#"{"a": 1, "b": {"fingerprint": 2}, "c": {"fingerprint": "x", "new": true}}"#);
        let odd = odd.unwrap();
        assert!(odd.contains("a") && odd.contains("b") && odd.contains("c"));
        assert_eq!((odd.fingerprint("a"), odd.fingerprint("b"), odd.fingerprint("c")), (None, None, Some("x")));
        assert!(MovedRecord::parse("cloud-sql-proxy").is_err());
        assert!(MovedRecord::parse("[]").is_err());
        assert!(MovedRecord::from_annotation(Some("[]")).is_empty());
    }
}
