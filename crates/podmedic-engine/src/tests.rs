//! Table-driven tests of the engine: given this manifest, podmedic produces that object.

use serde_json::{Value, json};

use super::*;
use crate::annotations::CHANGES_ANNOTATION;

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
    let ctx = Context { policy, native_sidecars: &native, namespace: ns, cluster: Default::default() };
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
fn catalogue_matches_images_from_any_registry() {
    let cases = [
        ("gcr.io/cloudsql-docker/gce-proxy:1.33.2", true),
        ("us-central1-docker.pkg.dev/cloud-sql-connectors/gcr.io/cloud-sql-proxy:2.11.0", true),
        ("gcr.io/alloydb-connectors/alloydb-auth-proxy:1.10.0", true),
        ("docker.io/istio/proxyv2:1.22.0", true),
        ("cr.l5d.io/linkerd/proxy:stable-2.14.10", true),
        ("envoyproxy/envoy:v1.31.0", true),
        ("cr.fluentbit.io/fluent/fluent-bit:3.1", true),
        ("fluent/fluentd:v1.17", true),
        ("timberio/vector:0.40.0-distroless-libc", true),
        ("grafana/promtail:3.0.0", true),
        ("grafana/alloy:v1.3.0", true),
        ("otel/opentelemetry-collector-contrib:0.108.0", true),
        ("gcr.io/datadoghq/agent:7", true),
        ("bitnami/pgbouncer:1.23.1", true),
        ("mirror.corp.example:5000/dockerhub/edoburu/pgbouncer@sha256:abcd", true),
        ("registry.example.com/acme/report:1.8.0", false),
        ("postgres:16", false),
        ("nginx:1.27", false),
    ];
    for (image, sidecar) in cases {
        let manifest = pod(&format!(
            "  containers:\n  - {{name: main, image: 'app:1'}}\n  - {{name: side, image: '{image}', ports: [{{containerPort: 9000}}]}}\n"
        ));
        let r = run(&manifest);
        let moved = names(&r.after["spec"]["initContainers"]) == ["side"];
        assert_eq!(moved, sidecar, "{image}");
    }
}

#[test]
fn vault_is_a_sidecar_only_when_it_runs_agent() {
    let agent = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - name: vault-agent\n    image: hashicorp/vault:1.17\n    args: ['agent', '-config=/vault/config.hcl']\n",
    );
    assert_eq!(names(&run(&agent).after["spec"]["initContainers"]), ["vault-agent"]);
    let injected = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - name: vault-agent\n    image: hashicorp/vault:1.17\n    command: [/bin/sh, -ec]\n    args: ['echo ${VAULT_CONFIG?} | base64 -d > /home/vault/config.json && vault agent -config=/home/vault/config.json']\n",
    );
    assert_eq!(names(&run(&injected).after["spec"]["initContainers"]), ["vault-agent"]);
    let server = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - {name: vault, image: 'hashicorp/vault:1.17', args: [server]}\n",
    );
    assert!(run(&server).mutation.patch.0.is_empty());
    let one_shot = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - {name: vault, image: 'hashicorp/vault:1.17', args: [agent, -exit-after-auth]}\n",
    );
    assert!(run(&one_shot).mutation.changes.iter().all(|c| c.kind != ChangeKind::SidecarMoved));
}

