//! Cost that grows faster than the input: any text (up to 256 bytes) as the unit of a hostile
//! Pod, repeated 8 and 32 times in each place a user controls (an annotation list, an image path,
//! container names and images, the changes record, a shell script, environment variables), must
//! cost the engine at most four times the steps, and a quarter more, for four times the bytes.
//! Steps are counted by the engine itself (`podmedic_engine::work`, the `count-work` feature).
//! See fuzz/README.md; `cargo test` checks the same on fixed classes and generated objects
//! (crates/podmedic-engine/tests/properties/growth.rs).

#![no_main]

use std::sync::{Arc, LazyLock};

use podmedic_engine::admission::{Environment, admit};
use podmedic_engine::{Policy, work};
use serde_json::{Value, json};

static ENVIRONMENT: LazyLock<Environment> = LazyLock::new(|| Environment::standalone(Arc::new(Policy::builtin())));

const PROXY: &str = "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1";

fn review(annotations: Value, containers: Vec<Value>) -> Vec<u8> {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "annotations": annotations},
                     "spec": {"restartPolicy": "Never", "containers": containers}});
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "growth", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "namespace": "batch", "operation": "CREATE", "object": pod}
    }))
    .unwrap_or_default()
}

fn main_and_proxy() -> Vec<Value> {
    vec![json!({"name": "main", "image": "app:1"}), json!({"name": "proxy", "image": PROXY})]
}

/// Each place a unit can be repeated: a review with `unit` there `n` times.
const SHAPES: [(&str, fn(&str, usize) -> Vec<u8>); 6] = [
    ("sidecars annotation", |unit, n| {
        let names: Vec<String> = (0..n).map(|i| format!("{unit}{i}")).collect();
        review(json!({"podmedic.io/sidecars": names.join(",")}), main_and_proxy())
    }),
    ("image path", |unit, n| {
        let mut containers = main_and_proxy();
        containers.push(json!({"name": "odd", "image": format!("gcr.io/{}x", format!("{unit}/").repeat(n))}));
        review(json!({}), containers)
    }),
    ("containers", |unit, n| {
        let mut containers = main_and_proxy();
        containers.extend((0..n).map(|i| json!({"name": format!("c{i}{unit}"), "image": unit})));
        review(json!({}), containers)
    }),
    ("changes record", |unit, n| review(json!({"podmedic.io/changes": format!("{unit}; ").repeat(n)}), main_and_proxy())),
    ("shell script", |unit, n| {
        let mut containers = main_and_proxy();
        containers.push(json!({"name": "sh", "image": "sh:1", "command": ["sh", "-c", format!("{unit}\n").repeat(n)]}));
        review(json!({}), containers)
    }),
    ("environment", |unit, n| {
        let mut containers = main_and_proxy();
        let env: Vec<Value> = (0..n).map(|i| json!({"name": format!("{unit}{i}"), "value": unit})).collect();
        containers[1]["env"] = Value::Array(env);
        review(json!({}), containers)
    }),
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(unit) = std::str::from_utf8(data) else { return };
    if unit.is_empty() || unit.len() > 256 {
        return;
    }
    for (place, shape) in SHAPES {
        let count = |n: usize| {
            let body = shape(unit, n);
            let (_, steps) = work::measure(|| admit(&body, &ENVIRONMENT));
            (body.len(), steps)
        };
        let (small, large) = (count(8), count(32));
        let allowed = (small.1 as f64 * large.0 as f64 / small.0 as f64 * 1.25) as u64 + 2_000;
        assert!(large.1 <= allowed, "{place}: {small:?} then {large:?} (bytes, steps) for unit {unit:?}");
    }
});
