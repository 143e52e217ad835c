//! Issue 15 end to end: each check's warning as `kubectl apply` receives it (the API server's
//! `Warning` headers), through the warnings-only ValidatingWebhookConfiguration of `deploy/base`
//! (warn-workloads.podmedic.io for Deployments, StatefulSets and DaemonSets, warn.podmedic.io for
//! Jobs), in pods mode's namespace, the default install; and `podmedic audit` explaining a Pod
//! that cannot be scheduled. Workloads have no replicas or are dry runs, so nothing is pulled or
//! run.

use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use super::creation::Mode;
use super::*;

/// The namespace of the checks: pods mode's, where creation.rs registered `deploy/base`.
fn namespace(run: &Run) -> String {
    run.namespace(Mode::Pods)
}

/// An object's API path in the run's labelled namespace.
fn path(run: &Run, resource: &str) -> String {
    let group = match resource {
        "deployments" | "statefulsets" | "daemonsets" => "apis/apps/v1",
        "jobs" => "apis/batch/v1",
        _ => "api/v1",
    };
    format!("/{group}/namespaces/{}/{resource}", namespace(run))
}

/// Creates (or, with `dry_run`, only admits) the object and returns the warnings the API server
/// passed on, as `kubectl apply` prints them.
async fn warnings_of(run: &Run, resource: &str, object: &Value, dry_run: bool) -> Vec<String> {
    let params = PostParams { dry_run, ..PostParams::default() };
    let body = serde_json::to_vec(object).expect("JSON");
    let request = kube::core::Request::new(path(run, resource)).create(&params, body).expect("a create request");
    let response = run.client.send(request.map(kube::client::Body::from)).await.expect("the API server answers");
    assert!(response.status().is_success(), "creating {resource}: HTTP {}", response.status());
    response
        .headers()
        .get_all("warning")
        .iter()
        .filter_map(|v| v.to_str().ok())
        // `299 - "text"`, the text escaped as a Go quoted string.
        .map(|v| v.trim_start_matches("299 - ").trim_matches('"').replace("\\\"", "\"").replace("\\\\", "\\"))
        .collect()
}

fn assert_warned(what: &str, warnings: &[String], expected: &str) {
    assert!(
        warnings.iter().any(|w| w.contains(expected)),
        "{what}: no warning containing {expected:?} in {warnings:#?}"
    );
}

fn assert_not_warned(what: &str, warnings: &[String], unexpected: &str) {
    assert!(!warnings.iter().any(|w| w.contains(unexpected)), "{what}: unexpected {unexpected:?} in {warnings:#?}");
}

/// A workload of `kind` with this pod spec and no Pod to run.
fn workload(kind: &str, name: &str, spec: Value) -> Value {
    let template = json!({"metadata": {"labels": {"app": name}}, "spec": spec});
    match kind {
        "Job" => json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
                        "spec": {"suspend": true, "template": template}}),
        "DaemonSet" => json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
                              "spec": {"selector": {"matchLabels": {"app": name}}, "template": template}}),
        _ => json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name},
                    "spec": {"replicas": 0, "serviceName": name, "selector": {"matchLabels": {"app": name}},
                             "template": template}}),
    }
}

fn container(extra: Value) -> Value {
    let mut c = json!({"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"]});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    c
}

