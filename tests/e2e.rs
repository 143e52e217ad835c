//! End to end: the real `podmedic serve` behind a real API server.
//!
//! Runs only when `PODMEDIC_E2E_KUBECONFIG` names a kubeconfig (of a throwaway cluster: kind, k3d,
//! ...); otherwise it says it was skipped and passes. See `docs/e2e.md`.
//!
//! The test starts podmedic on this machine, registers a MutatingWebhookConfiguration that points
//! at it by URL with a freshly made CA, creates workloads in fresh namespaces and checks what the
//! API server *stored*. Everything it creates is removed afterwards, also when an assertion fails.

use std::io::Read as _;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const KUBECONFIG_VAR: &str = "PODMEDIC_E2E_KUBECONFIG";
const WEBHOOK_HOST_VAR: &str = "PODMEDIC_E2E_WEBHOOK_HOST";
const PROXY_IMAGE: &str = "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1";
const CHANGES_ANNOTATION: &str = "podmedic.io/changes";
/// How long podmedic may take to become ready (it lists Nodes and Namespaces first).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the API server may take to start calling a newly registered webhook.
const WEBHOOK_ACTIVE_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn podmedic_fixes_what_the_api_server_stores() {
    let Some(kubeconfig) = std::env::var_os(KUBECONFIG_VAR).filter(|v| !v.is_empty()).map(PathBuf::from) else {
        println!("skipped: set {KUBECONFIG_VAR} to run the end-to-end suite");
        return;
    };
    let webhook_host = std::env::var(WEBHOOK_HOST_VAR).ok().filter(|h| !h.is_empty());
    let podmedic::cluster::Connection::Client(client) =
        podmedic::cluster::connect(Some(&kubeconfig)).await.expect("the e2e kubeconfig must be usable")
    else {
        panic!("a kubeconfig was given, so there is a client");
    };
    let version = client.apiserver_version().await.expect("the e2e cluster's API server must answer");
    let text = podmedic::cluster::api_server_version_text(&version);
    assert!(
        podmedic_engine::KubeVersion::parse(&text).is_some_and(|v| v.supports_native_sidecars()),
        "the e2e cluster runs {text}; native sidecars need Kubernetes 1.29 or newer"
    );

    let run = Run::new(client, webhook_host);
    let podmedic = match Podmedic::start(&kubeconfig, &run).await {
        Ok(p) => p,
        Err(e) => panic!("cannot start podmedic: {e}"),
    };
    let outcome = std::panic::AssertUnwindSafe(scenario(&run, &podmedic)).catch_unwind().await;
    if outcome.is_err() {
        eprintln!("podmedic's log ({}):\n{}", podmedic.log_path.display(), podmedic.log_tail());
    }
    run.clean_up().await;
    drop(podmedic);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Runs without a cluster: the configuration the suite registers is production's, by URL.
#[test]
fn the_registered_webhook_is_the_production_one_pointed_at_a_url() {
    let config: MutatingWebhookConfiguration =
        typed(webhook_configuration("podmedic-e2e-x", "https://172.18.0.1:1234/mutate", "PEM"));
    assert_eq!(config.metadata.name.as_deref(), Some("podmedic-e2e-x"));
    let webhook = &config.webhooks.as_ref().unwrap()[0];
    assert_eq!(webhook.client_config.url.as_deref(), Some("https://172.18.0.1:1234/mutate"));
    assert!(webhook.client_config.service.is_none());
    assert_eq!(webhook.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()), Some(&b"PEM"[..]));
    assert_eq!(webhook.failure_policy.as_deref(), Some("Ignore"));
    assert_eq!(webhook.reinvocation_policy.as_deref(), Some("IfNeeded"));
    assert!(webhook.match_conditions.as_ref().is_some_and(|c| !c.is_empty()));
    let selector = webhook.namespace_selector.as_ref().unwrap();
    assert_eq!(selector.match_labels.as_ref().unwrap()["podmedic.io/enabled"], "true");
}

