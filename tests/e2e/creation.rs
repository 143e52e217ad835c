//! The webhook configurations of both modes, registered side by side, and what the API server
//! stores when workloads are created in each mode's namespace.

use std::time::Instant;

use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};

use super::*;

pub const PROXY: &str = "cloud-sql-proxy";
pub const PROXY_IMAGE: &str = "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1";
pub const CHANGES_ANNOTATION: &str = "podmedic.io/changes";
/// The label that sends a namespace to one mode's configurations only, so that both modes can
/// be registered at once.
pub const MODE_LABEL: &str = "podmedic-e2e.io/mode";

/// Where podmedic's fix lives, as the webhook configuration says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `deploy/base`: Pods fixed, Jobs and CronJobs warned and converged.
    Pods,
    /// `deploy/base` with `deploy/components/template-mode`: templates fixed.
    Template,
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Mode::Pods => "pods",
            Mode::Template => "template",
        }
    }

    fn components(self) -> &'static [&'static str] {
        match self {
            Mode::Pods => &[],
            Mode::Template => &["template-mode"],
        }
    }
}

/// Production's webhook configurations of `mode` (`deploy/`, the components applied as kustomize
/// applies them), renamed, each webhook pointed at `base_url` + its path with `ca_pem`, and
/// limited to namespaces labelled for `mode`.
pub fn webhook_configurations(mode: Mode, name: &str, base_url: &str, ca_pem: &str) -> Vec<Value> {
    use base64::Engine as _;
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let mut configs: Vec<Value> = manifests::base_with_components(mode.components())
        .into_iter()
        .filter(|o| o["kind"] == "MutatingWebhookConfiguration" || o["kind"] == "ValidatingWebhookConfiguration")
        .collect();
    configs.sort_by_key(|c| c["kind"] != "MutatingWebhookConfiguration");
    for config in &mut configs {
        config["metadata"] = json!({"name": name, "labels": {"app.kubernetes.io/part-of": "podmedic-e2e"}});
        for webhook in config["webhooks"].as_array_mut().expect("the production configurations have webhooks") {
            let path = webhook["clientConfig"]["service"]["path"].as_str().expect("a path").to_owned();
            webhook["clientConfig"] = json!({"url": format!("{base_url}{path}"), "caBundle": ca_bundle});
            webhook["namespaceSelector"]["matchLabels"][MODE_LABEL] = json!(mode.label());
        }
    }
    configs
}

/// Registers both modes, then checks creations in each and runs the life cycle.
pub async fn scenario(run: &Run, podmedic: &Podmedic) {
    let client = &run.client;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let base_url = format!("https://{}:{}", run.webhook_host, podmedic.webhook_port);
    for mode in [Mode::Pods, Mode::Template] {
        namespaces
            .create(&PostParams::default(), &typed(namespace(&run.namespace(mode), Some(mode))))
            .await
            .expect("create the labelled namespace");
        for config in webhook_configurations(mode, &run.config_name(mode), &base_url, &run.certs.ca_cert_pem) {
            let created = if config["kind"] == "MutatingWebhookConfiguration" {
                let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
                api.create(&PostParams::default(), &typed(config)).await.map(drop)
            } else {
                let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
                api.create(&PostParams::default(), &typed(config)).await.map(drop)
            };
            created.expect("register a webhook configuration");
        }
    }
    namespaces
        .create(&PostParams::default(), &typed(namespace(&run.plain_ns, None)))
        .await
        .expect("create the unlabelled namespace");
    for mode in [Mode::Pods, Mode::Template] {
        wait_until_the_api_server_calls_podmedic(run, &run.namespace(mode), &base_url).await;
    }

    let plain_jobs: Api<Job> = Api::namespaced(client.clone(), &run.plain_ns);
    plain_jobs
        .create(&PostParams::default(), &typed(job("nightly-import", false)))
        .await
        .expect("create the Job in the plain namespace");
    let plain = json_of(plain_jobs.get("nightly-import").await.expect("read the Job in the plain namespace"));
    assert_untouched("Job in an unlabelled namespace", &plain, &plain["spec"]["template"]["spec"]);

    for mode in [Mode::Pods, Mode::Template] {
        creations(run, mode).await;
        lifecycle::run(run, mode).await;
    }
}

/// What the API server stores when workloads are created in `mode`'s namespace: the Pod always
/// has its native sidecar; a Job's and a CronJob's templates only in template mode; a Deployment
/// and an opted-out Job never change.
async fn creations(run: &Run, mode: Mode) {
    let ns = run.namespace(mode);
    let client = &run.client;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let create = PostParams::default();

    pods.create(&create, &typed(pod("migrate-once"))).await.expect("create the Pod");
    jobs.create(&create, &typed(job("nightly-import", false))).await.expect("create the Job");
    cron_jobs.create(&create, &typed(cron_job("hourly-report"))).await.expect("create the CronJob");
    deployments.create(&create, &typed(deployment("api"))).await.expect("create the Deployment");
    jobs.create(&create, &typed(job("skipped-import", true))).await.expect("create the opted-out Job");

    let what = |kind: &str| format!("{kind} ({} mode)", mode.label());
    let stored_pod = json_of(pods.get("migrate-once").await.expect("read the Pod"));
    assert_native_sidecar(&what("Pod"), &stored_pod, &stored_pod["spec"]);

    let stored_job = json_of(jobs.get("nightly-import").await.expect("read the Job"));
    let stored_cron = json_of(cron_jobs.get("hourly-report").await.expect("read the CronJob"));
    let cron_spec = &stored_cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    match mode {
        Mode::Template => {
            assert_native_sidecar(&what("Job"), &stored_job, &stored_job["spec"]["template"]["spec"]);
            assert_native_sidecar(&what("CronJob"), &stored_cron, cron_spec);
        }
        Mode::Pods => {
            assert_untouched(&what("Job"), &stored_job, &stored_job["spec"]["template"]["spec"]);
            assert_untouched(&what("CronJob"), &stored_cron, cron_spec);
        }
    }

    let stored_deployment = json_of(deployments.get("api").await.expect("read the Deployment"));
    assert_untouched(&what("Deployment"), &stored_deployment, &stored_deployment["spec"]["template"]["spec"]);
    let skipped = json_of(jobs.get("skipped-import").await.expect("read the opted-out Job"));
    assert_untouched(&what("Job with podmedic.io/skip"), &skipped, &skipped["spec"]["template"]["spec"]);
}

