//! `components/monitoring`: a ServiceMonitor that scrapes the Service's metrics port, the
//! PrometheusRule, and the dashboard as a ConfigMap for Grafana's sidecar; nothing else changes.
//! (That the rules and the dashboard name only exported metrics is tests/server/monitoring.rs.)

use super::*;

fn check(objects: &[Value], base: &[Value]) {
    let added: Vec<(&str, &str)> = objects
        .iter()
        .filter(|o| !base.iter().any(|b| b["kind"] == o["kind"] && b["metadata"]["name"] == o["metadata"]["name"]))
        .map(|o| (o["kind"].as_str().unwrap_or_default(), o["metadata"]["name"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(
        added.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([
            ("ServiceMonitor", "podmedic"),
            ("PrometheusRule", "podmedic"),
            ("ConfigMap", "podmedic-dashboard")
        ])
    );
    let service = find(objects, "Service", "podmedic");
    let monitor = find(objects, "ServiceMonitor", "podmedic");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    // It selects the Service by its labels, in its namespace, on a port the Service has.
    for (key, value) in monitor["spec"]["selector"]["matchLabels"].as_object().expect("matchLabels") {
        assert_eq!(&service["metadata"]["labels"][key], value, "the Service carries {key}");
    }
    assert_eq!(monitor["spec"]["namespaceSelector"]["matchNames"], json!([service["metadata"]["namespace"]]));
    let port = monitor["spec"]["endpoints"][0]["port"].as_str().expect("port name");
    assert!(service["spec"]["ports"].as_array().expect("ports").iter().any(|p| p["name"] == port), "{port}");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");

    let rule = find(objects, "PrometheusRule", "podmedic");
    let alerts: BTreeSet<&str> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for alert in [
        "PodmedicDown",
        "PodmedicNotReady",
        "PodmedicFailingOpen",
        "PodmedicSlowAdmissions",
        "PodmedicCertificateReloadFailing",
        "PodmedicCertificateExpiresSoon",
        "PodmedicNativeSidecarsUnavailable",
        "JobStuckOnSidecar",
    ] {
        assert!(alerts.contains(alert), "{alert} in {alerts:?}");
    }
    // The latency alert's threshold is 80% of the shortest timeout of the webhooks.
    let timeout = webhooks::webhooks(objects)
        .iter()
        .map(|(_, hook)| hook["timeoutSeconds"].as_f64().expect("timeoutSeconds"))
        .fold(f64::INFINITY, f64::min);
    let slow = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["alert"] == "PodmedicSlowAdmissions")
        .unwrap();
    let threshold: f64 = slow["expr"].as_str().unwrap().rsplit_once('>').unwrap().1.trim().parse().unwrap();
    assert!((threshold - timeout * 0.8).abs() < 1e-9, "{threshold} is not 80% of {timeout}");

    let dashboard = find(objects, "ConfigMap", "podmedic-dashboard");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: Value =
        serde_json::from_str(dashboard["data"]["podmedic-dashboard.json"].as_str().expect("the JSON")).unwrap();
    assert_eq!((json["uid"].as_str(), json["title"].as_str()), (Some("podmedic"), Some("podmedic")));
}

#[test]
fn the_monitoring_component_adds_a_service_monitor_the_rules_and_the_dashboard() {
    let component = deploy_dir().join("components/monitoring");
    let kustomization = read_yaml(&component.join("kustomization.yaml")).remove(0);
    assert_eq!(kustomization["kind"], "Component");
    let base = base_objects();

    // Without kubectl: the component's files and its generated ConfigMap, built by hand.
    let mut objects = base.clone();
    for file in strings(&kustomization["resources"]) {
        objects.extend(read_yaml(&component.join(file)));
    }
    let generator = &kustomization["configMapGenerator"][0];
    let file = strings(&generator["files"])[0];
    objects.push(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": generator["name"], "namespace": generator["namespace"], "labels": generator["options"]["labels"]},
        "data": {file: std::fs::read_to_string(component.join(file)).expect("dashboard")},
    }));
    check(&objects, &base);

    // With kubectl: an overlay that uses the component.
    if let Some(rendered) = render_with_components(&["monitoring"]) {
        check(&rendered, &base);
        assert_deployment_is_hardened(&rendered);
    }
}
