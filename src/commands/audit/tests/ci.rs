//! The audit of the recorded cluster as SARIF and JUnit: valid SARIF 2.1.0 with logical
//! locations, one JUnit test case per object.

use super::*;
use crate::commands::report::{ReportFormat, write_report};

/// The audit of the recorded stuck Pods plus a Job podmedic would change and one stuck on its proxy.
fn audited() -> AuditReport {
    let mut objects = recorded_cluster();
    // db-migrate still runs its proxy as a regular container: podmedic would change it, and it is stuck.
    let mut db_migrate = proxy_job("payments", "db-migrate");
    db_migrate["status"] = json!({"active": 1});
    objects.jobs = vec![proxy_job("payments", "nightly"), db_migrate];
    objects.pods = vec![fixture("stuck-cloud-sql-proxy-pod.json")];
    build_report(&objects, &policy(), available(), vec![])
}

fn written(report: &AuditReport, format: ReportFormat) -> String {
    let mut out = Vec::new();
    write_report(&mut out, &audit_findings(report), format).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn the_audit_as_sarif_is_valid_and_names_objects_by_logical_location() {
    let report = audited();
    assert!(!report.not_running.is_empty() && !report.stuck.is_empty() && !report.would_change.is_empty());
    let sarif: Value = serde_json::from_str(&written(&report, ReportFormat::Sarif)).unwrap();
    let path = format!("{}/tests/fixtures/sarif/sarif-schema-2.1.0.json", env!("CARGO_MANIFEST_DIR"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(&sarif).map(|e| format!("{}: {e}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:#?}");

    let results = sarif["runs"][0]["results"].as_array().unwrap();
    let expected = report.not_running.len()
        + report.stuck.len()
        + report.would_change.iter().map(|w| w.changes.len() + w.warnings.len() + w.notes.len()).sum::<usize>();
    assert_eq!(results.len(), expected);
    for result in results {
        let location = &result["locations"][0];
        assert!(location.get("physicalLocation").is_none(), "a cluster object has no file: {result:#}");
        let logical = location["logicalLocations"].as_array().unwrap();
        assert_eq!(logical[0]["kind"], "namespace");
        assert_eq!(logical[1]["kind"], "type");
        let object = &logical[2];
        let qualified = format!(
            "{}/{}/{}",
            logical[0]["name"].as_str().unwrap(),
            logical[1]["name"].as_str().unwrap(),
            object["name"].as_str().unwrap()
        );
        assert_eq!(object["fullyQualifiedName"], qualified.as_str());
    }
    let stuck = results.iter().find(|r| r["ruleId"] == "stuck-on-sidecar").unwrap();
    assert_eq!(stuck["locations"][0]["logicalLocations"][2]["fullyQualifiedName"], "payments/Job/db-migrate");
    assert!(stuck["message"]["text"].as_str().unwrap().contains("cloud-sql-proxy"), "{stuck:#}");
    let pending = &report.not_running[0];
    assert!(results.iter().any(|r| r["ruleId"] == "not-running"
        && r["locations"][0]["logicalLocations"][2]["fullyQualifiedName"]
            == format!("{}/Pod/{}", pending.namespace, pending.pod).as_str()
        && r["message"]["text"].as_str().unwrap().contains(&pending.fix)));
}

#[test]
fn the_audit_as_junit_has_one_failing_test_case_per_object() {
    let report = audited();
    let xml = written(&report, ReportFormat::Junit);
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let cases: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("testcase")).collect();
    let mut names: Vec<&str> = cases.iter().map(|c| c.attribute("name").unwrap()).collect();
    // The Job that would change and is stuck is one test case, not two.
    assert_eq!(names.iter().filter(|n| **n == "payments/Job/db-migrate").count(), 1, "{names:?}");
    assert!(report.would_change.iter().any(|w| w.name == "db-migrate"));
    let objects = report.not_running.len() + 2;
    assert_eq!(cases.len(), objects, "{names:?}");
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), objects, "test case names are unique");
    assert!(cases.iter().all(|c| c.children().any(|f| f.has_tag_name("failure"))));
    let suites = doc.root_element();
    assert_eq!(suites.attribute("tests"), Some(objects.to_string().as_str()));
    assert_eq!(suites.attribute("failures"), Some(objects.to_string().as_str()));
}
