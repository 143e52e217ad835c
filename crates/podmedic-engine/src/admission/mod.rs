//! AdmissionReview in, AdmissionReview out: decode, dispatch by kind and operation, encode.
//!
//! The request envelope is decoded by `envelope.rs`, a borrowed view of the body. kube's
//! `AdmissionReview<T>` flattens its type meta, which makes serde buffer the whole request (object
//! *and* oldObject) into an intermediate tree before `T` is built; on the path every Pod of the
//! cluster takes, that costs more than the mutation itself. The engine therefore reads the
//! envelope itself and needs no Kubernetes client library.
//!
//! The body is read in one pass: the envelope with `object` decoded straight into the engine's
//! [`Object`] view. Only when that fails is the body read again with `object` kept as a
//! [`RawValue`] slice: that pass tells a body that is not an AdmissionReview (HTTP 400) from an
//! object the engine cannot read (allowed with a warning), and names the field. Reading the body
//! three times (the envelope skipping over the object to capture it, the engine's view with path
//! tracking, the object again for `generateName`) used to cost more than parsing it into a
//! `serde_json::Value`.
//!
//! The response is built from the request (see `response.rs`), so the uid is always echoed.
//!
//! podmedic fails open: when the engine cannot handle an object, the object is allowed unchanged
//! with a warning `podmedic skipped this object: <reason>`.

mod envelope;
mod error;
mod response;

use std::sync::Arc;

use serde_json::value::RawValue;

use crate::annotations::NamespaceSettings;
use crate::kubernetes::NativeSidecars;
use crate::mutation::{ChangeKind, Context, MutateError, Mutation};
use crate::object::Object;
use crate::policy::Policy;
use crate::warnings::shorten as shorten_warning;
pub use envelope::{API_VERSION, KIND};
use envelope::{Operation, ReceivedObject, RequestEnvelope, ReviewEnvelope, decode_error};
pub use error::ReviewError;
use response::Response;

/// What podmedic knows of one namespace's settings.
#[derive(Clone, Debug, PartialEq)]
pub enum NamespaceState {
    /// The namespace's settings, read from its annotations.
    Known(Arc<NamespaceSettings>),
    /// No cluster is watched (`podmedic serve` outside a cluster, tests): the policy applies.
    Unwatched,
    /// A cluster is watched, but this namespace is not known yet (the first list has not arrived,
    /// the namespace was created a moment ago, or the API server cannot be reached). It may have
    /// opted out, so podmedic changes nothing.
    Unknown,
}

/// Where per-namespace settings come from (a watched namespace cache in a cluster).
pub trait NamespaceLookup: Send + Sync {
    /// What is known of `namespace`.
    fn settings(&self, namespace: &str) -> NamespaceState;
}

/// No namespace settings: every namespace uses the policy.
#[derive(Debug, Default)]
pub struct NoNamespaceSettings;

