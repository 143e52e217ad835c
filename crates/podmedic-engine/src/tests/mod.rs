//! Table-driven tests of the engine: given this manifest, podmedic produces that object.

use serde_json::{Value, json};

use super::*;
use crate::annotations::CHANGES_ANNOTATION;

mod meshes;
mod proxies;
mod resources;
mod selection;

fn yaml(text: &str) -> Value {
    yaml_serde::from_str(text).unwrap()
}

struct Run {
    before: Value,
    after: Value,
    mutation: Mutation,
}

fn run_with(manifest: &str, policy: &Policy, native: NativeSidecars, ns: Option<&NamespaceSettings>) -> Run {
    let before = yaml(manifest);
    let ctx = Context { namespace: ns, ..Context::new(policy, &native) };
    let mutation = mutate_value(&before, &ctx).unwrap();
    let mut after = before.clone();
    json_patch::patch(&mut after, &mutation.patch).unwrap();
    // Idempotence: podmedic on its own output changes nothing.
    let again = mutate_value(&after, &ctx).unwrap();
    assert!(again.patch.0.is_empty(), "second run must be empty, got {:?}", again.patch);
    Run { before, after, mutation }
}

fn run(manifest: &str) -> Run {
    run_with(manifest, &Policy::builtin(), NativeSidecars::Available, None)
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array().map(|a| a.iter().map(|c| c["name"].as_str().unwrap()).collect()).unwrap_or_default()
}

/// The first init container of a Pod: the moved proxy in the single-sidecar cases.
fn moved_proxy(r: &Run) -> &Value {
    &r.after["spec"]["initContainers"][0]
}

fn pod(containers: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  restartPolicy: Never\n{containers}")
}

const SEED_CRONJOB: &str = r#"
apiVersion: batch/v1
kind: CronJob
metadata:
  name: otameshi
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - name: job
            image: ubuntu:latest
            args: [ls, /]
          - name: cloud-sql-proxy
            image: gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0
            args: ["--structured-logs", "--port=3306", "proj:region:inst"]
"#;

#[test]
fn seed_cronjob_gets_a_native_sidecar_with_a_working_startup_probe() {
    let r = run(SEED_CRONJOB);
    let spec = &r.after["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(names(&spec["containers"]), ["job"]);
    assert_eq!(names(&spec["initContainers"]), ["cloud-sql-proxy"]);
    let proxy = &spec["initContainers"][0];
    assert_eq!(proxy["restartPolicy"], "Always");
    let args: Vec<&str> = proxy["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(&args[..3], ["--structured-logs", "--port=3306", "proj:region:inst"], "user args kept first");
    assert!(args.contains(&"--health-check") && args.contains(&"--http-address=0.0.0.0"), "{args:?}");
    assert_eq!(proxy["startupProbe"]["httpGet"], json!({"path": "/startup", "port": 9090}));
    assert_eq!(proxy["startupProbe"]["periodSeconds"], 1);
    assert_eq!(proxy["startupProbe"]["failureThreshold"], 60);
    let changes = r.after["metadata"]["annotations"][CHANGES_ANNOTATION].as_str().unwrap();
    assert!(changes.contains("cloud-sql-proxy"), "{changes}");
    assert!(
        r.after["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["annotations"][CHANGES_ANNOTATION].is_string()
    );
    assert!(r.mutation.warnings.iter().any(|w| w.contains("ubuntu:latest")), "{:?}", r.mutation.warnings);
    assert!(r.mutation.warnings.iter().all(|w| w.len() < 120));
    // Nothing else in the object changed.
    assert_eq!(r.after["spec"]["schedule"], r.before["spec"]["schedule"]);
}

#[test]
fn pods_that_restart_always_and_other_kinds_pass_through() {
    for manifest in [
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: app, image: app:1}\n  - {name: proxy, image: gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0}\n",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      containers:\n      - {name: app, image: app:1, resources: {requests: {cpu: 1}}}\n      - {name: proxy, image: gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0, resources: {requests: {cpu: 1}}}\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n",
        "apiVersion: batch/v2alpha1\nkind: Job\nmetadata: {name: j}\nspec: {}\n",
    ] {
        let r = run(manifest);
        assert!(r.mutation.patch.0.is_empty(), "{manifest}");
        assert_eq!(r.before, r.after);
    }
}

#[test]
fn skip_annotation_and_self_managed_workloads_are_never_touched() {
    let proxy = "  - {name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0'}\n";
    let cases = [
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {{podmedic.io/skip: 'true'}}\nspec:\n  restartPolicy: Never\n  containers:\n  - {{name: main, image: 'a:1'}}\n{proxy}"
        ),
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {{workflows.argoproj.io/workflow: wf}}\nspec:\n  restartPolicy: Never\n  containers:\n  - {{name: wait, image: 'quay.io/argoproj/argoexec:v3.5.8'}}\n  - {{name: main, image: 'a:1'}}\n{proxy}"
        ),
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {{tekton.dev/taskRun: tr}}\nspec:\n  restartPolicy: Never\n  containers:\n  - {{name: step-build, image: 'a:1'}}\n{proxy}"
        ),
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  restartPolicy: Never\n  containers:\n  - {{name: base, image: 'a:1'}}\n  - {{name: airflow-xcom-sidecar, image: 'alpine:3.20'}}\n{proxy}"
        ),
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {{kubernetes.io/config.mirror: abc}}\nspec:\n  restartPolicy: Never\n  containers:\n  - {{name: main, image: 'a:1'}}\n{proxy}"
        ),
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: j}}\nspec:\n  template:\n    metadata:\n      annotations: {{podmedic.io/skip: 'TRUE'}}\n    spec:\n      restartPolicy: Never\n      containers:\n      - {{name: main, image: 'a:1'}}\n    {proxy}"
        ),
    ];
    for manifest in &cases {
        let r = run(manifest);
        assert!(r.mutation.patch.0.is_empty(), "{manifest}\n{:?}", r.mutation.patch);
    }
}

