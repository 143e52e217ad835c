//! The third reference: the Rust webhook users would write themselves, the way kube-rs's
//! admission example writes it (`examples/admission_controller.rs`): the review decoded into kube's
//! typed `AdmissionReview<DynamicObject>`, `try_into()` an `AdmissionRequest`, the object turned into
//! a `serde_json::Value`, changed, `json_patch::diff` of before and after, `AdmissionResponse::from`
//! the request `.with_patch(…)`, and one INFO line per request. Served by the floors' stack (same
//! rustls configuration, hyper-util, axum), so that the difference is the handler.
//!
//! Its mutation is podmedic's first step without its judgement: a container whose image is a
//! known long-running proxy moves to `initContainers` with `restartPolicy: Always` (no startup
//! probe, no checks, no record). kube is a dependency of this harness only, with its `admission`
//! feature; podmedic itself reads the review with its own borrowed envelope.

use axum::Json;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use serde_json::Value;

/// Images of the long-running proxies the reference moves (a substring match, as such
/// webhooks do).
const SIDECAR_IMAGES: [&str; 3] = ["cloud-sql-proxy", "alloydb-auth-proxy", "fluent-bit"];

/// `POST /mutate`.
pub(crate) async fn mutate(Json(review): Json<AdmissionReview<DynamicObject>>) -> Json<AdmissionReview<DynamicObject>> {
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(request) => request,
        Err(e) => return Json(AdmissionResponse::invalid(e.to_string()).into_review()),
    };
    let mut response = AdmissionResponse::from(&request);
    if let Some(object) = &request.object {
        let name = object.metadata.name.as_deref().or(object.metadata.generate_name.as_deref()).unwrap_or_default();
        response = match patch_for(object) {
            Ok(patch) => match response.clone().with_patch(patch) {
                Ok(patched) => patched,
                Err(e) => response.deny(e.to_string()),
            },
            Err(e) => response.deny(e.to_string()),
        };
        tracing::info!("Accepted: {:?} on {} {}", request.operation, request.kind.kind, name);
    }
    Json(response.into_review())
}

/// The JSON Patch from the object to its mutated copy.
fn patch_for(object: &DynamicObject) -> Result<json_patch::Patch, serde_json::Error> {
    let original = serde_json::to_value(object)?;
    let mut changed = original.clone();
    move_sidecars(&mut changed);
    Ok(json_patch::diff(&original, &changed))
}

/// Moves the known proxies of a Pod to `initContainers` with `restartPolicy: Always`.
fn move_sidecars(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
    let Some(Value::Array(containers)) = spec.get_mut("containers") else { return };
    let is_sidecar = |c: &Value| {
        c.get("image").and_then(Value::as_str).is_some_and(|image| SIDECAR_IMAGES.iter().any(|s| image.contains(s)))
    };
    let (sidecars, rest): (Vec<Value>, Vec<Value>) = containers.drain(..).partition(is_sidecar);
    *containers = rest;
    if sidecars.is_empty() {
        return;
    }
    let init = spec.entry("initContainers").or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(init) = init {
        for mut sidecar in sidecars {
            sidecar["restartPolicy"] = Value::from("Always");
            init.push(sidecar);
        }
    }
}
