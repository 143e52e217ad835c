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
        ..ClusterObjects::default()
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

// ---------------------------------------------------------------------------------------------
// Pods that do not run: the six real Pods of tests/fixtures/cluster-objects/, with their Events
// and the node of that cluster.

fn cluster_object(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/cluster-objects/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The recorded cluster as `read_objects` keeps it: every stuck Pod passes `looks_troubled`.
fn recorded_cluster() -> ClusterObjects {
    let pods: Vec<Value> = cluster_object("pods-stuck.json")["items"].as_array().unwrap().clone();
    assert!(pods.iter().all(looks_troubled), "every stuck Pod is kept while reading");
    let events = cluster_object("events-stuck.json")["items"].as_array().unwrap().iter().cloned().collect();
    let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(cluster_object("node.json")).unwrap();
    let nodes = Some(vec![std::sync::Arc::new(crate::cluster::node_facts(&node).unwrap())]);
    ClusterObjects { troubled_pods: pods, events, nodes, ..ClusterObjects::default() }
}

fn explained(objects: &ClusterObjects) -> std::collections::BTreeMap<String, NotRunning> {
    let report = build_report(objects, &policy(), available(), vec![]);
    report.not_running.into_iter().map(|line| (line.pod.clone(), line)).collect()
}

#[test]
fn every_stuck_pod_of_the_real_cluster_gets_its_cause_and_fix() {
    let lines = explained(&recorded_cluster());
    assert_eq!(lines.len(), 6, "{lines:#?}");
    let line = |pod: &str| -> (&str, Option<&str>, &str, &str) {
        let l = &lines[pod];
        (l.status.as_str(), l.container.as_deref(), l.cause.as_str(), l.fix.as_str())
    };
    assert_eq!(
        line("trainer-too-big"),
        (
            "Pending",
            None,
            "FailedScheduling: 0/1 nodes are available: 1 Insufficient cpu",
            "no node can fit cpu 64 (largest allocatable: 2): container train requests 64; lower it or add nodes"
        )
    );
    assert_eq!(
        line("worker-no-node"),
        (
            "Pending",
            None,
            "FailedScheduling: 0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector",
            "nodeSelector disktype=nvme matches no node: Pods stay Pending; fix it or label a node"
        )
    );
    assert_eq!(
        line("report-oom"),
        (
            "CrashLoopBackOff",
            Some("report"),
            "Last State: OOMKilled (Exit Code 137): it used more than its memory limit 24Mi; 2 restarts",
            "raise resources.limits.memory above 24Mi, or make it use less (kubectl top pod)"
        )
    );
    assert_eq!(
        line("api-bad-image"),
        (
            "ErrImagePull",
            Some("api"),
            "cannot pull registry.example.com/shop/api:1.4.2: the node cannot reach the registry registry.example.com \
             (no such host)",
            "check the registry in the image name; if it is right, the nodes' DNS and network to registry.example.com"
        )
    );
    assert_eq!(
        line("app-missing-config"),
        (
            "CreateContainerConfigError",
            Some("app"),
            "ConfigMap app-config does not exist (env DB_URL of container app)",
            "create it (kubectl create configmap app-config -n shop ...), or mark the reference optional: true"
        )
    );
    assert_eq!(
        line("web-backgrounded"),
        (
            "Completed",
            Some("web"),
            "Exit Code 0 (Completed), then restarted: its script starts `nohup sleep 600` in the background and ends; \
             3 restarts",
            "run the long-lived process in the foreground as the script's last command; background only helpers"
        )
    );
}

#[test]
fn without_nodes_and_events_the_status_alone_still_explains() {
    let mut objects = recorded_cluster();
    objects.nodes = None;
    objects.events = PodEvents::default();
    let lines = explained(&objects);
    assert_eq!(lines.len(), 6);
    assert_eq!(
        lines["trainer-too-big"].fix,
        "lower the Pod's requests or add nodes with more of that resource (kubectl top nodes)"
    );
    assert_eq!(lines["report-oom"].status, "CrashLoopBackOff");
}

#[test]
fn a_crash_loop_from_a_failing_liveness_probe_names_the_probe() {
    let pods = cluster_object("pods-stuck.json");
    let mut pod =
        pods["items"].as_array().unwrap().iter().find(|p| p["metadata"]["name"] == "report-oom").unwrap().clone();
    pod["status"]["containerStatuses"][0]["lastState"]["terminated"] =
        json!({"exitCode": 137, "reason": "Error", "finishedAt": "2026-11-29T06:35:48Z"});
    let events: PodEvents = [json!({
        "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "report-oom", "fieldPath": "spec.containers{report}"},
        "reason": "Unhealthy", "type": "Warning", "count": 9, "lastTimestamp": "2026-11-29T06:35:40Z",
        "message": "Liveness probe failed: HTTP probe failed with statuscode: 500"
    })]
    .into_iter()
    .collect();
    let objects = ClusterObjects { troubled_pods: vec![pod], events, ..ClusterObjects::default() };
    let line = &explained(&objects)["report-oom"];
    assert!(
        line.cause.starts_with("the liveness probe fails and the kubelet restarts it: Liveness probe failed"),
        "{line:?}"
    );
    assert!(line.fix.contains("startupProbe"), "{line:?}");
}

#[test]
fn init_containers_image_pulls_and_private_registries() {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "etl-0", "namespace": "data"},
        "spec": {"restartPolicy": "Always",
                 "initContainers": [{"name": "fetch", "image": "ghcr.io/acme/fetch:2.0"}],
                 "containers": [{"name": "etl", "image": "ghcr.io/acme/etl:2.0"}]},
        "status": {"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True"},
                           {"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized"}],
            "initContainerStatuses": [{"name": "fetch", "image": "ghcr.io/acme/fetch:2.0", "restartCount": 0, "ready": false,
                "state": {"waiting": {"reason": "ImagePullBackOff",
                    "message": "Back-off pulling image \"ghcr.io/acme/fetch:2.0\": ErrImagePull: failed to authorize: 401 Unauthorized"}}}],
            "containerStatuses": [{"name": "etl", "restartCount": 0, "ready": false,
                "state": {"waiting": {"reason": "PodInitializing"}}}]}
    });
    let objects = ClusterObjects { troubled_pods: vec![pod], ..ClusterObjects::default() };
    let line = &explained(&objects)["etl-0"];
    assert_eq!(line.status, "Init:ImagePullBackOff");
    assert_eq!(line.container.as_deref(), Some("fetch"));
    assert!(line.cause.contains("registry ghcr.io refused to pull ghcr.io/acme/fetch:2.0"), "{line:?}");
    assert!(line.fix.contains("imagePullSecrets"), "{line:?}");
}

