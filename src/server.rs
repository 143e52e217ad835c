//! `podmedic serve`: the webhook over HTTPS, health and metrics over plain HTTP, graceful shutdown.
//!
//! The HTTP surface is the axum [`router`] (public, so tests can drive it without a socket). The
//! [`Server`] puts it behind rustls and hyper: a TCP accept loop, a TLS handshake with a timeout,
//! then hyper-util's automatic HTTP/1.1 / HTTP/2 connection with a header read timeout, each
//! connection watched for graceful shutdown.
//!
//! Shutdown, on SIGTERM or SIGINT: `/readyz` turns 503, the listener stays open for
//! `--shutdown-delay` so endpoints can stop routing to this Pod, then it closes; connections are
//! told to finish (HTTP/1.1 closes once the in-flight response is written, idle connections close
//! at once, HTTP/2 gets GOAWAY), and whatever is still running at `--shutdown-timeout` is dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceBuilder;
use tower::limit::ConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower_http::catch_panic::{CatchPanicLayer, ResponseForPanic};

use podmedic_engine::admission::{self, Admission, Environment};
use podmedic_engine::policy::{Policy, PolicyError};

use crate::cli::ServeArgs;
use crate::cluster::ClusterWatch;
use crate::metrics::{self, Metrics, reason};
use crate::readiness::Readiness;
use crate::tls::{self, CertFiles, CertReloader, CertResolver, TlsError};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Certificates could not be loaded or made.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The policy file could not be loaded.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The cluster connection given could not be used.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// A listener could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

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

impl From<&ServeArgs> for ServerConfig {
    fn from(args: &ServeArgs) -> Self {
        let certificates = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => CertificateSource::Files {
                files: CertFiles { cert: cert.clone(), key: key.clone() },
                reload_interval: args.tls_reload_interval,
            },
            // clap makes the two flags require each other.
            _ => CertificateSource::Ephemeral {
                ca_file: args.ephemeral_ca_file.clone().unwrap_or_else(default_ephemeral_ca_file),
            },
        };
        ServerConfig {
            listen: args.listen,
            metrics_listen: args.metrics_listen,
            certificates,
            client_ca: args.client_ca.clone(),
            max_body_bytes: args.max_body_bytes,
            max_concurrency: usize::try_from(args.max_concurrency).unwrap_or(usize::MAX),
            header_read_timeout: args.header_read_timeout,
            idle_timeout: args.idle_timeout,
            max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
            request_timeout: args.request_timeout,
            tls_handshake_timeout: args.tls_handshake_timeout,
            shutdown_timeout: args.shutdown_timeout,
            shutdown_delay: args.shutdown_delay,
        }
    }
}

/// `podmedic-ca.crt` in the temporary directory.
pub fn default_ephemeral_ca_file() -> PathBuf {
    std::env::temp_dir().join("podmedic-ca.crt")
}

