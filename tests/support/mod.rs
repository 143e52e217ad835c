//! Shared test support: a real podmedic server on 127.0.0.1:0 with rcgen certificates laid out the
//! way the kubelet mounts a Secret, and a small HTTPS client (hyper + tokio-rustls) that can force
//! HTTP/1.1 or HTTP/2 through ALPN, pick TLS versions and present a client certificate.

#![allow(dead_code)] // each test file uses a different part of this module

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use podmedic::webhook::metrics::Metrics;
use podmedic::webhook::readiness::Readiness;
use podmedic::webhook::tls::CertFiles;
use podmedic::webhook::{CertificateSource, Server, ServerConfig};
use podmedic_engine::Policy;
use podmedic_engine::admission::Environment;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

pub mod process;

/// Generous bound for anything that should happen "soon", so that a bug hangs no test.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Request bodies of the test client.
pub type TestBody = BoxBody<Bytes, Infallible>;

/// A fixture from `tests/fixtures/admission-reviews/`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission-reviews").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Certificates

/// A test certificate authority.
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    /// The CA certificate, PEM.
    pub cert_pem: String,
}

/// A certificate and its key, PEM.
#[derive(Clone)]
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    /// A fresh ECDSA P-256 CA.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        let cert_pem = params.self_signed(&key).expect("CA certificate").pem();
        TestCa { params, key, cert_pem }
    }

    /// A serving certificate for 127.0.0.1 and localhost with a fresh ECDSA key.
    pub fn server_pair(&self, common_name: &str) -> Pair {
        self.issue(KeyPair::generate().expect("key"), common_name, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A serving certificate for the given key (PEM, for example RSA made by openssl).
    pub fn server_pair_for_key(&self, key_pem: &str, common_name: &str) -> Pair {
        let key = KeyPair::from_pem(key_pem).expect("parse the key");
        self.issue(key, common_name, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate (what the API server would present).
    pub fn client_pair(&self, common_name: &str) -> Pair {
        self.issue(KeyPair::generate().expect("key"), common_name, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, key: KeyPair, common_name: &str, usage: ExtendedKeyUsagePurpose) -> Pair {
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("names");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::new(self.params.clone(), &self.key);
        let cert = params.signed_by(&key, &issuer).expect("sign");
        Pair { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }
}

/// The DER of the first certificate in `pem`, to compare with what a server presented.
pub fn leaf_der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::pem_slice_iter(pem.as_bytes()).next().expect("a certificate").expect("PEM")
}

/// An RSA 2048 private key in PKCS#8 PEM, made by the openssl command (ring cannot generate RSA).
pub fn openssl_rsa_key() -> String {
    let out = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("PEM is text")
}

/// A directory laid out like a Secret mounted by the kubelet:
/// `..<timestamp>/tls.{crt,key}`, `..data -> ..<timestamp>`, `tls.crt -> ..data/tls.crt`.
pub struct SecretMount {
    pub dir: tempfile::TempDir,
    generation: u32,
}

impl SecretMount {
    /// A mount holding `pair`.
    pub fn new(pair: &Pair) -> SecretMount {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut mount = SecretMount { dir, generation: 0 };
        mount.update(pair);
        for name in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), mount.dir.path().join(name)).expect("symlink");
        }
        mount
    }

    /// The files podmedic is pointed at.
    pub fn files(&self) -> CertFiles {
        CertFiles { cert: self.dir.path().join("tls.crt"), key: self.dir.path().join("tls.key") }
    }

    /// Updates the Secret the kubelet's way: a new timestamped directory, then `..data` replaced
    /// atomically by renaming a new symlink over it.
    pub fn update(&mut self, pair: &Pair) {
        self.generation += 1;
        let stamp = format!("..2026_11_22_00_00_00.{:04}", self.generation);
        let data = self.dir.path().join(&stamp);
        std::fs::create_dir(&data).expect("mkdir");
        std::fs::write(data.join("tls.crt"), &pair.cert_pem).expect("write cert");
        std::fs::write(data.join("tls.key"), &pair.key_pem).expect("write key");
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&stamp, &tmp).expect("symlink");
        std::fs::rename(&tmp, self.dir.path().join("..data")).expect("rename ..data");
    }
}

// ---------------------------------------------------------------------------------------------
// Server

