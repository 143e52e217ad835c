//! Properties of the engine over generated Pods, Jobs, CronJobs and Deployments (proptest).
//!
//! Given any object a user could write (random container counts and names, images from the
//! catalogue and outside it, existing init containers and native sidecars, probes, resources,
//! cloud-sql-proxy flags and environment, unknown fields, podmedic annotations), podmedic returns a
//! patch that applies, is idempotent, keeps names unique and at least one regular container,
//! puts `restartPolicy: Always` only on init containers, never changes what the user set, keeps
//! unknown fields, and never requests more than a limit allows.
//!
//! The case counts add up to 11,000 per `cargo test` run. To run a longer campaign:
//! `PROPTEST_CASES=100000 cargo test -p podmedic-engine --test properties` (the count then applies to each test).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use podmedic_engine::policy::{Policy, ResourceDefaults};
use podmedic_engine::{Context, NamespaceSettings, NativeSidecars, mutate_json, mutate_value};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Value, json};

mod growth;
mod model;
mod read_back;
mod values;

// The bodies of the engine's benchmark, and the hostile ones shared with the load harness.
#[allow(dead_code)]
#[path = "../../benches/admission/bodies.rs"]
mod bodies;
#[allow(dead_code)]
#[path = "../../benches/admission/hostile.rs"]
mod hostile;

use model::*;
use read_back::*;

// ---------------------------------------------------------------------------------------------
// Policies and cluster capabilities the properties run under.

static BUILTIN: LazyLock<Policy> = LazyLock::new(Policy::builtin);

/// Default requests (with a resource name that needs JSON Pointer escaping) and long-running probes.
static OPT_IN: LazyLock<Policy> = LazyLock::new(|| {
    Policy::builtin_with(
        "apiVersion: podmedic.io/v1alpha1\nkind: Policy\n\
         defaultRequests: {enabled: true, containers: {cpu: 100m, memory: 128Mi}, \
         sidecars: {cpu: 50m, memory: 64Mi, example.com/widget: '1'}}\n\
         longRunningPods: {readinessProbes: true, livenessProbes: true}\n",
        "properties",
    )
    .unwrap()
});

static AVAILABLE: LazyLock<NativeSidecars> = LazyLock::new(|| NativeSidecars::Available);
static UNAVAILABLE: LazyLock<NativeSidecars> = LazyLock::new(|| NativeSidecars::for_version(1, 28));

/// Namespace annotations that turn defaults and probes on over the built-in policy.
static NAMESPACE: LazyLock<NamespaceSettings> = LazyLock::new(|| NamespaceSettings {
    opted_out: false,
    default_requests: Some(ResourceDefaults::parse_annotation("cpu=250m,memory=256Mi").unwrap()),
    default_sidecar_requests: Some(ResourceDefaults::parse_annotation("cpu=10m").unwrap()),
    readiness_probes: Some(true),
    liveness_probes: Some(false),
});

fn context(opt_in: bool, native: bool) -> Context<'static> {
    Context {
        policy: if opt_in { &OPT_IN } else { &BUILTIN },
        native_sidecars: if native { &AVAILABLE } else { &UNAVAILABLE },
        namespace: None,
    }
}

// ---------------------------------------------------------------------------------------------
// The properties.

