//! The alerts and the dashboard of `deploy/components/monitoring/` name only metrics that a running
//! `podmedic serve` exports, so a renamed metric cannot leave an alert that never fires. Every
//! PromQL expression of the PrometheusRule and of the dashboard's panels is read, its metric names
//! taken out, and each `podmedic_*` name looked up in `/metrics` of the real binary; names of other
//! exporters (kube-state-metrics, Prometheus' `up`) must be in [`OTHER_EXPORTERS`].

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::support::process::ServeProcess;
use crate::support::{fixture, full, post_request};

/// The metrics of other exporters the rules and the dashboard may use, and who exports them.
const OTHER_EXPORTERS: [&str; 6] = [
    "up",                                        // Prometheus, for every scrape target
    "kube_deployment_status_replicas_available", // kube-state-metrics
    "kube_deployment_spec_replicas",
    "kube_pod_container_status_terminated",
    "kube_pod_container_status_running",
    "kube_pod_owner",
];

fn monitoring(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/components/monitoring").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (where, expression) of every alert and recording rule.
fn rule_expressions() -> Vec<(String, String)> {
    let rule: Value = yaml_serde::from_str(&monitoring("prometheusrule.yaml")).unwrap();
    let mut found = Vec::new();
    for group in rule["spec"]["groups"].as_array().unwrap() {
        for r in group["rules"].as_array().unwrap() {
            let name = r["alert"].as_str().or(r["record"].as_str()).unwrap();
            found.push((format!("rule {name}"), r["expr"].as_str().unwrap().to_owned()));
        }
    }
    found
}

/// (where, expression) of every panel's targets, rows' nested panels included.
fn dashboard_expressions() -> Vec<(String, String)> {
    fn walk(panels: &[Value], found: &mut Vec<(String, String)>) {
        for panel in panels {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    found.push((format!("panel {:?}", panel["title"].as_str().unwrap_or("")), expr.to_owned()));
                }
            }
            walk(panel["panels"].as_array().map(Vec::as_slice).unwrap_or_default(), found);
        }
    }
    let dashboard: Value = serde_json::from_str(&monitoring("podmedic-dashboard.json")).unwrap();
    let mut found = Vec::new();
    walk(dashboard["panels"].as_array().unwrap(), &mut found);
    found
}