#[test]
fn a_job_held_open_by_its_proxy_is_one_line_too_and_healthy_pods_are_not() {
    let objects = ClusterObjects {
        jobs: vec![active_job("payments", "db-migrate")],
        pods: vec![
            fixture("stuck-cloud-sql-proxy-pod.json"),
            fixture("running-job-pod.json"),
            fixture("completed-native-sidecar-pod.json"),
        ],
        ..ClusterObjects::default()
    };
    let report = build_report(&objects, &policy(), available(), vec![]);
    assert_eq!(report.not_running.len(), 1, "{:#?}", report.not_running);
    let line = &report.not_running[0];
    assert_eq!(line.container.as_deref(), Some("cloud-sql-proxy"));
    assert!(line.cause.starts_with("Job db-migrate held open by a sidecar: migrate (exit 0) finished"), "{line:?}");
    assert!(line.fix.contains("native sidecar (initContainers, restartPolicy: Always)"), "{line:?}");
    let table = render_table(&report, "2025-03-14T05:15:40Z".parse().unwrap());
    assert!(table.contains("Not running (1 Pod): why, and what to do:"), "{table}");
    assert!(table.contains("NAMESPACE  POD"), "{table}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["notRunning"][0]["pod"], "db-migrate-x7k2p");
    assert_eq!(json["notRunning"][0]["status"], "Running");
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

mod ci;
