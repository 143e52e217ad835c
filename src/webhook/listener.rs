//! The [`Server`]: two listeners (HTTPS for the webhook, plain HTTP for health and metrics, the
//! [`HealthServer`]), the TLS handshake, the connection limit and timeouts, and the graceful
//! shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use podmedic_engine::admission::Environment;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::error::ServeError;
use super::health::HealthServer;
use super::metrics::{Metrics, reason};
use super::readiness::Readiness;
use super::router::{WebhookState, router};
use super::tls::{self, CertFiles, CertReloader, CertResolver};

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
    /// Time to send the request body.
    pub request_timeout: Duration,
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
    acceptor: TlsAcceptor,
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
        let (resolver, reloader) = match &config.certificates {
            CertificateSource::Files { files, reload_interval } => {
                let reloader = CertReloader::load(files.clone())?;
                tracing::info!(cert = %files.cert.display(), key = %files.key.display(), "loaded the TLS certificate");
                (reloader.resolver(), Some((reloader, *reload_interval)))
            }
            CertificateSource::Ephemeral { ca_file } => {
                let key = tls::ephemeral(ca_file)?;
                tracing::info!(
                    ca_file = %ca_file.display(),
                    "no --tls-cert given: serving an ephemeral certificate for localhost, 127.0.0.1 and ::1; \
                     its CA certificate is in {}",
                    ca_file.display()
                );
                (Arc::new(CertResolver::new(key)), None)
            }
        };
        metrics.tls_certificate_served(tls::not_after(&resolver.current()));
        let tls_config = tls::server_config(resolver.clone(), config.client_ca.as_deref())?;
        if let Some(ca) = &config.client_ca {
            tracing::info!(client_ca = %ca.display(), "clients must present a certificate signed by the client CA");
        }
        certificates_gate.open();

        let addr = config.listen;
        let listener = TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
        let webhook = router(WebhookState {
            environment,
            metrics: metrics.clone(),
            max_body_bytes: config.max_body_bytes,
            request_timeout: config.request_timeout,
            max_concurrency: config.max_concurrency,
        });
        Ok(Server {
            listener,
            health,
            acceptor: TlsAcceptor::from(Arc::new(tls_config)),
            resolver,
            reloader,
            webhook,
            readiness,
            metrics,
            config,
        })
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
        let Server { listener, health, acceptor, reloader, webhook, readiness, metrics, config, .. } = self;
        let https_addr = listener.local_addr().unwrap_or(config.listen);
        let reload_task = reloader.map(|(reloader, interval)| tokio::spawn(reloader.run(interval, metrics.clone())));

        let connections = Connections::new(&config, acceptor, webhook, metrics.clone());
        let graceful = GracefulShutdown::new();
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
                    Ok((stream, peer)) => connections.serve(stream, peer, graceful.watcher()),
                    Err(e) => {
                        // Typically out of file descriptors; give connections time to close.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        };
        drop(listener);

        let open = graceful.count();
        tracing::info!(connections = open, "stopped accepting; waiting for in-flight requests");
        let deadline = signalled + config.shutdown_timeout;
        match tokio::time::timeout_at(deadline, graceful.shutdown()).await {
            Ok(()) => tracing::info!("all connections closed"),
            Err(_) => tracing::warn!(
                timeout = ?config.shutdown_timeout,
                "shutdown timeout reached; dropping the requests still in flight"
            ),
        }
        if let Some(task) = reload_task {
            task.abort();
        }
        health.stop().await;
        tracing::info!("stopped");
    }
}

/// Serves accepted TCP connections: TLS handshake, then HTTP/1.1 or HTTP/2.
struct Connections {
    acceptor: TlsAcceptor,
    builders: Arc<Builders>,
    service: TowerToHyperService<Router>,
    handshake_timeout: Duration,
    first_request_timeout: Duration,
    slots: Arc<tokio::sync::Semaphore>,
    metrics: Arc<Metrics>,
}

impl Connections {
    fn new(config: &ServerConfig, acceptor: TlsAcceptor, webhook: Router, metrics: Arc<Metrics>) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // hyper applies the HTTP/1.1 header read timeout also while a keep-alive connection waits
        // for its next request, so it is the idle timeout here; the first request of a connection
        // has the shorter `header_read_timeout` (see `serve`).
        builder.http1().timer(TokioTimer::new()).header_read_timeout(config.idle_timeout).keep_alive(true);
        builder.http2().timer(TokioTimer::new());
        let builders =
            Builders { http1: builder.clone().http1_only(), http2: builder.clone().http2_only(), sniffing: builder };
        Connections {
            acceptor,
            builders: Arc::new(builders),
            service: TowerToHyperService::new(webhook),
            handshake_timeout: config.tls_handshake_timeout,
            first_request_timeout: config.header_read_timeout,
            slots: Arc::new(tokio::sync::Semaphore::new(config.max_connections.max(1))),
            metrics,
        }
    }

    /// Handles one connection on its own task. The watcher is taken before the handshake so that a
    /// shutdown waits for connections still in their handshake too.
    fn serve(&self, stream: tokio::net::TcpStream, peer: SocketAddr, watcher: hyper_util::server::graceful::Watcher) {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            self.metrics.error(reason::CONNECTION_LIMIT);
            tracing::debug!(%peer, "too many connections: closed");
            return;
        };
        let acceptor = self.acceptor.clone();
        let builders = self.builders.clone();
        let service = self.service.clone();
        let handshake_timeout = self.handshake_timeout;
        let first_request_timeout = self.first_request_timeout;
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    metrics.error(reason::TLS_HANDSHAKE);
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    metrics.error(reason::TLS_HANDSHAKE_TIMEOUT);
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let builder = builders.for_alpn(stream.get_ref().1.alpn_protocol());
            // The service marks the connection once a request's headers are complete.
            let requested = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let marked = {
                let requested = requested.clone();
                hyper::service::service_fn(move |request| {
                    requested.store(true, std::sync::atomic::Ordering::Relaxed);
                    hyper::service::Service::call(&service, request)
                })
            };
            let connection = watcher.watch(builder.serve_connection(TokioIo::new(stream), marked));
            tokio::pin!(connection);
            let result = tokio::select! {
                result = &mut connection => Some(result),
                () = tokio::time::sleep(first_request_timeout) => None,
            };
            let result = match result {
                Some(result) => result,
                None if !requested.load(std::sync::atomic::Ordering::Relaxed) => {
                    // Dropping the connection closes it.
                    metrics.error(reason::HEADER_TIMEOUT);
                    tracing::debug!(%peer, "no request headers within the header read timeout: closed");
                    return;
                }
                None => connection.await,
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// Connection builders by protocol. With ALPN the protocol is known after the handshake, so
/// hyper need not sniff the first bytes, and the HTTP/1.1 header read timeout runs from the start
/// (sniffing has no timeout of its own).
struct Builders {
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
    sniffing: auto::Builder<TokioExecutor>,
}

impl Builders {
    fn for_alpn(&self, alpn: Option<&[u8]>) -> &auto::Builder<TokioExecutor> {
        match alpn {
            Some(b"h2") => &self.http2,
            Some(b"http/1.1") => &self.http1,
            _ => &self.sniffing,
        }
    }
}