#[test]
fn annotation_names_exactly_the_sidecars_and_warns_on_unknown_names() {
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata:
  name: p
  annotations: {podmedic.io/sidecars: "shipper, nope"}
spec:
  restartPolicy: OnFailure
  containers:
  - {name: main, image: "app:1"}
  - {name: shipper, image: "acme/custom-shipper:2", ports: [{containerPort: 24224}]}
  - {name: proxy, image: "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0"}
"#;
    let r = run(manifest);
    assert_eq!(names(&r.after["spec"]["containers"]), ["main", "proxy"], "only the named sidecar moves");
    assert_eq!(names(&r.after["spec"]["initContainers"]), ["shipper"]);
    assert_eq!(r.after["spec"]["initContainers"][0]["startupProbe"]["tcpSocket"]["port"], 24224);
    assert!(r.mutation.warnings.iter().any(|w| w.contains("\"nope\"")), "{:?}", r.mutation.warnings);
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
fn mesh_proxy_moves_first_and_position_first_respects_mesh_init_containers() {
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata:
  name: p
  annotations: {podmedic.io/sidecar-position: first}
spec:
  restartPolicy: Never
  initContainers:
  - {name: istio-init, image: "docker.io/istio/proxyv2:1.22.0"}
  - {name: migrate, image: "acme/migrate:3"}
  containers:
  - {name: main, image: "app:1"}
  - {name: cloud-sql-proxy, image: "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0"}
  - {name: istio-proxy, image: "docker.io/istio/proxyv2:1.22.0", ports: [{containerPort: 15090}]}
"#;
    let r = run(manifest);
    assert_eq!(names(&r.after["spec"]["initContainers"]), ["istio-init", "istio-proxy", "cloud-sql-proxy", "migrate"]);
    assert_eq!(names(&r.after["spec"]["containers"]), ["main"]);
    for i in [1, 2] {
        assert_eq!(r.after["spec"]["initContainers"][i]["restartPolicy"], "Always");
    }
    assert!(r.after["spec"]["initContainers"][0].get("restartPolicy").is_none());
    assert!(r.after["spec"]["initContainers"][3].get("restartPolicy").is_none());
}

#[test]
fn sidecars_append_after_existing_init_containers_in_their_relative_order() {
    let manifest = pod(
        "  initContainers:\n  - {name: setup, image: 'busybox:1.36'}\n  - {name: existing-native, image: 'acme/x:1', restartPolicy: Always}\n  containers:\n  - {name: shipper, image: 'fluent/fluent-bit:3.1'}\n  - {name: main, image: 'app:1'}\n  - {name: otel, image: 'otel/opentelemetry-collector:0.108.0'}\n",
    );
    let r = run(&manifest);
    assert_eq!(names(&r.after["spec"]["initContainers"]), ["setup", "existing-native", "shipper", "otel"]);
    assert_eq!(names(&r.after["spec"]["containers"]), ["main"]);
    let notes = r.after["metadata"]["annotations"][CHANGES_ANNOTATION].as_str().unwrap();
    assert!(notes.contains("no startup probe (no containerPort declared)"), "{notes}");
}

#[test]
fn at_least_one_regular_container_remains() {
    let manifest = pod(
        "  containers:\n  - {name: a, image: 'fluent/fluent-bit:3.1'}\n  - {name: b, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0'}\n",
    );
    let r = run(&manifest);
    assert!(r.mutation.patch.0.is_empty());
    assert!(r.mutation.warnings.iter().any(|w| w.contains("every container looks like a sidecar")));
}

#[test]
fn containers_that_set_a_restart_policy_stay_put() {
    let manifest = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - {name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0', restartPolicy: Never}\n",
    );
    let r = run(&manifest);
    assert!(r.mutation.patch.0.is_empty());
    assert!(r.mutation.warnings.iter().any(|w| w.contains("sets restartPolicy")));
}

#[test]
fn a_name_already_used_by_an_init_container_is_never_duplicated() {
    let manifest = pod(
        "  initContainers:\n  - {name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0', restartPolicy: Always}\n  containers:\n  - {name: main, image: 'app:1'}\n  - {name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0'}\n",
    );
    let r = run(&manifest);
    assert!(r.mutation.patch.0.is_empty());
    assert!(r.mutation.warnings.iter().any(|w| w.contains("same name")), "{:?}", r.mutation.warnings);
}

#[test]
fn older_clusters_get_a_warning_and_no_move() {
    let r = run_with(SEED_CRONJOB, &Policy::builtin(), NativeSidecars::for_version(1, 28), None);
    assert!(r.mutation.patch.0.is_empty());
    assert!(r.mutation.warnings.iter().any(|w| w.contains("native sidecars are not available") && w.contains("1.28")));
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
    let ctx = Context {
        policy: &policy,
        native_sidecars: &NativeSidecars::Available,
        namespace: None,
        cluster: Default::default(),
    };
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

fn moved_proxy(r: &Run) -> &Value {
    &r.after["spec"]["initContainers"][0]
}

#[test]
fn cloud_sql_v2_env_form_gets_env_settings() {
    let manifest = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - name: proxy\n    image: gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1\n    env:\n    - {name: CSQL_PROXY_INSTANCE_CONNECTION_NAME, value: 'p:r:i'}\n",
    );
    let r = run(&manifest);
    let env = moved_proxy(&r)["env"].as_array().unwrap();
    let get = |n: &str| env.iter().find(|e| e["name"] == n).map(|e| e["value"].clone());
    assert_eq!(get("CSQL_PROXY_HEALTH_CHECK"), Some(json!("true")));
    assert_eq!(get("CSQL_PROXY_HTTP_ADDRESS"), Some(json!("0.0.0.0")));
    assert!(moved_proxy(&r).get("args").is_none(), "env form adds no args");
    assert_eq!(moved_proxy(&r)["startupProbe"]["httpGet"]["port"], 9090);
}

#[test]
fn health_port_moves_off_9090_when_another_container_uses_it() {
    let manifest = pod(
        "  containers:\n  - {name: main, image: 'app:1', ports: [{containerPort: 9090}]}\n  - {name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0', args: ['p:r:i']}\n",
    );
    let r = run(&manifest);
    let args = &moved_proxy(&r)["args"];
    assert!(args.as_array().unwrap().contains(&json!("--http-port=9091")), "{args}");
    assert_eq!(moved_proxy(&r)["startupProbe"]["httpGet"]["port"], 9091);
}

#[test]
fn user_health_settings_are_kept_and_used() {
    let manifest = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - {name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0', args: ['--health-check', '--http-address', '0.0.0.0', '--http-port=8181', 'p:r:i']}\n",
    );
    let r = run(&manifest);
    assert_eq!(moved_proxy(&r)["args"], r.before["spec"]["containers"][1]["args"], "args unchanged");
    assert_eq!(moved_proxy(&r)["startupProbe"]["httpGet"]["port"], 8181);
}

#[test]
fn unreachable_or_disabled_health_endpoints_get_no_probe() {
    for args in ["['--http-address=127.0.0.1', 'p:r:i']", "['--health-check=false', 'p:r:i']"] {
        let manifest = pod(&format!(
            "  containers:\n  - {{name: main, image: 'app:1'}}\n  - {{name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0', args: {args}}}\n"
        ));
        let r = run(&manifest);
        assert_eq!(moved_proxy(&r)["restartPolicy"], "Always", "still moves");
        assert!(moved_proxy(&r).get("startupProbe").is_none(), "{args}");
        assert_eq!(moved_proxy(&r)["args"], r.before["spec"]["containers"][1]["args"]);
    }
}

#[test]
fn existing_startup_probes_are_never_replaced() {
    let manifest = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - name: proxy\n    image: gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0\n    startupProbe: {tcpSocket: {port: 5432}, periodSeconds: 7}\n",
    );
    let r = run(&manifest);
    assert_eq!(moved_proxy(&r)["startupProbe"], json!({"tcpSocket": {"port": 5432}, "periodSeconds": 7}));
    assert!(moved_proxy(&r).get("args").is_none());
}

