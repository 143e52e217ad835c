//! Convergence on manifests the captures do not cover: several sidecars, one changed; init
//! containers of the user's own; other changes podmedic recorded.

use serde_json::{Value, json};

use super::*;
use crate::kubernetes::NativeSidecars;
use crate::policy::Policy;

const CRONJOB: &str = r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          initContainers:
          - {name: migrate, image: "registry.example/migrate:3"}
          containers:
          - {name: job, image: "registry.example/job:1"}
          - {name: cloud-sql-proxy, image: "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1", args: ["--port=5432", "p:r:db"]}
          - {name: fluent-bit, image: "cr.fluentbit.io/fluent/fluent-bit:3.1"}
"#;

fn with_ctx<T>(f: impl FnOnce(&Context<'_>) -> T) -> T {
    let policy = Policy::builtin();
    f(&Context::new(&policy, &NativeSidecars::Available))
}

fn spec(object: &Value) -> &Value {
    &object["spec"]["jobTemplate"]["spec"]["template"]["spec"]
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array().into_iter().flatten().map(|c| c["name"].as_str().unwrap_or_default()).collect()
}

/// What podmedic stores for `manifest` on CREATE.
fn stored(manifest: &Value, ctx: &Context<'_>) -> Value {
    let mut object = manifest.clone();
    json_patch::patch(&mut object, &crate::mutate_value(manifest, ctx).unwrap().patch).unwrap();
    object
}

/// The re-apply of `manifest` over `stored`: the user's containers back at the end of `containers`.
fn reapply(stored: &Value, manifest: &Value) -> Value {
    let mut object = stored.clone();
    let kept: Vec<&str> = names(&spec(stored)["containers"]);
    let back: Vec<Value> = spec(manifest)["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !kept.contains(&c["name"].as_str().unwrap()))
        .cloned()
        .collect();
    object["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"].as_array_mut().unwrap().extend(back);
    object
}

fn converged(object: &Value, stored: &Value, mode: UpdateMode, ctx: &Context<'_>) -> Value {
    let mutation = converge(object, stored, mode, ctx).unwrap();
    let mut result = object.clone();
    json_patch::patch(&mut result, &mutation.patch).unwrap();
    let again = converge(&result, stored, mode, ctx).unwrap();
    assert!(again.patch.0.is_empty(), "idempotent: {:?}", again.patch);
    result
}

#[test]
fn one_changed_sidecar_among_several_returns_to_its_place_and_the_others_stay_as_stored() {
    with_ctx(|ctx| {
        let manifest: Value = yaml_serde::from_str(CRONJOB).unwrap();
        let stored = stored(&manifest, ctx);
        assert_eq!(names(&spec(&stored)["initContainers"]), ["migrate", "cloud-sql-proxy", "fluent-bit"]);

        let mut bumped = manifest.clone();
        bumped["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][1]["image"] =
            json!("gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.15.0");
        let result = converged(&reapply(&stored, &bumped), &stored, UpdateMode::Template, ctx);
        let init = &spec(&result)["initContainers"];
        assert_eq!(names(init), ["migrate", "cloud-sql-proxy", "fluent-bit"], "in its place");
        assert_eq!(names(&spec(&result)["containers"]), ["job"]);
        assert_eq!(init[1]["image"], "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.15.0");
        assert_eq!(init[1]["restartPolicy"], "Always");
        assert!(init[1]["startupProbe"].is_object(), "podmedic's additions again");
        assert_eq!(init[2], spec(&stored)["initContainers"][2], "fluent-bit byte for byte");
    });
}

#[test]
fn undoing_one_move_keeps_the_others_and_what_else_podmedic_recorded() {
    with_ctx(|ctx| {
        let manifest: Value = yaml_serde::from_str(CRONJOB).unwrap();
        let stored = stored(&manifest, ctx);
        let result = converge(&reapply(&stored, &manifest), &stored, UpdateMode::Undo, ctx).unwrap();
        let mut after = reapply(&stored, &manifest);
        json_patch::patch(&mut after, &result.patch).unwrap();
        assert_eq!(names(&spec(&after)["initContainers"]), ["migrate"], "the user's own init container stays");
        assert_eq!(names(&spec(&after)["containers"]), ["job", "cloud-sql-proxy", "fluent-bit"]);
        let kinds: Vec<ChangeKind> = result.changes.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, [ChangeKind::SidecarRestored, ChangeKind::SidecarRestored]);

        // Only a move that is re-applied is undone: a schedule change leaves the template alone.
        let mut rescheduled = stored.clone();
        rescheduled["spec"]["schedule"] = json!("0 4 * * *");
        assert!(converge(&rescheduled, &stored, UpdateMode::Undo, ctx).unwrap().patch.0.is_empty());

        // Other changes podmedic recorded stay in podmedic.io/changes.
        let mut noted = reapply(&stored, &manifest);
        let text = "job: default requests cpu=100m; cloud-sql-proxy: moved to initContainers as a native sidecar";
        noted["metadata"]["annotations"][CHANGES_ANNOTATION] = json!(text);
        let after = converged(&noted, &stored, UpdateMode::Undo, ctx);
        assert_eq!(after["metadata"]["annotations"][CHANGES_ANNOTATION], "job: default requests cpu=100m");
    });
}

#[test]
fn a_same_named_init_container_of_the_user_s_own_is_not_podmedic_s_to_converge() {
    with_ctx(|ctx| {
        // The user's manifest itself holds a native sidecar and a container of one name: no
        // record, no changes text, and the init container is not the container plus podmedic's
        // additions. The API server refuses it, as it would without podmedic.
        let object = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "initContainers": [{"name": "proxy", "image": "envoyproxy/envoy:v1.31", "restartPolicy": "Always"}],
                "containers": [{"name": "main", "image": "busybox"}, {"name": "proxy", "image": "envoyproxy/envoy:v1.30"}]}}}});
        for mode in [UpdateMode::Template, UpdateMode::Undo] {
            let mutation = converge(&object, &object, mode, ctx).unwrap();
            assert!(mutation.patch.0.is_empty(), "{mode:?}: {:?}", mutation.patch);
        }
    });
}

#[test]
fn unreadable_objects_are_errors_and_unknown_kinds_are_not_converged() {
    with_ctx(|ctx| {
        assert!(converge_update("{not json", None, UpdateMode::Template, ctx).is_err());
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "a"}]}});
        assert!(converge(&pod, &Value::Null, UpdateMode::Undo, ctx).unwrap().patch.0.is_empty());
        // A stored object that cannot be read hides only the stored init containers.
        let text =
            r#"{"apiVersion":"batch/v1","kind":"Job","spec":{"template":{"spec":{"containers":[{"name":"a"}]}}}}"#;
        assert!(converge_update(text, Some("[1,"), UpdateMode::Template, ctx).unwrap().patch.0.is_empty());
    });
}
