//! What must hold for any bytes given to `podmedic_engine::admission::admit_at` as an HTTP body,
//! on each path (`/mutate`, `/warn`, `/converge`): a well-formed answer that never denies, a
//! patch that applies and is idempotent, never a patch from `/warn`, and a dry run answered as
//! the real request.
//!
//! Shared by the libFuzzer target (`fuzz/fuzz_targets/admit.rs`) and the deterministic replay test
//! that runs in `cargo test` (`crates/podmedic-engine/tests/fuzz_replay.rs`), so CI checks the same oracle without a fuzzer.

use std::cell::OnceCell;
use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use podmedic_engine::admission::{Endpoint, Environment, FixedCapability, Outcome, admit_at};
use podmedic_engine::{MAX_WARNING_LEN, NativeSidecars, Policy};
use serde_json::Value;

/// The environments every input runs in: the built-in policy on a cluster with native sidecars,
/// and an opt-in policy (default requests, long-running probes) on a cluster without them.
pub static ENVIRONMENTS: LazyLock<[Environment; 2]> = LazyLock::new(|| {
    let opt_in = Policy::builtin_with(
        "apiVersion: podmedic.io/v1alpha1\nkind: Policy\n\
         defaultRequests: {enabled: true}\nlongRunningPods: {readinessProbes: true, livenessProbes: true}\n",
        "fuzz",
    )
    .unwrap_or_else(|e| panic!("fuzz policy: {e}"));
    let mut old_cluster = Environment::standalone(Arc::new(opt_in));
    old_cluster.capability = Arc::new(FixedCapability(Arc::new(NativeSidecars::for_version(1, 28))));
    [Environment::standalone(Arc::new(Policy::builtin())), old_cluster]
});

/// Runs `body` through every path of the admission handler in every environment and panics on
/// any violation.
#[allow(dead_code)] // the fuzz target checks one path per input (`check_one_path`)
pub fn check(body: &[u8]) {
    let variants = Variants::of(body);
    for endpoint in Endpoint::ALL {
        check_with(endpoint, body, &variants);
    }
}

/// Runs `body` through one path, chosen by its length (the fuzzer's throughput stays that of one
/// path, and every path is covered across inputs).
pub fn check_one_path(body: &[u8]) {
    check_at(Endpoint::ALL[body.len() % Endpoint::ALL.len()], body);
}

/// Runs `body` through `endpoint` in every environment.
pub fn check_at(endpoint: Endpoint, body: &[u8]) {
    check_with(endpoint, body, &Variants::of(body));
}

/// The body as a lenient reader sees it, and as a real request and a dry run. podmedic validates
/// only what it reads: bytes in the fields it skips (userInfo, managedFields, ...) may be invalid
/// UTF-8 or lone surrogate escapes, which the API server never sends, so what follows the first
/// answer is checked on the lenient reading. Made once per body, for every path and environment.
struct Variants<'b> {
    body: &'b [u8],
    /// Made when first needed: most fuzzed bodies are refused before.
    made: OnceCell<Made>,
}

struct Made {
    review: Option<Value>,
    /// (real request, dry run), when the body has a `request`.
    dry_run_pair: Option<(Vec<u8>, Vec<u8>)>,
}

impl<'b> Variants<'b> {
    fn of(body: &'b [u8]) -> Variants<'b> {
        Variants { body, made: OnceCell::new() }
    }

    fn get(&self) -> &Made {
        self.made.get_or_init(|| Made::of(self.body))
    }
}

impl Made {
    fn of(body: &[u8]) -> Made {
        let review = serde_json::from_str::<Value>(&String::from_utf8_lossy(body)).ok();
        let dry_run_pair = review.as_ref().filter(|r| r["request"].is_object()).map(|review| {
            let with = |dry: bool| {
                let mut r = review.clone();
                r["request"]["dryRun"] = Value::Bool(dry);
                serde_json::to_vec(&r).unwrap_or_default()
            };
            (with(false), with(true))
        });
        Made { review, dry_run_pair }
    }
}

fn check_with(endpoint: Endpoint, body: &[u8], variants: &Variants<'_>) {
    for (i, env) in ENVIRONMENTS.iter().enumerate() {
        // Whether a request is a dry run matters to no environment: checked in the first.
        check_in(endpoint, body, variants, i == 0, env);
    }
}

/// What podmedic answered: outcome, decoded patch, warnings.
type Answer = (Outcome, Option<json_patch::Patch>, Vec<String>);

fn check_in(endpoint: Endpoint, body: &[u8], variants: &Variants<'_>, dry_runs: bool, env: &Environment) {
    let Some(first) = answer(endpoint, body, env) else { return };
    let made = variants.get();
    let Some(review) = &made.review else { return };

    // A dry run gets the real request's answer.
    if let Some((real, dry)) = made.dry_run_pair.as_ref().filter(|_| dry_runs)
        && let (Some(real), Some(dry)) = (answer(endpoint, real, env), answer(endpoint, dry, env))
    {
        assert_eq!(real, dry, "a dry run is answered differently");
    }

    // The patch applies to the object as the API server holds it, and is idempotent: the same
    // request with the patched object gets no patch.
    let (_, Some(patch), _) = first else { return };
    let mut object = review["request"]["object"].clone();
    json_patch::patch(&mut object, &patch).unwrap_or_else(|e| panic!("patch does not apply: {e}"));
    let mut again = review.clone();
    again["request"]["object"] = object;
    if let Some((_, second, _)) = answer(endpoint, &serde_json::to_vec(&again).unwrap_or_default(), env) {
        assert!(second.is_none(), "second run not empty: {second:?}");
    }
}

/// Admits `body` at `endpoint` and checks what must hold of any answer; `None` for an HTTP 400.
fn answer(endpoint: Endpoint, body: &[u8], env: &Environment) -> Option<Answer> {
    // A ReviewError is an HTTP 400: fine for any input, as long as nothing panicked.
    let admission = admit_at(endpoint, body, env).ok()?;
    let response: Value =
        serde_json::from_slice(&admission.body).unwrap_or_else(|e| panic!("response is not JSON: {e}"));
    assert_eq!(response["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(response["kind"], "AdmissionReview");
    let inner = &response["response"];
    assert_eq!(inner["uid"].as_str(), Some(admission.uid.as_str()), "uid not echoed");
    assert_eq!(inner["allowed"], true, "podmedic never denies");
    assert!(!matches!(&admission.skip_reason, Some((label, _)) if *label == "engine_panic"), "the engine panicked");
    let warnings: Vec<String> = inner["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| w.as_str().unwrap_or_else(|| panic!("warning is not a string: {w}")).to_owned())
        .collect();
    for w in &warnings {
        assert!(w.len() <= MAX_WARNING_LEN, "warning too long: {w}");
    }
    let Some(patch) = inner.get("patch") else {
        assert_ne!(admission.outcome, Outcome::Patched);
        return Some((admission.outcome, None, warnings));
    };
    assert_ne!(endpoint, Endpoint::Warn, "/warn never patches");
    assert_eq!(admission.outcome, Outcome::Patched);
    assert_eq!(inner["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch.as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("patch is not base64: {e}"));
    let patch: json_patch::Patch =
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("patch is not a JSON Patch: {e}"));
    for op in &patch.0 {
        assert!(!op.path().as_str().starts_with("/metadata/managedFields"), "the patch touches managedFields");
    }
    Some((admission.outcome, Some(patch), warnings))
}
