//! `admission::admit` on AdmissionReviews exactly as a kube-apiserver v1.36 sent them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use base64::Engine as _;
use podmedic_engine::Policy;
use podmedic_engine::admission::{Environment, Outcome, admit};
use serde_json::Value;

fn review(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../../tests/fixtures/admission-reviews/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn env() -> Environment {
    Environment::standalone(Arc::new(Policy::builtin()))
}

/// Admits a review and returns (outcome, response, object after applying the returned patch).
fn answer(name: &str) -> (Outcome, Value, Value) {
    let body = review(name);
    let admission = admit(&body, &env()).unwrap();
    let response: Value = serde_json::from_slice(&admission.body).unwrap();
    let request: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(response["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(response["kind"], "AdmissionReview");
    assert_eq!(response["response"]["uid"], request["request"]["uid"], "uid echoed");
    assert_eq!(response["response"]["allowed"], true, "podmedic never denies");
    let mut object = request["request"]["object"].clone();
    if let Some(patch) = response["response"]["patch"].as_str() {
        assert_eq!(response["response"]["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD.decode(patch).unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut object, &patch).unwrap();
    }
    (admission.outcome, response, object)
}

fn container_names(list: &Value) -> Vec<&str> {
    list.as_array().map(|a| a.iter().map(|c| c["name"].as_str().unwrap()).collect()).unwrap_or_default()
}

#[test]
fn job_controller_pod_with_generate_name_gets_a_native_sidecar() {
    let (outcome, response, pod) = answer("pod-create-by-job-controller.json");
    assert_eq!(outcome, Outcome::Patched);
    assert_eq!(container_names(&pod["spec"]["containers"]), ["export"]);
    assert_eq!(container_names(&pod["spec"]["initContainers"]), ["cloud-sql-proxy"]);
    let proxy = &pod["spec"]["initContainers"][0];
    assert_eq!(proxy["restartPolicy"], "Always");
    // Fields the API server defaulted and fields we do not model survive the move.
    assert_eq!(proxy["terminationMessagePolicy"], "File");
    assert_eq!(proxy["volumeMounts"][0]["mountPath"], "/var/run/secrets/kubernetes.io/serviceaccount");
    assert_eq!(proxy["securityContext"]["runAsNonRoot"], true);
    assert_eq!(proxy["startupProbe"]["httpGet"]["port"], 9090);
    assert_eq!(pod["metadata"]["finalizers"][0], "batch.kubernetes.io/job-tracking");
    assert!(pod["metadata"]["annotations"]["podmedic.io/changes"].is_string());
    assert!(
        response["response"]["warnings"].as_array().is_none_or(|w| w.iter().all(|w| w.as_str().unwrap().len() < 120))
    );
}

#[test]
fn cronjob_create_and_update_and_jobs_are_fixed_in_their_templates() {
    for name in ["cronjob-create.json", "cronjob-update.json"] {
        let (outcome, _, cronjob) = answer(name);
        assert_eq!(outcome, Outcome::Patched, "{name}");
        let spec = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(container_names(&spec["containers"]), ["report"], "{name}");
        assert_eq!(spec["initContainers"][0]["restartPolicy"], "Always", "{name}");
    }
    for name in ["job-create.json", "job-create-from-cronjob.json"] {
        let (outcome, _, job) = answer(name);
        assert_eq!(outcome, Outcome::Patched, "{name}");
        assert_eq!(job["spec"]["template"]["spec"]["initContainers"][0]["restartPolicy"], "Always", "{name}");
    }
}

#[test]
fn pods_of_fixed_jobs_are_left_alone() {
    // The Job was fixed at creation; its Pod then carries the native sidecar already.
    let (_, _, job) = answer("job-create.json");
    let body = review("pod-create-by-job-controller.json");
    let mut request: Value = serde_json::from_slice(&body).unwrap();
    request["request"]["object"]["spec"]["initContainers"] = job["spec"]["template"]["spec"]["initContainers"].clone();
    request["request"]["object"]["spec"]["containers"] = job["spec"]["template"]["spec"]["containers"].clone();
    let admission = admit(&serde_json::to_vec(&request).unwrap(), &env()).unwrap();
    assert_eq!(admission.outcome, Outcome::Unchanged);
}

#[test]
fn deployments_long_running_pods_deletes_and_dry_runs_pass_unchanged() {
    for (name, expected) in [
        ("deployment-create.json", Outcome::Ignored),
        ("pod-create-by-replicaset-controller.json", Outcome::Unchanged),
        ("pod-delete.json", Outcome::Ignored),
        ("pod-create-dry-run.json", Outcome::Ignored),
    ] {
        let (outcome, response, _) = answer(name);
        assert_eq!(outcome, expected, "{name}");
        assert!(response["response"].get("patch").is_none(), "{name}");
    }
}

#[test]
fn unreadable_bodies_are_errors() {
    for body in
        [&b""[..], b"not json", b"[]", b"{}", b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"}"]
    {
        assert!(admit(body, &env()).is_err(), "{}", String::from_utf8_lossy(body));
    }
    let err = admit(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{}}}"#, &env())
        .unwrap_err();
    assert!(err.to_string().contains("request"), "{err}");
}

#[test]
fn malformed_objects_pass_through_with_a_warning() {
    let body = review("pod-create-by-job-controller.json");
    let mut request: Value = serde_json::from_slice(&body).unwrap();
    request["request"]["object"]["spec"]["containers"] = serde_json::json!({"not": "a list"});
    let admission = admit(&serde_json::to_vec(&request).unwrap(), &env()).unwrap();
    assert_eq!(admission.outcome, Outcome::Skipped);
    let response: Value = serde_json::from_slice(&admission.body).unwrap();
    assert_eq!(response["response"]["allowed"], true);
    assert!(response["response"].get("patch").is_none());
    let warning = response["response"]["warnings"][0].as_str().unwrap();
    assert!(warning.starts_with("podmedic skipped this object: "), "{warning}");
}

#[test]
fn controller_made_objects_are_named_by_generate_name_whether_readable_or_not() {
    let body = review("pod-create-by-job-controller.json");
    assert_eq!(admit(&body, &env()).unwrap().name, "db-export-*");
    // An object the engine cannot read is decoded on the slow path, which names it the same way.
    let mut request: Value = serde_json::from_slice(&body).unwrap();
    request["request"]["object"]["spec"]["containers"] = serde_json::json!("not a list");
    let admission = admit(&serde_json::to_vec(&request).unwrap(), &env()).unwrap();
    assert_eq!((admission.outcome, admission.name.as_str()), (Outcome::Skipped, "db-export-*"));
}
