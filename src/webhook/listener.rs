//! The [`Server`]: two listeners (HTTPS for the webhook, plain HTTP for health and metrics, the
//! [`HealthServer`], on a thread of its own), the connections (`connection.rs`), the engine pool
//! and the memory budget, and the graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use podmedic_engine::admission::Environment;
use tokio::net::TcpListener;

use super::budget::{MemoryBudget, cgroup_memory_limit};
use super::connection::Connections;
use super::engine::EnginePool;
use super::error::ServeError;
use super::health::HealthServer;
use super::metrics::Metrics;
use super::readiness::Readiness;
use super::router::{WebhookState, router};
use super::tls::{self, CertFiles, CertReloader, CertResolver};

/// How often the client CA is re-read when the serving certificate is ephemeral.
const EPHEMERAL_RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// Where the serving certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertificateSource {
    /// Files re-read every `reload_interval`.
    Files {
        /// Certificate and key.
        files: CertFiles,
        /// How often they are re-read.
        reload_interval: Duration,
    },
    /// An ephemeral CA and certificate for localhost; the CA is written to `ca_file`.
    Ephemeral {
        /// Where the CA certificate is written.
        ca_file: PathBuf,
    },
}

/// Everything the server needs besides the admission [`Environment`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// HTTPS address of the webhook.
    pub listen: SocketAddr,
    /// Plain-HTTP address of health and metrics.
    pub metrics_listen: SocketAddr,
    /// The serving certificate.
    pub certificates: CertificateSource,
    /// CA bundle for client certificates; `None` accepts any client.
    pub client_ca: Option<PathBuf>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Requests handled at once before shedding.
    pub max_concurrency: usize,
    /// Time a new connection has to send its first request headers.
    pub header_read_timeout: Duration,
    /// Idle time (and header time) allowed between requests on an HTTP/1.1 keep-alive connection.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Time to send the request body; no request is handled longer.
    pub request_timeout: Duration,
    /// Time from a request's headers to its answer: past it, the object is allowed unchanged.
    pub admission_deadline: Duration,
    /// Engine calls running at once off the async workers.
    pub engine_threads: usize,
    /// Bodies up to this many bytes run the engine on the async worker that read them.
    pub engine_inline_max_bytes: usize,
    /// Memory that requests in flight may hold at once (bodies and the engine's view of them, see
    /// `budget::cost_of`); `None`: half of the container's memory limit.
    pub memory_budget: Option<usize>,
    /// Time to complete the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Longest time from the shutdown signal to the end of [`Server::run`].
    pub shutdown_timeout: Duration,
    /// Time between readiness turning false and the listener closing.
    pub shutdown_delay: Duration,
}

