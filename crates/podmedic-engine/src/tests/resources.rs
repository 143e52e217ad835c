//! Default requests and default probes.

use serde_json::json;

use super::*;

fn opt_in_policy() -> Policy {
    Policy::builtin_with(
        "apiVersion: podmedic.io/v1alpha1\nkind: Policy\ndefaultRequests: {enabled: true, containers: {cpu: 100m, memory: 128Mi}, sidecars: {cpu: 50m, memory: 64Mi}}\n",
        "test",
    )
    .unwrap()
}

#[test]
fn default_requests_fill_gaps_only_where_kubernetes_would_not() {
    let manifest = pod(
        "  containers:\n  - {name: main, image: 'app:1', resources: {requests: {cpu: '2'}, limits: {memory: 100Mi}}}\n  - {name: bare, image: 'app:1'}\n  - {name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0', resources: {limits: {cpu: 20m}}}\n  - {name: shipper, image: 'fluent/fluent-bit:3.1', resources: {requests: {}}}\n",
    );
    let r = run_with(&manifest, &opt_in_policy(), NativeSidecars::Available, None);
    let c = &r.after["spec"]["containers"];
    // memory has a limit: Kubernetes sets its request to 100Mi when it creates the Pod.
    assert_eq!(c[0]["resources"], json!({"requests": {"cpu": "2"}, "limits": {"memory": "100Mi"}}));
    assert_eq!(c[1]["resources"], json!({"requests": {"cpu": "100m", "memory": "128Mi"}}));
    // Limits and no requests: left alone entirely.
    assert_eq!(moved_proxy(&r)["resources"], json!({"limits": {"cpu": "20m"}}));
    assert_eq!(
        r.after["spec"]["initContainers"][1]["resources"],
        json!({"requests": {"cpu": "50m", "memory": "64Mi"}})
    );
    assert!(
        r.mutation.notes.iter().any(|n| n.starts_with("proxy: no default requests: it has limits and no requests"))
    );
}

#[test]
fn a_limits_only_job_stays_guaranteed() {
    // requests = limits only materialise when the Pod is created, never in the template.
    let manifest = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: nightly-export}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: export
        image: ghcr.io/acme/export:4.1.0
        resources: {limits: {cpu: "2", memory: 4Gi}}
      - name: cloud-sql-proxy
        image: gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1
        args: ["acme:eu:db"]
        resources: {limits: {cpu: 500m, memory: 256Mi}}
"#;
    let r = run_with(manifest, &opt_in_policy(), NativeSidecars::Available, None);
    let spec = &r.after["spec"]["template"]["spec"];
    assert_eq!(spec["containers"][0]["resources"], json!({"limits": {"cpu": "2", "memory": "4Gi"}}));
    assert_eq!(spec["initContainers"][0]["resources"], json!({"limits": {"cpu": "500m", "memory": "256Mi"}}));
    assert!(r.mutation.changes.iter().all(|c| c.kind != ChangeKind::RequestsAdded), "{:?}", r.mutation.changes);
    // With the defaults off, no "reserves nothing" warning either: the limits become requests.
    let off = run(manifest);
    assert!(off.mutation.warnings.iter().all(|w| !w.contains("no resource requests")), "{:?}", off.mutation.warnings);
}

#[test]
fn pod_level_resources_set_at_all_mean_no_container_defaults() {
    for pod_resources in ["{limits: {cpu: '4', memory: 8Gi}}", "{requests: {cpu: '1'}}"] {
        let manifest = format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: j}}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      resources: {pod_resources}\n      containers:\n      - {{name: main, image: 'app:1'}}\n      - {{name: shipper, image: 'fluent/fluent-bit:3.1'}}\n"
        );
        let r = run_with(&manifest, &opt_in_policy(), NativeSidecars::Available, None);
        let spec = &r.after["spec"]["template"]["spec"];
        assert!(spec["containers"][0].get("resources").is_none(), "{pod_resources}");
        assert!(spec["initContainers"][0].get("resources").is_none(), "{pod_resources}");
        assert!(r.mutation.notes.iter().any(|n| n.starts_with("pod-level resources are set")));
        // With the defaults off, no "reserves nothing" warning either: the Pod reserves its own.
        let off = run(&manifest);
        assert!(
            off.mutation.warnings.iter().all(|w| !w.contains("no resource requests")),
            "{:?}",
            off.mutation.warnings
        );
    }
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