#[test]
fn unknown_fields_survive_and_pointers_are_escaped() {
    let manifest = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: j
  annotations: {"team/owner": "x"}
spec:
  futureJobField: {a: 1}
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: "app:1"
      - name: proxy
        image: "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0"
        futureContainerField: {nested: [1, 2, 3]}
        securityContext: {runAsNonRoot: true}
"#;
    let r = run(manifest);
    let proxy = &r.after["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(proxy["futureContainerField"], json!({"nested": [1, 2, 3]}));
    assert_eq!(proxy["securityContext"], json!({"runAsNonRoot": true}));
    assert_eq!(r.after["spec"]["futureJobField"], json!({"a": 1}));
    assert_eq!(r.after["metadata"]["annotations"]["team/owner"], "x");
    let text = serde_json::to_string(&r.mutation.patch).unwrap();
    assert!(text.contains("podmedic.io~1changes"), "{text}");
}

#[test]
fn malformed_objects_are_errors_not_panics() {
    let policy = Policy::builtin();
    let ctx = Context::new(&policy, &NativeSidecars::Available);
    for raw in [
        r#"{"kind":"Pod","spec":{"containers":{"name":"x"}}}"#,
        r#"{"kind":"Pod","spec":{"containers":[{"name":"x","ports":[{"containerPort":"80"}]}]}}"#,
        r#"{"kind":"Pod","spec":{"containers":[{"image":"x"}]}}"#,
        "not json",
        "{\"kind\":\"Pod\"} trailing",
    ] {
        assert!(mutate_json(raw, &ctx).is_err(), "{raw}");
    }
    // Shapes that are not objects podmedic acts on pass through unchanged.
    for raw in ["[]", "null", "{}", "{\"kind\":\"Pod\"}"] {
        assert!(mutate_json(raw, &ctx).is_ok_and(|m| m.is_unchanged()), "{raw}");
    }
}

#[test]
fn backgrounded_entrypoints_are_warned_about() {
    let manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers:\n      - {name: web, image: 'node:20', command: [sh, -c, 'nohup node server.js &']}\n";
    let r = run(manifest);
    assert!(r.mutation.patch.0.is_empty());
    assert!(
        r.mutation.warnings.iter().any(|w| w.contains("backgrounded") && w.contains("CrashLoopBackOff")),
        "{:?}",
        r.mutation.warnings
    );
    let fine = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers:\n      - {name: web, image: 'node:20', command: [bash, -c, \"nohup daemon &\\nnode server.js\"]}\n";
    assert!(run(fine).mutation.warnings.iter().all(|w| !w.contains("backgrounded")));
}

#[test]
fn old_ways_of_stopping_sidecars_and_pod_failure_policies_are_warned_about() {
    let manifest = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: j}
spec:
  podFailurePolicy:
    rules:
    - action: FailJob
      onExitCodes: {operator: In, values: [1, 143]}
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: "app:1"
        command: [sh, -c, "run-job; curl -fsX POST localhost:15020/quitquitquit"]
      - {name: proxy, image: "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0"}
"#;
    let r = run(manifest);
    let w = &r.mutation.warnings;
    assert!(w.iter().any(|w| w.contains("/quitquitquit")), "{w:?}");
    assert!(w.iter().any(|w| w.contains("podFailurePolicy rule 0")), "{w:?}");
    assert!(w.iter().all(|w| w.len() < 120));
}

#[test]
fn the_changes_record_is_rewritten_not_appended_to() {
    // A Pod from a Job whose template podmedic fixed: the template's record came along, and a
    // sidecar a later webhook added is moved now.
    let earlier = "fluent-bit: moved to initContainers as a native sidecar (restartPolicy: Always); ... and 3 more";
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {{podmedic.io/changes: '{earlier}'}}\nspec:\n  restartPolicy: Never\n  initContainers:\n  - {{name: fluent-bit, image: 'fluent/fluent-bit:3.1', restartPolicy: Always}}\n  containers:\n  - {{name: main, image: 'app:1'}}\n  - {{name: vector, image: 'timberio/vector:0.40.0-distroless-libc'}}\n"
    );
    let r = run(&manifest);
    let record = r.after["metadata"]["annotations"][CHANGES_ANNOTATION].as_str().unwrap();
    assert_eq!(
        record,
        "fluent-bit: moved to initContainers as a native sidecar (restartPolicy: Always); \
         vector: moved to initContainers as a native sidecar (restartPolicy: Always); \
         vector: no startup probe (no TCP containerPort declared); ... and 3 more"
    );
}
