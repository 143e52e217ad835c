//! What the rendered manifests must say: an opt-in, fail-open webhook; a hardened Deployment;
//! read-only RBAC; valid Kubernetes objects.

use std::collections::BTreeMap;

use serde_json::Value;

use super::*;

pub(super) fn assert_webhook_is_opt_in_and_fail_open(objects: &[Value]) {
    let hook = webhook(objects);

    let selector = &hook["namespaceSelector"];
    assert_eq!(selector["matchLabels"], json!({"podmedic.io/enabled": "true"}), "opt-in by namespace label");
    let excluded: BTreeSet<&str> = selector["matchExpressions"]
        .as_array()
        .expect("matchExpressions")
        .iter()
        .filter(|e| e["key"] == "kubernetes.io/metadata.name" && e["operator"] == "NotIn")
        .flat_map(|e| strings(&e["values"]))
        .collect();
    assert!(excluded.contains("kube-system"), "kube-system is excluded even if labelled: {excluded:?}");
    assert!(excluded.contains(NAMESPACE), "podmedic's own namespace is excluded even if labelled: {excluded:?}");
    assert!(hook.get("objectSelector").is_none_or(|s| s == &json!({})), "no objectSelector narrows the rules");

    let rules: BTreeMap<(String, String), (BTreeSet<&str>, &Value)> = hook["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .flat_map(|rule| {
            let groups = strings(&rule["apiGroups"]);
            let resources = strings(&rule["resources"]);
            assert_eq!(strings(&rule["apiVersions"]), ["v1"], "rule {rule}");
            groups.into_iter().flat_map(move |g| {
                resources.clone().into_iter().map(move |r| {
                    ((g.to_owned(), r.to_owned()), (strings(&rule["operations"]).into_iter().collect(), &rule["scope"]))
                })
            })
        })
        .collect();
    let expected = [
        (("", "pods"), vec!["CREATE"]),
        (("batch", "jobs"), vec!["CREATE"]),
        (("batch", "cronjobs"), vec!["CREATE", "UPDATE"]),
    ];
    assert_eq!(rules.len(), expected.len(), "exactly pods, jobs and cronjobs (no wildcards, no subresources)");
    for ((group, resource), operations) in expected {
        let (ops, scope) = rules
            .get(&(group.to_owned(), resource.to_owned()))
            .unwrap_or_else(|| panic!("no rule for {group}/{resource}"));
        assert_eq!(*ops, operations.into_iter().collect::<BTreeSet<_>>(), "operations on {resource}");
        assert_eq!(*scope, "Namespaced", "scope of {resource}");
    }

    let conditions: BTreeMap<&str, String> = hook["matchConditions"]
        .as_array()
        .expect("matchConditions")
        .iter()
        .map(|c| {
            let expression = c["expression"].as_str().expect("expression");
            (c["name"].as_str().expect("name"), expression.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .collect();
    for (name, expression) in &conditions {
        assert!(
            expression.starts_with("request.resource.resource != 'pods' ||"),
            "condition {name} must pass Jobs and CronJobs through before looking at Pod fields: {expression}"
        );
    }
    let mirror = conditions.get("skip-mirror-pods").expect("a condition that skips mirror Pods");
    assert!(mirror.contains("'kubernetes.io/config.mirror' in object.metadata.annotations"), "{mirror}");
    assert!(mirror.contains("!('kubernetes.io/config.mirror'"), "mirror Pods are excluded, not selected: {mirror}");
    if let Some(restart) = conditions.get("skip-long-running-pods") {
        assert!(restart.contains("object.spec.restartPolicy != 'Always'"), "{restart}");
    }

    assert_eq!(hook["failurePolicy"], "Ignore", "fail open: podmedic down must not block Pods");
    assert_eq!(hook["sideEffects"], "None");
    let timeout = hook["timeoutSeconds"].as_u64().expect("timeoutSeconds set (the default is 10s)");
    assert!((1..=5).contains(&timeout), "timeoutSeconds {timeout} is short");
    // podmedic's own answer (allowed unchanged at the deadline) must reach the API server in time.
    let deadline = arg(podmedic_container(objects), "--admission-deadline").map_or(2, seconds);
    assert!(deadline < timeout, "--admission-deadline {deadline}s must be below timeoutSeconds {timeout}");
    assert_eq!(hook["reinvocationPolicy"], "IfNeeded", "sidecars injected by later webhooks are seen");
    assert_eq!(hook["admissionReviewVersions"], json!(["v1"]));
    assert_eq!(hook["matchPolicy"], "Equivalent");

    let client = &hook["clientConfig"];
    assert!(client.get("url").is_none(), "in-cluster webhooks go through the Service");
    let service = &client["service"];
    assert_eq!(service["name"], "podmedic");
    assert_eq!(service["namespace"], NAMESPACE);
    assert_eq!(service["path"], "/mutate");
    let port = service.get("port").map_or(443, |p| p.as_u64().expect("port"));
    let svc = find(objects, "Service", "podmedic");
    let svc_port = svc["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["port"] == port)
        .unwrap_or_else(|| panic!("the Service has no port {port}"));
    let target = container_port(podmedic_container(objects), &svc_port["targetPort"]);
    let listen = arg(podmedic_container(objects), "--listen").expect("--listen");
    assert!(listen.ends_with(&format!(":{target}")), "the webhook reaches --listen {listen}, not port {target}");
}

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
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_ne!(get["scheme"], "HTTPS", "{probe} uses the plain-HTTP metrics port");
        let port = container_port(container, &get["port"]);
        assert!(metrics_listen.ends_with(&format!(":{port}")), "{probe} on port {port}, not {metrics_listen}");
    }
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
    assert_webhook_is_opt_in_and_fail_open(objects);
    assert_deployment_is_hardened(objects);
    assert_rbac_is_read_only_on_nodes_and_namespaces(objects);
    let conditions: Vec<_> =
        webhook(objects)["matchConditions"].as_array().expect("conditions").iter().map(|c| &c["name"]).collect();
    assert_eq!(conditions, ["skip-long-running-pods", "skip-mirror-pods"], "the base skips long-running Pods");
}

/// Every object is a valid Kubernetes object of its kind: it reads into k8s-openapi's type and
/// writes back unchanged, so a misspelt or misplaced field (which the type would drop) or a value
/// of the wrong type fails. cert-manager's kinds are not in k8s-openapi and are left out.
pub(super) fn assert_valid_kubernetes_objects(objects: &[Value]) {
    use k8s_openapi::api::{
        admissionregistration::v1::MutatingWebhookConfiguration,
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
            "Issuer" | "Certificate" => assert_eq!(object["apiVersion"], "cert-manager.io/v1"),
            other => panic!("no schema check for {other}: add one"),
        }
    }
}