/// Names and handles of one run; everything here is deleted by [`Run::clean_up`].
struct Run {
    client: Client,
    /// The host the API server uses to reach podmedic (127.0.0.1 unless the API server runs in a
    /// container: see docs/e2e.md).
    webhook_host: String,
    webhook_name: String,
    enabled_ns: String,
    plain_ns: String,
    certs: podmedic::pki::CertBundle,
    dir: tempfile::TempDir,
}

impl Run {
    fn new(client: Client, webhook_host: Option<String>) -> Run {
        let id = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis()
                % 1_000_000
        );
        let webhook_host = webhook_host.unwrap_or_else(|| "127.0.0.1".to_owned());
        let mut names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        if !names.contains(&webhook_host) {
            names.push(webhook_host.clone());
        }
        let certs = podmedic::pki::generate_ca_and_leaf("podmedic-e2e", &names, Duration::from_secs(3600))
            .expect("certificates for the e2e webhook");
        Run {
            client,
            webhook_host,
            webhook_name: format!("podmedic-e2e-{id}"),
            enabled_ns: format!("podmedic-e2e-on-{id}"),
            plain_ns: format!("podmedic-e2e-off-{id}"),
            certs,
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// Deletes what the run created; each deletion is attempted whatever happened before.
    async fn clean_up(&self) {
        let webhooks: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        report_cleanup(&self.webhook_name, webhooks.delete(&self.webhook_name, &DeleteParams::default()).await);
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        for ns in [&self.enabled_ns, &self.plain_ns] {
            report_cleanup(ns, namespaces.delete(ns, &DeleteParams::background()).await);
        }
    }
}

fn report_cleanup<T>(what: &str, result: Result<T, kube::Error>) {
    match result {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(e) => eprintln!("cleanup: cannot delete {what}: {e} (delete it by hand)"),
    }
}

/// The podmedic process; killed when dropped.
struct Podmedic {
    child: Child,
    webhook_port: u16,
    log_path: PathBuf,
}

impl Podmedic {
    /// Starts `podmedic serve` with the run's certificates and waits until it is ready.
    async fn start(kubeconfig: &Path, run: &Run) -> Result<Podmedic, String> {
        let cert = run.dir.path().join("tls.crt");
        let key = run.dir.path().join("tls.key");
        std::fs::write(&cert, &run.certs.cert_pem).map_err(|e| e.to_string())?;
        std::fs::write(&key, &run.certs.key_pem).map_err(|e| e.to_string())?;
        let log_path = run.dir.path().join("podmedic.log");
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let webhook_port = free_port(Ipv4Addr::UNSPECIFIED)?;
        let metrics_port = free_port(Ipv4Addr::LOCALHOST)?;
        let child = Command::new(env!("CARGO_BIN_EXE_podmedic"))
            .args(["serve", "--listen", &format!("0.0.0.0:{webhook_port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", env!("CARGO_BIN_EXE_podmedic")))?;
        let mut podmedic = Podmedic { child, webhook_port, log_path };
        podmedic.wait_ready(metrics_port, &run.certs.ca_cert_pem).await?;
        Ok(podmedic)
    }

    /// Polls `/readyz` on the health port (plain HTTP) and on the webhook port (HTTPS, verified
    /// with the run's CA) until one answers 200.
    async fn wait_ready(&mut self, metrics_port: u16, ca_pem: &str) -> Result<(), String> {
        let tls = tls_connector(ca_pem)?;
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("podmedic exited with {status}:\n{}", self.log_tail()));
            }
            if readyz_http(metrics_port).await == Some(200) || readyz_https(&tls, self.webhook_port).await == Some(200)
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(format!("podmedic was not ready after {READY_TIMEOUT:?}:\n{}", self.log_tail()))
    }

