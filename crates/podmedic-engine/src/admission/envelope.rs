//! The parts of an AdmissionReview request podmedic reads, decoded with the types the API server
//! sends (`admission.k8s.io/v1`). The field names, the required fields and the accepted values
//! match kube's `AdmissionRequest`, so a body is refused (HTTP 400) for the same reasons, with the
//! same messages, as when kube's types decoded it.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::ReviewError;
use crate::mutation::{Context, MutateError, Mutation};
use crate::object::Object;

/// The `apiVersion` of the AdmissionReviews podmedic answers.
pub const API_VERSION: &str = "admission.k8s.io/v1";
/// The `kind` of an AdmissionReview.
pub const KIND: &str = "AdmissionReview";

/// The AdmissionReview; `O` is how the object is held (see [`ReceivedObject`]).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "O: Deserialize<'de>"))]
pub(super) struct ReviewEnvelope<'a, O> {
    #[serde(default, borrow)]
    pub api_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub request: Option<RequestEnvelope<'a, O>>,
}

/// The `request` of an AdmissionReview.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "O: Deserialize<'de>"))]
pub(super) struct RequestEnvelope<'a, O> {
    pub uid: String,
    pub kind: GroupVersionKind,
    /// Not used, but required: a request without it is not one the API server sent.
    #[allow(dead_code)]
    pub resource: GroupVersionResource,
    #[serde(default)]
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    #[serde(default)]
    pub object: Option<O>,
    /// The stored object, on UPDATE: kept as raw JSON, read only to converge an update.
    #[serde(default, borrow)]
    pub old_object: Option<&'a RawValue>,
    #[serde(default)]
    pub dry_run: bool,
}

impl<O: ReceivedObject> RequestEnvelope<'_, O> {
    /// The object's name for logs: `name`, or for a Pod made by a controller (which has only
    /// `generateName` at admission) the prefix followed by `*`.
    pub fn display_name(&self) -> String {
        if !self.name.is_empty() {
            return self.name.clone();
        }
        self.object.as_ref().and_then(ReceivedObject::generate_name).map(|g| format!("{g}*")).unwrap_or_default()
    }
}

/// The kind of the object in a request (`request.kind`).
#[derive(Deserialize)]
pub(super) struct GroupVersionKind {
    pub group: String,
    pub version: String,
    pub kind: String,
}

/// The resource of a request (`request.resource`).
#[derive(Deserialize)]
#[allow(dead_code)] // decoded so that a malformed resource is refused, never read
pub(super) struct GroupVersionResource {
    pub group: String,
    pub version: String,
    pub resource: String,
}

/// What the request does to the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(super) enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    /// The operation as the API server spells it, for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// The object of a request, as the engine receives it.
pub(super) trait ReceivedObject {
    /// `metadata.generateName`, for the logs.
    fn generate_name(&self) -> Option<String>;
    /// Runs the engine.
    fn mutate(&self, ctx: &Context<'_>) -> Result<Mutation, MutateError>;
    /// The object's JSON text, when it was kept (the slow path).
    fn raw(&self) -> Option<&str>;
}

/// Decoded with the envelope, in the same pass (the fast path).
impl ReceivedObject for Object<'_> {
    fn generate_name(&self) -> Option<String> {
        self.metadata.as_ref()?.generate_name.as_ref().map(|g| g.as_str().to_owned())
    }

    fn mutate(&self, ctx: &Context<'_>) -> Result<Mutation, MutateError> {
        Ok(crate::mutate_object(self, ctx))
    }

    fn raw(&self) -> Option<&str> {
        None
    }
}

/// Kept as raw JSON, decoded by the engine itself (the slow path: precise errors).
impl ReceivedObject for &RawValue {
    fn generate_name(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct Meta<'a> {
            #[serde(default, borrow, rename = "generateName")]
            generate_name: Option<Cow<'a, str>>,
        }
        #[derive(Deserialize)]
        struct Obj<'a> {
            #[serde(default, borrow)]
            metadata: Option<Meta<'a>>,
        }
        serde_json::from_str::<Obj<'_>>(self.get()).ok()?.metadata?.generate_name.map(Cow::into_owned)
    }

    fn mutate(&self, ctx: &Context<'_>) -> Result<Mutation, MutateError> {
        crate::mutate_json(self.get(), ctx)
    }

    fn raw(&self) -> Option<&str> {
        Some(self.get())
    }
}

/// Builds a clear decode error, naming the field where decoding failed.
pub(super) fn decode_error(body: &[u8], err: serde_json::Error) -> ReviewError {
    if body.iter().all(u8::is_ascii_whitespace) {
        return ReviewError::Decode("the body is empty".into());
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, ReviewEnvelope<'_, &RawValue>>(&mut de) {
        Err(e) if e.path().to_string() != "." => ReviewError::Decode(format!("at `{}`: {}", e.path(), e.inner())),
        _ => ReviewError::Decode(err.to_string()),
    }
}
