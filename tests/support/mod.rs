//! Shared test support: a real podmedic server on 127.0.0.1:0 with rcgen certificates laid out the
//! way the kubelet mounts a Secret, and a small HTTPS client (hyper + tokio-rustls) that can force
//! HTTP/1.1 or HTTP/2 through ALPN, pick TLS versions and present a client certificate.

#![allow(dead_code)] // each test file uses a different part of this module

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use http_body_util::combinators::BoxBody;
use hyper::StatusCode;
use hyper::body::Bytes;
use serde_json::Value;

mod certs;
mod client;
pub mod process;
mod server;

pub use certs::*;
pub use client::*;
pub use server::*;

/// Generous bound for anything that should happen "soon", so that a bug hangs no test.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Polls until `check` is true; panics after [`PATIENCE`].
pub async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Request bodies of the test client.
pub type TestBody = BoxBody<Bytes, Infallible>;

/// A fixture from `tests/fixtures/admission-reviews/`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission-reviews").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A fixture from `tests/fixtures/cluster-objects/` (objects as a real API server returns them).
pub fn cluster_object(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cluster-objects").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// AdmissionReviews

/// The AdmissionReview `response` of a 200 reply, checked against the request: same uid,
/// allowed.
pub fn admission_response(request: &[u8], reply: &Reply) -> Value {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.headers["content-type"], "application/json");
    let review = reply.json();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    let request: Value = serde_json::from_slice(request).expect("request JSON");
    let response = review["response"].clone();
    assert_eq!(response["uid"], request["request"]["uid"]);
    assert_eq!(response["allowed"], true);
    response
}

/// The JSON Patch of a response, if any. The API expects a base64 string; a JSON array of bytes
/// (what kube's `AdmissionResponse` emits) is also decoded here so that the object tests check
/// the object, and `the_patch_is_base64` checks the encoding.
pub fn patch_of(response: &Value) -> Option<json_patch::Patch> {
    let bytes = match response.get("patch")? {
        Value::String(b64) => base64::engine::general_purpose::STANDARD.decode(b64).expect("base64 patch"),
        Value::Array(bytes) => bytes.iter().map(|b| b.as_u64().expect("byte") as u8).collect(),
        other => panic!("unexpected patch encoding: {other}"),
    };
    assert_eq!(response["patchType"], "JSONPatch");
    Some(serde_json::from_slice(&bytes).expect("the patch is a JSON Patch"))
}

/// The request's `object` with the response's patch applied (unchanged when there is no patch).
pub fn patched_object(request: &[u8], response: &Value) -> Value {
    let request: Value = serde_json::from_slice(request).expect("request JSON");
    let mut object = request["request"]["object"].clone();
    if let Some(patch) = patch_of(response) {
        json_patch::patch(&mut object, &patch).expect("the patch applies to the object");
    }
    object
}

/// The Pod spec inside a Pod, Job or CronJob.
pub fn pod_spec(object: &Value) -> &Value {
    match object["kind"].as_str() {
        Some("Pod") => &object["spec"],
        Some("Job") | Some("Deployment") => &object["spec"]["template"]["spec"],
        Some("CronJob") => &object["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        other => panic!("no pod spec in a {other:?}"),
    }
}

/// Names of the containers in `list` (`containers` or `initContainers`).
pub fn names(spec: &Value, list: &str) -> Vec<String> {
    spec[list]
        .as_array()
        .map(|cs| cs.iter().map(|c| c["name"].as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default()
}

/// The container named `name` in `list`.
pub fn container<'a>(spec: &'a Value, list: &str, name: &str) -> &'a Value {
    spec[list]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

/// A path inside the temporary directory that does not exist yet.
pub fn temp_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
