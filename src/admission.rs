//! AdmissionReview in, AdmissionReview out: decode, dispatch by kind and operation, encode.
//!
//! The request envelope is decoded by [`ReviewEnvelope`], a borrowed view of the body. kube's
//! `AdmissionReview<T>` flattens its type meta, which makes serde buffer the whole request (object
//! *and* oldObject) into an intermediate tree before `T` is built; on the path every Pod of the
//! cluster takes, that costs more than the mutation itself.
//!
//! The body is read in one pass: the envelope with `object` decoded straight into the engine's
//! [`view::Object`]. Only when that fails is the body read again with `object` kept as a
//! [`RawValue`] slice: that pass tells a body that is not an AdmissionReview (HTTP 400) from an
//! object the engine cannot read (allowed with a warning), and names the field. Reading the body
//! three times (the envelope skipping over the object to capture it, the engine's view with path
//! tracking, the object again for `generateName`) used to cost more than parsing it into a
//! `serde_json::Value`.
//! The response is built with kube's [`AdmissionResponse`] from a kube [`AdmissionRequest`], so the
//! uid is always echoed and the patch is encoded the way kube does it.
//!
//! podmedic fails open: when the engine cannot handle an object, the object is allowed unchanged
//! with a warning `podmedic skipped this object: <reason>`.

use std::borrow::Cow;
use std::sync::Arc;

use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::{DynamicObject, GroupVersionKind, GroupVersionResource, TypeMeta};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::config::Policy;
use crate::mutate::{self, ChangeKind, Context, MutateError, NamespaceSettings, NativeSidecars, view};

/// Where per-namespace settings come from (a watched namespace cache in a cluster).
pub trait NamespaceLookup: Send + Sync {
    /// The settings of `namespace`, or `None` when the namespace is unknown.
    fn settings(&self, namespace: &str) -> Option<Arc<NamespaceSettings>>;
}

/// No namespace settings: every namespace uses the policy.
#[derive(Debug, Default)]
pub struct NoNamespaceSettings;

impl NamespaceLookup for NoNamespaceSettings {
    fn settings(&self, _namespace: &str) -> Option<Arc<NamespaceSettings>> {
        None
    }
}

/// Supplies the cluster's native-sidecar capability, which may change at run time.
pub trait CapabilitySource: Send + Sync {
    /// The current capability.
    fn native_sidecars(&self) -> Arc<NativeSidecars>;
}

/// A fixed capability (for `--native-sidecars on|off` and for tests).
#[derive(Debug)]
pub struct FixedCapability(pub Arc<NativeSidecars>);

impl CapabilitySource for FixedCapability {
    fn native_sidecars(&self) -> Arc<NativeSidecars> {
        self.0.clone()
    }
}

/// What the admission handler needs besides the request.
#[derive(Clone)]
pub struct Environment {
    /// The policy.
    pub policy: Arc<Policy>,
    /// The cluster's capability.
    pub capability: Arc<dyn CapabilitySource>,
    /// Namespace settings.
    pub namespaces: Arc<dyn NamespaceLookup>,
}

impl Environment {
    /// An environment with no cluster: the given policy, native sidecars available, no namespace settings.
    pub fn standalone(policy: Arc<Policy>) -> Self {
        Environment {
            policy,
            capability: Arc::new(FixedCapability(Arc::new(NativeSidecars::Available))),
            namespaces: Arc::new(NoNamespaceSettings),
        }
    }
}

/// Why a request body is not an AdmissionReview podmedic can answer (HTTP 400).
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// Not JSON, or a field has the wrong type.
    #[error("the body is not a valid AdmissionReview: {0}")]
    Decode(String),
    /// The apiVersion or kind is not `admission.k8s.io/v1` `AdmissionReview`.
    #[error("expected apiVersion admission.k8s.io/v1 and kind AdmissionReview, got {api_version:?} {kind:?}")]
    WrongType {
        /// What the body said.
        api_version: String,
        /// What the body said.
        kind: String,
    },
    /// There is no `request`.
    #[error("the AdmissionReview has no `request`")]
    MissingRequest,
    /// The response could not be encoded (should not happen).
    #[error("cannot encode the response: {0}")]
    Encode(String),
}

