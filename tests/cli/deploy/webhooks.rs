//! The webhook configurations of both modes: pods mode (the base: Pods mutated on CREATE, Jobs
//! and CronJobs warned on `/warn` and converged on `/converge`) and template mode (the
//! `template-mode` component: Jobs and CronJobs mutated on CREATE and UPDATE); in both,
//! Deployments, StatefulSets and DaemonSets warned on `/warn` when their template changes; every
//! webhook opt-in and fail-open, each field commented, the components' patches guarded.

use std::collections::{BTreeMap, BTreeSet};

use podmedic_engine::admission::Endpoint;
use serde_json::Value;

use super::*;

/// Which objects podmedic changes, as the webhook configuration says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// Pods only; Jobs and CronJobs get warnings, and their UPDATEs are converged.
    Pods,
    /// Jobs and CronJobs too, in their templates.
    Template,
}

/// Every webhook of both configurations, with its configuration's kind.
pub(super) fn webhooks(objects: &[Value]) -> Vec<(&str, &Value)> {
    ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]
        .into_iter()
        .flat_map(|kind| of_kind(objects, kind).map(move |config| (kind, config)))
        .flat_map(|(kind, config)| {
            assert_eq!(config["metadata"]["name"], "podmedic", "one configuration of each kind, named podmedic");
            config["webhooks"].as_array().expect("webhooks").iter().map(move |hook| (kind, hook))
        })
        .collect()
}

/// The webhook named `name`.
pub(super) fn webhook<'a>(objects: &'a [Value], name: &str) -> &'a Value {
    webhooks(objects).into_iter().find(|(_, w)| w["name"] == name).unwrap_or_else(|| panic!("no webhook {name}")).1
}

/// (group, resource) -> operations, of one webhook's rules.
fn rules(hook: &Value) -> BTreeMap<(String, String), BTreeSet<&str>> {
    let mut out: BTreeMap<(String, String), BTreeSet<&str>> = BTreeMap::new();
    for rule in hook["rules"].as_array().expect("rules") {
        assert_eq!(strings(&rule["apiVersions"]), ["v1"], "rule {rule}");
        assert_eq!(rule["scope"], "Namespaced", "rule {rule}");
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                out.entry((group.to_owned(), resource.to_owned())).or_default().extend(strings(&rule["operations"]));
            }
        }
    }
    out
}

/// The CEL conditions of a webhook, by name, whitespace normalised.
fn conditions(hook: &Value) -> BTreeMap<&str, String> {
    let list = hook["matchConditions"].as_array().into_iter().flatten();
    list.map(|c| {
        let expression = c["expression"].as_str().expect("expression");
        (c["name"].as_str().expect("name"), expression.split_whitespace().collect::<Vec<_>>().join(" "))
    })
    .collect()
}

