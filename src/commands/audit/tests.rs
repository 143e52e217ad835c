//! The audit on fixtures: what it reports, how the table and the JSON read.

use k8s_openapi::api::core::v1::Namespace;
use podmedic_engine::ChangeKind;
use podmedic_engine::annotations::{ENABLED_LABEL, SIDECARS_ANNOTATION};
use podmedic_engine::kubernetes::NodeKubelet;
use serde_json::{Value, json};

use super::*;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/audit/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn policy() -> Policy {
    Policy::builtin()
}

fn available() -> CapabilityReport {
    CapabilityReport::decide("v1.30.2".into(), Some(&[]))
}

fn active_job(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "x", "image": "x"}]}}},
        "status": {"active": 1}
    })
}

fn proxy_job(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "migrate", "image": "ghcr.io/acme/migrate:1.0"},
            {"name": "cloud-sql-proxy", "image": "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1",
             "args": ["acme:europe-west1:db"]}
        ]}}}
    })
}

fn labelled_namespace(name: &str, annotations: serde_json::Value) -> Namespace {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {ENABLED_LABEL: "true"}, "annotations": annotations}
    }))
    .unwrap()
}

#[test]
fn a_cloud_sql_proxy_left_running_after_the_migration_is_stuck() {
    let stuck = stuck_on_sidecar(&fixture("stuck-cloud-sql-proxy-pod.json"), &policy()).unwrap();
    assert_eq!(stuck.finished, [FinishedContainer { name: "migrate".into(), exit_code: 0 }]);
    assert_eq!(stuck.running_sidecars, ["cloud-sql-proxy"]);
    assert_eq!(stuck.finished_at, Some("2025-03-14T02:03:40Z".parse().unwrap()));
}

#[test]
fn a_failed_main_container_with_a_running_proxy_is_stuck_too() {
    let mut pod = fixture("stuck-cloud-sql-proxy-pod.json");
    pod["status"]["containerStatuses"][1]["state"]["terminated"]["exitCode"] = json!(1);
    let stuck = stuck_on_sidecar(&pod, &policy()).unwrap();
    assert_eq!(stuck.finished[0].exit_code, 1);
}

#[test]
fn a_completed_pod_with_a_native_sidecar_is_not_stuck() {
    assert_eq!(stuck_on_sidecar(&fixture("completed-native-sidecar-pod.json"), &policy()), None);
}

#[test]
fn a_job_pod_still_working_is_not_stuck() {
    assert_eq!(stuck_on_sidecar(&fixture("running-job-pod.json"), &policy()), None);
}

#[test]
fn a_failed_pod_is_not_stuck() {
    assert_eq!(stuck_on_sidecar(&fixture("failed-job-pod.json"), &policy()), None);
}

#[test]
fn the_sidecars_annotation_names_sidecars_the_catalogue_does_not_know() {
    let mut pod = fixture("running-job-pod.json");
    // The main container finished; a home-made forwarder named in the annotation keeps running.
    pod["spec"]["containers"][1]["image"] = json!("ghcr.io/acme/log-forwarder:4");
    pod["spec"]["containers"][1]["name"] = json!("forwarder");
    pod["status"]["containerStatuses"][1]["name"] = json!("forwarder");
    pod["status"]["containerStatuses"][0]["state"] = json!({"terminated": {"exitCode": 0}});
    assert_eq!(stuck_on_sidecar(&pod, &policy()), None, "not a sidecar without the annotation");
    pod["metadata"]["annotations"] = json!({SIDECARS_ANNOTATION: "forwarder"});
    assert_eq!(stuck_on_sidecar(&pod, &policy()).unwrap().running_sidecars, ["forwarder"]);
}

