//! Which containers the user applies: what tells a sidecar deleted from Git from one podmedic
//! merely moved.
//!
//! A client-side apply deletes a container the user dropped from `containers`, where podmedic's
//! moved copy no longer is, so the object alone still shows podmedic's init container. Two
//! records say what the user applies:
//!
//! - `kubectl.kubernetes.io/last-applied-configuration` (client-side apply, Argo CD's default
//!   sync): the manifest itself, as the object carries it in this request.
//! - `metadata.managedFields` entries with `operation: Apply` (server-side apply: Flux, Argo CD
//!   with `ServerSideApply=true`): the fields each applier sets, containers keyed by
//!   `k:{"name":"..."}`, as the API server computed them for this request.
//!
//! A name in any of them is still applied (server-side apply keeps a field while any manager
//! owns it). When none of them covers the pod template's containers (Helm 3, `kubectl create`,
//! `kubectl edit`), nothing is known and nothing is deleted. `Update` entries are not read: they
//! say which fields a manager last wrote, and keep claiming a container podmedic moved (they are
//! computed before admission). A container only an `Update` manager added, in an object a
//! server-side applier manages, therefore counts as not applied.

use std::collections::BTreeSet;

use serde_json::Value;

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The container names (regular and init) the user applies in the pod spec at `spec_path`, or
/// `None` when no record covers them.
pub(super) fn applied_names(object: &Value, spec_path: &[&str]) -> Option<BTreeSet<String>> {
    let metadata = object.get("metadata");
    let mut known = false;
    let mut names = BTreeSet::new();

    let last_applied = metadata.and_then(|m| m.get("annotations")).and_then(|a| a.get(LAST_APPLIED));
    if let Some(manifest) = last_applied.and_then(Value::as_str).and_then(|t| serde_json::from_str::<Value>(t).ok()) {
        let spec = spec_path.iter().try_fold(&manifest, |v, key| v.get(key));
        if let Some(spec) = spec.filter(|s| s.get("containers").is_some_and(Value::is_array)) {
            known = true;
            for list in ["containers", "initContainers"] {
                let items = spec.get(list).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
                names.extend(items.iter().filter_map(|c| c.get("name")?.as_str()).map(str::to_owned));
            }
        }
    }

    let managed = metadata.and_then(|m| m.get("managedFields")).and_then(Value::as_array);
    for entry in managed.map(Vec::as_slice).unwrap_or_default() {
        let is_apply = entry.get("operation").and_then(Value::as_str) == Some("Apply")
            && entry.get("subresource").and_then(Value::as_str).is_none_or(str::is_empty);
        if !is_apply {
            continue;
        }
        let fields =
            entry.get("fieldsV1").and_then(|f| spec_path.iter().try_fold(f, |v, key| v.get(format!("f:{key}"))));
        let Some(fields) = fields.filter(|f| f.get("f:containers").is_some()) else { continue };
        known = true;
        for list in ["f:containers", "f:initContainers"] {
            let keys = fields.get(list).and_then(Value::as_object).into_iter().flat_map(|m| m.keys());
            names.extend(keys.filter_map(|k| name_in_key(k)));
        }
    }
    known.then_some(names)
}

/// The name in a managedFields list key, `k:{"name":"cloud-sql-proxy"}`.
fn name_in_key(key: &str) -> Option<String> {
    let fields: Value = serde_json::from_str(key.strip_prefix("k:")?).ok()?;
    fields.get("name")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CRONJOB: &[&str] = &["spec", "jobTemplate", "spec", "template", "spec"];

    fn with_last_applied(manifest: Value) -> Value {
        json!({"metadata": {"annotations": {LAST_APPLIED: manifest.to_string()}}})
    }

    fn set(names: &[&str]) -> Option<BTreeSet<String>> {
        Some(names.iter().map(|n| (*n).to_owned()).collect())
    }

    #[test]
    fn a_client_side_apply_names_what_its_manifest_holds() {
        let object = with_last_applied(json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {
            "initContainers": [{"name": "migrate"}], "containers": [{"name": "job"}]}}}}}}));
        assert_eq!(applied_names(&object, CRONJOB), set(&["job", "migrate"]));
        let elsewhere = with_last_applied(json!({"spec": {"schedule": "* * * * *"}}));
        assert_eq!(applied_names(&elsewhere, CRONJOB), None, "a manifest without containers says nothing");
        let broken = json!({"metadata": {"annotations": {LAST_APPLIED: "{not json"}}});
        assert_eq!(applied_names(&broken, CRONJOB), None);
    }

    #[test]
    fn server_side_appliers_name_what_they_own_and_updates_do_not_count() {
        let fields = |names: &[&str]| {
            let keys: serde_json::Map<String, Value> =
                names.iter().map(|n| (format!("k:{{\"name\":\"{n}\"}}"), json!({".": {}}))).collect();
            json!({"f:spec": {"f:jobTemplate": {"f:spec": {"f:template": {"f:spec": {"f:containers": keys}}}}}})
        };
        let object = json!({"metadata": {"managedFields": [
            {"manager": "kubectl", "operation": "Apply", "fieldsV1": fields(&["job"])},
            {"manager": "argocd-controller", "operation": "Apply", "fieldsV1": fields(&["cloud-sql-proxy"])},
            {"manager": "helm", "operation": "Update", "fieldsV1": fields(&["sidecar"])},
            {"manager": "x", "operation": "Apply", "subresource": "status", "fieldsV1": fields(&["status"])},
        ]}});
        assert_eq!(applied_names(&object, CRONJOB), set(&["cloud-sql-proxy", "job"]));
        let updates_only = json!({"metadata": {"managedFields": [
            {"manager": "helm", "operation": "Update", "fieldsV1": fields(&["job"])}]}});
        assert_eq!(applied_names(&updates_only, CRONJOB), None, "Helm and controllers say nothing");
        assert_eq!(name_in_key(r#"k:{"name":"a/b"}"#).as_deref(), Some("a/b"));
        assert_eq!(name_in_key("f:name"), None);
    }
}