/// Builds what admission needs: the policy and the cluster's capabilities.
///
/// This is the one place the environment is assembled; the cluster module replaces the
/// `--native-sidecars auto` branch with a watcher and registers its own readiness gate.
pub async fn build_environment(args: &ServeArgs, readiness: &Readiness) -> Result<Environment, ServeError> {
    let policy_gate = readiness.gate("policy");
    let policy = Policy::load_or_builtin(args.policy.as_deref())?;
    if let Some(path) = &args.policy {
        tracing::info!(policy = %path.display(), "loaded the policy file");
    }
    policy_gate.open();
    let cluster_gate = readiness.gate("cluster");
    let watch = Arc::new(ClusterWatch::start(args.native_sidecars, args.kubeconfig.as_deref()).await?);
    if watch.is_ready() {
        cluster_gate.open();
    } else {
        // Ready once the first Node and Namespace lists are in; the watch keeps them current.
        let waiting = Arc::downgrade(&watch);
        tokio::spawn(async move {
            while let Some(watch) = waiting.upgrade() {
                if watch.is_ready() {
                    cluster_gate.open();
                    return;
                }
                drop(watch);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    Ok(watch.environment(Arc::new(policy)))
}

/// Runs `podmedic serve` until SIGTERM or SIGINT.
pub async fn serve(args: &ServeArgs) -> Result<(), ServeError> {
    if args.shutdown_delay >= args.shutdown_timeout {
        tracing::warn!(
            delay = ?args.shutdown_delay,
            timeout = ?args.shutdown_timeout,
            "--shutdown-delay is not shorter than --shutdown-timeout: requests in flight at the end of the delay are dropped"
        );
    }
    let readiness = Readiness::new();
    let metrics = Arc::new(Metrics::new());
    let environment = build_environment(args, &readiness).await?;
    let server = Server::bind(ServerConfig::from(args), environment, readiness, metrics).await?;
    server.run(shutdown_signal()).await;
    Ok(())
}

/// Completes on SIGTERM (what the kubelet sends) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("received SIGINT"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}

/// What the webhook handlers share.
#[derive(Clone)]
pub struct WebhookState {
    /// Policy and cluster capabilities.
    pub environment: Environment,
    /// Where requests are counted.
    pub metrics: Arc<Metrics>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Time to receive the body.
    pub request_timeout: Duration,
    /// Requests handled at once before shedding.
    pub max_concurrency: usize,
}

impl WebhookState {
    /// State with the defaults of `podmedic serve` (7 MiB, 10 s, 512 requests at once).
    pub fn new(environment: Environment, metrics: Arc<Metrics>) -> Self {
        WebhookState {
            environment,
            metrics,
            max_body_bytes: 7 << 20,
            request_timeout: Duration::from_secs(10),
            max_concurrency: 512,
        }
    }
}

/// The webhook's HTTP surface: `POST /mutate`, with panics caught and excess load shed.
pub fn router(state: WebhookState) -> Router {
    let metrics = state.metrics.clone();
    let shed_metrics = state.metrics.clone();
    // Shedding rather than queueing: a request that waits here is one the API server may already
    // have given up on, and its failurePolicy is the better answer under overload.
    let mutate = post(mutate)
        .fallback(method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(move |_: tower::BoxError| {
                    let metrics = shed_metrics.clone();
                    async move {
                        metrics.error(reason::OVERLOADED);
                        json_error(StatusCode::SERVICE_UNAVAILABLE, "podmedic is overloaded, try again")
                    }
                }))
                .layer(LoadShedLayer::new())
                .layer(ConcurrencyLimitLayer::new(state.max_concurrency)),
        )
        .with_state(state);
    with_panic_guard(Router::new().route("/mutate", mutate).fallback(not_found), metrics)
}

/// Turns a panic in any handler of `router` into a 500 and a metric instead of a dropped
/// connection.
fn with_panic_guard(router: Router, metrics: Arc<Metrics>) -> Router {
    router.layer(CatchPanicLayer::custom(PanicResponse { metrics }))
}

#[derive(Clone)]
struct PanicResponse {
    metrics: Arc<Metrics>,
}

impl ResponseForPanic for PanicResponse {
    type ResponseBody = Body;

    fn response_for_panic(&mut self, err: Box<dyn std::any::Any + Send + 'static>) -> Response {
        let detail = err
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| err.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        tracing::error!(panic = %detail, "a request handler panicked");
        self.metrics.error(reason::HANDLER_PANIC);
        json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error in podmedic")
    }
}

/// `POST /mutate`: an AdmissionReview in, an AdmissionReview out.
async fn mutate(State(state): State<WebhookState>, request: Request) -> Response {
    let started = Instant::now();
    let metrics = &state.metrics;
    if !is_json(request.headers()) {
        metrics.error(reason::UNSUPPORTED_MEDIA_TYPE);
        return json_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "the Content-Type must be application/json");
    }
    let too_large = || {
        metrics.error(reason::PAYLOAD_TOO_LARGE);
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is larger than the limit of {} bytes", state.max_body_bytes),
        )
    };
    if content_length(request.headers()).is_some_and(|len| len > state.max_body_bytes as u64) {
        return too_large();
    }
    let body = Limited::new(request.into_body(), state.max_body_bytes);
    let body = match tokio::time::timeout(state.request_timeout, body.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
        Ok(Err(e)) => {
            metrics.error(reason::BODY_READ);
            return json_error(StatusCode::BAD_REQUEST, &format!("cannot read the request body: {e}"));
        }
        Err(_) => {
            metrics.error(reason::REQUEST_TIMEOUT);
            return json_error(StatusCode::REQUEST_TIMEOUT, "the request body did not arrive in time");
        }
    };

    match admission::admit(&body, &state.environment) {
        Ok(admission) => {
            let elapsed = started.elapsed();
            log_admission(&admission, elapsed);
            metrics.observe_admission(&admission, elapsed);
            ([(header::CONTENT_TYPE, "application/json")], admission.body).into_response()
        }
        Err(e) => {
            metrics.error(e.metric_label());
            tracing::warn!(error = %e, "refused a body that is not an AdmissionReview");
            json_error(StatusCode::BAD_REQUEST, &e.to_string())
        }
    }
}

/// One line per admission; never the object itself, which may carry secrets in its environment.
fn log_admission(admission: &Admission, elapsed: Duration) {
    let changes: Vec<&str> = admission.changes.iter().map(|c| c.label()).collect();
    let changes = changes.join(",");
    tracing::info!(
        uid = %admission.uid,
        kind = %admission.kind,
        namespace = %admission.namespace,
        name = %admission.name,
        operation = admission.operation,
        result = admission.outcome.label(),
        changes = %changes,
        warnings = admission.warnings,
        duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        "admission"
    );
    if let Some((label, message)) = &admission.skip_reason {
        tracing::error!(
            uid = %admission.uid,
            kind = %admission.kind,
            namespace = %admission.namespace,
            name = %admission.name,
            reason = label,
            error = %message,
            "podmedic skipped this object and let it through unchanged"
        );
    }
}

/// `application/json`, with or without parameters such as `charset=utf-8`.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case("application/json"))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

async fn method_not_allowed() -> Response {
    let mut response = json_error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
    response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("POST"));
    response
}