    /// The last lines of podmedic's output.
    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Podmedic {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port(ip: Ipv4Addr) -> Result<u16, String> {
    let listener = TcpListener::bind((ip, 0)).map_err(|e| format!("no free port: {e}"))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn tls_connector(ca_pem: &str) -> Result<tokio_rustls::TlsConnector, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

const READYZ_REQUEST: &[u8] = b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";

async fn readyz_http(port: u16) -> Option<u16> {
    let stream = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await.ok()?;
    http_status(stream).await
}

async fn readyz_https(tls: &tokio_rustls::TlsConnector, port: u16) -> Option<u16> {
    let tcp = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await.ok()?;
    let name = rustls_pki_types::ServerName::from(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST));
    http_status(tls.connect(name, tcp).await.ok()?).await
}

/// Sends `GET /readyz` and returns the response's status code.
async fn http_status<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut stream: S) -> Option<u16> {
    let exchange = async {
        stream.write_all(READYZ_REQUEST).await.ok()?;
        let mut head = vec![0; 64];
        let n = stream.read(&mut head).await.ok()?;
        let line = std::str::from_utf8(&head[..n]).ok()?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(2), exchange).await.ok().flatten()
}

// -----------------------------------------------------------------------------------------------
// The scenario
// -----------------------------------------------------------------------------------------------

async fn scenario(run: &Run, podmedic: &Podmedic) {
    let client = &run.client;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&PostParams::default(), &typed(namespace(&run.enabled_ns, true)))
        .await
        .expect("create the labelled namespace");
    namespaces
        .create(&PostParams::default(), &typed(namespace(&run.plain_ns, false)))
        .await
        .expect("create the unlabelled namespace");

    let webhooks: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let url = format!("https://{}:{}/mutate", run.webhook_host, podmedic.webhook_port);
    webhooks
        .create(&PostParams::default(), &typed(webhook_configuration(&run.webhook_name, &url, &run.certs.ca_cert_pem)))
        .await
        .expect("register the MutatingWebhookConfiguration");
    wait_until_the_api_server_calls_podmedic(run, &url).await;

    let on = &run.enabled_ns;
    let pods: Api<Pod> = Api::namespaced(client.clone(), on);
    let jobs: Api<Job> = Api::namespaced(client.clone(), on);
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), on);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), on);
    let plain_jobs: Api<Job> = Api::namespaced(client.clone(), &run.plain_ns);
    let create = PostParams::default();

    pods.create(&create, &typed(pod("migrate-once"))).await.expect("create the Pod");
    jobs.create(&create, &typed(job("nightly-import", false))).await.expect("create the Job");
    cron_jobs.create(&create, &typed(cron_job("hourly-report"))).await.expect("create the CronJob");
    deployments.create(&create, &typed(deployment("api"))).await.expect("create the Deployment");
    jobs.create(&create, &typed(job("skipped-import", true))).await.expect("create the opted-out Job");
    plain_jobs
        .create(&create, &typed(job("nightly-import", false)))
        .await
        .expect("create the Job in the plain namespace");

    // What the API server stored, read back.
    let stored_pod = json_of(pods.get("migrate-once").await.expect("read the Pod"));
    assert_native_sidecar("Pod", &stored_pod, &stored_pod["spec"]);

    let stored_job = json_of(jobs.get("nightly-import").await.expect("read the Job"));
    assert_native_sidecar("Job", &stored_job, &stored_job["spec"]["template"]["spec"]);

    let stored_cron = json_of(cron_jobs.get("hourly-report").await.expect("read the CronJob"));
    assert_native_sidecar("CronJob", &stored_cron, &stored_cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]);

    let stored_deployment = json_of(deployments.get("api").await.expect("read the Deployment"));
    assert_untouched("Deployment", &stored_deployment, &stored_deployment["spec"]["template"]["spec"]);

    let skipped = json_of(jobs.get("skipped-import").await.expect("read the opted-out Job"));
    assert_untouched("Job with podmedic.io/skip", &skipped, &skipped["spec"]["template"]["spec"]);

    let plain = json_of(plain_jobs.get("nightly-import").await.expect("read the Job in the plain namespace"));
    assert_untouched("Job in an unlabelled namespace", &plain, &plain["spec"]["template"]["spec"]);
}

