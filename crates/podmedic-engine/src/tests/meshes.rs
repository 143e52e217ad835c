//! Service meshes: where a moved mesh proxy goes, and which startup probes other sidecars get.

use serde_json::json;

use super::*;

/// A run-to-completion Pod with these annotations, init containers and containers (YAML lines).
fn meshed_pod(annotations: &str, inits: &str, containers: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {{{annotations}}}\nspec:\n  restartPolicy: Never\n  initContainers:\n{inits}  containers:\n{containers}"
    )
}

const PROXY: &str =
    "  - {name: cloud-sql-proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1', args: ['acme:eu:db']}\n";
const SHIPPER: &str = "  - {name: fluent-bit, image: 'fluent/fluent-bit:3.1', ports: [{containerPort: 2020}]}\n";
const MAIN: &str = "  - {name: main, image: 'ghcr.io/acme/job:1'}\n";

fn init_named<'r>(r: &'r Run, name: &str) -> &'r Value {
    r.after["spec"]["initContainers"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()
}

#[test]
fn a_mesh_proxy_arriving_later_goes_before_every_init_container_but_the_meshs_own() {
    // podmedic moved fluent-bit on the first pass; Istio's injector (classic mode) then added its
    // proxy and, last among the init containers, istio-init; podmedic is invoked again.
    let manifest = meshed_pod(
        "sidecar.istio.io/status: '{}'",
        "  - {name: migrate, image: 'ghcr.io/acme/migrate:3'}\n  - {name: fluent-bit, image: 'fluent/fluent-bit:3.1', restartPolicy: Always}\n  - {name: istio-init, image: 'docker.io/istio/proxyv2:1.22.3', args: [istio-iptables]}\n",
        &format!("{MAIN}  - {{name: istio-proxy, image: 'docker.io/istio/proxyv2:1.22.3', args: [proxy, sidecar]}}\n"),
    );
    let r = run(&manifest);
    assert_eq!(names(&r.after["spec"]["initContainers"]), ["istio-proxy", "migrate", "fluent-bit", "istio-init"]);
    assert_eq!(r.after["spec"]["initContainers"][0]["restartPolicy"], "Always");
    // With Istio's own init first (its native-mode order), the proxy goes right after it.
    let manifest = meshed_pod(
        "",
        "  - {name: istio-validation, image: 'docker.io/istio/proxyv2:1.22.3'}\n  - {name: migrate, image: 'ghcr.io/acme/migrate:3'}\n",
        &format!("{MAIN}{PROXY}  - {{name: istio-proxy, image: 'docker.io/istio/proxyv2:1.22.3'}}\n"),
    );
    let r = run(&manifest);
    assert_eq!(
        names(&r.after["spec"]["initContainers"]),
        ["istio-validation", "istio-proxy", "migrate", "cloud-sql-proxy"]
    );
}

#[test]
fn with_istio_no_http_probe_and_no_health_flags_on_other_sidecars() {
    // Istio 1.27+ injects its proxy as a native sidecar itself.
    let manifest = meshed_pod(
        "",
        "  - {name: istio-init, image: 'docker.io/istio/proxyv2:1.27.0'}\n  - {name: istio-proxy, image: 'docker.io/istio/proxyv2:1.27.0', restartPolicy: Always, args: [proxy, sidecar], startupProbe: {httpGet: {path: /healthz/ready, port: 15021}}}\n",
        &format!("{MAIN}{PROXY}{SHIPPER}"),
    );
    let r = run(&manifest);
    assert_eq!(
        names(&r.after["spec"]["initContainers"]),
        ["istio-init", "istio-proxy", "cloud-sql-proxy", "fluent-bit"]
    );
    let proxy = init_named(&r, "cloud-sql-proxy");
    assert!(proxy.get("startupProbe").is_none());
    assert_eq!(
        proxy["args"],
        json!(["acme:eu:db", "--exit-zero-on-sigterm"]),
        "no health flags for a probe that is not added (the exit-code flag is no health flag)"
    );
    assert_eq!(init_named(&r, "fluent-bit")["startupProbe"]["tcpSocket"]["port"], 2020, "TCP is not intercepted away");
    let changes = r.after["metadata"]["annotations"][CHANGES_ANNOTATION].as_str().unwrap();
    assert!(changes.contains("cloud-sql-proxy: no startup probe (Istio's proxy would intercept it"), "{changes}");
}

