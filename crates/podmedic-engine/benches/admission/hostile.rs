//! Hostile AdmissionReviews: what any user allowed to create a Pod in a labelled namespace can send
//! (up to the API server's 3 MiB request limit; annotation values are validated only after
//! mutating admission). Each class is built at a given size, so that the growth tests
//! (`tests/properties/growth.rs`, steps counted at several sizes) and the load harness
//! (`podmedic-load --only hostile`, timed at up to 3 MiB against a benign body of the same size)
//! send the same bodies. Include it beside `bodies.rs` as `mod bodies`.

use serde_json::{Value, json};

use super::bodies::{mesh_pod, review};

/// One class of hostile body.
pub struct Class {
    /// Short name, for tables and test messages.
    pub name: &'static str,
    /// What the body holds.
    pub about: &'static str,
    /// A review of about the given number of bytes (never less than one unit of the class).
    pub build: fn(usize) -> Vec<u8>,
}

/// Every class, in the order of the issue that found them.
pub fn classes() -> Vec<Class> {
    vec![
        Class {
            name: "unknown-sidecar-names",
            about: "podmedic.io/sidecars names tens of thousands of containers that do not exist",
            build: unknown_sidecar_names,
        },
        Class {
            name: "repeated-image-segments",
            about: "an image reference of repeated cloud-sql-connectors/ segments",
            build: repeated_image_segments,
        },
        Class {
            name: "untagged-containers",
            about: "thousands of containers with untagged images",
            build: untagged_containers,
        },
        Class {
            name: "changes-annotation",
            about: "a podmedic.io/changes value of megabytes, on a Pod podmedic changes",
            build: changes_annotation,
        },
        Class {
            name: "catalogue-sidecars",
            about: "thousands of Cloud SQL proxies beside one main container",
            build: catalogue_sidecars,
        },
        Class {
            name: "listed-real-sidecars",
            about: "thousands of containers, every one named in podmedic.io/sidecars",
            build: listed_real_sidecars,
        },
        Class {
            name: "pod-failure-rules",
            about: "a Job with thousands of podFailurePolicy rules without containerName",
            build: pod_failure_rules,
        },
        Class {
            name: "empty-arguments",
            about: "a container whose args are hundreds of thousands of empty strings (3 bytes of JSON each)",
            build: empty_arguments,
        },
    ]
}

/// A benign body of about `bytes`: the Istio-injected Job Pod of the benchmark, grown with
/// environment variables (podmedic moves its log shipper and adds a probe).
pub fn benign(bytes: usize) -> Vec<u8> {
    mesh_pod(bytes)
}

const PROXY: &str = "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1";

/// A Job's Pod (as the Job controller creates it) with these annotations and containers.
fn pod(annotations: Value, containers: Vec<Value>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "nightly-", "namespace": "batch", "annotations": annotations,
                     "labels": {"batch.kubernetes.io/job-name": "nightly"}},
        "spec": {"restartPolicy": "Never", "containers": containers}
    })
}

fn main_and_proxy() -> Vec<Value> {
    vec![
        json!({"name": "main", "image": "registry.example.com/batch/nightly:4.2.0", "args": ["--run-once"]}),
        json!({"name": "cloud-sql-proxy", "image": PROXY, "args": ["--structured-logs", "project:region:db"]}),
    ]
}

fn pod_review(object: Value) -> Vec<u8> {
    review("", "v1", "Pod", "pods", "", object)
}

/// How many units of `unit` bytes fill `bytes` (at least one).
fn units(bytes: usize, unit: usize) -> usize {
    (bytes / unit).max(1)
}

fn unknown_sidecar_names(bytes: usize) -> Vec<u8> {
    let names: Vec<String> = (0..units(bytes, 12)).map(|i| format!("ghost-{i:05}")).collect();
    pod_review(pod(json!({"podmedic.io/sidecars": names.join(",")}), main_and_proxy()))
}

fn repeated_image_segments(bytes: usize) -> Vec<u8> {
    let segments = "cloud-sql-connectors/".repeat(units(bytes, 21));
    let mut containers = main_and_proxy();
    containers.push(json!({"name": "odd", "image": format!("gcr.io/{segments}app:1.0")}));
    pod_review(pod(json!({}), containers))
}

fn untagged_containers(bytes: usize) -> Vec<u8> {
    let mut containers = main_and_proxy();
    containers.extend((0..units(bytes, 40)).map(|i| json!({"name": format!("c-{i:05}"), "image": "busybox"})));
    pod_review(pod(json!({}), containers))
}

fn changes_annotation(bytes: usize) -> Vec<u8> {
    let entries: Vec<String> =
        (0..units(bytes, 70)).map(|i| format!("proxy-{i:05}: moved to initContainers as a native sidecar")).collect();
    pod_review(pod(json!({"podmedic.io/changes": entries.join("; ")}), main_and_proxy()))
}

fn catalogue_sidecars(bytes: usize) -> Vec<u8> {
    let mut containers = vec![json!({"name": "main", "image": "registry.example.com/batch/nightly:4.2.0"})];
    containers.extend((0..units(bytes, 110)).map(|i| json!({"name": format!("proxy-{i:05}"), "image": PROXY})));
    pod_review(pod(json!({}), containers))
}

fn listed_real_sidecars(bytes: usize) -> Vec<u8> {
    let count = units(bytes, 80);
    let names: Vec<String> = (0..count).map(|i| format!("shipper-{i:05}")).collect();
    let mut containers = vec![json!({"name": "main", "image": "registry.example.com/batch/nightly:4.2.0"})];
    containers.extend(names.iter().map(|n| json!({"name": n, "image": "busybox:1.36"})));
    pod_review(pod(json!({"podmedic.io/sidecars": names.join(",")}), containers))
}

fn pod_failure_rules(bytes: usize) -> Vec<u8> {
    let rules: Vec<Value> = (0..units(bytes, 75))
        .map(|i| json!({"action": "FailJob", "onExitCodes": {"operator": "In", "values": [i % 250 + 1]}}))
        .collect();
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "nightly", "namespace": "batch"},
        "spec": {"podFailurePolicy": {"rules": rules},
                 "template": {"spec": {"restartPolicy": "Never", "containers": main_and_proxy()}}}
    });
    review("batch", "v1", "Job", "jobs", "nightly", job)
}

fn empty_arguments(bytes: usize) -> Vec<u8> {
    let mut containers = main_and_proxy();
    containers[0]["args"] = Value::Array(vec![Value::String(String::new()); units(bytes, 3)]);
    pod_review(pod(json!({}), containers))
}
