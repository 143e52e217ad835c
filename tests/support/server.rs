//! A real podmedic server on 127.0.0.1:0, in process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use hyper_util::rt::TokioIo;
use podmedic::webhook::metrics::Metrics;
use podmedic::webhook::readiness::Readiness;
use podmedic::webhook::{CertificateSource, Server, ServerConfig};
use podmedic_engine::Policy;
use podmedic_engine::admission::Environment;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;

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

    /// A server whose admission environment (policy, cluster capability, namespace settings) is
    /// `environment`, configured by `adjust`.
    pub async fn start_in(environment: Environment, adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let ca = TestCa::new("podmedic test CA");
        let pair = ca.server_pair("podmedic v1");
        Self::start_serving_in(ca, pair, environment, adjust).await
    }

    /// A server serving `pair` (issued by `ca`) from a kubelet-style mount.
    pub async fn start_serving(ca: TestCa, pair: Pair, adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let environment = Environment::standalone(Arc::new(Policy::builtin()));
        Self::start_serving_in(ca, pair, environment, adjust).await
    }

    async fn start_serving_in(
        ca: TestCa,
        pair: Pair,
        environment: Environment,
        adjust: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        let mount = SecretMount::new(&pair);
        let mut config = server_config(CertificateSource::Files {
            files: mount.files(),
            reload_interval: Duration::from_millis(100),
        });
        adjust(&mut config);
        let readiness = Readiness::new();
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
        get_plain(self.metrics_addr, path).await.expect("the health and metrics port answers")
    }
}

/// `GET path` over plain HTTP/1.1 at `addr` (the health and metrics port); `None` when nothing
/// answers.
pub async fn get_plain(addr: SocketAddr, path: &str) -> Option<Reply> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn);
    let request = Request::get(path).header("host", "localhost").body(empty()).ok()?;
    Some(Reply::from(sender.send_request(request).await.ok()?).await)
}

/// The configuration of `podmedic serve`'s defaults, on 127.0.0.1:0, with these certificates.
pub fn server_config(certificates: CertificateSource) -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        metrics_listen: "127.0.0.1:0".parse().expect("addr"),
        certificates,
        client_ca: None,
        max_body_bytes: 7 << 20,
        max_concurrency: 512,
        header_read_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(120),
        max_connections: 4096,
        request_timeout: Duration::from_secs(10),
        admission_deadline: podmedic::webhook::DEFAULT_ADMISSION_DEADLINE,
        engine_threads: 4,
        engine_inline_max_bytes: podmedic::webhook::DEFAULT_INLINE_MAX_BYTES,
        memory_budget: Some(512 << 20),
        tls_handshake_timeout: Duration::from_secs(5),
        shutdown_timeout: Duration::from_secs(25),
        shutdown_delay: Duration::ZERO,
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
