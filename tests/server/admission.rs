//! AdmissionReviews captured from a real kube-apiserver, sent over HTTPS to a running podmedic:
//! given the review, podmedic answers with the same uid and a patch that, applied to the object,
//! gives the fixed object.

use crate::support::*;

/// The Job controller's Pod: cloud-sql-proxy becomes a native sidecar, `export` stays alone.
#[tokio::test]
async fn the_pod_of_a_job_gets_its_cloud_sql_proxy_as_a_native_sidecar() {
    let server = TestServer::start().await;
    let mut client = server.client().connect().await.unwrap();
    let request = fixture("pod-create-by-job-controller.json");

    let reply = client.review(request.clone()).await;

    let response = admission_response(&request, &reply);
    assert!(response.get("patch").is_some(), "expected a patch: {response}");
    let pod = patched_object(&request, &response);
    let spec = pod_spec(&pod);
    assert_eq!(names(spec, "containers"), ["export"]);
    assert_eq!(names(spec, "initContainers"), ["cloud-sql-proxy"]);
    let proxy = container(spec, "initContainers", "cloud-sql-proxy");
    assert_eq!(proxy["restartPolicy"], "Always");
    assert_eq!(proxy["image"], "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1");
    // Everything else about the container survives the move.
    assert_eq!(proxy["securityContext"]["runAsNonRoot"], true);
    assert_eq!(spec["restartPolicy"], "Never");
}

/// The CronJob as `kubectl apply` creates it: fixed in its job template.
#[tokio::test]
async fn a_new_cronjob_is_fixed_in_its_job_template() {
    let server = TestServer::start().await;
    let mut client = server.client().connect().await.unwrap();
    let request = fixture("cronjob-create.json");

    let response = admission_response(&request, &client.review(request.clone()).await);

    let cronjob = patched_object(&request, &response);
    let spec = pod_spec(&cronjob);
    assert_eq!(names(spec, "containers"), ["report"]);
    assert_eq!(names(spec, "initContainers"), ["cloud-sql-proxy"]);
    assert_eq!(container(spec, "initContainers", "cloud-sql-proxy")["restartPolicy"], "Always");
    assert_eq!(cronjob["spec"]["schedule"], "0 3 * * *");
}

/// A CronJob UPDATE (a schedule change) is fixed too, since its template may predate podmedic.
#[tokio::test]
async fn an_updated_cronjob_is_fixed_too() {
    let server = TestServer::start().await;
    let mut client = server.client().connect().await.unwrap();
    let request = fixture("cronjob-update.json");

    let response = admission_response(&request, &client.review(request.clone()).await);

    let spec_owner = patched_object(&request, &response);
    let spec = pod_spec(&spec_owner);
    assert_eq!(names(spec, "containers"), ["report"]);
    assert_eq!(names(spec, "initContainers"), ["cloud-sql-proxy"]);
    assert_eq!(container(spec, "initContainers", "cloud-sql-proxy")["restartPolicy"], "Always");
}

/// A Job created directly: fixed in its Pod template.
#[tokio::test]
async fn a_new_job_is_fixed_in_its_pod_template() {
    let server = TestServer::start().await;
    let mut client = server.client().connect().await.unwrap();
    let request = fixture("job-create.json");

    let response = admission_response(&request, &client.review(request.clone()).await);

    let job = patched_object(&request, &response);
    let spec = pod_spec(&job);
    assert_eq!(names(spec, "containers"), ["export"]);
    assert_eq!(names(spec, "initContainers"), ["cloud-sql-proxy"]);
}

/// A Deployment's Pod runs forever: its containers are not sidecars of anything; no patch.
#[tokio::test]
async fn the_pod_of_a_deployment_is_left_alone() {
    let server = TestServer::start().await;
    let mut client = server.client().connect().await.unwrap();
    let request = fixture("pod-create-by-replicaset-controller.json");

    let response = admission_response(&request, &client.review(request.clone()).await);

    assert!(response.get("patch").is_none(), "unexpected patch: {response}");
    assert!(response.get("patchType").is_none());
    let pod = patched_object(&request, &response);
    assert_eq!(names(pod_spec(&pod), "containers"), ["web"]);
}

