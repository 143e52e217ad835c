//! The AdmissionReview response on the wire.
//!
//! Built here rather than with kube's `AdmissionResponse`, which serializes its patch (`Vec<u8>`)
//! as a JSON array of numbers. Kubernetes defines the field as Go `[]byte`, whose JSON form is
//! base64; the array happens to decode too, but it is three to four times larger. podmedic always
//! allows (it fails open), so the response is the request's uid, `allowed: true`, and optionally a
//! base64 JSON Patch and warnings.

use base64::Engine as _;
use json_patch::PatchOperation;

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
        // Room for the usual operation (a path and a small value) up front, rather than growing from
        // serde_json's 128 bytes in five or six steps.
        let mut json = Vec::with_capacity(256 + 160 * patch.0.len());
        write_patch(&patch.0, &mut json).map_err(|e| ReviewError::Encode(e.to_string()))?;
        self.patch = Some(base64::engine::general_purpose::STANDARD.encode(json));
        Ok(())
    }

    /// The AdmissionReview answering the request with this `uid`, as JSON:
    /// `{"apiVersion":…,"kind":…,"response":{"uid":…,"allowed":true[,"patch":…,"patchType":"JSONPatch"][,"warnings":[…]]}}`.
    ///
    /// Written piece by piece rather than through a derived `Serialize`: the patch is base64, which
    /// needs no escaping, and a serializer would scan its every byte for characters to escape (on a
    /// small Pod that scan cost as much as TLS and HTTP together).
    pub fn encode(&self, uid: &str) -> Result<Vec<u8>, ReviewError> {
        let patch = self.patch.as_deref().unwrap_or_default();
        let mut out =
            Vec::with_capacity(128 + uid.len() + patch.len() + self.warnings.iter().map(String::len).sum::<usize>());
        let encode_error = |e: serde_json::Error| ReviewError::Encode(e.to_string());
        out.extend_from_slice(b"{\"apiVersion\":");
        serde_json::to_writer(&mut out, API_VERSION).map_err(encode_error)?;
        out.extend_from_slice(b",\"kind\":");
        serde_json::to_writer(&mut out, KIND).map_err(encode_error)?;
        out.extend_from_slice(b",\"response\":{\"uid\":");
        serde_json::to_writer(&mut out, uid).map_err(encode_error)?;
        out.extend_from_slice(b",\"allowed\":true");
        if self.patch.is_some() {
            // The standard base64 alphabet (A-Z, a-z, 0-9, +, /, =) is JSON string text as it is.
            out.extend_from_slice(b",\"patch\":\"");
            out.extend_from_slice(patch.as_bytes());
            out.extend_from_slice(b"\",\"patchType\":\"JSONPatch\"");
        }
        if !self.warnings.is_empty() {
            out.extend_from_slice(b",\"warnings\":");
            serde_json::to_writer(&mut out, &self.warnings).map_err(encode_error)?;
        }
        out.extend_from_slice(b"}}");
        Ok(out)
    }
}

/// Writes `ops` as json-patch's `Serialize` does, byte for byte (`{"op":"move","from":…,"path":…}`,
/// fields in the same order, compact), with the operation names and field names written as the
/// constants they are: serde's internally tagged enum escapes and copies each of them one by one,
/// which was half the cost of encoding a small Pod's patch. Pointers and values still go through
/// serde_json, which escapes them.
fn write_patch(ops: &[PatchOperation], out: &mut Vec<u8>) -> serde_json::Result<()> {
    out.push(b'[');
    for (i, op) in ops.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let (name, from, path, value) = match op {
            PatchOperation::Add(op) => ("add", None, &op.path, Some(&op.value)),
            PatchOperation::Remove(op) => ("remove", None, &op.path, None),
            PatchOperation::Replace(op) => ("replace", None, &op.path, Some(&op.value)),
            PatchOperation::Move(op) => ("move", Some(&op.from), &op.path, None),
            PatchOperation::Copy(op) => ("copy", Some(&op.from), &op.path, None),
            PatchOperation::Test(op) => ("test", None, &op.path, Some(&op.value)),
        };
        out.extend_from_slice(b"{\"op\":\"");
        out.extend_from_slice(name.as_bytes());
        out.push(b'"');
        if let Some(from) = from {
            out.extend_from_slice(b",\"from\":");
            serde_json::to_writer(&mut *out, from.as_str())?;
        }
        out.extend_from_slice(b",\"path\":");
        serde_json::to_writer(&mut *out, path.as_str())?;
        if let Some(value) = value {
            out.extend_from_slice(b",\"value\":");
            serde_json::to_writer(&mut *out, value)?;
        }
        out.push(b'}');
    }
    out.push(b']');
    Ok(())
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
    fn the_answer_is_compact_json_with_its_fields_in_a_fixed_order() {
        let patch: json_patch::Patch =
            serde_json::from_value(json!([{"op": "remove", "path": "/spec/containers/1"}])).unwrap();
        let mut response = Response { warnings: vec!["a \"quoted\" word\n".into()], ..Response::default() };
        response.set_patch(&patch).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(br#"[{"op":"remove","path":"/spec/containers/1"}]"#);
        let expected = format!(
            r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{{"uid":"7b\"3c","allowed":true,"patch":"{b64}","patchType":"JSONPatch","warnings":["a \"quoted\" word\n"]}}}}"#
        );
        assert_eq!(String::from_utf8(response.encode("7b\"3c").unwrap()).unwrap(), expected);
    }

    #[test]
    fn the_patch_is_written_exactly_as_json_patch_serializes_it() {
        // Every operation, and pointers and values that need escaping (quotes, backslashes, control
        // characters, `~0`/`~1`, non-ASCII) or none (the empty pointer, the whole document).
        let ops = json!([
            {"op": "add", "path": "/metadata/annotations/podmedic.io~1changes", "value": "a \"b\"\\c\n\u{1}é"},
            {"op": "remove", "path": "/spec/containers/1"},
            {"op": "replace", "path": "", "value": {"z": [1, 2.5, null, true], "a": {"\"": "~0"}}},
            {"op": "move", "from": "/spec/containers/0", "path": "/spec/initContainers/-"},
            {"op": "copy", "from": "/a~0b/\"q\"", "path": "/c\\d"},
            {"op": "test", "path": "/x", "value": 0},
        ]);
        let patch: json_patch::Patch = serde_json::from_value(ops).unwrap();
        let mut written = Vec::new();
        write_patch(&patch.0, &mut written).unwrap();
        assert_eq!(String::from_utf8(written).unwrap(), serde_json::to_string(&patch).unwrap());
        let mut empty = Vec::new();
        write_patch(&[], &mut empty).unwrap();
        assert_eq!(empty, b"[]");
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
