//! The engine's cost grows linearly with what it is given, and its answer stays small.
//!
//! Cost is counted, not timed: `podmedic_engine::work` counts every iteration of the engine's loops
//! over object data and every comparison of the image matcher. Each hostile class of
//! `benches/admission/hostile.rs` (what any user who may create a Pod can send) is counted at three
//! sizes small enough to be read in full (larger objects are refused whole by the view's limits,
//! `MAX_CONTAINERS` and `MAX_ITEMS`); a quadratic path would multiply the count by 16 from the
//! smallest to the largest, a linear one by 4. The reported sizes are then checked for a bounded
//! answer. The timings of the same bodies at 3 MiB are in BENCHMARKS.md
//! (`podmedic-load --only hostile`).

use std::sync::LazyLock;

use podmedic_engine::admission::{Admission, Environment, admit};
use podmedic_engine::policy::Policy;
use podmedic_engine::{ImageRef, MAX_WARNINGS, work};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;

use crate::hostile;

static ENV: LazyLock<Environment> = LazyLock::new(|| Environment::standalone(std::sync::Arc::new(Policy::builtin())));

/// The largest answer podmedic may give to any of the hostile bodies, whatever their size: the
/// warnings are capped, the moves are capped, the changes record is capped.
const ANSWER_LIMIT: usize = 32 * 1024;

/// Steps of one `admit`, and what it answered.
fn admit_counted(body: &[u8]) -> (u64, Admission) {
    let (admission, steps) = work::measure(|| admit(body, &ENV));
    (steps, admission.expect("a hostile body is still an AdmissionReview"))
}

/// `counts` holds (input bytes, steps) at growing sizes: the steps per input byte at the largest
/// size may not exceed those at the smallest by more than a quarter (a quadratic path would
/// quadruple them between sizes a factor 4 apart), plus `fixed` steps for work that does not
/// depend on the size at all (the catalogue, the envelope).
fn assert_linear(what: &str, counts: &[(usize, u64)], fixed: u64) {
    let (first_bytes, first_steps) = counts[0];
    for &(bytes, steps) in &counts[1..] {
        let allowed = (first_steps as f64 * bytes as f64 / first_bytes as f64 * 1.25) as u64 + fixed;
        assert!(steps <= allowed, "{what}: {steps} steps for {bytes} bytes, linear from {counts:?} allows {allowed}");
    }
}

#[test]
fn every_hostile_class_costs_steps_linear_in_its_size_and_gets_a_bounded_answer() {
    for class in hostile::classes() {
        let mut counts = Vec::new();
        // Small enough that every class is read (at most 1,000 containers of 40 bytes).
        for size in [8 << 10, 16 << 10, 32 << 10] {
            let body = (class.build)(size);
            let (steps, admission) = admit_counted(&body);
            let answer: Value = serde_json::from_slice(&admission.body).unwrap();
            let warnings = answer["response"]["warnings"].as_array().map_or(0, Vec::len);
            assert!(warnings <= MAX_WARNINGS + 1, "{}: {warnings} warnings", class.name);
            assert!(
                admission.body.len() <= ANSWER_LIMIT,
                "{} at {} bytes: an answer of {} bytes",
                class.name,
                body.len(),
                admission.body.len()
            );
            counts.push((body.len(), steps));
        }
        println!("{:<24} {counts:?}", class.name);
        assert_linear(class.name, &counts, 2_000);
    }
}

/// The sizes the issue reported, in full: each answered within the same small bound.
#[test]
fn the_reported_bodies_get_bounded_answers() {
    for (class, bytes) in [
        ("unknown-sidecar-names", 2_900_000),
        ("repeated-image-segments", 340_000),
        ("untagged-containers", 800_000),
        ("changes-annotation", 2_500_000),
        ("empty-arguments", 3_000_000),
    ] {
        let build = hostile::classes().into_iter().find(|c| c.name == class).unwrap().build;
        let body = build(bytes);
        let (_, admission) = admit_counted(&body);
        assert!(admission.body.len() <= ANSWER_LIMIT, "{class}: {} bytes", admission.body.len());
        assert!(admission.warnings <= MAX_WARNINGS + 1, "{class}: {} warnings", admission.warnings);
    }
}

