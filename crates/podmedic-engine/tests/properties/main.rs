//! Properties of the engine over generated Pods, Jobs, CronJobs and Deployments (proptest).
//!
//! Given any object a user could write (random container counts and names, images from the
//! catalogue and outside it, existing init containers and native sidecars, probes, resources,
//! cloud-sql-proxy flags and environment, several proxies in one Pod, `envFrom`, `hostNetwork`,
//! pod-level resources, limits-only containers, unknown fields, podmedic and mesh annotations),
//! podmedic returns a patch that applies, is idempotent, keeps names unique and at least one
//! regular container, puts `restartPolicy: Always` only on init containers, never changes what the
//! user set, keeps unknown fields, never requests more than a limit allows nor where Kubernetes
//! sets requests from limits or pod-level resources are set, gives each proxy a health port no
//! other container declares or got, adds no probe or health flag on the node's network, keeps
//! `podmedic.io/changes` within its cap, and records each move with the fingerprint of the
//! container as the user wrote it (`podmedic.io/moved`).
//!
//! The case counts add up to 11,000 per `cargo test` run. To run a longer campaign:
//! `PROPTEST_CASES=100000 cargo test -p podmedic-engine --test properties` (the count then applies to each test).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use podmedic_engine::annotations::MOVED_ANNOTATION;
use podmedic_engine::policy::{Policy, ResourceDefaults};
use podmedic_engine::record::{MovedRecord, fingerprint};
use podmedic_engine::{Context, NamespaceSettings, NativeSidecars, mutate_json, mutate_value};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value, json};

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
    ..NamespaceSettings::default()
});

fn context(opt_in: bool, native: bool) -> Context<'static> {
    Context::new(if opt_in { &OPT_IN } else { &BUILTIN }, if native { &AVAILABLE } else { &UNAVAILABLE })
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

        // 6. An added request never exceeds the limit; none is added where Kubernetes sets the
        // request from a limit, nor beside pod-level resources.
        let requests_b = set(old, "resources").and_then(|r| set(r.as_object()?, "requests")).and_then(Value::as_object);
        let limits_b = set(old, "resources").and_then(|r| set(r.as_object()?, "limits")).and_then(Value::as_object);
        let resources_a = set(c, "resources").and_then(Value::as_object);
        let requests_a = resources_a.and_then(|r| set(r, "requests")).and_then(Value::as_object);
        let limits = resources_a.and_then(|r| set(r, "limits")).and_then(Value::as_object);
        for (resource, request) in requests_a.into_iter().flatten() {
            if requests_b.is_some_and(|r| r.contains_key(resource)) {
                continue;
            }
            prop_assert!(
                !limits_b.is_some_and(|l| l.contains_key(resource)),
                "{name}: request {resource} added beside its limit"
            );
            prop_assert!(
                !(limits_b.is_some_and(|l| !l.is_empty()) && requests_b.is_none_or(|r| r.is_empty())),
                "{name}: requests added to a limits-only container"
            );
            prop_assert!(
                set(spec_b.as_object().unwrap(), "resources").is_none(),
                "{name}: requests added beside pod-level resources"
            );
            let limit = limits.and_then(|l| l.get(resource)).and_then(quantity);
            if let (Some(limit), Some(request)) = (limit, quantity(request)) {
                prop_assert!(request <= limit * (1.0 + 1e-12), "{name}: added request {resource} above its limit");
            }
        }
    }

    // 7. Health ports podmedic chooses are real ports, free of every declared port and of each other.
    let declared: BTreeSet<i64> = reg_b.iter().chain(&init_b).flat_map(|c| declared_ports(c)).collect();
    let mut chosen = BTreeSet::new();
    for c in init_a.iter().filter(|c| moved(name_of(c))) {
        let old = original(name_of(c));
        let added_probe = set(old, "startupProbe").is_none().then(|| set(c, "startupProbe")).flatten();
        let Some(probe) = added_probe.filter(|p| p["httpGet"]["path"] == "/startup") else { continue };
        if user_health_port(old) {
            continue;
        }
        let port = probe["httpGet"]["port"].as_i64().unwrap_or_default();
        prop_assert!(port > 0 && !declared.contains(&port), "{}: health port {port} is declared", name_of(c));
        prop_assert!(chosen.insert(port), "two sidecars got health port {port}");
    }

    // 8. On the node's network, no probe and no health flag: only the exit-code flag may be added.
    if spec_b.get("hostNetwork") == Some(&json!(true)) {
        for c in init_a.iter().filter(|c| moved(name_of(c))) {
            let old = original(name_of(c));
            prop_assert!(set(c, "startupProbe") == set(old, "startupProbe"), "{}: probe on hostNetwork", name_of(c));
            let added_args = list_growth(old, c, "args");
            let added_env = list_growth(old, c, "env");
            let exit_code_only = |v: &Value| {
                let text = v.as_str().or_else(|| v["name"].as_str()).unwrap_or_default();
                text.contains("exit-zero") || text.contains("EXIT_ZERO")
            };
            prop_assert!(
                added_args.iter().chain(&added_env).all(|v| exit_code_only(v)),
                "{}: health flags on hostNetwork",
                name_of(c)
            );
        }
    }

    // 9. The changes record podmedic writes stays within its cap, on the object and on its pod
    // (template).
    let pod_meta = spec_ptr
        .strip_suffix("/spec")
        .filter(|t| !t.is_empty())
        .map_or("/metadata".to_owned(), |t| format!("{t}/metadata"));
    for meta in ["/metadata", pod_meta.as_str()] {
        let record = |v: &Value| v.pointer(&format!("{meta}/annotations/podmedic.io~1changes")).cloned();
        if let (Some(Value::String(after)), true) = (record(&after), record(before) != record(&after)) {
            prop_assert!(after.len() <= podmedic_engine::MAX_CHANGES_LEN, "changes record of {} bytes", after.len());
        }
    }

    // 10. podmedic records, for itself, every container it moved and, in a template (a Pod's
    // containers never change after its creation), what the user wrote.
    let record = after.pointer(&format!("{pod_meta}/annotations")).and_then(|a| a.get(MOVED_ANNOTATION));
    let record = MovedRecord::from_annotation(record.and_then(Value::as_str));
    for c in init_a.iter().filter(|c| moved(name_of(c))) {
        let name = name_of(c);
        prop_assert!(record.contains(name), "{}: not recorded", name);
        let written = fingerprint(&Value::Object(original(name).clone()));
        let expected = (before["kind"] != "Pod").then_some(written.as_str());
        prop_assert_eq!(record.fingerprint(name), expected, "{}: fingerprint", name);
    }
    Ok(())
}

