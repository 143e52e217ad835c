//! What the rendered manifests must say: a hardened Deployment; read-only RBAC; valid Kubernetes
//! objects; and the base: pods mode, with warnings for workloads (`webhooks.rs`).

use serde_json::Value;

use super::webhooks::{Mode, assert_webhooks, webhook};
use super::*;

pub(super) fn assert_deployment_is_hardened(objects: &[Value]) {
    let deployment = find(objects, "Deployment", "podmedic");
    assert_eq!(deployment["metadata"]["namespace"], NAMESPACE);
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0, "rollouts keep two serving");
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let selects_pods = |selector: &Value| {
        let labels = selector.as_object().expect("matchLabels");
        !labels.is_empty() && labels.iter().all(|(k, v)| &pod_labels[k] == v)
    };
    assert!(selects_pods(&deployment["spec"]["selector"]["matchLabels"]));

    let pod = pod_spec(objects);
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod["serviceAccountName"], "podmedic");
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        assert_ne!(pod[host], true, "{host}");
    }
    let spread = pod["topologySpreadConstraints"].as_array().expect("topologySpreadConstraints");
    assert!(
        spread.iter().any(|c| c["topologyKey"] == "kubernetes.io/hostname"
            && c["maxSkew"] == 1
            && selects_pods(&c["labelSelector"]["matchLabels"])),
        "replicas spread across nodes: {spread:?}"
    );

    let pod_security = &pod["securityContext"];
    let containers = pod["containers"].as_array().expect("containers");
    let init = pod["initContainers"].as_array().cloned().unwrap_or_default();
    for c in containers.iter().chain(&init) {
        let name = &c["name"];
        let sc = &c["securityContext"];
        let effective = |field: &str| if sc.get(field).is_some() { &sc[field] } else { &pod_security[field] };
        assert_eq!(effective("runAsNonRoot"), true, "{name} runs as non-root");
        let uid = effective("runAsUser").as_u64().expect("a fixed numeric UID, so that runAsNonRoot can check it");
        assert_ne!(uid, 0, "{name} UID");
        assert_eq!(effective("seccompProfile")["type"], "RuntimeDefault", "{name} seccomp");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name} read-only root filesystem");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name} no privilege escalation");
        assert_ne!(sc["privileged"], true, "{name} not privileged");
        assert!(strings(&sc["capabilities"]["drop"]).contains(&"ALL"), "{name} drops all capabilities");
        assert!(strings(&sc["capabilities"]["add"]).is_empty(), "{name} adds no capability");

        let resources = &c["resources"];
        for resource in ["cpu", "memory"] {
            let request = &resources["requests"][resource];
            let limit = &resources["limits"][resource];
            assert!(!request.is_null() && !limit.is_null(), "{name} has a {resource} request and limit");
            assert!(quantity(request) <= quantity(limit), "{name} {resource} request {request} > limit {limit}");
        }
    }

    let container = podmedic_container(objects);
    assert_eq!(strings(&container["args"]).first(), Some(&"serve"), "args replace the image's CMD");
    assert_eq!(arg(container, "--log-format"), Some("json"));
    let metrics_listen = arg(container, "--metrics-listen").expect("--metrics-listen");
    let probes = [("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")];
    for (probe, path) in probes {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_ne!(get["scheme"], "HTTPS", "{probe} uses the plain-HTTP metrics port");
        let port = container_port(container, &get["port"]);
        assert!(metrics_listen.ends_with(&format!(":{port}")), "{probe} on port {port}, not {metrics_listen}");
    }
    // Readiness and liveness wait for the startup probe, which asks /healthz (never /readyz: an API
    // server that is down at start must not get podmedic restarted) after a second: podmedic has
    // bound the port by then and has usually listed the cluster, so no probe fails on a normal start.
    let startup = &container["startupProbe"];
    assert!(startup["initialDelaySeconds"].as_u64() >= Some(1), "the startup probe waits a second: {startup}");
    let delay = seconds(arg(container, "--shutdown-delay").expect("--shutdown-delay"));
    let drain = seconds(arg(container, "--shutdown-timeout").expect("--shutdown-timeout"));
    let grace = pod["terminationGracePeriodSeconds"].as_u64().expect("terminationGracePeriodSeconds");
    assert!(grace > delay + drain, "grace period {grace}s must outlast shutdown delay {delay}s + timeout {drain}s");

    // The certificate: mounted read-only from the Secret, where the flags point.
    let mount = container["volumeMounts"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["mountPath"] == "/etc/podmedic/tls"))
        .expect("a mount at /etc/podmedic/tls");
    assert_eq!(mount["readOnly"], true);
    let volume = pod["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == mount["name"]))
        .expect("the mounted volume");
    assert_eq!(volume["secret"]["secretName"], "podmedic-tls");
    assert_eq!(arg(container, "--tls-cert"), Some("/etc/podmedic/tls/tls.crt"));
    assert_eq!(arg(container, "--tls-key"), Some("/etc/podmedic/tls/tls.key"));

    let pdb = find(objects, "PodDisruptionBudget", "podmedic");
    assert_eq!(pdb["metadata"]["namespace"], NAMESPACE);
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert!(selects_pods(&pdb["spec"]["selector"]["matchLabels"]), "the PDB covers podmedic's Pods");
    assert!(selects_pods(&find(objects, "Service", "podmedic")["spec"]["selector"]), "the Service selects them");
}

