//! The AdmissionReviews the benchmark feeds to `admit`: fixtures from the repository and large Pods
//! made here, deterministically, in the shape an Istio-injected Job Pod has.

use std::path::{Path, PathBuf};

use podmedic_engine::admission::Outcome;
use serde_json::{Value, json};

/// The repository root: the nearest directory above the crate being built that holds the
/// recorded AdmissionReviews (this file is shared by the engine's benchmark and the load harness).
fn repo_root() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let holds_fixtures = |dir: &&Path| dir.join("tests/fixtures/admission-reviews").is_dir();
    crate_dir.ancestors().find(holds_fixtures).unwrap_or(crate_dir).to_path_buf()
}

/// (benchmark name, body, what `admit` must do with it).
pub fn all() -> Vec<(&'static str, Vec<u8>, Outcome)> {
    vec![
        ("job-pod-3k", read("crates/podmedic-engine/benches/fixtures/job-pod-small.json"), Outcome::Patched),
        ("job-pod-12k", read("tests/fixtures/admission-reviews/pod-create-by-job-controller.json"), Outcome::Patched),
        ("seed-cronjob", seed_cronjob(), Outcome::Patched),
        // The seed CronJob's Pod as the Job controller creates it (compact, as the API server sends it).
        ("seed-pod", read("crates/podmedic-engine/benches/fixtures/seed-pod.json"), Outcome::Patched),
        // The same Job's Pod without the proxy: nothing to fix.
        (
            "job-pod-unchanged",
            read("crates/podmedic-engine/benches/fixtures/job-pod-unchanged.json"),
            Outcome::Unchanged,
        ),
        ("mesh-pod-64k", mesh_pod(64 * 1024), Outcome::Patched),
        ("pod-1m", mesh_pod(1024 * 1024), Outcome::Patched),
        (
            "pass-through",
            read("tests/fixtures/admission-reviews/pod-create-by-replicaset-controller.json"),
            Outcome::Unchanged,
        ),
    ]
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(repo_root().join(path)).unwrap()
}