/// A podmedic server running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub ca: TestCa,
    pub pair: Pair,
    pub mount: SecretMount,
    pub readiness: Readiness,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    /// A server with the test defaults.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// A server whose configuration `adjust` may change (limits, timeouts, client CA).
    pub async fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let ca = TestCa::new("podmedic test CA");
        let pair = ca.server_pair("podmedic v1");
        Self::start_serving(ca, pair, adjust).await
    }

    /// A server serving `pair` (issued by `ca`) from a kubelet-style mount.
    pub async fn start_serving(ca: TestCa, pair: Pair, adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let mount = SecretMount::new(&pair);
        let mut config = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            metrics_listen: "127.0.0.1:0".parse().expect("addr"),
            certificates: CertificateSource::Files {
                files: mount.files(),
                reload_interval: Duration::from_millis(100),
            },
            client_ca: None,
            max_body_bytes: 7 << 20,
            max_concurrency: 512,
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(120),
            max_connections: 4096,
            request_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(25),
            shutdown_delay: Duration::ZERO,
        };
        adjust(&mut config);
        let readiness = Readiness::new();
        let environment = Environment::standalone(Arc::new(Policy::builtin()));
        let server = Server::bind(config, environment, readiness.clone(), Arc::new(Metrics::new()))
            .await
            .expect("bind the server");
        let (addr, metrics_addr) = (server.local_addr(), server.metrics_addr());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        TestServer { addr, metrics_addr, ca, pair, mount, readiness, shutdown: Some(tx), task: Some(task) }
    }

    /// Starts the graceful shutdown (as SIGTERM would).
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for [`Server::run`] to return; panics after [`PATIENCE`].
    pub async fn stopped(&mut self) {
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task).await.expect("the server did not stop in time").expect("join");
        }
    }

    /// A client trusting this server's CA.
    pub fn client(&self) -> ClientBuilder {
        ClientBuilder::new(self.addr, &self.ca.cert_pem)
    }

    /// `GET path` on the health and metrics port.
    pub async fn get_plain(&self, path: &str) -> Reply {
        let stream = TcpStream::connect(self.metrics_addr).await.expect("connect to the metrics port");
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("HTTP handshake");
        tokio::spawn(conn);
        let request = Request::get(path).header("host", "localhost").body(empty()).expect("request");
        Reply::from(sender.send_request(request).await.expect("send")).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Client

/// Which HTTP version to ask for through ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Http {
    /// ALPN `http/1.1`.
    One,
    /// ALPN `h2`.
    Two,
}

/// Builds a [`Connection`].
pub struct ClientBuilder {
    addr: SocketAddr,
    roots: rustls::RootCertStore,
    http: Http,
    versions: Vec<&'static rustls::SupportedProtocolVersion>,
    identity: Option<Pair>,
}

impl ClientBuilder {
    fn new(addr: SocketAddr, ca_pem: &str) -> ClientBuilder {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("add the CA");
        }
        ClientBuilder {
            addr,
            roots,
            http: Http::One,
            versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
            identity: None,
        }
    }

    /// A client for `addr` trusting the CA in `ca_pem`.
    pub fn to(addr: SocketAddr, ca_pem: &str) -> ClientBuilder {
        Self::new(addr, ca_pem)
    }

    /// Asks for this HTTP version.
    pub fn http(mut self, http: Http) -> Self {
        self.http = http;
        self
    }

    /// Offers only these TLS versions.
    pub fn tls_versions(mut self, versions: &[&'static rustls::SupportedProtocolVersion]) -> Self {
        self.versions = versions.to_vec();
        self
    }

    /// Presents this client certificate.
    pub fn identity(mut self, pair: Pair) -> Self {
        self.identity = Some(pair);
        self
    }

    /// Connects, shakes hands and starts HTTP.
    pub async fn connect(self) -> Result<Connection, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&self.versions)
            .map_err(|e| e.to_string())?
            .with_root_certificates(self.roots);
        let mut config = match self.identity {
            Some(pair) => {
                let chain = CertificateDer::pem_slice_iter(pair.cert_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                let key = PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes()).map_err(|e| e.to_string())?;
                builder.with_client_auth_cert(chain, key).map_err(|e| e.to_string())?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![match self.http {
            Http::One => b"http/1.1".to_vec(),
            Http::Two => b"h2".to_vec(),
        }];
        let tcp = TcpStream::connect(self.addr).await.map_err(|e| format!("connect: {e}"))?;
        let server_name = ServerName::IpAddress(self.addr.ip().into());
        let tls = TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let (_, session) = tls.get_ref();
        let peer_certificate = session
            .peer_certificates()
            .and_then(|c| c.first())
            .cloned()
            .ok_or("the server presented no certificate")?;
        let tls_version = session.protocol_version().ok_or("no TLS version")?;
        let alpn = session.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned());
        let io = TokioIo::new(tls);
        let (sender, driver) = match self.http {
            Http::One => {
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(io).await.map_err(|e| format!("HTTP/1.1: {e}"))?;
                (Sender::One(sender), tokio::spawn(async move { conn.await.map_err(|e| e.to_string()) }))
            }
            Http::Two => {
                let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| format!("HTTP/2: {e}"))?;
                (Sender::Two(sender), tokio::spawn(async move { conn.await.map_err(|e| e.to_string()) }))
            }
        };
        Ok(Connection { sender, driver, peer_certificate, tls_version, alpn })
    }
}

enum Sender {
    One(hyper::client::conn::http1::SendRequest<TestBody>),
    Two(hyper::client::conn::http2::SendRequest<TestBody>),
}

/// One client connection (HTTP/1.1 requests are sent one after the other on it).
pub struct Connection {
    sender: Sender,
    driver: JoinHandle<Result<(), String>>,
    /// The certificate the server presented.
    pub peer_certificate: CertificateDer<'static>,
    /// The negotiated TLS version.
    pub tls_version: rustls::ProtocolVersion,
    /// The negotiated ALPN protocol.
    pub alpn: Option<String>,
}

