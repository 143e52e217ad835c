//! Default requests and default probes.

use serde_json::json;

use super::*;

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