fn declared_ports(c: &Map<String, Value>) -> Vec<i64> {
    let ports = set(c, "ports").and_then(Value::as_array);
    ports.into_iter().flatten().filter_map(|p| p.get("containerPort")?.as_i64()).collect()
}

/// What podmedic appended to a list field of a container (args or env).
fn list_growth<'v>(old: &Map<String, Value>, new: &'v Map<String, Value>, key: &str) -> Vec<&'v Value> {
    let before = set(old, key).and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let after = set(new, key).and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    after.iter().filter(|v| !before.contains(v)).collect()
}

/// Whether the user set a proxy's health port (podmedic then keeps it, even where it clashes).
fn user_health_port(c: &Map<String, Value>) -> bool {
    let words = ["command", "args"].into_iter().filter_map(|k| set(c, k)?.as_array()).flatten();
    let by_flag = words.filter_map(Value::as_str).any(|a| a.contains("http-port") || a.contains("health_check_port"));
    let env = set(c, "env").and_then(Value::as_array).into_iter().flatten();
    by_flag || env.filter_map(|e| e.get("name")?.as_str()).any(|n| n.ends_with("_HTTP_PORT"))
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
    let (mut two_health_checks, mut exit_zero, mut host_network_moves) = (0, 0, 0);
    for _ in 0..1000 {
        let object = render(&strategy.new_tree(&mut runner).unwrap().current());
        let m = mutate_value(&object, &context(true, true)).unwrap();
        let kinds: BTreeSet<_> = m.changes.iter().map(|c| c.kind.label()).collect();
        moved += usize::from(kinds.contains("sidecar_moved"));
        requests += usize::from(kinds.contains("requests_added"));
        probes += usize::from(kinds.contains("probe_added"));
        unchanged += usize::from(m.is_unchanged());
        let proxy_probes = m.changes.iter().filter(|c| c.detail.starts_with("startupProbe httpGet /startup")).count();
        two_health_checks += usize::from(proxy_probes >= 2);
        exit_zero += usize::from(kinds.contains("exit_zero_on_sigterm"));
        let host_network =
            object.pointer(pod_spec_pointer(&object)).and_then(|s| s.get("hostNetwork")) == Some(&json!(true));
        host_network_moves += usize::from(host_network && kinds.contains("sidecar_moved"));
    }
    assert!(moved > 200 && requests > 200 && probes > 100 && unchanged > 40, "{moved} {requests} {probes} {unchanged}");
    // The shapes the port, exit-code and host-network rules are about: two proxies in one Pod, a
    // proxy new enough for the exit-code flag, a sidecar moved on the node's network.
    assert!(
        two_health_checks > 10 && exit_zero > 20 && host_network_moves > 10,
        "{two_health_checks} {exit_zero} {host_network_moves}"
    );
}