impl ReviewError {
    /// Stable label value for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ReviewError::Decode(_) => "decode",
            ReviewError::WrongType { .. } => "wrong_type",
            ReviewError::MissingRequest => "missing_request",
            ReviewError::Encode(_) => "encode",
        }
    }
}

/// What happened to one admission request, for logs and metrics.
#[derive(Clone, Debug, PartialEq, Eq, Copy)]
pub enum Outcome {
    /// A patch was returned.
    Patched,
    /// Allowed unchanged: nothing to fix.
    Unchanged,
    /// Allowed unchanged: kind, operation, dry run or namespace opt-out means podmedic does not act.
    Ignored,
    /// Allowed unchanged because podmedic failed on the object (fail open).
    Skipped,
}

impl Outcome {
    /// Stable label value for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Patched => "patched",
            Outcome::Unchanged => "unchanged",
            Outcome::Ignored => "ignored",
            Outcome::Skipped => "skipped",
        }
    }
}

/// The encoded response plus what the server logs and counts.
#[derive(Debug)]
pub struct Admission {
    /// The AdmissionReview response, JSON.
    pub body: Vec<u8>,
    /// The request's uid.
    pub uid: String,
    /// `Pod`, `Job`, ...
    pub kind: String,
    /// The request's namespace.
    pub namespace: String,
    /// The object's name (or `generateName` followed by `*`).
    pub name: String,
    /// `CREATE`, `UPDATE`, ...
    pub operation: &'static str,
    /// What podmedic did.
    pub outcome: Outcome,
    /// The kinds of change made.
    pub changes: Vec<ChangeKind>,
    /// Number of warnings returned.
    pub warnings: usize,
    /// Why the object was skipped, when `outcome` is `Skipped`: (metric label, message).
    pub skip_reason: Option<(&'static str, String)>,
}

/// The parts of an AdmissionReview podmedic reads; `O` is how the object is held (see
/// [`ReceivedObject`]).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "O: Deserialize<'de>"))]
struct ReviewEnvelope<'a, O> {
    #[serde(default, borrow)]
    api_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    request: Option<RequestEnvelope<O>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "O: Deserialize<'de>"))]
struct RequestEnvelope<O> {
    uid: String,
    kind: GroupVersionKind,
    resource: GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    #[serde(default)]
    object: Option<O>,
    #[serde(default)]
    dry_run: bool,
}

/// The object of a request, as the engine receives it.
trait ReceivedObject {
    /// `metadata.generateName`, for the logs.
    fn generate_name(&self) -> Option<String>;
    /// Runs the engine.
    fn mutate(&self, ctx: &Context<'_>) -> Result<mutate::Mutation, MutateError>;
}

/// Decoded with the envelope, in the same pass (the fast path).
impl ReceivedObject for view::Object<'_> {
    fn generate_name(&self) -> Option<String> {
        self.metadata.as_ref()?.generate_name.as_ref().map(|g| g.as_str().to_owned())
    }