/// The API server starts calling a new webhook configuration after a short delay; probe with
/// throwaway Pods until one comes back changed, so the real objects are not created too early.
async fn wait_until_the_api_server_calls_podmedic(run: &Run, ns: &str, url: &str) {
    let pods: Api<Pod> = Api::namespaced(run.client.clone(), ns);
    let deadline = Instant::now() + WEBHOOK_ACTIVE_TIMEOUT;
    for attempt in 0.. {
        let created = pods.create(&PostParams::default(), &typed(pod(&format!("probe-{attempt}")))).await;
        let created = json_of(created.expect("create a probe Pod"));
        if has_changes_annotation(&created) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the API server did not call podmedic at {url} within {WEBHOOK_ACTIVE_TIMEOUT:?} (failurePolicy Ignore let \
             the Pod through unchanged). When the API server runs in a container (kind, k3d), 127.0.0.1 is the \
             container itself: set {WEBHOOK_HOST_VAR} to an address of this machine it can reach (docs/e2e.md)."
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub fn assert_native_sidecar(what: &str, object: &Value, pod_spec: &Value) {
    let containers = names(&pod_spec["containers"]);
    let init = &pod_spec["initContainers"];
    let proxy = init.as_array().and_then(|list| list.iter().find(|c| c["name"] == PROXY));
    assert!(proxy.is_some(), "{what}: {PROXY} is not in initContainers; stored spec:\n{pod_spec:#}");
    assert_eq!(proxy.map(|p| &p["restartPolicy"]), Some(&json!("Always")), "{what}: {pod_spec:#}");
    assert_eq!(containers, ["main"], "{what}: the main container stays, the sidecar leaves containers");
    assert!(has_changes_annotation(object), "{what}: no {CHANGES_ANNOTATION} annotation: {:#}", object["metadata"]);
}

pub fn assert_untouched(what: &str, object: &Value, pod_spec: &Value) {
    assert_eq!(names(&pod_spec["containers"]), ["main", PROXY], "{what} was changed: {pod_spec:#}");
    assert!(pod_spec.get("initContainers").is_none_or(Value::is_null), "{what} was changed: {pod_spec:#}");
    assert!(!has_changes_annotation(object), "{what} carries {CHANGES_ANNOTATION}: {:#}", object["metadata"]);
}

fn has_changes_annotation(object: &Value) -> bool {
    object["metadata"]["annotations"][CHANGES_ANNOTATION].as_str().is_some_and(|s| !s.is_empty())
}

pub fn names(list: &Value) -> Vec<&str> {
    list.as_array().map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect()).unwrap_or_default()
}

// -----------------------------------------------------------------------------------------------
// Manifests
// -----------------------------------------------------------------------------------------------

fn namespace(name: &str, mode: Option<Mode>) -> Value {
    let mut labels = json!({"app.kubernetes.io/part-of": "podmedic-e2e"});
    if let Some(mode) = mode {
        labels["podmedic.io/enabled"] = json!("true");
        labels[MODE_LABEL] = json!(mode.label());
    }
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

/// A pod spec with a main container and a Cloud SQL Auth Proxy sidecar.
pub fn pod_spec(restart_policy: &str) -> Value {
    json!({
        "restartPolicy": restart_policy,
        "containers": [
            {"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", "echo migrated"]},
            {"name": PROXY, "image": PROXY_IMAGE, "args": ["--port=5432", "acme-e2e:europe-west1:db"]}
        ]
    })
}

pub fn pod(name: &str) -> Value {
    let mut spec = pod_spec("Never");
    // Never scheduled: the test checks what was stored, and nothing has to be pulled or run.
    spec["schedulingGates"] = json!([{"name": "podmedic.io/e2e"}]);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

pub fn job(name: &str, skip: bool) -> Value {
    let annotations = if skip { json!({"podmedic.io/skip": "true"}) } else { json!({}) };
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "annotations": annotations},
        // Suspended: no Pod is created.
        "spec": {"suspend": true, "template": {"spec": pod_spec("Never")}}
    })
}

pub fn cron_job(name: &str) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": "0 * * * *",
            "suspend": true,
            "jobTemplate": {"spec": {"template": {"spec": pod_spec("OnFailure")}}}
        }
    })
}

fn deployment(name: &str) -> Value {
    let mut spec = pod_spec("Always");
    spec["containers"][0]["command"] = json!(["sh", "-c", "sleep 3600"]);
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec}
        }
    })
}