fn check(before: &Value, ctx: &Context<'_>) -> Result<(), TestCaseError> {
    let mutation = mutate_value(before, ctx).map_err(|e| TestCaseError::fail(format!("engine error: {e}")))?;

    // The raw-JSON path (the webhook's) decides exactly as the parsed-value path (`podmedic fix`).
    let text = serde_json::to_string(before).unwrap();
    let from_text = mutate_json(&text, ctx).map_err(|e| TestCaseError::fail(format!("mutate_json: {e}")))?;
    prop_assert_eq!(&from_text.patch, &mutation.patch, "mutate_json and mutate_value disagree");

    // 1. The patch applies.
    let mut after = before.clone();
    json_patch::patch(&mut after, &mutation.patch)
        .map_err(|e| TestCaseError::fail(format!("patch does not apply: {e}\npatch: {:?}", mutation.patch)))?;

    // 2. Idempotence.
    let again = mutate_value(&after, ctx).map_err(|e| TestCaseError::fail(format!("second run: {e}")))?;
    prop_assert!(again.patch.0.is_empty(), "second run not empty: {:?}\nafter: {}", again.patch, after);

    // Nothing outside the container lists and the changes annotation moves.
    prop_assert_eq!(outside_containers(before), outside_containers(&after), "object changed outside containers");

    // Unknown fields survive, wherever they were.
    let (mut u_before, mut u_after) = (BTreeMap::new(), BTreeMap::new());
    unknown_multiset(before, &mut u_before);
    unknown_multiset(&after, &mut u_after);
    prop_assert_eq!(u_before, u_after, "unknown fields changed");

    let spec_ptr = pod_spec_pointer(before);
    let (spec_b, spec_a) = (before.pointer(spec_ptr).unwrap(), after.pointer(spec_ptr).unwrap());
    let (reg_b, init_b, eph_b) =
        (list_of(spec_b, "containers"), list_of(spec_b, "initContainers"), list_of(spec_b, "ephemeralContainers"));
    let (reg_a, init_a, eph_a) =
        (list_of(spec_a, "containers"), list_of(spec_a, "initContainers"), list_of(spec_a, "ephemeralContainers"));

    // 3. Names stay unique, and a regular container remains when there was one.
    let names_after: Vec<&str> = reg_a.iter().chain(&init_a).chain(&eph_a).map(|c| name_of(c)).collect();
    let unique: BTreeSet<&str> = names_after.iter().copied().collect();
    prop_assert_eq!(unique.len(), names_after.len(), "duplicate names: {:?}", names_after);
    let names_before: BTreeSet<&str> = reg_b.iter().chain(&init_b).chain(&eph_b).map(|c| name_of(c)).collect();
    prop_assert_eq!(&unique, &names_before, "containers appeared or vanished");
    prop_assert!(reg_b.is_empty() || !reg_a.is_empty(), "no regular container left");

    // Init containers keep their order; sidecars only move from containers to initContainers.
    let old_inits: Vec<&str> = init_b.iter().map(|c| name_of(c)).collect();
    let kept_inits: Vec<&str> = init_a.iter().map(|c| name_of(c)).filter(|n| old_inits.contains(n)).collect();
    prop_assert_eq!(&kept_inits, &old_inits, "existing init containers reordered");
    let regular_names: Vec<&str> = reg_a.iter().map(|c| name_of(c)).collect();
    let kept_regular: Vec<&str> = reg_b.iter().map(|c| name_of(c)).filter(|n| regular_names.contains(n)).collect();
    prop_assert_eq!(&kept_regular, &regular_names, "regular containers reordered or added");
    prop_assert_eq!(eph_b, eph_a, "ephemeral containers changed");

    let original = |name: &str| reg_b.iter().chain(&init_b).find(|c| name_of(c) == name).copied().unwrap();
    let moved = |name: &str| reg_b.iter().any(|c| name_of(c) == name) && init_a.iter().any(|c| name_of(c) == name);

    for (c, in_init) in reg_a.iter().map(|c| (c, false)).chain(init_a.iter().map(|c| (c, true))) {
        let name = name_of(c);
        let old = original(name);
        let was_moved = moved(name);

        // 4. `restartPolicy: Always` is only ever added to init containers (the moved sidecars).
        if set(old, "restartPolicy") != set(c, "restartPolicy") {
            prop_assert!(in_init && was_moved, "{name}: restartPolicy changed outside a move");
            prop_assert_eq!(set(old, "restartPolicy"), None, "{}: restartPolicy replaced", name);
            prop_assert_eq!(set(c, "restartPolicy"), Some(&json!("Always")));
        }

        // 5. Values the user set are never changed or removed.
        for (key, value) in old.iter().filter(|(_, v)| !v.is_null()) {
            let now = c.get(key);
            match key.as_str() {
                "args" if value.is_array() => {
                    let (old_args, new_args) = (value.as_array().unwrap(), now.and_then(Value::as_array).unwrap());
                    check_args_grow(name, old_args, new_args)?;
                }
                "env" if value.is_array() => {
                    let (old_env, new_env) = (value.as_array().unwrap(), now.and_then(Value::as_array).unwrap());
                    prop_assert!(new_env.starts_with(old_env), "{name}: env changed, not appended to");
                }
                "resources" => check_resources(name, value, now.unwrap())?,
                _ => prop_assert_eq!(Some(value), now, "{}: field {} changed", name, key),
            }
        }
        // What podmedic may add where the user set nothing.
        for key in c.keys().filter(|k| set(old, k).is_none() && set(c, k).is_some()) {
            let allowed = match key.as_str() {
                "restartPolicy" | "startupProbe" | "args" | "env" => was_moved,
                "readinessProbe" | "livenessProbe" => !in_init,
                "resources" => true,
                _ => false,
            };
            prop_assert!(allowed, "{name}: podmedic added {key}");
        }

        // 6. An added request never exceeds the limit.
        let requests_b = set(old, "resources").and_then(|r| set(r.as_object()?, "requests")).and_then(Value::as_object);
        let resources_a = set(c, "resources").and_then(Value::as_object);
        let requests_a = resources_a.and_then(|r| set(r, "requests")).and_then(Value::as_object);
        let limits = resources_a.and_then(|r| set(r, "limits")).and_then(Value::as_object);
        for (resource, request) in requests_a.into_iter().flatten() {
            if requests_b.is_some_and(|r| r.contains_key(resource)) {
                continue;
            }
            let limit = limits.and_then(|l| l.get(resource)).and_then(quantity);
            if let (Some(limit), Some(request)) = (limit, quantity(request)) {
                prop_assert!(request <= limit * (1.0 + 1e-12), "{name}: added request {resource} above its limit");
            }
        }
    }
    Ok(())
}