    fn mutate(&self, ctx: &Context<'_>) -> Result<mutate::Mutation, MutateError> {
        Ok(mutate::mutate_view(self, ctx))
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

    fn mutate(&self, ctx: &Context<'_>) -> Result<mutate::Mutation, MutateError> {
        mutate::mutate_json(self.get(), ctx)
    }
}

/// Decodes an AdmissionReview, runs the engine where podmedic acts, and encodes the response.
pub fn admit(body: &[u8], env: &Environment) -> Result<Admission, ReviewError> {
    // One pass over the body. A panic while decoding falls back to the slow path too, whose engine
    // call is guarded (fail open).
    let fast = std::panic::catch_unwind(|| serde_json::from_slice::<ReviewEnvelope<'_, view::Object<'_>>>(body));
    if let Ok(Ok(envelope)) = fast {
        return answer(envelope, env);
    }
    let envelope: ReviewEnvelope<'_, &RawValue> = serde_json::from_slice(body).map_err(|e| decode_error(body, e))?;
    answer(envelope, env)
}

/// Checks the envelope, runs the engine where podmedic acts, and encodes the response.
fn answer<O: ReceivedObject>(envelope: ReviewEnvelope<'_, O>, env: &Environment) -> Result<Admission, ReviewError> {
    let api_version = envelope.api_version.as_deref().unwrap_or_default();
    let kind = envelope.kind.as_deref().unwrap_or_default();
    if api_version != kube::core::admission::META_API_VERSION_V1 || kind != kube::core::admission::META_KIND {
        return Err(ReviewError::WrongType { api_version: api_version.to_owned(), kind: kind.to_owned() });
    }
    let request = envelope.request.ok_or(ReviewError::MissingRequest)?;
    let object_name = object_display_name(&request);

    let kube_request = AdmissionRequest::<DynamicObject> {
        types: TypeMeta { api_version: api_version.to_owned(), kind: kind.to_owned() },
        uid: request.uid,
        kind: request.kind,
        resource: request.resource,
        sub_resource: request.sub_resource,
        request_kind: None,
        request_resource: None,
        request_sub_resource: None,
        name: request.name,
        namespace: request.namespace,
        operation: request.operation,
        user_info: Default::default(),
        object: None,
        old_object: None,
        dry_run: request.dry_run,
        options: None,
    };
    let mut response = AdmissionResponse::from(&kube_request);
    let mut admission = Admission {
        body: Vec::new(),
        uid: kube_request.uid.clone(),
        kind: kube_request.kind.kind.clone(),
        namespace: kube_request.namespace.clone().unwrap_or_default(),
        name: object_name,
        operation: operation_label(&kube_request.operation),
        outcome: Outcome::Ignored,
        changes: Vec::new(),
        warnings: 0,
        skip_reason: None,
    };

    // Taken by value: the decoded object (with a large Pod, most of this request's memory) is
    // dropped once the engine has run, before the response is encoded.
    if let Some(object) = request.object.filter(|_| acts_on(&kube_request)) {
        let namespace = kube_request.namespace.as_deref().and_then(|ns| env.namespaces.settings(ns));
        if !namespace.as_deref().is_some_and(|n| n.opted_out) {
            let capability = env.capability.native_sidecars();
            let ctx = Context { policy: &env.policy, native_sidecars: &capability, namespace: namespace.as_deref() };
            response = respond(response, &object, &ctx, kube_request.dry_run, &mut admission)?;
        }
    }

    admission.body = encode(&response)?;
    Ok(admission)
}

/// Runs the engine on the object and fills in the response.
fn respond(
    mut response: AdmissionResponse,
    object: &impl ReceivedObject,
    ctx: &Context<'_>,
    dry_run: bool,
    admission: &mut Admission,
) -> Result<AdmissionResponse, ReviewError> {
    let mutation = match guarded_mutate(object, ctx) {
        Ok(m) => m,
        Err(err) => {
            let message = err.to_string();
            response.warnings = Some(vec![mutate::shorten_warning(format!("podmedic skipped this object: {message}"))]);
            admission.outcome = Outcome::Skipped;
            admission.warnings = 1;
            admission.skip_reason = Some((err.metric_label(), message));
            return Ok(response);
        }
    };
    let mut warnings = mutation.warnings;
    if dry_run {
        // A dry run is answered unchanged; say what a real request would get.
        if !mutation.changes.is_empty() {
            let summary: Vec<String> = mutation.changes.iter().map(ToString::to_string).collect();
            warnings.insert(
                0,
                mutate::shorten_warning(format!(
                    "podmedic (dry run, not applied) would change: {}",
                    summary.join("; ")
                )),
            );
        }
        admission.outcome = Outcome::Ignored;
    } else if mutation.patch.0.is_empty() {
        admission.outcome = Outcome::Unchanged;
    } else {
        admission.changes = mutation.changes.iter().map(|c| c.kind).collect();
        response = response.with_patch(mutation.patch).map_err(|e| ReviewError::Encode(e.to_string()))?;
        admission.outcome = Outcome::Patched;
    }
    admission.warnings = warnings.len();
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    Ok(response)
}

/// The engine, with a panic in it turned into a skip: a bug in one rule must not deny or drop Pods.
fn guarded_mutate(object: &impl ReceivedObject, ctx: &Context<'_>) -> Result<mutate::Mutation, SkipReason> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| object.mutate(ctx)))
        .map_err(|_| SkipReason::Panic)?
        .map_err(SkipReason::Engine)
}

#[derive(Debug, thiserror::Error)]
enum SkipReason {
    #[error(transparent)]
    Engine(MutateError),
    #[error("internal error (panic in the engine)")]
    Panic,
}

impl SkipReason {
    fn metric_label(&self) -> &'static str {
        match self {
            SkipReason::Engine(e) => e.metric_label(),
            SkipReason::Panic => "engine_panic",
        }
    }
}