#[test]
fn all_health_flags_land_when_the_sidecar_has_no_args_or_env() {
    let manifest = pod(
        "  containers:\n  - {name: main, image: 'app:1', ports: [{containerPort: 9090}]}\n  - name: proxy\n    image: gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0\n    command: [/cloud-sql-proxy, 'p:r:i']\n",
    );
    let r = run(&manifest);
    assert_eq!(moved_proxy(&r)["args"], json!(["--health-check", "--http-address=0.0.0.0", "--http-port=9091"]));
    assert_eq!(moved_proxy(&r)["startupProbe"]["httpGet"]["port"], 9091);
    let terminated = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - {name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0', args: ['--port=5432', '--', 'p:r:i']}\n",
    );
    let r = run(&terminated);
    assert_eq!(
        moved_proxy(&r)["args"],
        json!(["--port=5432", "--health-check", "--http-address=0.0.0.0", "--", "p:r:i"])
    );
}

#[test]
fn cloud_sql_v1_uses_its_own_flags() {
    let manifest = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - name: proxy\n    image: gcr.io/cloudsql-docker/gce-proxy:1.33.2\n    command: [/cloud_sql_proxy, '-instances=p:r:i=tcp:5432']\n",
    );
    let r = run(&manifest);
    assert_eq!(moved_proxy(&r)["args"], json!(["-use_http_health_check"]));
    assert_eq!(moved_proxy(&r)["startupProbe"]["httpGet"], json!({"path": "/startup", "port": 8090}));
}