pub(super) fn assert_rbac_is_read_only_on_nodes_and_namespaces(objects: &[Value]) {
    assert_eq!(of_kind(objects, "Role").count(), 0, "podmedic needs no namespaced Role");
    assert_eq!(of_kind(objects, "RoleBinding").count(), 0, "podmedic needs no RoleBinding");
    let mut granted = BTreeSet::new();
    for role in of_kind(objects, "ClusterRole") {
        assert!(role.get("aggregationRule").is_none(), "no aggregation: the rules are all here");
        for rule in role["rules"].as_array().expect("rules") {
            assert!(rule.get("nonResourceURLs").is_none(), "no non-resource URLs: {rule}");
            assert_eq!(strings(&rule["apiGroups"]), [""], "core group only: {rule}");
            for resource in strings(&rule["resources"]) {
                assert!(["nodes", "namespaces"].contains(&resource), "may not read {resource}: {rule}");
                for verb in strings(&rule["verbs"]) {
                    assert!(["get", "list", "watch"].contains(&verb), "may not {verb} {resource}: {rule}");
                    granted.insert((resource, verb));
                }
            }
        }
    }
    let needed: BTreeSet<_> =
        ["nodes", "namespaces"].into_iter().flat_map(|r| ["get", "list", "watch"].map(|v| (r, v))).collect();
    assert_eq!(granted, needed, "the server watches Nodes and Namespaces");

    let bindings: Vec<_> = of_kind(objects, "ClusterRoleBinding").collect();
    assert_eq!(bindings.len(), 1);
    let binding = bindings[0];
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "podmedic"})
    );
    assert_eq!(binding["subjects"], json!([{"kind": "ServiceAccount", "name": "podmedic", "namespace": NAMESPACE}]));
    assert_eq!(find(objects, "ServiceAccount", "podmedic")["metadata"]["namespace"], NAMESPACE);
}

pub(super) fn assert_base(objects: &[Value]) {
    assert_valid_kubernetes_objects(objects);
    assert_eq!(find(objects, "Namespace", NAMESPACE)["kind"], "Namespace");
    assert_webhooks(objects, Mode::Pods);
    assert_deployment_is_hardened(objects);
    assert_rbac_is_read_only_on_nodes_and_namespaces(objects);
    let conditions: Vec<_> = webhook(objects, "mutate.podmedic.io")["matchConditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| &c["name"])
        .collect();
    assert_eq!(conditions, ["skip-long-running-pods", "skip-mirror-pods"], "the base skips long-running Pods");
}

/// Every object is a valid Kubernetes object of its kind: it reads into k8s-openapi's type and
/// writes back unchanged, so a misspelt or misplaced field (which the type would drop) or a value
/// of the wrong type fails. cert-manager's kinds are not in k8s-openapi and are left out.
pub(super) fn assert_valid_kubernetes_objects(objects: &[Value]) {
    use k8s_openapi::api::{
        admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration},
        apps::v1::Deployment,
        core::v1,
        policy::v1::PodDisruptionBudget,
        rbac::v1::{ClusterRole, ClusterRoleBinding},
    };
    fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(object: &Value) {
        let typed: T = serde_path_to_error::deserialize(object)
            .unwrap_or_else(|e| panic!("{} {}: {e}", object["kind"], object["metadata"]["name"]));
        let back = serde_json::to_value(typed).expect("serialize");
        assert_eq!(
            &back, object,
            "{} {} has fields its kind does not know",
            object["kind"], object["metadata"]["name"]
        );
    }
    for object in objects {
        match object["kind"].as_str().expect("kind") {
            "Namespace" => round_trip::<v1::Namespace>(object),
            "ServiceAccount" => round_trip::<v1::ServiceAccount>(object),
            "Service" => round_trip::<v1::Service>(object),
            "Secret" => round_trip::<v1::Secret>(object),
            "ResourceQuota" => round_trip::<v1::ResourceQuota>(object),
            "ClusterRole" => round_trip::<ClusterRole>(object),
            "ClusterRoleBinding" => round_trip::<ClusterRoleBinding>(object),
            "Deployment" => round_trip::<Deployment>(object),
            "PodDisruptionBudget" => round_trip::<PodDisruptionBudget>(object),
            "MutatingWebhookConfiguration" => round_trip::<MutatingWebhookConfiguration>(object),
            "ValidatingWebhookConfiguration" => round_trip::<ValidatingWebhookConfiguration>(object),
            "Issuer" | "Certificate" => assert_eq!(object["apiVersion"], "cert-manager.io/v1"),
            other => panic!("no schema check for {other}: add one"),
        }
    }
}