/// A DELETE carries `object: null`: allowed, nothing to patch.
#[tokio::test]
async fn a_delete_is_allowed_without_a_patch() {
    let server = TestServer::start().await;
    let mut client = server.client().connect().await.unwrap();
    let request = fixture("pod-delete.json");

    let response = admission_response(&request, &client.review(request.clone()).await);

    assert!(response.get("patch").is_none(), "unexpected patch: {response}");
}

/// `kubectl create --dry-run=server` of a Pod with nothing to fix: answered unchanged, as the
/// real request would be.
#[tokio::test]
async fn a_dry_run_with_nothing_to_fix_gets_no_patch() {
    let server = TestServer::start().await;
    let mut client = server.client().connect().await.unwrap();
    let request = fixture("pod-create-dry-run.json");

    let response = admission_response(&request, &client.review(request.clone()).await);

    assert!(response.get("patch").is_none(), "unexpected patch: {response}");
}

/// The Job's Pod as a dry run (`kubectl diff`, `--dry-run=server`, a GitOps tool's diff): the
/// same patch and warnings as the real request, so the dry run shows what will be stored.
#[tokio::test]
async fn a_dry_run_of_a_fixable_pod_gets_the_real_request_s_patch() {
    let server = TestServer::start().await;
    let mut client = server.client().connect().await.unwrap();
    let real = fixture("pod-create-by-job-controller.json");
    let mut review: serde_json::Value = serde_json::from_slice(&real).unwrap();
    review["request"]["dryRun"] = true.into();
    let dry = serde_json::to_vec(&review).unwrap();

    let real_response = admission_response(&real, &client.review(real.clone()).await);
    let dry_response = admission_response(&dry, &client.review(dry.clone()).await);

    assert_eq!(dry_response["patch"], real_response["patch"]);
    assert_eq!(dry_response["warnings"], real_response["warnings"]);
    let pod = patched_object(&dry, &dry_response);
    assert_eq!(names(pod_spec(&pod), "initContainers"), ["cloud-sql-proxy"]);
}

/// admission.k8s.io/v1 `AdmissionResponse.patch` is `[]byte`, which Kubernetes' JSON encodes as
/// a base64 string (the issue asks for "a base64 JSONPatch").
#[tokio::test]
async fn the_patch_is_a_base64_string() {
    let server = TestServer::start().await;
    let mut client = server.client().connect().await.unwrap();
    let request = fixture("pod-create-by-job-controller.json");

    let response = admission_response(&request, &client.review(request.clone()).await);

    let patch = response["patch"].to_string();
    assert!(response["patch"].is_string(), "patch is not a base64 string: {}...", &patch[..patch.len().min(40)]);
}

