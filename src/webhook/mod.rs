//! `podmedic serve`: the webhook over HTTPS, health and metrics over plain HTTP, graceful shutdown.
//!
//! - [`router`]: the HTTP surface, `POST /mutate` (public, so tests can drive it without a socket):
//!   reserve the body against the [`budget`], read it, hand it to the engine's
//!   [`admit`](podmedic_engine::admission::admit) through the [`engine`] pool within the
//!   admission deadline, log and count; and `/healthz`, `/readyz`, `/metrics` ([`health_router`]).
//! - [`HealthServer`] (`health.rs`): the plain-HTTP health and metrics listener, bound before
//!   anything else so that the kubelet's first probe finds it, and served from a thread of its own.
//! - [`Server`] (`listener.rs`) puts the router behind rustls and hyper: a TCP accept loop, then
//!   each connection (`connection.rs`) with a connection limit, a TLS handshake with a timeout,
//!   hyper-util's HTTP/1.1 or HTTP/2 with a header read timeout, the HTTP/2 idle timeout and pings,
//!   and the graceful shutdown.
//! - [`tls`]: certificates and client CAs, hot reload; [`metrics`]; [`readiness`];
//!   [`shutdown_signal`].
//!
//! Shutdown, on SIGTERM or SIGINT: `/readyz` turns 503, the listener stays open for
//! `--shutdown-delay` so endpoints can stop routing to this Pod, then it closes; connections are
//! told to finish (HTTP/1.1 closes once the in-flight response is written, idle connections close
//! at once, HTTP/2 gets GOAWAY), and whatever is still running at `--shutdown-timeout` is dropped.

mod admission_log;
pub mod budget;
mod connection;
pub mod engine;
mod error;
mod health;
mod listener;
pub mod metrics;
pub mod readiness;
mod router;
mod shutdown;
pub mod tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use podmedic_engine::admission::Environment;
use podmedic_engine::policy::Policy;

use crate::cluster::{ClusterWatch, NativeSidecarsMode, ReferenceWatching};
pub use error::ServeError;
pub use health::HealthServer;
pub use listener::{CertificateSource, Server, ServerConfig};
use metrics::Metrics;
use readiness::Readiness;
pub use router::{
    DEFAULT_ADMISSION_DEADLINE, DEFAULT_INLINE_MAX_BYTES, WebhookState, default_engine_threads, health_router, router,
};
pub use shutdown::shutdown_signal;

/// Everything `podmedic serve` needs (from `cli::ServeArgs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeConfig {
    /// Listeners, certificates, limits and timeouts.
    pub server: ServerConfig,
    /// Serve an ephemeral certificate even in a Pod (`--allow-ephemeral-certificate`).
    pub allow_ephemeral_certificate: bool,
    /// Policy file merged over the built-in policy.
    pub policy: Option<PathBuf>,
    /// Whether sidecars may be moved: decided from the cluster, or forced.
    pub native_sidecars: NativeSidecarsMode,
    /// Kubeconfig to reach the API server (else inferred; no cluster is fine).
    pub kubeconfig: Option<PathBuf>,
    /// Whether the names of ConfigMaps, Secrets, PVCs and ServiceAccounts are watched.
    pub references: ReferenceWatching,
}

/// `podmedic-ca.crt` in the temporary directory.
pub fn default_ephemeral_ca_file() -> PathBuf {
    std::env::temp_dir().join("podmedic-ca.crt")
}

/// Builds what admission needs: the policy and the cluster's capabilities.
///
/// This is the one place the environment is assembled: the policy, and a [`ClusterWatch`] as the
/// source of the native-sidecar capability and of the namespace settings. The watch registers
/// its readiness gate here.
pub async fn build_environment(
    config: &ServeConfig,
    readiness: &Readiness,
    metrics: &Metrics,
) -> Result<Environment, ServeError> {
    let policy_gate = readiness.gate("policy");
    let policy = Policy::load_or_builtin(config.policy.as_deref())?;
    if let Some(path) = &config.policy {
        tracing::info!(policy = %path.display(), "loaded the policy file");
    }
    policy_gate.open();
    let cluster_gate = readiness.gate("cluster");
    let watch =
        Arc::new(ClusterWatch::start(config.native_sidecars, config.kubeconfig.as_deref(), config.references).await?);
    metrics.watch_cluster(watch.clone());
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
    Ok(Environment { policy: Arc::new(policy), capability: watch.clone(), namespaces: watch.clone(), cluster: watch })
}

/// Runs `podmedic serve` until SIGTERM or SIGINT.
pub async fn serve(config: &ServeConfig) -> Result<(), ServeError> {
    let server = &config.server;
    if server.shutdown_delay >= server.shutdown_timeout {
        tracing::warn!(
            delay = ?server.shutdown_delay,
            timeout = ?server.shutdown_timeout,
            "--shutdown-delay is not shorter than --shutdown-timeout: requests in flight at the end of the delay are dropped"
        );
    }
    if matches!(server.certificates, CertificateSource::Ephemeral { .. })
        && crate::cluster::in_a_pod()
        && !config.allow_ephemeral_certificate
    {
        return Err(ServeError::EphemeralInCluster);
    }
    let readiness = Readiness::new();
    // Closed until every step below has registered its own gate and the server is bound, since the
    // health port answers from the next line on.
    let starting = readiness.gate("start-up");
    let metrics = Arc::new(Metrics::new());
    // First of all: the kubelet probes as soon as the container runs (a port not yet bound would
    // be a "connection refused" probe failure on every start).
    let health = HealthServer::start(server.metrics_listen, readiness.clone(), metrics.clone()).await?;
    let environment = build_environment(config, &readiness, &metrics).await?;
    let server = Server::bind_with_health(server.clone(), environment, readiness, metrics, health).await?;
    starting.open();
    server.run(shutdown_signal()).await;
    Ok(())
}