#[test]
fn no_startup_probes_while_a_mesh_proxy_stays_regular() {
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata:
  name: p
  annotations: {podmedic.io/sidecars: proxy}
spec:
  restartPolicy: Never
  containers:
  - {name: main, image: "app:1"}
  - {name: istio-proxy, image: "docker.io/istio/proxyv2:1.22.0"}
  - {name: proxy, image: "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0"}
"#;
    let r = run(manifest);
    assert_eq!(names(&r.after["spec"]["containers"]), ["main", "istio-proxy"]);
    assert!(moved_proxy(&r).get("startupProbe").is_none());
    assert!(moved_proxy(&r).get("args").is_none());
}

#[test]
fn default_requests_fill_gaps_only_and_respect_limits() {
    let policy = Policy::builtin_with(
        "apiVersion: podmedic.io/v1alpha1\nkind: Policy\ndefaultRequests: {enabled: true, containers: {cpu: 100m, memory: 128Mi}, sidecars: {cpu: 50m, memory: 64Mi}}\n",
        "test",
    )
    .unwrap();
    let manifest = pod(
        "  containers:\n  - {name: main, image: 'app:1', resources: {requests: {cpu: '2'}, limits: {memory: 100Mi}}}\n  - {name: bare, image: 'app:1'}\n  - {name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0', resources: {limits: {cpu: 20m}}}\n",
    );
    let r = run_with(&manifest, &policy, NativeSidecars::Available, None);
    let c = &r.after["spec"]["containers"];
    assert_eq!(c[0]["resources"], json!({"requests": {"cpu": "2", "memory": "100Mi"}, "limits": {"memory": "100Mi"}}));
    assert_eq!(c[1]["resources"], json!({"requests": {"cpu": "100m", "memory": "128Mi"}}));
    let proxy = moved_proxy(&r);
    assert_eq!(proxy["resources"], json!({"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"cpu": "20m"}}));
}

#[test]
fn namespace_settings_enable_defaults_and_probes() {
    let ns = NamespaceSettings {
        default_requests: Some(crate::policy::ResourceDefaults::parse_annotation("cpu=250m,memory=256Mi").unwrap()),
        readiness_probes: Some(true),
        ..Default::default()
    };
    let manifest = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - {name: web, image: 'web:2', ports: [{containerPort: 8080}]}\n  - {name: probed, image: 'web:2', ports: [{containerPort: 81}], livenessProbe: {tcpSocket: {port: 81}}}\n";
    let r = run_with(manifest, &Policy::builtin(), NativeSidecars::Available, Some(&ns));
    let c = &r.after["spec"]["containers"];
    assert_eq!(c[0]["resources"]["requests"], json!({"cpu": "250m", "memory": "256Mi"}));
    assert_eq!(c[0]["readinessProbe"]["tcpSocket"]["port"], 8080);
    assert!(c[0].get("livenessProbe").is_none(), "liveness probes are never added by default");
    assert!(c[1].get("readinessProbe").is_none(), "a container with a probe gets none added");
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