/// The API server starts calling a new webhook configuration after a short delay; probe with
/// throwaway Pods until one comes back changed, so the real objects are not created too early.
async fn wait_until_the_api_server_calls_podmedic(run: &Run, url: &str) {
    let pods: Api<Pod> = Api::namespaced(run.client.clone(), &run.enabled_ns);
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

fn assert_native_sidecar(what: &str, object: &Value, pod_spec: &Value) {
    let containers = names(&pod_spec["containers"]);
    let init = &pod_spec["initContainers"];
    let proxy = init.as_array().and_then(|list| list.iter().find(|c| c["name"] == "cloud-sql-proxy"));
    assert!(proxy.is_some(), "{what}: cloud-sql-proxy is not in initContainers; stored spec:\n{pod_spec:#}");
    assert_eq!(proxy.map(|p| &p["restartPolicy"]), Some(&json!("Always")), "{what}: {pod_spec:#}");
    assert_eq!(containers, ["main"], "{what}: the main container stays, the sidecar leaves containers");
    assert!(has_changes_annotation(object), "{what}: no {CHANGES_ANNOTATION} annotation: {:#}", object["metadata"]);
}

fn assert_untouched(what: &str, object: &Value, pod_spec: &Value) {
    assert_eq!(names(&pod_spec["containers"]), ["main", "cloud-sql-proxy"], "{what} was changed: {pod_spec:#}");
    assert!(pod_spec.get("initContainers").is_none_or(Value::is_null), "{what} was changed: {pod_spec:#}");
    assert!(!has_changes_annotation(object), "{what} carries {CHANGES_ANNOTATION}: {:#}", object["metadata"]);
}

fn has_changes_annotation(object: &Value) -> bool {
    object["metadata"]["annotations"][CHANGES_ANNOTATION].as_str().is_some_and(|s| !s.is_empty())
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array().map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect()).unwrap_or_default()
}

fn json_of<T: serde::Serialize>(object: T) -> Value {
    serde_json::to_value(object).expect("objects serialize")
}

fn typed<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("the test's manifests are valid")
}

// -----------------------------------------------------------------------------------------------
// Manifests
// -----------------------------------------------------------------------------------------------

/// The production webhook configuration (`deploy/base/mutatingwebhookconfiguration.yaml`: the same
/// selector, rules, matchConditions and policies), renamed and pointed at this machine by URL.
fn webhook_configuration(name: &str, url: &str, ca_pem: &str) -> Value {
    use base64::Engine as _;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/base/mutatingwebhookconfiguration.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut config: Value = yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    config["metadata"] = json!({"name": name, "labels": {"app.kubernetes.io/part-of": "podmedic-e2e"}});
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let webhooks = config["webhooks"].as_array_mut().expect("the production configuration has webhooks");
    assert!(!webhooks.is_empty(), "the production configuration has webhooks");
    for webhook in webhooks {
        webhook["clientConfig"] = json!({"url": url, "caBundle": ca_bundle});
    }
    config
}

fn namespace(name: &str, enabled: bool) -> Value {
    let mut labels = json!({"app.kubernetes.io/part-of": "podmedic-e2e"});
    if enabled {
        labels["podmedic.io/enabled"] = json!("true");
    }
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

/// A pod spec with a main container and a Cloud SQL Auth Proxy sidecar.
fn pod_spec(restart_policy: &str) -> Value {
    json!({
        "restartPolicy": restart_policy,
        "containers": [
            {"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", "echo migrated"]},
            {"name": "cloud-sql-proxy", "image": PROXY_IMAGE, "args": ["--port=5432", "acme-e2e:europe-west1:db"]}
        ]
    })
}

fn pod(name: &str) -> Value {
    let mut spec = pod_spec("Never");
    // Never scheduled: the test checks what was stored, and nothing has to be pulled or run.
    spec["schedulingGates"] = json!([{"name": "podmedic.io/e2e"}]);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

fn job(name: &str, skip: bool) -> Value {
    let annotations = if skip { json!({"podmedic.io/skip": "true"}) } else { json!({}) };
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "annotations": annotations},
        // Suspended: no Pod is created.
        "spec": {"suspend": true, "template": {"spec": pod_spec("Never")}}
    })
}

fn cron_job(name: &str) -> Value {
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