impl NamespaceLookup for NoNamespaceSettings {
    fn settings(&self, _namespace: &str) -> NamespaceState {
        NamespaceState::Unwatched
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

/// Decodes an AdmissionReview, runs the engine where podmedic acts, and encodes the response.
pub fn admit(body: &[u8], env: &Environment) -> Result<Admission, ReviewError> {
    // One pass over the body. A panic while decoding falls back to the slow path too, whose engine
    // call is guarded (fail open).
    let fast = std::panic::catch_unwind(|| {
        crate::object::with_item_count(|| serde_json::from_slice::<ReviewEnvelope<'_, Object<'_>>>(body))
    });
    if let Ok(Ok(envelope)) = fast {
        return answer(envelope, env);
    }
    let envelope: ReviewEnvelope<'_, &RawValue> = serde_json::from_slice(body).map_err(|e| decode_error(body, e))?;
    answer(envelope, env)
}

/// Answers a request without running the engine: the object is allowed unchanged, with the warning
/// `podmedic skipped this object: <message>`, and `reason` as the skip's metric label. For when
/// podmedic cannot look at the object in time; only the envelope is decoded (for the uid), and a
/// request podmedic would not act on is answered as ignored, without the warning.
pub fn allow_unchanged(body: &[u8], reason: &'static str, message: &str) -> Result<Admission, ReviewError> {
    let envelope: ReviewEnvelope<'_, &RawValue> = serde_json::from_slice(body).map_err(|e| decode_error(body, e))?;
    let (request, mut admission) = accept(envelope)?;
    let mut response = Response::default();
    if request.object.is_some() && acts_on(&request) {
        skip(&mut response, &mut admission, reason, message.to_owned());
    }
    admission.body = response.encode(&admission.uid)?;
    Ok(admission)
}

/// Checks the envelope and starts the record of the request (ignored until the engine says more).
fn accept<O: ReceivedObject>(envelope: ReviewEnvelope<'_, O>) -> Result<(RequestEnvelope<O>, Admission), ReviewError> {
    let api_version = envelope.api_version.as_deref().unwrap_or_default();
    let kind = envelope.kind.as_deref().unwrap_or_default();
    if api_version != API_VERSION || kind != KIND {
        return Err(ReviewError::WrongType { api_version: api_version.to_owned(), kind: kind.to_owned() });
    }
    let request = envelope.request.ok_or(ReviewError::MissingRequest)?;
    let admission = Admission {
        body: Vec::new(),
        name: request.display_name(),
        uid: request.uid.clone(),
        kind: request.kind.kind.clone(),
        namespace: request.namespace.clone().unwrap_or_default(),
        operation: request.operation.label(),
        outcome: Outcome::Ignored,
        changes: Vec::new(),
        warnings: 0,
        skip_reason: None,
    };
    Ok((request, admission))
}

/// Checks the envelope, runs the engine where podmedic acts, and encodes the response.
fn answer<O: ReceivedObject>(envelope: ReviewEnvelope<'_, O>, env: &Environment) -> Result<Admission, ReviewError> {
    let (mut request, mut admission) = accept(envelope)?;
    let acts = acts_on(&request);
    let mut response = Response::default();

    // Taken by value: the decoded object (with a large Pod, most of this request's memory) is
    // dropped once the engine has run, before the response is encoded.
    if let Some(object) = request.object.take().filter(|_| acts) {
        let state = request.namespace.as_deref().map_or(NamespaceState::Unwatched, |ns| env.namespaces.settings(ns));
        let namespace = match state {
            NamespaceState::Known(settings) => Some(settings),
            NamespaceState::Unwatched => None,
            NamespaceState::Unknown => {
                response.warnings = vec![shorten_warning(format!(
                    "podmedic does not know the settings of namespace {} yet, so it changed nothing",
                    admission.namespace
                ))];
                admission.warnings = 1;
                admission.body = response.encode(&admission.uid)?;
                return Ok(admission);
            }
        };
        if !namespace.as_deref().is_some_and(|n| n.opted_out) {
            let capability = env.capability.native_sidecars();
            let ctx = Context { policy: &env.policy, native_sidecars: &capability, namespace: namespace.as_deref() };
            respond(&mut response, &object, &ctx, request.dry_run, &mut admission)?;
        }
    }

    admission.body = response.encode(&admission.uid)?;
    Ok(admission)
}

/// Marks the request as skipped (allowed unchanged) and says why in a warning.
fn skip(response: &mut Response, admission: &mut Admission, reason: &'static str, message: String) {
    response.warnings = vec![shorten_warning(format!("podmedic skipped this object: {message}"))];
    admission.outcome = Outcome::Skipped;
    admission.warnings = 1;
    admission.skip_reason = Some((reason, message));
}

/// Runs the engine on the object and fills in the response.
fn respond(
    response: &mut Response,
    object: &impl ReceivedObject,
    ctx: &Context<'_>,
    dry_run: bool,
    admission: &mut Admission,
) -> Result<(), ReviewError> {
    let mutation = match guarded_mutate(object, ctx) {
        Ok(m) => m,
        Err(err) => {
            skip(response, admission, err.metric_label(), err.to_string());
            return Ok(());
        }
    };
    let mut warnings = mutation.warnings;
    if dry_run {
        // A dry run is answered unchanged; say what a real request would get.
        if !mutation.changes.is_empty() {
            let summary: Vec<String> = mutation.changes.iter().map(ToString::to_string).collect();
            warnings.insert(
                0,
                shorten_warning(format!("podmedic (dry run, not applied) would change: {}", summary.join("; "))),
            );
        }
        admission.outcome = Outcome::Ignored;
    } else if mutation.patch.0.is_empty() {
        admission.outcome = Outcome::Unchanged;
    } else {
        admission.changes = mutation.changes.iter().map(|c| c.kind).collect();
        response.set_patch(&mutation.patch)?;
        admission.outcome = Outcome::Patched;
    }
    admission.warnings = warnings.len();
    response.warnings = warnings;
    Ok(())
}

/// The engine, with a panic in it turned into a skip: a bug in one rule must not deny or drop Pods.
fn guarded_mutate(object: &impl ReceivedObject, ctx: &Context<'_>) -> Result<Mutation, SkipReason> {
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
fn acts_on<O>(req: &RequestEnvelope<O>) -> bool {
    if req.sub_resource.as_deref().is_some_and(|s| !s.is_empty()) {
        return false;
    }
    let gvk = &req.kind;
    matches!(
        (gvk.group.as_str(), gvk.version.as_str(), gvk.kind.as_str(), req.operation),
        ("", "v1", "Pod", Operation::Create)
            | ("batch", "v1", "Job", Operation::Create)
            | ("batch", "v1", "CronJob", Operation::Create | Operation::Update)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn review(operation: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "b1e5", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "batch", "operation": operation,
                "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                           "spec": {"restartPolicy": "Never", "containers": [
                               {"name": "main", "image": "app:1"},
                               {"name": "proxy", "image": "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0"}]}}
            }
        }))
        .unwrap()
    }

    fn response(admission: &Admission) -> Value {
        serde_json::from_slice::<Value>(&admission.body).unwrap()["response"].clone()
    }

    struct Namespaces(NamespaceState);

    impl NamespaceLookup for Namespaces {
        fn settings(&self, _namespace: &str) -> NamespaceState {
            self.0.clone()
        }
    }

    #[test]
    fn a_namespace_podmedic_does_not_know_yet_is_left_alone() {
        let mut env = Environment::standalone(Arc::new(Policy::builtin()));
        assert_eq!(admit(&review("CREATE"), &env).unwrap().outcome, Outcome::Patched);
        env.namespaces = Arc::new(Namespaces(NamespaceState::Unknown));
        let admission = admit(&review("CREATE"), &env).unwrap();
        assert_eq!(admission.outcome, Outcome::Ignored);
        let answer = response(&admission);
        assert!(answer.get("patch").is_none());
        assert_eq!(
            answer["warnings"][0],
            "podmedic does not know the settings of namespace batch yet, so it changed nothing"
        );
        let opted_out = NamespaceSettings { opted_out: true, ..NamespaceSettings::default() };
        env.namespaces = Arc::new(Namespaces(NamespaceState::Known(Arc::new(opted_out))));
        let admission = admit(&review("CREATE"), &env).unwrap();
        assert_eq!((admission.outcome, admission.warnings), (Outcome::Ignored, 0));
    }

    #[test]
    fn a_request_can_be_allowed_unchanged_without_the_engine() {
        let admission = allow_unchanged(&review("CREATE"), "deadline", "it took longer than 2s").unwrap();
        assert_eq!(admission.outcome, Outcome::Skipped);
        assert_eq!(admission.skip_reason, Some(("deadline", "it took longer than 2s".to_owned())));
        let answer = response(&admission);
        assert_eq!(answer["uid"], "b1e5");
        assert_eq!(answer["allowed"], true);
        assert!(answer.get("patch").is_none());
        assert_eq!(answer["warnings"], json!(["podmedic skipped this object: it took longer than 2s"]));

        // A request podmedic does not act on needs no warning; a body that is no review is refused.
        let delete = allow_unchanged(&review("DELETE"), "deadline", "late").unwrap();
        assert_eq!((delete.outcome, delete.warnings), (Outcome::Ignored, 0));
        assert!(allow_unchanged(b"{", "deadline", "late").is_err());
    }
}
