//! The engine on realistic manifests: given this file, podmedic produces these objects.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use podmedic_engine::annotations::CHANGES_ANNOTATION;
use podmedic_engine::{Context, NativeSidecars, Policy, mutate_value};
use serde::Deserialize;
use serde_json::Value;

fn documents(file: &str) -> Vec<Value> {
    let path = format!("{}/../../tests/fixtures/manifests/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    yaml_serde::Deserializer::from_str(&text).map(|d| Value::deserialize(d).unwrap()).filter(|v| !v.is_null()).collect()
}

/// Runs podmedic on a document, applies the patch, checks a second run is a no-op.
fn fix(doc: &Value) -> (Value, Vec<String>) {
    let policy = Policy::builtin();
    let ctx = Context { policy: &policy, native_sidecars: &NativeSidecars::Available, namespace: None };
    let m = mutate_value(doc, &ctx).unwrap();
    let mut after = doc.clone();
    json_patch::patch(&mut after, &m.patch).unwrap();
    assert!(mutate_value(&after, &ctx).unwrap().patch.0.is_empty(), "not idempotent: {}", doc["metadata"]);
    (after, m.warnings)
}

fn pod_spec(obj: &Value) -> &Value {
    match obj["kind"].as_str().unwrap() {
        "Pod" => &obj["spec"],
        "CronJob" => &obj["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => &obj["spec"]["template"]["spec"],
    }
}

fn names(list: &Value) -> Vec<String> {
    list.as_array().map(|a| a.iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect()).unwrap_or_default()
}

fn native(spec: &Value) -> Vec<String> {
    spec["initContainers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|c| c["restartPolicy"] == "Always")
                .map(|c| c["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn seed_cronjob_becomes_a_native_sidecar_cronjob() {
    let docs = documents("seed-cronjob.yaml");
    let (after, warnings) = fix(&docs[0]);
    let spec = pod_spec(&after);
    assert_eq!(names(&spec["containers"]), ["job"]);
    assert_eq!(native(spec), ["cloud-sql-proxy"]);
    let proxy = &spec["initContainers"][0];
    let args: Vec<&str> = proxy["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let port = proxy["startupProbe"]["httpGet"]["port"].as_u64().unwrap();
    assert!(args.contains(&"--health-check") && args.contains(&"--http-address=0.0.0.0"));
    assert_eq!(port, 9090, "no --http-port given, so the probe uses the proxy's default");
    assert_eq!(spec["serviceAccountName"], "otameshi-sa");
    assert!(warnings.iter().any(|w| w.contains("ubuntu:latest")));
}

#[test]
fn deployments_argo_tekton_and_airflow_pass_through() {
    for file in ["deployment.yaml", "argo-workflow-pod.yaml", "tekton-taskrun-pod.yaml", "airflow-kpo-pod.yaml"] {
        for doc in documents(file) {
            let (after, _) = fix(&doc);
            assert_eq!(after, doc, "{file} must be unchanged");
        }
    }
}

#[test]
fn istio_injected_job_pod_gets_proxy_first_and_no_double_probe() {
    let (after, _) = fix(&documents("istio-injected-job-pod.yaml")[0]);
    let spec = pod_spec(&after);
    assert_eq!(names(&spec["initContainers"]), ["istio-init", "istio-proxy", "fluent-bit"]);
    assert_eq!(names(&spec["containers"]), ["sync"]);
    assert_eq!(spec["initContainers"][1]["startupProbe"]["httpGet"]["port"], 15021);
    assert_eq!(spec["initContainers"][1]["readinessProbe"]["periodSeconds"], 15, "user probes untouched");
    assert_eq!(spec["initContainers"][2]["startupProbe"]["tcpSocket"]["port"], 2020);
    assert!(after["metadata"]["annotations"][CHANGES_ANNOTATION].as_str().unwrap().contains("istio-proxy"));
}

#[test]
fn vault_agent_moves_but_its_one_shot_init_stays() {
    let (after, _) = fix(&documents("vault-agent-job.yaml")[0]);
    let spec = pod_spec(&after);
    assert_eq!(names(&spec["initContainers"]), ["vault-agent-init", "vault-agent"]);
    assert_eq!(native(spec), ["vault-agent"]);
    assert!(spec["initContainers"][1].get("startupProbe").is_none(), "vault agent has no port to probe");
}

#[test]
fn many_registries_many_sidecars() {
    let docs = documents("log-shippers-and-proxies.yaml");
    let expected: [(&str, &[&str], &[&str]); 4] = [
        ("report-with-vector", &["vector"], &["report"]),
        ("alloydb-migrate", &["alloydb-proxy"], &["migrate"]),
        ("legacy-v1-proxy", &["cloudsql-proxy"], &["task"]),
        ("one-off-with-otel-and-pgbouncer", &["otel", "pgbouncer"], &["work"]),
    ];
    for (doc, (name, sidecars, regular)) in docs.iter().zip(expected) {
        assert_eq!(doc["metadata"]["name"], name);
        let (after, _) = fix(doc);
        let spec = pod_spec(&after);
        assert_eq!(native(spec), sidecars, "{name}");
        assert_eq!(names(&spec["containers"]), regular, "{name}");
    }
    let (alloy, _) = fix(&docs[1]);
    let proxy = &pod_spec(&alloy)["initContainers"][0];
    assert_eq!(proxy["startupProbe"]["httpGet"]["path"], "/startup");
    assert!(proxy["args"].as_array().unwrap().iter().any(|a| a == "--health-check"));
    let (legacy, _) = fix(&docs[2]);
    let v1 = &pod_spec(&legacy)["initContainers"][0];
    assert_eq!(v1["args"], serde_json::json!(["-use_http_health_check"]));
    assert_eq!(v1["startupProbe"]["httpGet"]["port"], 8090);
}

#[test]
fn list_items_are_fixed_one_by_one() {
    let list = &documents("list.json")[0];
    let policy = Policy::builtin();
    let ctx = Context { policy: &policy, native_sidecars: &NativeSidecars::Available, namespace: None };
    let items = list["items"].as_array().unwrap();
    let job = mutate_value(&items[0], &ctx).unwrap();
    let mut fixed = items[0].clone();
    json_patch::patch(&mut fixed, &job.patch).unwrap();
    assert_eq!(native(pod_spec(&fixed)), ["datadog"]);
    assert!(pod_spec(&fixed)["initContainers"][0].get("startupProbe").is_none(), "UDP port is not probed over TCP");
    assert!(mutate_value(&items[1], &ctx).unwrap().patch.0.is_empty());
}