/// One scenario per check, then `podmedic audit`.
pub(super) async fn scenario(run: &Run, kubeconfig: &Path) {
    // node-fit: more CPU than any node has; for a StatefulSet and a Job (both on /warn).
    let huge = json!({"containers": [container(json!({"resources": {"requests": {"cpu": "100000"}}}))]});
    let warnings = warnings_of(run, "statefulsets", &workload("StatefulSet", "too-big", huge.clone()), false).await;
    assert_warned("node-fit (StatefulSet)", &warnings, "no node can fit cpu 100000 (largest allocatable: ");
    let mut job_spec = huge.clone();
    job_spec["restartPolicy"] = json!("Never");
    let warnings = warnings_of(run, "jobs", &workload("Job", "too-big", job_spec.clone()), false).await;
    assert_warned("node-fit (Job)", &warnings, "no node can fit cpu 100000");
    // ... but never for a Pod: the Pods controllers create are not warned about.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "too-big"}, "spec": job_spec});
    let warnings = warnings_of(run, "pods", &pod, true).await;
    assert_not_warned("a Pod", &warnings, "no node can fit");
    // ... and not when the workload turns the check off.
    let mut quiet = workload("Deployment", "too-big-quiet", huge);
    quiet["metadata"]["annotations"] = json!({"podmedic.io/disabled-checks": "node-fit"});
    let warnings = warnings_of(run, "deployments", &quiet, true).await;
    assert_not_warned("node-fit turned off", &warnings, "no node can fit");

    // node-selector: a Deployment and a DaemonSet whose nodeSelector no node has.
    let nowhere = json!({"nodeSelector": {"podmedic.io/e2e-none": "x"}, "containers": [container(json!({}))]});
    let warnings = warnings_of(run, "deployments", &workload("Deployment", "nowhere", nowhere.clone()), false).await;
    assert_warned("node-selector", &warnings, "nodeSelector podmedic.io/e2e-none=x matches no node: Pods stay Pending");
    let warnings = warnings_of(run, "daemonsets", &workload("DaemonSet", "nowhere", nowhere), false).await;
    assert_warned("node-selector (DaemonSet)", &warnings, "the DaemonSet runs nowhere");

    // node-taints: pinned to a node with a taint it does not tolerate, when the cluster has one.
    node_taints(run).await;

    // references: a ConfigMap that does not exist, and one that does (once podmedic has seen it).
    references(run).await;

    // probe-identical, probe-window, probe-port.
    let probe = json!({"httpGet": {"path": "/ready", "port": "http"}});
    let probed = json!({"containers": [container(json!({
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": probe,
        "livenessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 2},
        "startupProbe": {"tcpSocket": {"port": "admin"}}
    }))]});
    let warnings = warnings_of(run, "deployments", &workload("Deployment", "probes", probed), true).await;
    assert_warned("probe-identical", &warnings, "container app: livenessProbe is the same check as readinessProbe");
    assert_warned("probe-port", &warnings, "container app: startupProbe port `admin` is not declared");
    let short =
        json!({"containers": [container(json!({"livenessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 2}}))]});
    let warnings = warnings_of(run, "deployments", &workload("Deployment", "short-liveness", short), true).await;
    assert_warned(
        "probe-window",
        &warnings,
        "livenessProbe restarts it unless healthy 6s after start; add a startupProbe",
    );

    audit_explains_a_pending_pod(run, kubeconfig).await;
}

async fn node_taints(run: &Run) {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(run.client.clone());
    let list = nodes.list(&Default::default()).await.expect("list Nodes");
    let tainted = list.items.iter().find_map(|node| {
        let taint = node
            .spec
            .as_ref()?
            .taints
            .as_ref()?
            .iter()
            .find(|t| t.effect == "NoSchedule" && !t.key.starts_with("node.kubernetes.io/"))?;
        Some((node.metadata.name.clone()?, taint.key.clone()))
    });
    let Some((node, key)) = tainted else {
        println!("node-taints scenario skipped: no node has a NoSchedule taint of its own");
        return;
    };
    let pinned = json!({"nodeSelector": {"kubernetes.io/hostname": node}, "containers": [container(json!({}))]});
    let warnings = warnings_of(run, "deployments", &workload("Deployment", "pinned", pinned), true).await;
    assert_warned("node-taints", &warnings, &format!("every node it may use has taint {key}"));
}

async fn references(run: &Run) {
    let uses = |name: &str| {
        json!({"containers": [container(json!({
            "env": [{"name": "DB_URL", "valueFrom": {"configMapKeyRef": {"name": name, "key": "db-url"}}}]
        }))]})
    };
    // podmedic lists the namespace's names a moment after the namespace appears.
    let deadline = Instant::now() + WEBHOOK_ACTIVE_TIMEOUT;
    loop {
        let warnings =
            warnings_of(run, "deployments", &workload("Deployment", "absent-config", uses("e2e-absent")), true).await;
        if warnings.iter().any(|w| w.contains("ConfigMap e2e-absent (env DB_URL of app) not seen yet")) {
            break;
        }
        assert!(Instant::now() < deadline, "references: never warned about e2e-absent: {warnings:#?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(run.client.clone(), &namespace(run));
    config_maps
        .create(&PostParams::default(), &typed(json!({"metadata": {"name": "e2e-present"}, "data": {"db-url": "x"}})))
        .await
        .expect("create the ConfigMap");
    let deadline = Instant::now() + WEBHOOK_ACTIVE_TIMEOUT;
    loop {
        let warnings =
            warnings_of(run, "deployments", &workload("Deployment", "present-config", uses("e2e-present")), true).await;
        if !warnings.iter().any(|w| w.contains("e2e-present")) {
            break;
        }
        assert!(Instant::now() < deadline, "references: still not seen e2e-present: {warnings:#?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A Pod that can never be scheduled, explained by `podmedic audit -o json`.
async fn audit_explains_a_pending_pod(run: &Run, kubeconfig: &Path) {
    let pods: Api<Pod> = Api::namespaced(run.client.clone(), &namespace(run));
    let spec = json!({"restartPolicy": "Never",
                      "containers": [container(json!({"resources": {"requests": {"cpu": "100000"}}}))]});
    pods.create(&PostParams::default(), &typed(json!({"metadata": {"name": "never-scheduled"}, "spec": spec})))
        .await
        .expect("create the Pod");
    let deadline = Instant::now() + WEBHOOK_ACTIVE_TIMEOUT;
    loop {
        let pod = json_of(pods.get("never-scheduled").await.expect("read the Pod"));
        let conditions = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
        if conditions.iter().any(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable") {
            break;
        }
        assert!(Instant::now() < deadline, "the scheduler did not mark the Pod Unschedulable: {:#}", pod["status"]);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let output = Command::new(env!("CARGO_BIN_EXE_podmedic"))
        .args(["audit", "-n", &namespace(run), "-o", "json", "--kubeconfig"])
        .arg(kubeconfig)
        .output()
        .expect("run podmedic audit");
    assert!(output.status.success(), "podmedic audit: {}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("the audit's JSON");
    let line = report["notRunning"]
        .as_array()
        .and_then(|lines| lines.iter().find(|l| l["pod"] == "never-scheduled"))
        .unwrap_or_else(|| panic!("the audit does not explain never-scheduled: {report:#}"));
    assert_eq!(line["status"], "Pending", "{line:#}");
    assert!(line["cause"].as_str().is_some_and(|c| c.starts_with("FailedScheduling: ")), "{line:#}");
    assert!(line["fix"].as_str().is_some_and(|f| f.starts_with("no node can fit cpu 100000")), "{line:#}");
}
