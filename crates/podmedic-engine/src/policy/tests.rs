//! The policy: the built-in catalogue, merging a user's file, and errors that name the field.

use super::*;

const HEADER: &str = "apiVersion: podmedic.io/v1alpha1\nkind: Policy\n";

fn err(body: &str) -> String {
    Policy::builtin_with(&format!("{HEADER}{body}"), "policy.yaml").unwrap_err().to_string()
}

#[test]
fn the_builtin_policy_is_valid_and_has_the_catalogue() {
    let p = Policy::builtin();
    for name in [
        "cloud-sql-proxy-v1",
        "cloud-sql-proxy-v2",
        "alloydb-auth-proxy",
        "istio-proxy",
        "linkerd-proxy",
        "envoy",
        "fluent-bit",
        "fluentd",
        "vector",
        "promtail",
        "grafana-alloy",
        "opentelemetry-collector",
        "datadog-agent",
        "vault-agent",
        "pgbouncer",
        "cloudwatch-agent",
        "statsd-exporter",
        "git-sync",
        "azwi-proxy",
    ] {
        assert!(p.profile(name).is_some(), "{name}");
    }
    assert!(!p.default_requests.enabled);
    assert!(!p.readiness_probes && !p.liveness_probes);
}

#[test]
fn user_files_add_override_and_disable_entries() {
    let p = Policy::builtin_with(
        &format!(
            "{HEADER}catalogue:\n  disable: [fluentd]\n  sidecars:\n  - name: acme-db-proxy\n    images: [acme/db-proxy]\n    startupProbe: {{tcpSocket: {{port: 5432}}}}\n  - name: envoy\n    images: [acme/envoy]\ndefaultRequests: {{enabled: true}}\n"
        ),
        "policy.yaml",
    )
    .unwrap();
    assert!(p.profile("fluentd").is_none());
    assert_eq!(p.profile("acme-db-proxy").unwrap().startup_probe, ProbeProfile::TcpSocket { port: 5432 });
    assert_eq!(p.profile("envoy").unwrap().images, ["acme/envoy"]);
    assert!(p.default_requests.enabled);
    assert_eq!(p.default_requests.containers.0["cpu"].as_str(), "100m", "built-in values stay");
}

#[test]
fn the_checks_are_on_by_default_and_each_can_be_switched_off() {
    let builtin = Policy::builtin().warnings;
    assert!(builtin.disabled_checks.is_empty());
    assert!(!builtin.node_autoscaling);
    assert_eq!(builtin.min_liveness_window_seconds, 30);
    let p = Policy::builtin_with(
        &format!("{HEADER}warnings: {{references: false, probeWindow: false, nodeAutoscaling: true, minLivenessWindowSeconds: 60}}\n"),
        "policy.yaml",
    )
    .unwrap();
    let w = p.warnings;
    assert_eq!(w.disabled_checks, [CheckId::References, CheckId::ProbeWindow].into_iter().collect());
    assert!(w.node_autoscaling && w.latest_tag, "fields not given keep the built-in value");
    assert_eq!(w.min_liveness_window_seconds, 60);
}

#[test]
fn never_move_lists_add_to_the_builtin_one() {
    assert_eq!(Policy::builtin().never_move, ["gke-gcsfuse-sidecar"]);
    let p = Policy::builtin_with(&format!("{HEADER}neverMove: [acme-vpn]\n"), "policy.yaml").unwrap();
    assert_eq!(p.never_move, ["gke-gcsfuse-sidecar", "acme-vpn"]);
}