/// A CREATE review as the API server sends it (compact JSON), around `object`.
pub fn review(group: &str, version: &str, kind: &str, resource: &str, name: &str, object: Value) -> Vec<u8> {
    let gvk = json!({"group": group, "version": version, "kind": kind});
    let gvr = json!({"group": group, "version": version, "resource": resource});
    serde_json::to_vec(&json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": "0f3c4c1e-6d0a-4b8e-9a57-3c1b2d7e9f10",
            "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
            "name": name,
            "namespace": "batch",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:job-controller",
                         "groups": ["system:serviceaccounts", "system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    }))
    .unwrap()
}

/// The seed CronJob (cloud-sql-proxy keeps its Jobs from completing) in a CREATE review.
fn seed_cronjob() -> Vec<u8> {
    let yaml = std::fs::read_to_string(repo_root().join("tests/fixtures/manifests/seed-cronjob.yaml")).unwrap();
    let object: Value = yaml_serde::from_str(&yaml).unwrap();
    review("batch", "v1", "CronJob", "cronjobs", "otameshi", object)
}

/// An Istio-injected Job Pod (istio-init, istio-proxy, a log shipper, application containers with
/// many environment variables) grown by adding variables until the review is at least `target` bytes.
pub fn mesh_pod(target: usize) -> Vec<u8> {
    let mut vars_per_app = 8;
    loop {
        let body = review("", "v1", "Pod", "pods", "", mesh_pod_object(6, vars_per_app));
        if body.len() >= target {
            return body;
        }
        // Grow in steps proportional to the gap, so that the search is short and lands near target.
        let per_var = body.len() / (6 * vars_per_app);
        vars_per_app += ((target - body.len()) / (6 * per_var)).max(1);
    }
}

fn mesh_pod_object(apps: usize, vars_per_app: usize) -> Value {
    let mounts = json!([
        {"name": "kube-api-access-x7k2p", "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
        {"name": "config", "mountPath": "/etc/app"}
    ]);
    let app = |i: usize| {
        let env: Vec<Value> = (0..vars_per_app)
            .map(|v| match v % 4 {
                0 => json!({"name": format!("SECRET_{i}_{v}"), "valueFrom": {"secretKeyRef": {"name": format!("app-{i}-secrets"), "key": format!("key-{v}")}}}),
                1 => json!({"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}}),
                _ => json!({"name": format!("APP_{i}_SETTING_{v}"), "value": format!("{}-{v}", "value".repeat(1 + v % 24))}),
            })
            .collect();
        json!({
            "name": format!("worker-{i}"),
            "image": format!("registry.example.com/acme/worker-{i}:4.{i}.0"),
            "command": ["/usr/local/bin/worker"],
            "args": ["--queue", format!("jobs-{i}"), "--concurrency=4", "--log-format=json"],
            "env": env,
            "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
            "volumeMounts": mounts,
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "imagePullPolicy": "IfNotPresent"
        })
    };
    let istio_env = [
        ("PILOT_CERT_PROVIDER", "istiod"),
        ("CA_ADDR", "istiod.istio-system.svc:15012"),
        ("PROXY_CONFIG", "{}"),
        ("ISTIO_META_POD_PORTS", "[]"),
        ("ISTIO_META_APP_CONTAINERS", "worker-0,worker-1,worker-2,worker-3,worker-4,worker-5"),
        ("GOMEMLIMIT", "1073741824"),
        ("GOMAXPROCS", "2"),
        ("ISTIO_META_CLUSTER_ID", "Kubernetes"),
        ("ISTIO_META_NODE_NAME", "node-1"),
        ("ISTIO_META_INTERCEPTION_MODE", "REDIRECT"),
        ("ISTIO_META_WORKLOAD_NAME", "nightly-sync"),
        ("ISTIO_META_OWNER", "kubernetes://apis/batch/v1/namespaces/batch/jobs/nightly-sync"),
        ("ISTIO_META_MESH_ID", "cluster.local"),
        ("TRUST_DOMAIN", "cluster.local"),
    ];
    let mut istio_env: Vec<Value> = istio_env.iter().map(|(n, v)| json!({"name": n, "value": v})).collect();
    for (name, path) in
        [("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace"), ("INSTANCE_IP", "status.podIP")]
    {
        istio_env.push(json!({"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}));
    }
    let mut containers: Vec<Value> = (0..apps).map(app).collect();
    containers.push(json!({
        "name": "istio-proxy",
        "image": "docker.io/istio/proxyv2:1.22.3",
        "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local", "--proxyLogLevel=warning",
                 "--proxyComponentLogLevel=misc:error", "--log_output_level=default:info"],
        "ports": [{"name": "http-envoy-prom", "containerPort": 15090, "protocol": "TCP"}],
        "env": istio_env,
        "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
        "volumeMounts": [
            {"name": "workload-socket", "mountPath": "/var/run/secrets/workload-spiffe-uds"},
            {"name": "istiod-ca-cert", "mountPath": "/var/run/secrets/istio"},
            {"name": "istio-data", "mountPath": "/var/lib/istio/data"},
            {"name": "istio-envoy", "mountPath": "/etc/istio/proxy"},
            {"name": "istio-token", "mountPath": "/var/run/secrets/tokens"},
            {"name": "istio-podinfo", "mountPath": "/etc/istio/pod"}
        ],
        "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"},
                           "initialDelaySeconds": 1, "periodSeconds": 2, "timeoutSeconds": 3, "failureThreshold": 30},
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "privileged": false,
                            "readOnlyRootFilesystem": true, "runAsGroup": 1337, "runAsNonRoot": true, "runAsUser": 1337},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent"
    }));
    containers.push(json!({
        "name": "fluent-bit",
        "image": "cr.fluentbit.io/fluent/fluent-bit:3.1.4",
        "ports": [{"containerPort": 2020, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent"
    }));
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "generateName": "nightly-sync-",
            "namespace": "batch",
            "labels": {"job-name": "nightly-sync", "batch.kubernetes.io/job-name": "nightly-sync",
                       "security.istio.io/tlsMode": "istio", "service.istio.io/canonical-name": "nightly-sync",
                       "service.istio.io/canonical-revision": "latest"},
            "annotations": {
                "istio.io/rev": "default",
                "kubectl.kubernetes.io/default-container": "worker-0",
                "kubectl.kubernetes.io/default-logs-container": "worker-0",
                "prometheus.io/path": "/stats/prometheus",
                "prometheus.io/port": "15020",
                "prometheus.io/scrape": "true",
                "sidecar.istio.io/status": "{\"initContainers\":[\"istio-init\"],\"containers\":[\"istio-proxy\"],\"volumes\":[\"workload-socket\",\"credential-socket\",\"workload-certs\",\"istio-envoy\",\"istio-data\",\"istio-podinfo\",\"istio-token\",\"istiod-ca-cert\"],\"imagePullSecrets\":null,\"revision\":\"default\"}"
            },
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "nightly-sync",
                                 "uid": "5b0c1a4e-2f7d-4c59-8e0a-9d3b6f1e2a77", "controller": true, "blockOwnerDeletion": true}],
            "finalizers": ["batch.kubernetes.io/job-tracking"]
        },
        "spec": {
            "volumes": [
                {"name": "workload-socket", "emptyDir": {}},
                {"name": "istio-envoy", "emptyDir": {"medium": "Memory"}},
                {"name": "istio-data", "emptyDir": {}},
                {"name": "istio-podinfo", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}]}},
                {"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {"audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}}]}},
                {"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}},
                {"name": "config", "configMap": {"name": "nightly-sync-config"}},
                {"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}
            ],
            "initContainers": [{
                "name": "istio-init",
                "image": "docker.io/istio/proxyv2:1.22.3",
                "args": ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*",
                         "-x", "", "-b", "*", "-d", "15090,15021,15020", "--log_output_level=default:info"],
                "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
                                    "privileged": false, "readOnlyRootFilesystem": false, "runAsGroup": 0, "runAsNonRoot": false, "runAsUser": 0},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent"
            }],
            "containers": containers,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "nightly-sync",
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ],
            "priority": 0,
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority"
        },
        "status": {}
    })
}