/// The matcher itself, below the registry length limit that keeps such paths from it: a path of
/// repeated `cloud-sql-connectors/` segments against every pattern of the catalogue.
#[test]
fn image_matching_is_linear_in_the_path_even_past_the_length_limit() {
    let policy = Policy::builtin();
    let patterns: Vec<Vec<String>> = policy
        .sidecars
        .iter()
        .flat_map(|p| &p.images)
        .map(|p| p.split('/').map(str::to_ascii_lowercase).collect())
        .collect();
    let mut counts = Vec::new();
    for repeats in [2_000, 4_000, 8_000] {
        let image = format!("gcr.io/{}app", "cloud-sql-connectors/".repeat(repeats));
        let reference = ImageRef::parse(&image);
        let components = reference.components();
        let (matched, steps) =
            work::measure(|| patterns.iter().filter(|p| ImageRef::components_match(&components, p)).count());
        assert_eq!(matched, 0);
        counts.push((image.len(), steps));
    }
    assert_linear("repeated segments", &counts, 1_000);
}

fn pattern_component() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("**".to_owned()),
        6 => "[ab*]{1,3}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Any pattern of `**`, `*` and letters against a path made of one generated unit repeated:
    /// four times the path, at most four times the steps (and a quarter more).
    #[test]
    fn image_matching_steps_grow_linearly_for_any_pattern(
        pattern in prop::collection::vec(pattern_component(), 1..6),
        unit in prop::collection::vec("[ab]{1,3}", 1..4),
        tail in "[ab]{1,3}",
    ) {
        let steps = |repeats: usize| {
            let mut components: Vec<String> = Vec::new();
            for _ in 0..repeats {
                components.extend(unit.iter().cloned());
            }
            components.push(tail.clone());
            let components: Vec<&str> = components.iter().map(String::as_str).collect();
            let bytes: usize = components.iter().map(|c| c.len() + 1).sum();
            (bytes, work::measure(|| ImageRef::components_match(&components, &pattern)).1)
        };
        let (small, large) = (steps(50), steps(200));
        let allowed = (small.1 as f64 * large.0 as f64 / small.0 as f64 * 1.25) as u64 + 200;
        prop_assert!(large.1 <= allowed, "{pattern:?} on {unit:?}: {small:?} then {large:?}");
    }
}

/// `object` with every container and init container repeated `copies` times (the copies renamed
/// `<name>-<copy>`, so that names stay as unique as they were).
fn repeated(object: &Value, copies: usize) -> Value {
    let mut grown = object.clone();
    let spec_ptr = crate::pod_spec_pointer(object);
    for list in ["containers", "initContainers"] {
        let Some(items) = grown.pointer_mut(&format!("{spec_ptr}/{list}")).and_then(Value::as_array_mut) else {
            continue;
        };
        let original = std::mem::take(items);
        for copy in 0..copies {
            for item in &original {
                let mut item = item.clone();
                if copy > 0
                    && let Some(name) = item.get("name").and_then(Value::as_str).map(str::to_owned)
                {
                    item["name"] = Value::String(format!("{name}-{copy}"));
                }
                items.push(item);
            }
        }
    }
    grown
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Any generated Pod, Job, CronJob or Deployment, its containers repeated 4 and 16 times: the
    /// engine's steps grow with the object's size, not faster, under every policy and capability.
    #[test]
    fn engine_steps_grow_linearly_when_an_object_grows(
        case in crate::case(),
        opt_in in any::<bool>(),
        native in any::<bool>(),
    ) {
        let object = crate::render(&case);
        let ctx = crate::context(opt_in, native);
        let count = |copies: usize| {
            let grown = repeated(&object, copies);
            let bytes = serde_json::to_vec(&grown).unwrap().len();
            let (mutation, steps) = work::measure(|| podmedic_engine::mutate_value(&grown, &ctx));
            mutation.map_err(|e| TestCaseError::fail(e.to_string()))?;
            Ok::<_, TestCaseError>((bytes, steps))
        };
        let (small, large) = (count(4)?, count(16)?);
        let allowed = (small.1 as f64 * large.0 as f64 / small.0 as f64 * 1.25) as u64 + 500;
        prop_assert!(large.1 <= allowed, "{small:?} then {large:?} for {object}");
    }
}
