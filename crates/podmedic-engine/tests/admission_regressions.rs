//! Inputs that once broke podmedic, each answered safely now (found by `tests/properties.rs`,
//! `tests/fuzz_replay.rs` or the libFuzzer campaign in `fuzz/`). The raw inputs are also kept in
//! `fuzz/regressions/admit/`, which the fuzz replay test runs through the full oracle.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use podmedic_engine::Policy;
use podmedic_engine::admission::{Environment, Outcome, admit};
use serde_json::Value;

fn regression(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../../fuzz/regressions/admit/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// `metadata: []` in a Job used to read as empty metadata (serde accepts an array for a struct),
/// and podmedic answered with a patch adding `/metadata/annotations` to the array: the API server
/// cannot apply such a patch and fails the request. Now it is a malformed object: allowed
/// unchanged, with a warning.
#[test]
fn metadata_as_an_array_is_skipped_not_patched() {
    let env = Environment::standalone(Arc::new(Policy::builtin()));
    let admission = admit(&regression("metadata-array.json"), &env).unwrap();
    assert_eq!(admission.outcome, Outcome::Skipped);
    let response: Value = serde_json::from_slice(&admission.body).unwrap();
    assert_eq!(response["response"]["allowed"], true);
    assert!(response["response"].get("patch").is_none());
    let warning = response["response"]["warnings"][0].as_str().unwrap();
    assert!(warning.starts_with("podmedic skipped this object") && warning.contains("metadata"), "{warning}");
}