impl Connection {
    /// Sends a request and reads the whole response.
    pub async fn send(&mut self, request: Request<TestBody>) -> Result<Reply, String> {
        let response = match &mut self.sender {
            Sender::One(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(request).await
            }
            Sender::Two(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(request).await
            }
        }
        .map_err(|e| e.to_string())?;
        Ok(Reply::from(response).await)
    }

    /// `POST path` with a JSON body.
    pub async fn post(&mut self, path: &str, body: impl Into<Bytes>) -> Reply {
        self.send(post_request(path, "application/json", full(body))).await.expect("POST")
    }

    /// `POST /mutate` with an AdmissionReview.
    pub async fn review(&mut self, body: impl Into<Bytes>) -> Reply {
        self.post("/mutate", body).await
    }

    /// True once the server closed the connection.
    pub fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::One(s) => s.is_closed(),
            Sender::Two(s) => s.is_closed(),
        }
    }

    /// Waits until the server closes the connection; panics after [`PATIENCE`].
    pub async fn closed(self) {
        tokio::time::timeout(PATIENCE, self.driver).await.expect("the connection stayed open").expect("join").ok();
    }
}

/// A `POST` request with a content type.
pub fn post_request(path: &str, content_type: &str, body: TestBody) -> Request<TestBody> {
    Request::post(path)
        .header("host", "localhost")
        .header("content-type", content_type)
        .header("user-agent", "kube-apiserver-admission")
        .body(body)
        .expect("request")
}

/// A body sent in one piece, with its length.
pub fn full(body: impl Into<Bytes>) -> TestBody {
    Full::new(body.into()).boxed()
}

/// An empty body.
pub fn empty() -> TestBody {
    full(Bytes::new())
}

/// A body sent in pieces through the returned sender, without a length (chunked on HTTP/1.1).
pub fn streamed() -> (http_body_util::channel::Sender<Bytes>, TestBody) {
    let (tx, body) = http_body_util::channel::Channel::<Bytes>::new(4);
    (tx, body.boxed())
}

/// A whole response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    async fn from(response: hyper::Response<hyper::body::Incoming>) -> Reply {
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        Reply { status: parts.status, headers: parts.headers, body }
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `error` of a JSON error body.
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_else(|| panic!("no error field: {}", self.text())).to_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// AdmissionReviews

/// The AdmissionReview `response` of a 200 reply, checked against the request: same uid,
/// allowed.
pub fn admission_response(request: &[u8], reply: &Reply) -> Value {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.headers["content-type"], "application/json");
    let review = reply.json();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    let request: Value = serde_json::from_slice(request).expect("request JSON");
    let response = review["response"].clone();
    assert_eq!(response["uid"], request["request"]["uid"]);
    assert_eq!(response["allowed"], true);
    response
}

/// The JSON Patch of a response, if any. The API expects a base64 string; a JSON array of bytes
/// (what kube's `AdmissionResponse` emits) is also decoded here so that the object tests check
/// the object, and `the_patch_is_base64` checks the encoding.
pub fn patch_of(response: &Value) -> Option<json_patch::Patch> {
    let bytes = match response.get("patch")? {
        Value::String(b64) => base64::engine::general_purpose::STANDARD.decode(b64).expect("base64 patch"),
        Value::Array(bytes) => bytes.iter().map(|b| b.as_u64().expect("byte") as u8).collect(),
        other => panic!("unexpected patch encoding: {other}"),
    };
    assert_eq!(response["patchType"], "JSONPatch");
    Some(serde_json::from_slice(&bytes).expect("the patch is a JSON Patch"))
}

/// The request's `object` with the response's patch applied (unchanged when there is no patch).
pub fn patched_object(request: &[u8], response: &Value) -> Value {
    let request: Value = serde_json::from_slice(request).expect("request JSON");
    let mut object = request["request"]["object"].clone();
    if let Some(patch) = patch_of(response) {
        json_patch::patch(&mut object, &patch).expect("the patch applies to the object");
    }
    object
}

/// The Pod spec inside a Pod, Job or CronJob.
pub fn pod_spec(object: &Value) -> &Value {
    match object["kind"].as_str() {
        Some("Pod") => &object["spec"],
        Some("Job") | Some("Deployment") => &object["spec"]["template"]["spec"],
        Some("CronJob") => &object["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        other => panic!("no pod spec in a {other:?}"),
    }
}

/// Names of the containers in `list` (`containers` or `initContainers`).
pub fn names(spec: &Value, list: &str) -> Vec<String> {
    spec[list]
        .as_array()
        .map(|cs| cs.iter().map(|c| c["name"].as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default()
}

/// The container named `name` in `list`.
pub fn container<'a>(spec: &'a Value, list: &str, name: &str) -> &'a Value {
    spec[list]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

/// A path inside the temporary directory that does not exist yet.
pub fn temp_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