/// After one admission, `/metrics` counts it, with its changes and its latency.
#[tokio::test]
async fn metrics_show_the_request() {
    let server = TestServer::start().await;
    let mut client = server.client().connect().await.unwrap();
    let request = fixture("pod-create-by-job-controller.json");
    admission_response(&request, &client.review(request.clone()).await);

    let reply = server.get_plain("/metrics").await;

    assert_eq!(reply.status, 200);
    assert!(reply.headers["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = reply.text();
    assert!(
        text.contains(
            r#"podmedic_admission_requests_total{path="mutate",kind="Pod",operation="CREATE",result="patched"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"podmedic_changes_total{type="sidecar_moved"} 1"#), "{text}");
    assert!(text.contains("podmedic_admission_duration_seconds_count 1"), "{text}");
    assert!(text.contains(r#"podmedic_admission_duration_seconds_bucket{le="0.0001"}"#), "{text}");
}

/// One server answers every mode: a CronJob re-applied over what an earlier podmedic stored is
/// converged at `/mutate` (template mode) and `/converge` (pods mode), each the way its mode
/// stores it, and `/warn` only tells what its Pods will get; `/metrics` says which path answered.
#[tokio::test]
async fn one_server_answers_every_mode_on_its_own_path() {
    let server = TestServer::start().await;
    let mut client = server.client().connect().await.unwrap();
    let request = fixture("gitops/cronjob-update-reapply-client-side.json");

    let stored =
        patched_object(&request, &admission_response(&request, &client.post("/mutate", request.clone()).await));
    assert_eq!(names(pod_spec(&stored), "containers"), ["job"]);
    assert_eq!(names(pod_spec(&stored), "initContainers"), ["cloud-sql-proxy"]);

    let undone =
        patched_object(&request, &admission_response(&request, &client.post("/converge", request.clone()).await));
    assert_eq!(names(pod_spec(&undone), "containers"), ["job", "cloud-sql-proxy"]);
    assert!(pod_spec(&undone).get("initContainers").is_none());

    // The validating webhook sees the object after the mutating ones: here, after /converge.
    let mut review: serde_json::Value = serde_json::from_slice(&request).unwrap();
    review["request"]["object"] = undone;
    let converged = serde_json::to_vec(&review).unwrap();
    let warned = admission_response(&converged, &client.post("/warn", converged.clone()).await);
    assert!(warned.get("patch").is_none(), "{warned}");
    let first = warned["warnings"][0].as_str().unwrap_or_default();
    assert!(first.starts_with("podmedic will fix this CronJob's Pods: cloud-sql-proxy"), "{warned}");

    let text = server.get_plain("/metrics").await.text();
    for (path, result) in [("mutate", "patched"), ("converge", "patched"), ("warn", "warned")] {
        let series = format!(
            r#"podmedic_admission_requests_total{{path="{path}",kind="CronJob",operation="UPDATE",result="{result}"}} 1"#
        );
        assert!(text.contains(&series), "{series} in:\n{text}");
    }
}

/// Health and readiness on the plain-HTTP port.
#[tokio::test]
async fn healthz_and_readyz_answer_once_serving() {
    let server = TestServer::start().await;
    assert_eq!(server.get_plain("/healthz").await.status, 200);
    let ready = server.get_plain("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
}

/// The recorded cluster's one node (2 CPUs, about 23.4 GiB), read as the Node watch reads it.
struct RecordedNode(podmedic_engine::admission::NodeList);

impl podmedic_engine::admission::ClusterSource for RecordedNode {
    fn nodes(&self) -> Option<podmedic_engine::admission::NodeList> {
        Some(self.0.clone())
    }
    fn objects(
        &self,
        _namespace: &str,
    ) -> Option<std::sync::Arc<dyn podmedic_engine::cluster::NamespaceObjects + Send + Sync>> {
        None
    }
}

/// `kubectl apply` of the StatefulSet asking 8 CPUs and 32 GiB, on a cluster whose only node has
/// 2 CPUs: `POST /warn` answers with the warnings the user sees, and never a patch; `/mutate`
/// does not answer StatefulSets at all.
#[tokio::test]
async fn warn_tells_at_apply_time_that_the_statefulset_will_never_be_scheduled() {
    use std::sync::Arc;
    let node: k8s_openapi::api::core::v1::Node = serde_json::from_slice(&cluster_object("node.json")).unwrap();
    let facts = podmedic::cluster::node_facts(&node).expect("the node's facts");
    let environment = podmedic_engine::admission::Environment {
        cluster: Arc::new(RecordedNode(Arc::new(vec![Arc::new(facts)]))),
        ..podmedic_engine::admission::Environment::standalone(Arc::new(podmedic_engine::Policy::builtin()))
    };
    let server = TestServer::start_in(environment, |_| {}).await;
    let mut client = server.client().connect().await.unwrap();
    let request = cluster_object("review-statefulset-create-catalog-db.json");

    let response = admission_response(&request, &client.post("/warn", request.clone()).await);

    assert!(response.get("patch").is_none(), "/warn never patches: {response}");
    let warnings: Vec<&str> = response["warnings"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    assert_eq!(
        warnings,
        [
            "nodeSelector disktype=nvme matches no node: Pods stay Pending; fix it or label a node",
            "no node can fit cpu 8 (largest allocatable: 2): container postgres requests 8; lower it or add nodes",
            "no node can fit memory 32Gi (largest allocatable: 23.4Gi): container postgres requests 32Gi; lower it or \
             add nodes",
        ]
    );
    let mutate = admission_response(&request, &client.review(request.clone()).await);
    assert!(mutate.get("warnings").is_none() && mutate.get("patch").is_none(), "{mutate}");
    let metrics = server.get_plain("/metrics").await.text();
    for line in [
        r#"podmedic_admission_requests_total{path="warn",kind="StatefulSet",operation="CREATE",result="warned"} 1"#,
        r#"podmedic_admission_requests_total{path="mutate",kind="StatefulSet",operation="CREATE",result="ignored"} 1"#,
    ] {
        assert!(metrics.contains(line), "{metrics}");
    }
}