#[test]
fn the_report_lists_changes_and_stuck_jobs_of_active_jobs_only() {
    let objects = ClusterObjects {
        namespaces: vec![labelled_namespace("payments", json!({}))],
        jobs: vec![proxy_job("payments", "nightly"), active_job("payments", "db-migrate")],
        cron_jobs: vec![],
        pods: vec![
            fixture("stuck-cloud-sql-proxy-pod.json"),
            fixture("running-job-pod.json"),
            fixture("failed-job-pod.json"),
        ],
        vpas: vec![],
    };
    let report = build_report(&objects, &policy(), available(), vec![]);
    assert_eq!(report.would_change.len(), 1, "{:#?}", report.would_change);
    let nightly = &report.would_change[0];
    assert_eq!((nightly.kind.as_str(), nightly.name.as_str()), ("Job", "nightly"));
    assert_eq!(nightly.namespace_enabled, Some(true));
    assert!(nightly.changes.iter().any(|c| c.kind == ChangeKind::SidecarMoved && c.container == "cloud-sql-proxy"));
    // Job-owned Pods are reported through their Job, never on their own.
    assert!(report.would_change.iter().all(|w| w.kind != "Pod"));
    assert_eq!(report.stuck.len(), 1);
    assert_eq!((report.stuck[0].job.as_str(), report.stuck[0].pod.as_str()), ("db-migrate", "db-migrate-x7k2p"));

    // The same Pod under a Job that is no longer active is history, not a stuck Job.
    let mut finished = objects.clone();
    finished.jobs[1].as_object_mut().unwrap().remove("status");
    assert!(build_report(&finished, &policy(), available(), vec![]).stuck.is_empty());
}

#[test]
fn opted_out_namespaces_and_unavailable_clusters_change_no_sidecar() {
    let objects = ClusterObjects {
        namespaces: vec![labelled_namespace(
            "payments",
            json!({podmedic_engine::annotations::NAMESPACE_OPT_OUT_ANNOTATION: "true"}),
        )],
        jobs: vec![proxy_job("payments", "nightly"), proxy_job("elsewhere", "nightly")],
        ..ClusterObjects::default()
    };
    let report = build_report(&objects, &policy(), available(), vec![]);
    assert_eq!(report.would_change.len(), 1);
    assert_eq!(report.would_change[0].namespace, "elsewhere");
    assert_eq!(report.would_change[0].namespace_enabled, None);

    let old = CapabilityReport::decide(
        "v1.30.2".into(),
        Some(&[NodeKubelet { node: "pool-a-3".into(), kubelet_version: "v1.28.9".into() }]),
    );
    assert_eq!(old.reason.as_deref(), Some("node pool-a-3 runs kubelet v1.28.9"));
    let report = build_report(&objects, &policy(), old, vec![]);
    assert!(report.would_change.iter().all(|w| w.changes.iter().all(|c| c.kind != ChangeKind::SidecarMoved)));
}

#[test]
fn cron_jobs_are_audited_and_their_jobs_are_not_repeated() {
    let cron = json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "report", "namespace": "analytics"},
        "spec": {"schedule": "0 2 * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
            "containers": [{"name": "report", "image": "r"},
                {"name": "proxy", "image": "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1"}]}}}}}
    });
    let mut child = proxy_job("analytics", "report-29034120");
    child["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "batch/v1", "kind": "CronJob", "name": "report", "uid": "u", "controller": true}]);
    let objects = ClusterObjects { cron_jobs: vec![cron], jobs: vec![child], ..ClusterObjects::default() };
    let report = build_report(&objects, &policy(), available(), vec![]);
    let kinds: Vec<&str> = report.would_change.iter().map(|w| w.kind.as_str()).collect();
    assert_eq!(kinds, ["CronJob"]);
}

#[test]
fn the_table_is_aligned_and_says_what_it_found() {
    let objects = ClusterObjects {
        jobs: vec![proxy_job("payments", "nightly"), active_job("payments", "db-migrate")],
        pods: vec![fixture("stuck-cloud-sql-proxy-pod.json")],
        ..ClusterObjects::default()
    };
    let report = build_report(&objects, &policy(), available(), vec!["cannot list Nodes".into()]);
    let now: Timestamp = "2025-03-14T05:15:40Z".parse().unwrap();
    let table = render_table(&report, now);
    assert!(table.starts_with("Native sidecars: available (API server v1.30.2, 0 nodes checked)\n"), "{table}");
    assert!(table.contains("Note: cannot list Nodes\n"));
    assert!(table.contains("STILL RUNNING"));
    assert!(table.contains("migrate (exit 0)"));
    assert!(table.contains("3h12m"), "{table}");
    let lines: Vec<&str> = table.lines().collect();
    let header = lines.iter().position(|l| l.starts_with("NAMESPACE  KIND")).unwrap();
    let column = lines[header].find("CHANGE").unwrap();
    let row = lines[header + 1];
    assert!(row.starts_with("payments") && row[column..].starts_with("cloud-sql-proxy: "), "{table}");
    assert!(table.lines().all(|l| l == l.trim_end()));
}

