//! The manifests of `deploy/` read the way kustomize reads them, without kubectl: YAML documents,
//! the base's resources, and a kustomization's inline patches. Shared by the `deploy/` checks
//! (`tests/cli/deploy/`) and the end-to-end suite (`tests/e2e/`), which registers them.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The repository's `deploy/`.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Every document of a multi-document YAML text, empty ones dropped.
pub fn parse_docs(text: &str, origin: &str) -> Vec<Value> {
    yaml_serde::Deserializer::from_str(text)
        .map(|doc| {
            <Value as serde::Deserialize>::deserialize(doc).unwrap_or_else(|e| panic!("{origin} is not YAML: {e}"))
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The documents of a YAML file.
pub fn read_yaml(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    parse_docs(&text, &path.display().to_string())
}

/// The base's objects, from the files its kustomization lists.
pub fn base_objects() -> Vec<Value> {
    let base = deploy_dir().join("base");
    let kustomization = read_yaml(&base.join("kustomization.yaml")).remove(0);
    let resources = kustomization["resources"].as_array().expect("base kustomization lists resources");
    assert!(kustomization.get("patches").is_none(), "the fallback parser does not apply patches in the base");
    resources.iter().flat_map(|r| read_yaml(&base.join(r.as_str().expect("resource path")))).collect()
}

/// The base with the components of `deploy/components/` named in `components` applied, in order.
pub fn base_with_components(components: &[&str]) -> Vec<Value> {
    let mut objects = base_objects();
    for component in components {
        let path = deploy_dir().join("components").join(component).join("kustomization.yaml");
        let kustomization = read_yaml(&path).remove(0);
        assert_eq!(kustomization["kind"], "Component", "{}", path.display());
        apply_inline_patches(&mut objects, &kustomization);
    }
    objects
}

/// Applies an RFC 6902 patch the way kustomize does.
pub fn apply_json_patch(target: &mut Value, patch: &Value) {
    let patch: json_patch::Patch = serde_json::from_value(patch.clone()).expect("a JSON patch");
    json_patch::patch(target, &patch).expect("the patch applies");
}

/// Applies a kustomization's inline patches the way kustomize does: a list is an RFC 6902 patch of
/// its target, `$patch: delete` deletes the target, and any other map is merged into it.
pub fn apply_inline_patches(objects: &mut Vec<Value>, kustomization: &Value) {
    for patch in kustomization["patches"].as_array().expect("patches") {
        let target = &patch["target"];
        let is_target = |o: &Value| o["kind"] == target["kind"] && o["metadata"]["name"] == target["name"];
        let body = parse_docs(patch["patch"].as_str().expect("an inline patch"), "inline patch").remove(0);
        if body.get("$patch").is_some_and(|p| p == "delete") {
            objects.retain(|o| !is_target(o));
            continue;
        }
        let object = objects.iter_mut().find(|o| is_target(o)).unwrap_or_else(|| panic!("no target {target}"));
        match body {
            Value::Array(_) => apply_json_patch(object, &body),
            merge => json_patch::merge(object, &merge),
        }
    }
}