#[test]
fn errors_name_the_file_and_the_field() {
    let cases = [
        ("catalogue:\n  sidecars:\n  - name: x\n    imagez: [a]\n", "catalogue.sidecars[0]"),
        ("catalogue:\n  sidecars:\n  - name: x\n    images: a\n", "catalogue.sidecars[0].images"),
        ("catalogue:\n  sidecars:\n  - name: x\n    images: ['acme/x:1.0']\n", "catalogue.sidecars[0].images[0]"),
        ("catalogue:\n  sidecars:\n  - name: x\n    images: []\n", "catalogue.sidecars[0].images"),
        ("catalogue:\n  sidecars:\n  - name: x\n    images: [a]\n    startupProbe: sometimes\n", "startupProbe"),
        ("catalogue:\n  disable: [nope]\n", "catalogue.disable[0]"),
        ("defaultRequests: {enabled: true, containers: {cpu: lots}}\n", "defaultRequests.containers.cpu"),
        ("longRunningPods: {readinessProbes: maybe}\n", "longRunningPods.readinessProbes"),
        ("selfManagedWorkloads:\n- name: empty\n", "selfManagedWorkloads[0]"),
        ("warnings: {nodeFitt: false}\n", "warnings"),
        ("warnings: {minLivenessWindowSeconds: 0}\n", "warnings.minLivenessWindowSeconds"),
        ("warnings: {minLivenessWindowSeconds: 86400}\n", "warnings.minLivenessWindowSeconds"),
        ("warnings: {nodeAutoscaling: sometimes}\n", "warnings.nodeAutoscaling"),
    ];
    for (body, field) in cases {
        let e = err(body);
        assert!(e.contains("policy.yaml") && e.contains(field), "{body} -> {e}");
    }
    let e = Policy::builtin_with("apiVersion: v1\nkind: Policy\n", "p.yaml").unwrap_err().to_string();
    assert!(e.contains("apiVersion"), "{e}");
}

#[test]
fn annotation_defaults_parse_and_reject_garbage() {
    let d = ResourceDefaults::parse_annotation("cpu=100m, memory=128Mi").unwrap();
    assert_eq!(d.0["memory"].as_str(), "128Mi");
    for bad in ["", "cpu", "cpu=lots", "cpu=-1", "bad name=1"] {
        assert!(ResourceDefaults::parse_annotation(bad).is_err(), "{bad}");
    }
}

/// The README's catalogue table lists every built-in entry with every image path and container
/// name it matches, so the documentation cannot drift from the policy.
#[test]
fn the_readme_lists_every_catalogue_entry_with_its_image_paths() {
    let readme = std::fs::read_to_string(format!("{}/../../README.md", env!("CARGO_MANIFEST_DIR"))).unwrap();
    for profile in &Policy::builtin().sidecars {
        let row = readme
            .lines()
            .find(|l| l.strip_prefix("| ").is_some_and(|r| r.starts_with(&format!("{} ", profile.name))))
            .unwrap_or_else(|| panic!("no README catalogue row for {}", profile.name));
        for pattern in &profile.images {
            assert!(row.contains(&format!("`{pattern}`")), "README row of {} lacks `{pattern}`", profile.name);
        }
        for name in &profile.container_names {
            assert!(row.contains(&format!("container `{name}`")), "README row of {} lacks {name}", profile.name);
        }
    }
}

#[test]
fn the_first_entry_in_catalogue_order_wins_whichever_way_it_matched() {
    let p = Policy::from_yaml_str(
        &format!(
            "{HEADER}catalogue:\n  sidecars:\n  \
             - {{name: by-arg, images: [acme/tool], requiresArg: serve}}\n  \
             - {{name: by-wildcard, images: ['acme/tool*']}}\n  \
             - {{name: by-name, containerNames: [shipper], images: [other/thing]}}\n  \
             - {{name: by-path, images: ['mirror/**/acme/tool']}}\n"
        ),
        "policy.yaml",
    )
    .unwrap();
    let found = |name: &str, image: &str, words: &[&str]| {
        let image = ImageRef::parse(image);
        p.sidecar_for(name, Some(&image), &|w| words.contains(&w)).map(|profile| profile.name.clone())
    };
    assert_eq!(found("c", "gcr.io/ACME/Tool:1", &["serve"]).as_deref(), Some("by-arg"));
    assert_eq!(found("c", "gcr.io/acme/tool:1", &[]).as_deref(), Some("by-wildcard"), "the next entry, not none");
    assert_eq!(found("c", "acme/toolbox", &[]).as_deref(), Some("by-wildcard"));
    assert_eq!(found("shipper", "mirror/x/acme/tool", &["serve"]).as_deref(), Some("by-arg"), "catalogue order");
    assert_eq!(found("shipper", "busybox", &[]).as_deref(), Some("by-name"));
    assert_eq!(found("c", "mirror/x/other/tool", &[]), None);
    let overlong = format!("{}/acme/tool", "r".repeat(300));
    assert_eq!(found("c", &overlong, &["serve"]), None, "longer than a registry accepts");
}