#[test]
fn the_json_report_is_stable() {
    let objects = ClusterObjects {
        jobs: vec![active_job("payments", "db-migrate")],
        pods: vec![fixture("stuck-cloud-sql-proxy-pod.json")],
        ..ClusterObjects::default()
    };
    let report = build_report(&objects, &policy(), available(), vec![]);
    let value = serde_json::to_value(&report).unwrap();
    assert_eq!(
        value["nativeSidecars"],
        json!({"available": true, "reason": null, "apiServer": "v1.30.2", "nodesChecked": 0})
    );
    assert_eq!(value["stuck"][0]["job"], "db-migrate");
    assert_eq!(value["stuck"][0]["runningSidecars"], json!(["cloud-sql-proxy"]));
    assert_eq!(value["stuck"][0]["finished"], json!([{"name": "migrate", "exitCode": 0}]));
    assert_eq!(value["stuck"][0]["finishedAt"], "2025-03-14T02:03:40Z");
}

/// The audit hands the engine the objects as the API server sent them, so it agrees with the
/// webhook on fields its Kubernetes types may not know. A container's `restartPolicyRules`
/// (Kubernetes 1.34+) keeps the engine from moving it; when the audit decoded Jobs into
/// k8s-openapi's v1_33 types, the field was dropped and the audit reported a move the webhook
/// would never make.
#[test]
fn the_engine_sees_the_fields_the_api_server_sent() {
    let mut job = proxy_job("payments", "nightly");
    job["spec"]["template"]["spec"]["containers"][1]["restartPolicyRules"] =
        json!([{"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}]);
    job["spec"]["template"]["spec"]["containers"][1]["someFieldOfKubernetes2"] = json!({"future": true});
    let objects = ClusterObjects { jobs: vec![job], ..ClusterObjects::default() };
    let report = build_report(&objects, &policy(), available(), vec![]);
    assert!(report.would_change.is_empty(), "{:#?}", report.would_change);

    let control = ClusterObjects { jobs: vec![proxy_job("payments", "nightly")], ..ClusterObjects::default() };
    let report = build_report(&control, &policy(), available(), vec![]);
    assert!(report.would_change[0].changes.iter().any(|c| c.kind == ChangeKind::SidecarMoved));
}

#[test]
fn a_vpa_sizing_a_sidecar_that_would_move_gets_a_note_in_the_table_and_the_json() {
    let cron = json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "report", "namespace": "analytics"},
        "spec": {"schedule": "0 2 * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
            "containers": [{"name": "report", "image": "ghcr.io/acme/report:3"},
                {"name": "cloud-sql-proxy", "image": "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1",
                 "args": ["acme:eu:db"]}]}}}}}
    });
    let vpa = json!({
        "apiVersion": "autoscaling.k8s.io/v1", "kind": "VerticalPodAutoscaler",
        "metadata": {"name": "report", "namespace": "analytics"},
        "spec": {"targetRef": {"apiVersion": "batch/v1", "kind": "CronJob", "name": "report"},
                 "updatePolicy": {"updateMode": "Initial"}}
    });
    let objects = ClusterObjects { cron_jobs: vec![cron], vpas: vec![vpa], ..ClusterObjects::default() };
    let report = build_report(&objects, &policy(), available(), vec![]);
    assert_eq!(report.would_change[0].notes.len(), 1, "{:#?}", report.would_change);
    let table = render_table(&report, "2025-03-14T05:15:40Z".parse().unwrap());
    assert!(
        table.contains(
            "Note: analytics/CronJob/report: VerticalPodAutoscaler report sizes cloud-sql-proxy: VPA (up to at least 1.6) ignores init containers"
        ),
        "{table}"
    );
    let value = serde_json::to_value(&report).unwrap();
    assert!(value["wouldChange"][0]["notes"][0].as_str().unwrap().contains("stops sizing them"));
    // Without a VPA, no note.
    let objects = ClusterObjects { vpas: vec![], ..objects };
    assert!(build_report(&objects, &policy(), available(), vec![]).would_change[0].notes.is_empty());
}