/// The metric names of a PromQL expression: identifiers that are not functions, keywords, label
/// names or values, grouping labels, durations or numbers. A small reader for the expressions we
/// write (no parser crate: the ones on crates.io build a grammar at compile time).
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: [&str; 11] =
        ["and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_to =
        |from: usize, close: char| chars[from..].iter().position(|c| *c == close).map_or(chars.len(), |p| from + p + 1);
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' {
            // A string: skip it, escapes included.
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '{' {
            i = skip_to(i, '}');
        } else if c == '[' {
            i = skip_to(i, ']');
        } else if c.is_ascii_digit() || c == '.' {
            // A number or a duration (`5m`, `1e-9`).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let rest: String = chars[i..].iter().collect::<String>().trim_start().to_owned();
            let next = rest.chars().next();
            // `sum by (le) (...)`: an aggregation whose grouping comes before its argument.
            let grouped = ["by", "without"]
                .iter()
                .any(|k| rest.strip_prefix(k).is_some_and(|after| after.trim_start().starts_with('(')));
            if KEYWORDS.contains(&word.as_str()) {
                // `by (le)`, `on (namespace, pod)`, `group_left (owner_name)`: labels, not metrics.
                if next == Some('(') {
                    i = skip_to(i, ')');
                }
            } else if next != Some('(') && !grouped {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The sample names of a Prometheus/OpenMetrics text exposition: those of samples present, and
/// those every declared family has even before its first sample (`_total` of a counter, the
/// `_bucket`/`_sum`/`_count` of a histogram).
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let mut words = declaration.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else { continue };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

/// What the rules and the dashboard name that is not exported: `(where, metric)`.
fn missing(expressions: &[(String, String)], exported: &BTreeSet<String>) -> Vec<(String, String)> {
    let mut missing = Vec::new();
    for (place, expr) in expressions {
        for name in metric_names(expr) {
            let known = if name.starts_with("podmedic_") {
                exported.contains(&name)
            } else {
                OTHER_EXPORTERS.contains(&name.as_str())
            };
            if !known {
                missing.push((place.clone(), name));
            }
        }
    }
    missing
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (le) (rate(podmedic_admission_duration_seconds_bucket{job="podmedic"}[5m]))) > 2.4"#
        ),
        ["podmedic_admission_duration_seconds_bucket"]
    );
    assert_eq!(
        names(r#"(sum(rate(a_total{result="skipped", x='y{'}[10m])) or vector(0)) + b offset 5m > 1e-9"#),
        ["a_total", "b"]
    );
    assert_eq!(
        names(
            "max by (namespace, pod) (x == 1) * on (namespace, pod) group_left (owner_name) max by (namespace, pod, owner_name) (kube_pod_owner)"
        ),
        ["kube_pod_owner", "x"]
    );
    assert_eq!(
        names("(podmedic_tls_certificate_expiry_timestamp_seconds - time()) < 7 * 86400"),
        ["podmedic_tls_certificate_expiry_timestamp_seconds"]
    );
}

#[tokio::test]
async fn every_metric_of_the_alerts_and_the_dashboard_is_exported() {
    // A podmedic that has seen traffic: a Job's Pod with a sidecar (patched, with changes), and a
    // request it refuses (an error by reason). Labelled families have no series before their
    // first event, and an alert's metric must exist once the event it watches for happens.
    let podmedic = ServeProcess::start(&[]);
    let mut client = podmedic.client().connect().await.unwrap();
    let patched = client.review(fixture("pod-create-by-job-controller.json")).await;
    assert_eq!(patched.status, 200);
    let refused = client.send(post_request("/mutate", "text/plain", full("not a review"))).await.unwrap();
    assert_eq!(refused.status, 415);
    let metrics = podmedic.get_health("/metrics").await.expect("the metrics port answers").text();
    let exported = exported_names(&metrics);
    let rules = rule_expressions();
    let panels = dashboard_expressions();
    assert!(rules.len() >= 8 && panels.len() >= 10, "{} rules, {} panel queries", rules.len(), panels.len());

    let everything: Vec<(String, String)> = rules.iter().chain(&panels).cloned().collect();
    assert_eq!(
        missing(&everything, &exported),
        [],
        "names the rules or the dashboard use that are not exported:\n{metrics}"
    );
    // Both name podmedic's own metrics, not only other exporters'.
    for exprs in [&rules, &panels] {
        let own: BTreeSet<String> =
            exprs.iter().flat_map(|(_, e)| metric_names(e)).filter(|n| n.starts_with("podmedic_")).collect();
        assert!(own.len() >= 5, "{own:?}");
    }

    // The check catches drift: a renamed metric in a rule is reported, with the rule.
    let (place, expr) = rules.iter().find(|(_, e)| e.contains("podmedic_tls_reloads_total")).unwrap().clone();
    let drifted = vec![(place.clone(), expr.replace("podmedic_tls_reloads_total", "podmedic_tls_reload_total"))];
    assert_eq!(missing(&drifted, &exported), [(place, "podmedic_tls_reload_total".to_owned())]);
    let unknown = vec![("panel".to_owned(), "kube_job_status_failed".to_owned())];
    assert_eq!(missing(&unknown, &exported).len(), 1, "another exporter's metric must be listed in OTHER_EXPORTERS");
}

/// Every alert names its metric in its description and links to its runbook section, which exists.
#[test]
fn every_alert_names_its_metric_and_a_runbook_section() {
    let runbook = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/runbook.md")).unwrap();
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.to_lowercase().chars().filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_').collect())
        .collect();
    let rule: Value = yaml_serde::from_str(&monitoring("prometheusrule.yaml")).unwrap();
    for r in rule["spec"]["groups"][0]["rules"].as_array().unwrap() {
        let alert = r["alert"].as_str().unwrap();
        let description = r["annotations"]["description"].as_str().unwrap();
        let named: Vec<String> = metric_names(r["expr"].as_str().unwrap()).into_iter().collect();
        assert!(named.iter().any(|m| description.contains(m.trim_end_matches("_bucket"))), "{alert}: {description}");
        assert!(description.contains("Runbook:"), "{alert}: a runbook step in the description");
        let url = r["annotations"]["runbook_url"].as_str().unwrap();
        let anchor = url.rsplit_once("docs/runbook.md#").map(|(_, a)| a).unwrap_or_else(|| panic!("{alert}: {url}"));
        assert!(anchors.contains(anchor), "{alert}: no section #{anchor} in docs/runbook.md ({anchors:?})");
        assert!(r["labels"]["severity"].as_str().is_some_and(|s| s == "warning" || s == "critical"), "{alert}");
    }
}
