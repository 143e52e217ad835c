//! The AdmissionReview response on the wire.
//!
//! Built here rather than with kube's `AdmissionResponse`, which serializes its patch (`Vec<u8>`)
//! as a JSON array of numbers. Kubernetes defines the field as Go `[]byte`, whose JSON form is
//! base64; the array happens to decode too, but it is three to four times larger. podmedic always
//! allows (it fails open), so the response is the request's uid, `allowed: true`, and optionally a
//! base64 JSON Patch and warnings.

use base64::Engine as _;
use serde::Serialize;

use super::envelope::{API_VERSION, KIND};
use super::error::ReviewError;

/// What podmedic answers to one request, before it is encoded.
#[derive(Debug, Default)]
pub(super) struct Response {
    /// The JSON Patch, base64.
    patch: Option<String>,
    /// Warnings shown to the user; none are sent when empty.
    pub warnings: Vec<String>,
}

impl Response {
    /// Sets the patch (RFC 6902), encoded as the API server expects it.
    pub fn set_patch(&mut self, patch: &json_patch::Patch) -> Result<(), ReviewError> {
        let json = serde_json::to_vec(patch).map_err(|e| ReviewError::Encode(e.to_string()))?;
        self.patch = Some(base64::engine::general_purpose::STANDARD.encode(json));
        Ok(())
    }

    /// The AdmissionReview answering the request with this `uid`, as JSON.
    pub fn encode(&self, uid: &str) -> Result<Vec<u8>, ReviewError> {
        let wire = WireReview {
            api_version: API_VERSION,
            kind: KIND,
            response: WireResponse {
                uid,
                allowed: true,
                patch: self.patch.as_deref(),
                patch_type: self.patch.as_ref().map(|_| "JSONPatch"),
                warnings: &self.warnings,
            },
        };
        serde_json::to_vec(&wire).map_err(|e| ReviewError::Encode(e.to_string()))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireReview<'r> {
    api_version: &'static str,
    kind: &'static str,
    response: WireResponse<'r>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse<'r> {
    uid: &'r str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'r [String],
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn decoded(response: &Response) -> Value {
        serde_json::from_slice(&response.encode("7b3c").unwrap()).unwrap()
    }

    #[test]
    fn an_unchanged_object_is_allowed_with_the_uid_and_nothing_else() {
        assert_eq!(
            decoded(&Response::default()),
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                   "response": {"uid": "7b3c", "allowed": true}})
        );
    }

    #[test]
    fn the_patch_is_base64_json_patch_with_its_type() {
        let patch: json_patch::Patch =
            serde_json::from_value(json!([{"op": "add", "path": "/metadata/labels", "value": {}}])).unwrap();
        let mut response = Response { warnings: vec!["careful".into()], ..Response::default() };
        response.set_patch(&patch).unwrap();
        let value = decoded(&response);
        assert_eq!(value["response"]["patchType"], "JSONPatch");
        assert_eq!(value["response"]["warnings"], json!(["careful"]));
        let bytes = base64::engine::general_purpose::STANDARD.decode(value["response"]["patch"].as_str().unwrap());
        let sent: Value = serde_json::from_slice(&bytes.unwrap()).unwrap();
        assert_eq!(sent, json!([{"op": "add", "path": "/metadata/labels", "value": {}}]));
    }
}
