//! End to end: the real `podmedic serve` behind a real API server.
//!
//! Runs only when `PODMEDIC_E2E_KUBECONFIG` names a kubeconfig (of a throwaway cluster: kind, k3d,
//! ...); otherwise it says it was skipped and passes. See `docs/e2e.md`.
//!
//! The test starts podmedic on this machine and registers production's webhook configurations of
//! both modes (`deploy/base`, pods mode, and with `deploy/components/template-mode`), each pointed
//! at it by URL with a freshly made CA and limited to a namespace of its own. In each it creates
//! workloads and checks what the API server *stored* (`creation.rs`), then runs the GitOps life
//! cycle a platform team runs (`lifecycle.rs`): client-side and server-side apply three times, a
//! tag bump, a sidecar removed, `kubectl diff` right after an apply, `--dry-run=server`, the
//! re-apply of a running Job, and (pods mode) templates an earlier podmedic changed. Then, in pods
//! mode's namespace, one scenario per check that warns about Pods that will not start, and
//! `podmedic audit` on a Pod that cannot be scheduled (`checks.rs`). Everything it creates is
//! removed afterwards, also when an assertion fails.
//!
//! The life cycle uses `kubectl` (`--kubeconfig`) where it is on PATH: client-side apply and
//! `kubectl diff` exist only there. Without it, server-side apply, server-side diffs and dry runs
//! go through the Kubernetes API with kube, and what needs kubectl says it was skipped.

#[path = "../support/manifests.rs"]
mod manifests;

mod checks;
mod cluster;
mod creation;
mod lifecycle;

use std::io::Read as _;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::DeleteParams;
use kube::{Api, Client};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use creation::{Mode, webhook_configurations};

const KUBECONFIG_VAR: &str = "PODMEDIC_E2E_KUBECONFIG";
const WEBHOOK_HOST_VAR: &str = "PODMEDIC_E2E_WEBHOOK_HOST";
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

    let run = Run::new(client, webhook_host, kubeconfig.clone());
    let podmedic = match Podmedic::start(&kubeconfig, &run).await {
        Ok(p) => p,
        Err(e) => panic!("cannot start podmedic: {e}"),
    };
    let outcome = std::panic::AssertUnwindSafe(async {
        creation::scenario(&run, &podmedic).await;
        checks::scenario(&run, &kubeconfig).await;
    })
    .catch_unwind()
    .await;
    if outcome.is_err() {
        eprintln!("podmedic's log ({}):\n{}", podmedic.log_path.display(), podmedic.log_tail());
    }
    run.clean_up().await;
    drop(podmedic);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Runs without a cluster: the configurations the suite registers are production's, by URL, each
/// webhook on its own path, each mode limited to its namespaces.
#[test]
fn the_registered_webhooks_are_the_production_ones_pointed_at_a_url() {
    for mode in [Mode::Pods, Mode::Template] {
        let configs = webhook_configurations(mode, "podmedic-e2e-x", "https://172.18.0.1:1234", "PEM");
        let mut paths = Vec::new();
        for config in &configs {
            assert_eq!(config["metadata"]["name"], "podmedic-e2e-x");
            for webhook in config["webhooks"].as_array().unwrap() {
                let url = webhook["clientConfig"]["url"].as_str().unwrap();
                paths.push(url.strip_prefix("https://172.18.0.1:1234").unwrap().to_owned());
                assert!(webhook["clientConfig"].get("service").is_none());
                assert_eq!(webhook["failurePolicy"], "Ignore");
                assert_eq!(webhook["namespaceSelector"]["matchLabels"]["podmedic.io/enabled"], "true");
                assert_eq!(webhook["namespaceSelector"]["matchLabels"][creation::MODE_LABEL], mode.label());
            }
        }
        let expected: &[&str] = match mode {
            Mode::Pods => &["/mutate", "/converge", "/warn", "/warn"],
            Mode::Template => &["/mutate", "/warn"],
        };
        assert_eq!(paths, expected, "{mode:?}");
        let mutating: MutatingWebhookConfiguration = typed(configs[0].clone());
        let webhook = &mutating.webhooks.as_ref().unwrap()[0];
        assert_eq!(webhook.client_config.ca_bundle.as_ref().map(|b| b.0.as_slice()), Some(&b"PEM"[..]));
        assert_eq!(webhook.reinvocation_policy.as_deref(), Some("IfNeeded"));
        assert!(webhook.match_conditions.as_ref().is_some_and(|c| !c.is_empty()));
        let validating: ValidatingWebhookConfiguration = typed(configs[1].clone());
        let workloads = validating.webhooks.as_ref().unwrap().last().unwrap();
        assert_eq!(workloads.name, "warn-workloads.podmedic.io", "Deployments, StatefulSets, DaemonSets in {mode:?}");
    }
}

/// Names and handles of one run; everything here is deleted by [`Run::clean_up`].
struct Run {
    client: Client,
    kubeconfig: PathBuf,
    /// The host the API server uses to reach podmedic (127.0.0.1 unless the API server runs in a
    /// container: see docs/e2e.md).
    webhook_host: String,
    /// `podmedic-e2e-<id>`: each mode's configurations are named `<prefix>-<mode>`.
    config_prefix: String,
    /// The run's id, part of every name.
    id: String,
    plain_ns: String,
    certs: podmedic::pki::CertBundle,
    dir: tempfile::TempDir,
}

impl Run {
    fn new(client: Client, webhook_host: Option<String>, kubeconfig: PathBuf) -> Run {
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
            kubeconfig,
            webhook_host,
            config_prefix: format!("podmedic-e2e-{id}"),
            plain_ns: format!("podmedic-e2e-off-{id}"),
            id,
            certs,
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// The labelled namespace of one mode.
    fn namespace(&self, mode: Mode) -> String {
        format!("podmedic-e2e-{}-{}", mode.label(), self.id)
    }

    /// The name of one mode's webhook configurations.
    fn config_name(&self, mode: Mode) -> String {
        format!("{}-{}", self.config_prefix, mode.label())
    }

    /// Deletes what the run created; each deletion is attempted whatever happened before.
    async fn clean_up(&self) {
        let mutating: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let validating: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        for mode in [Mode::Pods, Mode::Template] {
            let name = self.config_name(mode);
            report_cleanup(&name, mutating.delete(&name, &DeleteParams::default()).await);
            report_cleanup(&name, validating.delete(&name, &DeleteParams::default()).await);
            let ns = self.namespace(mode);
            report_cleanup(&ns, namespaces.delete(&ns, &DeleteParams::background()).await);
        }
        report_cleanup(&self.plain_ns, namespaces.delete(&self.plain_ns, &DeleteParams::background()).await);
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
            // The references check; the e2e kubeconfig may list ConfigMaps and Secrets.
            .arg("--watch-references")
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

fn json_of<T: serde::Serialize>(object: T) -> Value {
    serde_json::to_value(object).expect("objects serialize")
}

fn typed<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("the test's manifests are valid")
}
