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

    /// A server with the test defaults and this environment (a cluster to check workloads against).
    pub async fn start_in(environment: Environment) -> TestServer {
        let ca = TestCa::new("podmedic test CA");
        let pair = ca.server_pair("podmedic v1");
        Self::start_serving_in(ca, pair, |_| {}, environment).await
    }

    /// A server serving `pair` (issued by `ca`) from a kubelet-style mount.
    pub async fn start_serving(ca: TestCa, pair: Pair, adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
        Self::start_serving_in(ca, pair, adjust, Environment::standalone(Arc::new(Policy::builtin()))).await
    }

    async fn start_serving_in(
        ca: TestCa,
        pair: Pair,
        adjust: impl FnOnce(&mut ServerConfig),
        environment: Environment,
    ) -> TestServer {
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