#[test]
fn with_linkerd_the_probe_stays_unless_the_inbound_policy_may_deny_it() {
    let inits = "  - {name: linkerd-init, image: 'cr.l5d.io/linkerd/proxy-init:v2.4.1'}\n";
    let containers = format!(
        "{MAIN}{PROXY}  - {{name: linkerd-proxy, image: 'cr.l5d.io/linkerd/proxy:stable-2.14.10', ports: [{{containerPort: 4191}}]}}\n"
    );
    let r = run(&meshed_pod("linkerd.io/inject: enabled", inits, &containers));
    assert_eq!(names(&r.after["spec"]["initContainers"]), ["linkerd-init", "linkerd-proxy", "cloud-sql-proxy"]);
    assert_eq!(init_named(&r, "cloud-sql-proxy")["startupProbe"]["httpGet"], json!({"path": "/startup", "port": 9090}));
    assert_eq!(init_named(&r, "linkerd-proxy")["startupProbe"]["httpGet"], json!({"path": "/ready", "port": 4191}));
    let strict = meshed_pod("config.linkerd.io/default-inbound-policy: all-authenticated", inits, &containers);
    let r = run(&strict);
    assert!(init_named(&r, "cloud-sql-proxy").get("startupProbe").is_none());
    assert!(r.mutation.notes.iter().any(|n| n.contains("all-authenticated may deny it")), "{:?}", r.mutation.notes);
}

#[test]
fn with_kuma_the_probe_goes_through_its_application_probe_proxy() {
    let inits = "  - {name: kuma-init, image: 'docker.io/kumahq/kuma-init:2.9.3'}\n  - {name: kuma-sidecar, image: 'docker.io/kumahq/kuma-dp:2.9.3', restartPolicy: Always}\n";
    let r = run(&meshed_pod("kuma.io/application-probe-proxy-port: '9001'", inits, &format!("{MAIN}{PROXY}")));
    assert_eq!(
        init_named(&r, "cloud-sql-proxy")["startupProbe"]["httpGet"],
        json!({"path": "/9090/startup", "port": 9001}),
        "the form Kuma's injector writes: /<port><path> on the probe proxy"
    );
    let off = run(&meshed_pod("kuma.io/application-probe-proxy-port: '0'", inits, &format!("{MAIN}{PROXY}")));
    assert!(init_named(&off, "cloud-sql-proxy").get("startupProbe").is_none());
}

#[test]
fn with_consul_no_http_probe_unless_its_transparent_proxy_is_off() {
    let inits = "  - {name: consul-connect-inject-init, image: 'hashicorp/consul-k8s-control-plane:1.4.0'}\n";
    let containers =
        format!("{MAIN}{PROXY}  - {{name: consul-dataplane, image: 'hashicorp/consul-dataplane:1.4.0'}}\n");
    let r = run(&meshed_pod("consul.hashicorp.com/connect-inject: 'true'", inits, &containers));
    assert!(init_named(&r, "cloud-sql-proxy").get("startupProbe").is_none());
    let r = run(&meshed_pod("consul.hashicorp.com/transparent-proxy: 'false'", inits, &containers));
    assert_eq!(init_named(&r, "cloud-sql-proxy")["startupProbe"]["httpGet"]["port"], 9090);
}

#[test]
fn with_a_mesh_podmedic_does_not_know_no_probe_at_all() {
    // Open Service Mesh: its envoy and osm-init. podmedic has no probe rule for it.
    let inits = "  - {name: osm-init, image: 'openservicemesh/init:v1.2.0'}\n";
    let containers = format!(
        "{MAIN}{PROXY}{SHIPPER}  - {{name: envoy, image: 'envoyproxy/envoy-distroless:v1.19.3', ports: [{{containerPort: 15000}}]}}\n"
    );
    let r = run(&meshed_pod("openservicemesh.io/sidecar-injection: enabled", inits, &containers));
    for name in ["cloud-sql-proxy", "fluent-bit"] {
        assert!(init_named(&r, name).get("startupProbe").is_none(), "{name}");
    }
    assert!(r.mutation.notes.iter().any(|n| n.contains("no probe rule for (osm-init)")), "{:?}", r.mutation.notes);
}
