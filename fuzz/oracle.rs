//! What must hold for any bytes given to `podmedic_engine::admission::admit` as an HTTP body.
//!
//! Shared by the libFuzzer target (`fuzz/fuzz_targets/admit.rs`) and the deterministic replay test
//! that runs in `cargo test` (`crates/podmedic-engine/tests/fuzz_replay.rs`), so CI checks the same oracle without a fuzzer.

use std::sync::{Arc, LazyLock};

use base64::Engine as _;
use podmedic_engine::admission::{Environment, FixedCapability, Outcome, admit};
use podmedic_engine::{Context, MAX_WARNING_LEN, NativeSidecars, Policy, mutate_value};
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

/// Runs `body` through the admission handler in every environment and panics on any violation.
pub fn check(body: &[u8]) {
    for env in ENVIRONMENTS.iter() {
        check_in(body, env);
    }
}

fn check_in(body: &[u8], env: &Environment) {
    let Ok(admission) = admit(body, env) else {
        // A ReviewError is an HTTP 400: fine for any input, as long as nothing panicked.
        return;
    };
    let response: Value =
        serde_json::from_slice(&admission.body).unwrap_or_else(|e| panic!("response is not JSON: {e}"));
    assert_eq!(response["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(response["kind"], "AdmissionReview");
    let inner = &response["response"];
    assert_eq!(inner["uid"].as_str(), Some(admission.uid.as_str()), "uid not echoed");
    assert_eq!(inner["allowed"], true, "podmedic never denies");
    assert!(!matches!(&admission.skip_reason, Some((label, _)) if *label == "engine_panic"), "the engine panicked");
    for w in inner["warnings"].as_array().into_iter().flatten() {
        let w = w.as_str().unwrap_or_else(|| panic!("warning is not a string: {w}"));
        assert!(w.len() <= MAX_WARNING_LEN, "warning too long: {w}");
    }
    let Some(patch) = inner.get("patch") else {
        assert_ne!(admission.outcome, Outcome::Patched);
        return;
    };
    assert_eq!(admission.outcome, Outcome::Patched);
    assert_eq!(inner["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch.as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("patch is not base64: {e}"));
    let patch: json_patch::Patch =
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("patch is not a JSON Patch: {e}"));

    // The patch applies to the object as the API server holds it, and is idempotent.
    // podmedic validates only what it reads: bytes in the fields it skips (userInfo, managedFields,
    // ...) may be invalid UTF-8 or lone surrogate escapes, which the API server never sends. Such a
    // body is still answered; the patch is checked on the body as a lenient reader sees it.
    let Ok(review) = serde_json::from_str::<Value>(&String::from_utf8_lossy(body)) else { return };
    let mut object = review["request"]["object"].clone();
    json_patch::patch(&mut object, &patch).unwrap_or_else(|e| panic!("patch does not apply: {e}"));
    let native = env.capability.native_sidecars();
    let ctx = Context { policy: &env.policy, native_sidecars: &native, namespace: None, cluster: Default::default() };
    let again = mutate_value(&object, &ctx).unwrap_or_else(|e| panic!("patched object unreadable: {e}"));
    assert!(again.patch.0.is_empty(), "second run not empty: {:?}", again.patch);
}
