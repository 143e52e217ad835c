//! Reading objects back: the pod spec, containers by list and name, unknown fields, quantities.

use std::collections::BTreeMap;

use podmedic_engine::annotations::{CHANGES_ANNOTATION, MOVED_ANNOTATION};
use serde_json::{Map, Value};

pub(crate) fn pod_spec_pointer(object: &Value) -> &'static str {
    match object["kind"].as_str() {
        Some("Pod") => "/spec",
        Some("CronJob") => "/spec/jobTemplate/spec/template/spec",
        _ => "/spec/template/spec",
    }
}

pub(crate) fn list_of<'v>(spec: &'v Value, key: &str) -> Vec<&'v Map<String, Value>> {
    spec.get(key).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_object).collect()).unwrap_or_default()
}

pub(crate) fn name_of(c: &Map<String, Value>) -> &str {
    c.get("name").and_then(Value::as_str).unwrap_or_default()
}

/// A field a user set: present and not null.
pub(crate) fn set<'v>(c: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    c.get(key).filter(|v| !v.is_null())
}

/// Every `x-` field anywhere in the document, with its value, as a multiset.
pub(crate) fn unknown_multiset(v: &Value, out: &mut BTreeMap<String, usize>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k.starts_with("x-") {
                    *out.entry(format!("{k}={v}")).or_default() += 1;
                }
                unknown_multiset(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| unknown_multiset(v, out)),
        _ => {}
    }
}

/// A quantity's value, parsed independently of the engine (the forms the generator writes).
pub(crate) fn quantity(v: &Value) -> Option<f64> {
    if let Some(n) = v.as_f64() {
        return Some(n);
    }
    let s = v.as_str()?;
    let (number, factor) =
        [("Ki", 1024f64), ("Mi", 1024f64.powi(2)), ("Gi", 1024f64.powi(3)), ("m", 1e-3), ("k", 1e3), ("M", 1e6)]
            .iter()
            .find_map(|(suffix, f)| s.strip_suffix(suffix).map(|n| (n, *f)))
            .unwrap_or((s, 1.0));
    let (mantissa, exponent) = number.split_once('e').unwrap_or((number, "0"));
    Some(mantissa.parse::<f64>().ok()? * 10f64.powi(exponent.parse().ok()?) * factor)
}

/// Strips what podmedic may legitimately change so the rest of the object can be compared.
pub(crate) fn outside_containers(object: &Value) -> Value {
    let mut v = object.clone();
    let spec_ptr = pod_spec_pointer(object);
    if let Some(spec) = v.pointer_mut(spec_ptr).and_then(Value::as_object_mut) {
        spec.remove("containers");
        spec.remove("initContainers");
    }
    let template_meta = spec_ptr.strip_suffix("/spec").map(|t| format!("{t}/metadata")).unwrap_or_default();
    for meta_ptr in ["/metadata", template_meta.as_str()] {
        let Some(meta) = v.pointer_mut(meta_ptr).and_then(Value::as_object_mut) else { continue };
        if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.remove(CHANGES_ANNOTATION);
            annotations.remove(MOVED_ANNOTATION);
        }
        // A missing or null annotations map may become one holding only podmedic's records.
        if meta.get("annotations").is_some_and(|a| a.is_null() || a.as_object().is_some_and(Map::is_empty)) {
            meta.remove("annotations");
        }
    }
    for meta_ptr in [template_meta.as_str(), "/metadata"] {
        let (parent, key) = meta_ptr.rsplit_once('/').unwrap_or_default();
        let Some(parent) = v.pointer_mut(parent).and_then(Value::as_object_mut) else { continue };
        if parent.get(key).is_some_and(|m| m.is_null() || m.as_object().is_some_and(Map::is_empty)) {
            parent.remove(key);
        }
    }
    v
}