/// The bound server: health and metrics already answer, the webhook not until [`Server::run`].
pub struct Server {
    listener: TcpListener,
    health: HealthServer,
    tls: Arc<ArcSwap<rustls::ServerConfig>>,
    resolver: Arc<CertResolver>,
    reloader: Option<(CertReloader, Duration)>,
    webhook: Router,
    readiness: Readiness,
    metrics: Arc<Metrics>,
    config: ServerConfig,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Server {
    /// Starts the [`HealthServer`] on `config.metrics_listen`, then [`Server::bind_with_health`].
    /// Port 0 picks a free port; see [`Server::local_addr`] and [`Server::metrics_addr`].
    pub async fn bind(
        config: ServerConfig,
        environment: Environment,
        readiness: Readiness,
        metrics: Arc<Metrics>,
    ) -> Result<Server, ServeError> {
        let health = HealthServer::start(config.metrics_listen, readiness.clone(), metrics.clone()).await?;
        Server::bind_with_health(config, environment, readiness, metrics, health).await
    }

    /// Loads (or makes) the certificates and binds the webhook's listener, beside a health server
    /// that was started earlier (`podmedic serve` starts it first of all).
    pub async fn bind_with_health(
        config: ServerConfig,
        environment: Environment,
        readiness: Readiness,
        metrics: Arc<Metrics>,
        health: HealthServer,
    ) -> Result<Server, ServeError> {
        let certificates_gate = readiness.gate("certificates");
        let (reloader, interval) = match &config.certificates {
            CertificateSource::Files { files, reload_interval } => {
                let reloader = CertReloader::load_with(Some(files.clone()), None, config.client_ca.clone())?;
                tracing::info!(cert = %files.cert.display(), key = %files.key.display(), "loaded the TLS certificate");
                (reloader, *reload_interval)
            }
            CertificateSource::Ephemeral { ca_file } => {
                let key = tls::ephemeral(ca_file)?;
                tracing::info!(
                    ca_file = %ca_file.display(),
                    "no --tls-cert given: serving an ephemeral certificate for localhost, 127.0.0.1 and ::1; \
                     its CA certificate is in {}",
                    ca_file.display()
                );
                (CertReloader::load_with(None, Some(key), config.client_ca.clone())?, EPHEMERAL_RELOAD_INTERVAL)
            }
        };
        metrics.tls_certificate_served(tls::not_after(&reloader.resolver().current()));
        if let Some(ca) = &config.client_ca {
            tracing::info!(client_ca = %ca.display(), "clients must present a certificate signed by the client CA");
        }
        let (tls, resolver) = (reloader.config(), reloader.resolver());
        let reloader = reloader.watches_files().then_some((reloader, interval));
        certificates_gate.open();

        let addr = config.listen;
        let listener = TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
        let budget = match config.memory_budget {
            Some(bytes) => MemoryBudget::new(bytes),
            None => MemoryBudget::for_memory_limit(cgroup_memory_limit()),
        };
        if budget.total() < config.max_body_bytes {
            tracing::warn!(
                budget = budget.total(),
                max_body_bytes = config.max_body_bytes,
                "the memory budget is smaller than --max-body-bytes: the largest bodies will get 503"
            );
        }
        let engine = EnginePool::new(config.engine_threads, config.engine_inline_max_bytes);
        tracing::info!(
            memory_budget = budget.total(),
            engine_threads = engine.threads(),
            admission_deadline = ?config.admission_deadline,
            "request limits"
        );
        metrics.watch_pipeline(budget.clone(), engine.clone());
        let webhook = router(WebhookState {
            environment,
            metrics: metrics.clone(),
            max_body_bytes: config.max_body_bytes,
            request_timeout: config.request_timeout,
            max_concurrency: config.max_concurrency,
            admission_deadline: config.admission_deadline,
            engine,
            budget,
        });
        Ok(Server { listener, health, tls, resolver, reloader, webhook, readiness, metrics, config })
    }

    /// The HTTPS address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    /// The health and metrics address actually bound.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.health.local_addr()
    }

    /// The resolver serving the certificate (for inspection).
    pub fn cert_resolver(&self) -> Arc<CertResolver> {
        self.resolver.clone()
    }

    /// Serves until `shutdown` completes, then shuts down gracefully within the shutdown timeout.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let Server { listener, health, tls, reloader, webhook, readiness, metrics, config, .. } = self;
        let https_addr = listener.local_addr().unwrap_or(config.listen);
        let reload_task = reloader.map(|(reloader, interval)| tokio::spawn(reloader.run(interval, metrics.clone())));

        let connections = Connections::new(&config, tls, webhook, metrics.clone());
        tracing::info!(addr = %https_addr, "serving the webhook over HTTPS at /mutate");

        // Readiness turns false at the signal; the listener keeps accepting for the delay.
        let stop_accepting = {
            let readiness = readiness.clone();
            let delay = config.shutdown_delay;
            async move {
                shutdown.await;
                let signalled = tokio::time::Instant::now();
                readiness.begin_shutdown();
                tracing::info!(delay = ?delay, "shutting down: not ready any more");
                tokio::time::sleep(delay).await;
                signalled
            }
        };
        tokio::pin!(stop_accepting);
        let signalled = loop {
            tokio::select! {
                signalled = &mut stop_accepting => break signalled,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => connections.serve(stream, peer),
                    Err(e) => {
                        // Typically out of file descriptors; give connections time to close.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        };
        drop(listener);

        tracing::info!(connections = connections.open(), "stopped accepting; waiting for in-flight requests");
        if connections.shut_down(signalled + config.shutdown_timeout).await {
            tracing::info!("all connections closed");
        } else {
            tracing::warn!(
                timeout = ?config.shutdown_timeout,
                "shutdown timeout reached; dropping the requests still in flight"
            );
        }
        if let Some(task) = reload_task {
            task.abort();
        }
        health.stop().await;
        tracing::info!("stopped");
    }
}