pub(super) fn assert_webhooks(objects: &[Value], mode: Mode) {
    let all = webhooks(objects);
    let served: BTreeSet<&str> = Endpoint::ALL.iter().map(|e| e.path()).collect();
    for (kind, hook) in &all {
        let name = hook["name"].as_str().expect("name");
        assert_opt_in_and_fail_open(objects, name, hook);
        let path = hook["clientConfig"]["service"]["path"].as_str().expect("path");
        assert!(served.contains(path), "{name}: podmedic serves no {path}");
        assert_eq!(hook.get("reinvocationPolicy").is_some(), *kind == "MutatingWebhookConfiguration", "{name}");
    }
    let names: Vec<&str> = all.iter().map(|(_, w)| w["name"].as_str().unwrap_or_default()).collect();
    let ops = |list: &[&'static str]| list.iter().copied().collect::<BTreeSet<&str>>();
    let key = |g: &str, r: &str| (g.to_owned(), r.to_owned());

    let mutate = webhook(objects, "mutate.podmedic.io");
    assert_eq!(mutate["clientConfig"]["service"]["path"], "/mutate");
    assert_eq!(mutate["reinvocationPolicy"], "IfNeeded", "sidecars injected by later webhooks are seen");
    let mut expected = BTreeMap::from([(key("", "pods"), ops(&["CREATE"]))]);
    let pod_conditions = conditions(mutate);
    for (condition, expression) in &pod_conditions {
        assert!(
            expression.starts_with("request.resource.resource != 'pods' ||"),
            "condition {condition} must pass Jobs and CronJobs through before looking at Pod fields: {expression}"
        );
    }
    let mirror = pod_conditions.get("skip-mirror-pods").expect("a condition that skips mirror Pods");
    assert!(mirror.contains("!('kubernetes.io/config.mirror' in object.metadata.annotations)"), "{mirror}");
    if let Some(restart) = pod_conditions.get("skip-long-running-pods") {
        assert!(restart.contains("object.spec.restartPolicy != 'Always'"), "{restart}");
    }

    assert_workloads_are_warned(objects);

    match mode {
        Mode::Pods => {
            assert_eq!(
                names,
                ["mutate.podmedic.io", "converge.podmedic.io", "warn.podmedic.io", "warn-workloads.podmedic.io"]
            );
            assert_eq!(rules(mutate), expected, "pods mode mutates Pods only");
            let converge = webhook(objects, "converge.podmedic.io");
            assert_eq!(converge["clientConfig"]["service"]["path"], "/converge");
            let templates = |o: &[&'static str]| {
                BTreeMap::from([(key("batch", "jobs"), ops(o)), (key("batch", "cronjobs"), ops(o))])
            };
            assert_eq!(rules(converge), templates(&["UPDATE"]), "only updates are converged");
            assert_eq!(converge["reinvocationPolicy"], "Never");
            let only = conditions(converge);
            let only = only.get("only-templates-with-native-sidecars").expect("a condition on native sidecars");
            for list in [
                "object.spec.template.spec.initContainers",
                "object.spec.jobTemplate.spec.template.spec.initContainers",
            ] {
                assert!(
                    only.contains(&format!("{list}.exists(c, has(c.restartPolicy) && c.restartPolicy == 'Always')")),
                    "{only}"
                );
            }
            let warn = webhook(objects, "warn.podmedic.io");
            assert_eq!(warn["clientConfig"]["service"]["path"], "/warn");
            assert_eq!(rules(warn), templates(&["CREATE", "UPDATE"]), "every apply of a Job or CronJob is warned");
            assert!(warn.get("matchConditions").is_none());
        }
        Mode::Template => {
            assert_eq!(
                names,
                ["mutate.podmedic.io", "warn-workloads.podmedic.io"],
                "no converging webhook, and no warnings-only one for Jobs and CronJobs, in template mode"
            );
            assert_eq!(of_kind(objects, "ValidatingWebhookConfiguration").count(), 1);
            expected.insert(key("batch", "jobs"), ops(&["CREATE", "UPDATE"]));
            expected.insert(key("batch", "cronjobs"), ops(&["CREATE", "UPDATE"]));
            assert_eq!(rules(mutate), expected, "template mode mutates Jobs and CronJobs on CREATE and UPDATE");
        }
    }
}

/// The warnings webhook of workloads, in both modes: the mutating webhook's opt-in and Service,
/// `/warn`, the three apps kinds and nothing else (never Pods), sent only when the template
/// changes.
fn assert_workloads_are_warned(objects: &[Value]) {
    let hook = webhook(objects, "warn-workloads.podmedic.io");
    let mutating = webhook(objects, "mutate.podmedic.io");
    assert_eq!(hook["namespaceSelector"], mutating["namespaceSelector"], "the same opt-in as the mutating webhook");
    assert_eq!(
        hook["rules"],
        json!([{
            "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments", "statefulsets", "daemonsets"],
            "operations": ["CREATE", "UPDATE"], "scope": "Namespaced"
        }]),
        "Deployments, StatefulSets and DaemonSets only: Jobs and CronJobs have their own webhook, Pods none"
    );
    assert_eq!(
        conditions(hook),
        BTreeMap::from([(
            "only-pod-template-changes",
            "request.operation == 'CREATE' || object.spec.template != oldObject.spec.template".to_owned()
        )]),
        "creations and template changes only"
    );
    let mut service = hook["clientConfig"]["service"].clone();
    assert_eq!(service["path"], "/warn", "the warnings-only path");
    service["path"] = mutating["clientConfig"]["service"]["path"].clone();
    assert_eq!(service, mutating["clientConfig"]["service"], "the same Service and port as the mutating webhook");
}

