//! AdmissionReview in, AdmissionReview out: decode, dispatch by path, kind and operation
//! (`dispatch.rs`), encode.
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
//! An UPDATE that podmedic converges (`dispatch.rs`) needs the object's JSON text and the stored
//! object: the stored object is always kept as a [`RawValue`] slice, and such an UPDATE is read on
//! the slow path, which keeps the object as one too.
//!
//! The response is built from the request (see `response.rs`), so the uid is always echoed.
//!
//! podmedic fails open: when the engine cannot handle an object, the object is allowed unchanged
//! with a warning `podmedic skipped this object: <reason>`.

mod dispatch;
mod envelope;
mod error;
mod response;

use std::sync::Arc;

use serde_json::value::RawValue;

use crate::annotations::NamespaceSettings;
use crate::cluster::{ClusterView, NamespaceObjects, NodeFacts};
use crate::kubernetes::NativeSidecars;
use crate::mutation::{ChangeKind, Context, MutateError, Mutation};
use crate::object::{Object, Source};
use crate::policy::Policy;
use crate::warnings::shorten as shorten_warning;
pub use dispatch::Endpoint;
use dispatch::{acts_on, decide, holds_template, needs_raw, warnings_only};
pub use envelope::{API_VERSION, KIND};
use envelope::{ReceivedObject, RequestEnvelope, ReviewEnvelope, decode_error};
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

/// Every Node the checks may look at.
pub type NodeList = Arc<Vec<Arc<NodeFacts>>>;

/// What podmedic knows about the cluster's Nodes and the objects of watched namespaces (kept
/// current by watches in a cluster; read from memory on the admission path).
pub trait ClusterSource: Send + Sync {
    /// Every Node, once the first full list is in.
    fn nodes(&self) -> Option<NodeList>;
    /// The objects of `namespace`, when it is watched and has been listed.
    fn objects(&self, namespace: &str) -> Option<Arc<dyn NamespaceObjects + Send + Sync>>;
}

/// Nothing known about the cluster: the checks that need it say nothing.
#[derive(Debug, Default)]
pub struct NoCluster;