/// Which requests podmedic mutates: CREATE of Pods, Jobs and CronJobs, UPDATE of CronJobs.
/// Subresources (status, ephemeralcontainers, binding) are never mutated.
fn acts_on(req: &AdmissionRequest<DynamicObject>) -> bool {
    if req.sub_resource.as_deref().is_some_and(|s| !s.is_empty()) {
        return false;
    }
    let gvk = &req.kind;
    matches!(
        (gvk.group.as_str(), gvk.version.as_str(), gvk.kind.as_str(), &req.operation),
        ("", "v1", "Pod", Operation::Create)
            | ("batch", "v1", "Job", Operation::Create)
            | ("batch", "v1", "CronJob", Operation::Create | Operation::Update)
    )
}

/// The AdmissionReview response on the wire.
///
/// kube's `AdmissionResponse` is what we build; it serializes its patch (`Vec<u8>`) as a JSON array
/// of numbers. Kubernetes defines the field as Go `[]byte`, whose JSON form is base64; the array
/// happens to decode too, but it is three to four times larger. So the envelope is encoded here,
/// from kube's response, with the patch in base64.
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
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<&'r [String]>,
}

fn encode(response: &AdmissionResponse) -> Result<Vec<u8>, ReviewError> {
    use base64::Engine as _;
    let patch = response.patch.as_deref().map(|p| base64::engine::general_purpose::STANDARD.encode(p));
    let wire = WireReview {
        api_version: kube::core::admission::META_API_VERSION_V1,
        kind: kube::core::admission::META_KIND,
        response: WireResponse {
            uid: &response.uid,
            allowed: response.allowed,
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
            warnings: response.warnings.as_deref(),
        },
    };
    serde_json::to_vec(&wire).map_err(|e| ReviewError::Encode(e.to_string()))
}

fn operation_label(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

fn object_display_name<O: ReceivedObject>(req: &RequestEnvelope<O>) -> String {
    if !req.name.is_empty() {
        return req.name.clone();
    }
    // A Pod made by a controller has only generateName; read it from the object for the logs.
    req.object.as_ref().and_then(ReceivedObject::generate_name).map(|g| format!("{g}*")).unwrap_or_default()
}

/// Builds a clear decode error, naming the field where decoding failed.
fn decode_error(body: &[u8], err: serde_json::Error) -> ReviewError {
    if body.iter().all(u8::is_ascii_whitespace) {
        return ReviewError::Decode("the body is empty".into());
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, ReviewEnvelope<'_, &RawValue>>(&mut de) {
        Err(e) if e.path().to_string() != "." => ReviewError::Decode(format!("at `{}`: {}", e.path(), e.inner())),
        _ => ReviewError::Decode(err.to_string()),
    }
}