fn assert_opt_in_and_fail_open(objects: &[Value], name: &str, hook: &Value) {
    let selector = &hook["namespaceSelector"];
    assert_eq!(selector["matchLabels"], json!({"podmedic.io/enabled": "true"}), "{name}: opt-in by namespace label");
    let excluded: BTreeSet<&str> = selector["matchExpressions"]
        .as_array()
        .expect("matchExpressions")
        .iter()
        .filter(|e| e["key"] == "kubernetes.io/metadata.name" && e["operator"] == "NotIn")
        .flat_map(|e| strings(&e["values"]))
        .collect();
    assert!(excluded.contains("kube-system"), "{name}: kube-system is excluded even if labelled: {excluded:?}");
    assert!(excluded.contains(NAMESPACE), "{name}: podmedic's own namespace is excluded even if labelled");
    assert!(hook.get("objectSelector").is_none_or(|s| s == &json!({})), "{name}: no objectSelector narrows the rules");
    assert_eq!(hook["failurePolicy"], "Ignore", "{name}: fail open, podmedic down must block nothing");
    assert_eq!(hook["sideEffects"], "None", "{name}: dry runs are sent and answered like real requests");
    let timeout = hook["timeoutSeconds"].as_u64().expect("timeoutSeconds set (the default is 10s)");
    assert!((1..=5).contains(&timeout), "{name}: timeoutSeconds {timeout} is short");
    // podmedic's own answer (allowed unchanged at the deadline) must reach the API server in time.
    let deadline = arg(podmedic_container(objects), "--admission-deadline").map_or(2, seconds);
    assert!(deadline < timeout, "{name}: --admission-deadline {deadline}s must be below timeoutSeconds {timeout}");
    assert_eq!(hook["admissionReviewVersions"], json!(["v1"]), "{name}");
    assert_eq!(hook["matchPolicy"], "Equivalent", "{name}");

    let client = &hook["clientConfig"];
    assert!(client.get("url").is_none(), "{name}: in-cluster webhooks go through the Service");
    let service = &client["service"];
    assert_eq!((&service["name"], &service["namespace"]), (&json!("podmedic"), &json!(NAMESPACE)), "{name}");
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
    assert!(listen.ends_with(&format!(":{target}")), "{name} reaches --listen {listen}, not port {target}");
}

#[test]
fn every_field_of_every_webhook_says_why_it_has_its_value() {
    for file in ["mutatingwebhookconfiguration.yaml", "validatingwebhookconfiguration.yaml"] {
        let path = deploy_dir().join("base").join(file);
        let text = std::fs::read_to_string(&path).expect("webhook configuration");
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.iter().position(|l| *l == "webhooks:").expect("a webhooks: list");
        // Each webhook entry's own fields: `  - name:` and the keys indented under it, each
        // preceded by a comment (possibly the one of the field before it ends, so no blank-line
        // tricks).
        let mut commented = BTreeSet::new();
        for (i, line) in lines.iter().enumerate().skip(start + 1) {
            let field =
                line.strip_prefix("  - ").or_else(|| line.strip_prefix("    ").filter(|l| !l.starts_with([' ', '#'])));
            let Some((key, _)) = field.and_then(|f| f.split_once(':')) else { continue };
            let previous = lines[..i].iter().rev().find(|l| !l.trim().is_empty()).map_or("", |l| l.trim_start());
            assert!(
                previous.starts_with('#'),
                "{}:{}: `{}` has no comment saying why",
                path.display(),
                i + 1,
                line.trim()
            );
            commented.insert(key.to_owned());
        }
        let config = read_yaml(&path).remove(0);
        let fields: BTreeSet<String> = config["webhooks"]
            .as_array()
            .expect("webhooks")
            .iter()
            .flat_map(|w| w.as_object().expect("webhook").keys().cloned())
            .collect();
        assert_eq!(
            commented, fields,
            "{file}: every field the webhooks set, and only those, is found with its comment"
        );
    }
}

#[test]
fn the_base_is_pods_mode() {
    assert_webhooks(&base_objects(), Mode::Pods);
}

#[test]
fn the_template_mode_component_sends_jobs_and_cronjobs_to_mutate_and_nothing_else() {
    let check = |objects: &[Value]| {
        assert_webhooks(objects, Mode::Template);
        assert_valid_kubernetes_objects(objects);
        assert_deployment_is_hardened(objects);
    };
    check(&base_with_components(&["template-mode"]));
    if let Some(rendered) = render_with_components(&["template-mode"]) {
        check(&rendered);
    }
    // With the other component, in either order: each patch finds the webhook it tests for.
    for components in [["template-mode", "long-running-pods"], ["long-running-pods", "template-mode"]] {
        let objects = base_with_components(&components);
        assert_webhooks(&objects, Mode::Template);
        assert_eq!(conditions(webhook(&objects, "mutate.podmedic.io")).len(), 1, "{components:?}");
        if let Some(rendered) = render_with_components(&components) {
            assert_webhooks(&rendered, Mode::Template);
        }
    }
}

#[test]
fn the_long_running_pods_component_removes_only_the_restart_policy_condition() {
    let check = |objects: &[Value]| {
        let names: Vec<_> = conditions(webhook(objects, "mutate.podmedic.io")).into_keys().collect();
        assert_eq!(names, ["skip-mirror-pods"], "long-running Pods are sent, mirror Pods still are not");
        assert_webhooks(objects, Mode::Pods);
    };
    check(&base_with_components(&["long-running-pods"]));
    if let Some(rendered) = render_with_components(&["long-running-pods"]) {
        check(&rendered);
        assert_deployment_is_hardened(&rendered);
    }
}