impl ClusterSource for NoCluster {
    fn nodes(&self) -> Option<NodeList> {
        None
    }
    fn objects(&self, _namespace: &str) -> Option<Arc<dyn NamespaceObjects + Send + Sync>> {
        None
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
    /// Nodes and namespace objects, for the checks of Deployments, StatefulSets, DaemonSets, Jobs
    /// and CronJobs.
    pub cluster: Arc<dyn ClusterSource>,
}

impl Environment {
    /// An environment with no cluster: the given policy, native sidecars available, no namespace settings.
    pub fn standalone(policy: Arc<Policy>) -> Self {
        Environment {
            policy,
            capability: Arc::new(FixedCapability(Arc::new(NativeSidecars::Available))),
            namespaces: Arc::new(NoNamespaceSettings),
            cluster: Arc::new(NoCluster),
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
    /// Allowed unchanged with podmedic's view as warnings (`/warn`).
    Warned,
    /// Allowed unchanged: the kind, the operation or the namespace's opt-out means podmedic does
    /// not act.
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
            Outcome::Warned => "warned",
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
    /// The path that answered.
    pub endpoint: Endpoint,
    /// The request was a dry run (answered like the real request).
    pub dry_run: bool,
    /// What podmedic did.
    pub outcome: Outcome,
    /// The kinds of change made.
    pub changes: Vec<ChangeKind>,
    /// Number of warnings returned.
    pub warnings: usize,
    /// Why the object was skipped, when `outcome` is `Skipped`: (metric label, message).
    pub skip_reason: Option<(&'static str, String)>,
}

/// Answers an AdmissionReview sent to `/mutate` (see [`admit_at`]).
pub fn admit(body: &[u8], env: &Environment) -> Result<Admission, ReviewError> {
    admit_at(Endpoint::Mutate, body, env)
}

/// Decodes an AdmissionReview sent to `endpoint`, runs the engine where that endpoint acts, and
/// encodes the response.
pub fn admit_at(endpoint: Endpoint, body: &[u8], env: &Environment) -> Result<Admission, ReviewError> {
    // One pass over the body. A panic while decoding falls back to the slow path too, whose engine
    // call is guarded (fail open).
    let fast = std::panic::catch_unwind(|| {
        crate::object::with_item_count(|| serde_json::from_slice::<ReviewEnvelope<'_, Object<'_>>>(body))
    });
    if let Ok(Ok(mut envelope)) = fast {
        let converges = envelope.request.as_ref().is_some_and(|r| needs_raw(endpoint, r));
        if !converges {
            if let Some(object) = envelope.request.as_mut().and_then(|r| r.object.as_mut()) {
                object.source = Source::Review(body);
            }
            return answer(endpoint, envelope, env);
        }
    }
    let envelope: ReviewEnvelope<'_, &RawValue> = serde_json::from_slice(body).map_err(|e| decode_error(body, e))?;
    answer(endpoint, envelope, env)
}

/// Answers a request sent to `endpoint` without running the engine: the object is allowed
/// unchanged, with the warning `podmedic skipped this object: <message>`, and `reason` as the
/// skip's metric label. For when podmedic cannot look at the object in time; only the envelope is
/// decoded (for the uid), and a request the endpoint would not act on is answered as ignored,
/// without the warning.
pub fn allow_unchanged(
    endpoint: Endpoint,
    body: &[u8],
    reason: &'static str,
    message: &str,
) -> Result<Admission, ReviewError> {
    let envelope: ReviewEnvelope<'_, &RawValue> = serde_json::from_slice(body).map_err(|e| decode_error(body, e))?;
    let (request, mut admission) = accept(endpoint, envelope)?;
    let mut response = Response::default();
    if request.object.is_some() && acts_on(endpoint, &request) {
        skip(&mut response, &mut admission, reason, message.to_owned());
    }
    admission.body = response.encode(&admission.uid)?;
    Ok(admission)
}

/// Checks the envelope and starts the record of the request (ignored until the engine says more).
fn accept<O: ReceivedObject>(
    endpoint: Endpoint,
    envelope: ReviewEnvelope<'_, O>,
) -> Result<(RequestEnvelope<'_, O>, Admission), ReviewError> {
    let api_version = envelope.api_version.as_deref().unwrap_or_default();
    let kind = envelope.kind.as_deref().unwrap_or_default();
    if api_version != API_VERSION || kind != KIND {
        return Err(ReviewError::WrongType { api_version: api_version.to_owned(), kind: kind.to_owned() });
    }
    let mut request = envelope.request.ok_or(ReviewError::MissingRequest)?;
    let admission = Admission {
        body: Vec::new(),
        name: request.display_name(),
        // Moved: nothing reads the request's uid again; its kind is read by the dispatch.
        uid: std::mem::take(&mut request.uid),
        kind: request.kind.kind.clone(),
        namespace: request.namespace.clone().unwrap_or_default(),
        operation: request.operation.label(),
        endpoint,
        dry_run: request.dry_run,
        outcome: Outcome::Ignored,
        changes: Vec::new(),
        warnings: 0,
        skip_reason: None,
    };
    Ok((request, admission))
}

/// Checks the envelope, runs the engine where podmedic acts, and encodes the response.
fn answer<O: ReceivedObject>(
    endpoint: Endpoint,
    envelope: ReviewEnvelope<'_, O>,
    env: &Environment,
) -> Result<Admission, ReviewError> {
    let (mut request, mut admission) = accept(endpoint, envelope)?;
    let acts = acts_on(endpoint, &request);
    // Only pod templates are checked against the cluster: Pods never read it.
    let templates = holds_template(&request);
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
            let nodes = if templates { env.cluster.nodes() } else { None };
            let objects = request.namespace.as_deref().filter(|_| templates).and_then(|ns| env.cluster.objects(ns));
            let cluster = ClusterView {
                nodes: nodes.as_deref().map(Vec::as_slice),
                objects: objects.as_deref().map(|o| o as &dyn NamespaceObjects),
            };
            let ctx = Context { namespace: namespace.as_deref(), cluster, ..Context::new(&env.policy, &capability) };
            let old_object = request.old_object;
            let run = || decide(endpoint, request.operation, &object, old_object, &ctx);
            respond(&mut response, run, &mut admission)?;
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

/// Runs the engine (`run`) and fills in the response. A dry run gets the same answer as the real
/// request: `kubectl diff`, `--dry-run=server` and the GitOps tools' diffs compare against it.
fn respond(
    response: &mut Response,
    run: impl FnOnce() -> Result<Mutation, MutateError>,
    admission: &mut Admission,
) -> Result<(), ReviewError> {
    let mutation = match guarded(run) {
        Ok(m) => m,
        Err(err) => {
            skip(response, admission, err.metric_label(), err.to_string());
            return Ok(());
        }
    };
    let warnings = if admission.endpoint == Endpoint::Warn {
        let warnings = warnings_only(&admission.kind, mutation);
        admission.outcome = if warnings.is_empty() { Outcome::Unchanged } else { Outcome::Warned };
        warnings
    } else if mutation.patch.0.is_empty() {
        admission.outcome = Outcome::Unchanged;
        mutation.warnings
    } else {
        admission.changes = mutation.changes.iter().map(|c| c.kind).collect();
        response.set_patch(&mutation.patch)?;
        admission.outcome = Outcome::Patched;
        mutation.warnings
    };
    admission.warnings = warnings.len();
    response.warnings = warnings;
    Ok(())
}

/// The engine, with a panic in it turned into a skip: a bug in one rule must not deny or drop Pods.
fn guarded(run: impl FnOnce() -> Result<Mutation, MutateError>) -> Result<Mutation, SkipReason> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
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
        let admission =
            allow_unchanged(Endpoint::Mutate, &review("CREATE"), "deadline", "it took longer than 2s").unwrap();
        assert_eq!(admission.outcome, Outcome::Skipped);
        assert_eq!(admission.skip_reason, Some(("deadline", "it took longer than 2s".to_owned())));
        let answer = response(&admission);
        assert_eq!(answer["uid"], "b1e5");
        assert_eq!(answer["allowed"], true);
        assert!(answer.get("patch").is_none());
        assert_eq!(answer["warnings"], json!(["podmedic skipped this object: it took longer than 2s"]));

        // A request podmedic does not act on needs no warning; a body that is no review is refused.
        let delete = allow_unchanged(Endpoint::Mutate, &review("DELETE"), "deadline", "late").unwrap();
        assert_eq!((delete.outcome, delete.warnings), (Outcome::Ignored, 0));
        assert!(allow_unchanged(Endpoint::Mutate, b"{", "deadline", "late").is_err());
    }
}