async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "not found; the webhook is POST /mutate")
}

/// `{"error": message}` with `status`.
fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// The plain-HTTP surface: `/healthz`, `/readyz`, `/metrics`.
pub fn health_router(readiness: Readiness, metrics: Arc<Metrics>) -> Router {
    Router::new()
        // Liveness: the process answers. Nothing podmedic can recover from by restarting is checked.
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move {
                    match readiness.check() {
                        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
                        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], metrics.encode()) }
            }),
        )
}

/// The bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    metrics_listener: TcpListener,
    acceptor: TlsAcceptor,
    resolver: Arc<CertResolver>,
    reloader: Option<(CertReloader, Duration)>,
    webhook: Router,
    health: Router,
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
    /// Loads (or makes) the certificates and binds both listeners. Port 0 picks a free port; see
    /// [`Server::local_addr`] and [`Server::metrics_addr`].
    pub async fn bind(
        config: ServerConfig,
        environment: Environment,
        readiness: Readiness,
        metrics: Arc<Metrics>,
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
        let tls_config = tls::server_config(resolver.clone(), config.client_ca.as_deref())?;
        if let Some(ca) = &config.client_ca {
            tracing::info!(client_ca = %ca.display(), "clients must present a certificate signed by the client CA");
        }
        certificates_gate.open();

        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })
        };
        let listener = bind(config.listen).await?;
        let metrics_listener = bind(config.metrics_listen).await?;
        let webhook = router(WebhookState {
            environment,
            metrics: metrics.clone(),
            max_body_bytes: config.max_body_bytes,
            request_timeout: config.request_timeout,
            max_concurrency: config.max_concurrency,
        });
        let health = health_router(readiness.clone(), metrics.clone());
        Ok(Server {
            listener,
            metrics_listener,
            acceptor: TlsAcceptor::from(Arc::new(tls_config)),
            resolver,
            reloader,
            webhook,
            health,
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
        self.metrics_listener.local_addr().unwrap_or(self.config.metrics_listen)
    }

    /// The resolver serving the certificate (for inspection).
    pub fn cert_resolver(&self) -> Arc<CertResolver> {
        self.resolver.clone()
    }

    /// Serves until `shutdown` completes, then shuts down gracefully within the shutdown timeout.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let Server {
            listener, metrics_listener, acceptor, reloader, webhook, health, readiness, metrics, config, ..
        } = self;
        let https_addr = listener.local_addr().unwrap_or(config.listen);
        let health_addr = metrics_listener.local_addr().unwrap_or(config.metrics_listen);

        let (stop_health, health_stopped) = tokio::sync::oneshot::channel::<()>();
        let health_task = tokio::spawn(async move {
            let result = axum::serve(metrics_listener, health)
                .with_graceful_shutdown(async move {
                    let _ = health_stopped.await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "the health and metrics server failed");
            }
        });
        tracing::info!(addr = %health_addr, "serving /healthz, /readyz and /metrics over HTTP");
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
        let _ = stop_health.send(());
        // A scraper holding a connection open must not delay the exit.
        if tokio::time::timeout(Duration::from_secs(1), health_task).await.is_err() {
            tracing::debug!("the health server did not stop in time");
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;
    use tower::ServiceExt;

    fn state() -> WebhookState {
        WebhookState::new(Environment::standalone(Arc::new(Policy::builtin())), Arc::new(Metrics::new()))
    }

    fn request(method: Method, content_type: Option<&str>, body: &'static str) -> Request {
        let mut builder = Request::builder().method(method).uri("/mutate");
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        builder.body(Body::from(body)).unwrap()
    }

    async fn error_of(response: Response) -> String {
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        json["error"].as_str().unwrap().to_owned()
    }

    #[test]
    fn json_content_types() {
        let with = |ct: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            is_json(&headers)
        };
        assert!(with("application/json"));
        assert!(with("application/json; charset=utf-8"));
        assert!(with("Application/JSON"));
        assert!(!with("application/yaml"));
        assert!(!with("application/jsonx"));
        assert!(!with("text/plain; application/json"));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn other_methods_get_405_with_allow() {
        let response = router(state()).oneshot(request(Method::GET, None, "")).await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "POST");
        assert_eq!(error_of(response).await, "use POST");
    }

    #[tokio::test]
    async fn a_wrong_content_type_gets_415() {
        let response = router(state()).oneshot(request(Method::POST, Some("text/plain"), "{}")).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[tokio::test]
    async fn not_an_admission_review_gets_400() {
        let response =
            router(state()).oneshot(request(Method::POST, Some("application/json"), "{not json")).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(error_of(response).await.contains("not a valid AdmissionReview"));
    }

    #[tokio::test]
    async fn unknown_paths_get_404() {
        let response =
            router(state()).oneshot(Request::builder().uri("/validate").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }

    async fn boom() -> &'static str {
        panic!("boom")
    }

    #[tokio::test]
    async fn a_panicking_handler_gets_500_and_is_counted() {
        let metrics = Arc::new(Metrics::new());
        let app = with_panic_guard(Router::new().route("/boom", get(boom)), metrics.clone());
        let response = app.oneshot(Request::builder().uri("/boom").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(metrics.encode().contains(r#"podmedic_errors_total{reason="handler_panic"} 1"#));
    }

    #[tokio::test]
    async fn readyz_reports_closed_gates_and_shutdown() {
        let readiness = Readiness::new();
        let gate = readiness.gate("certificates");
        let app = health_router(readiness.clone(), Arc::new(Metrics::new()));
        let get_readyz = || Request::builder().uri("/readyz").body(Body::empty()).unwrap();
        let response = app.clone().oneshot(get_readyz()).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        gate.open();
        assert_eq!(app.clone().oneshot(get_readyz()).await.unwrap().status(), StatusCode::OK);
        readiness.begin_shutdown();
        assert_eq!(app.clone().oneshot(get_readyz()).await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