/// New args are only ever inserted (flags, before a `--` terminator) or appended: removing them
/// gives back the user's args in order, and what follows `--` is untouched.
fn check_args_grow(name: &str, old: &[Value], new: &[Value]) -> Result<(), TestCaseError> {
    // Greedy matching finds the user's args as a subsequence if they are one.
    let mut rest = old.iter().peekable();
    let mut added = Vec::new();
    for n in new {
        if rest.peek() == Some(&n) {
            rest.next();
        } else {
            added.push(n);
        }
    }
    prop_assert!(rest.peek().is_none(), "{name}: args {old:?} are not a subsequence of {new:?}");
    prop_assert!(added.iter().all(|a| a.as_str().is_some_and(|s| s.starts_with('-'))), "{name}: non-flag added");
    if let Some(i) = old.iter().position(|a| a == "--") {
        prop_assert!(new.ends_with(&old[i..]), "{name}: args after -- changed");
    } else {
        prop_assert!(new.starts_with(old), "{name}: args not appended at the end");
    }
    Ok(())
}

fn check_resources(name: &str, old: &Value, new: &Value) -> Result<(), TestCaseError> {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
        prop_assert_eq!(old, new, "{}: resources changed", name);
        return Ok(());
    };
    for (key, value) in old {
        match (key.as_str(), value) {
            ("requests", Value::Object(requests)) => {
                let now = new.get("requests").and_then(Value::as_object);
                for (resource, quantity) in requests {
                    prop_assert_eq!(
                        now.and_then(|n| n.get(resource)),
                        Some(quantity),
                        "{}: request {} changed",
                        name,
                        resource
                    );
                }
            }
            ("requests", Value::Null) => {}
            _ => prop_assert_eq!(new.get(key), Some(value), "{}: resources.{} changed", name, key),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Test entry points. 5,000 + 5,000 + 1,000 = 11,000 generated objects per run.

proptest! {
    #![proptest_config(ProptestConfig { cases: 5_000, ..ProptestConfig::default() })]

    /// The built-in policy, alone or with namespace annotations that opt in to defaults and probes.
    #[test]
    fn builtin_policy_properties_hold(case in case(), native in any::<bool>(), namespace in any::<bool>()) {
        let ctx = Context { namespace: namespace.then_some(&*NAMESPACE), ..context(false, native) };
        check(&render(&case), &ctx)?;
    }

    /// A policy with default requests (one resource name needs pointer escaping) and probes on.
    #[test]
    fn opt_in_defaults_and_probes_properties_hold(case in case(), native in any::<bool>()) {
        check(&render(&case), &context(true, native))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    /// Duplicate container names are invalid (validation rejects them after admission), but they
    /// reach the webhook: podmedic must still return a patch that applies, and never panic.
    #[test]
    fn duplicate_names_never_break_the_patch(case in case(), opt_in in any::<bool>(), native in any::<bool>()) {
        let mut object = render(&case);
        let spec_ptr = pod_spec_pointer(&object);
        if let Some(containers) = object.pointer_mut(&format!("{spec_ptr}/containers")).and_then(Value::as_array_mut) {
            for c in containers.iter_mut() {
                c["name"] = json!("dup");
            }
        }
        let ctx = context(opt_in, native);
        let mutation = mutate_value(&object, &ctx).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut after = object.clone();
        json_patch::patch(&mut after, &mutation.patch).map_err(|e| TestCaseError::fail(e.to_string()))?;
        mutate_value(&after, &ctx).map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
}

#[test]
fn the_generator_reaches_the_interesting_cases() {
    // Guard against a generator that silently stops producing moves, defaults or probes.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = case();
    let (mut moved, mut requests, mut probes, mut unchanged) = (0, 0, 0, 0);
    for _ in 0..500 {
        let object = render(&strategy.new_tree(&mut runner).unwrap().current());
        let m = mutate_value(&object, &context(true, true)).unwrap();
        let kinds: BTreeSet<_> = m.changes.iter().map(|c| c.kind.label()).collect();
        moved += usize::from(kinds.contains("sidecar_moved"));
        requests += usize::from(kinds.contains("requests_added"));
        probes += usize::from(kinds.contains("probe_added"));
        unchanged += usize::from(m.is_unchanged());
    }
    assert!(moved > 100 && requests > 100 && probes > 50 && unchanged > 20, "{moved} {requests} {probes} {unchanged}");
}
