//! The plain-HTTP listener of `/healthz`, `/readyz` and `/metrics` (`--metrics-listen`).
//!
//! `podmedic serve` binds it before anything else (the policy, the cluster client, the
//! certificates): the kubelet probes a container as soon as it runs, and a port that is not bound
//! yet gives `Readiness probe failed: connection refused`. Bound first, it answers at once, and
//! `/readyz` says what podmedic is still waiting for.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::error::ServeError;
use super::metrics::Metrics;
use super::readiness::Readiness;
use super::router::health_router;

/// The health and metrics server, serving in the background from [`HealthServer::start`] until
/// [`HealthServer::stop`] (or until it is dropped).
#[derive(Debug)]
pub struct HealthServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl HealthServer {
    /// Binds `addr` (port 0 picks a free port) and serves [`health_router`] on it at once. Must run
    /// inside a Tokio runtime.
    pub async fn start(addr: SocketAddr, readiness: Readiness, metrics: Arc<Metrics>) -> Result<Self, ServeError> {
        let listener = TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })?;
        let bound = listener.local_addr().unwrap_or(addr);
        let (stop, stopped) = oneshot::channel::<()>();
        let router = health_router(readiness, metrics);
        let task = tokio::spawn(async move {
            let result = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "the health and metrics server failed");
            }
        });
        tracing::info!(addr = %bound, "serving /healthz, /readyz and /metrics over HTTP");
        Ok(HealthServer { addr: bound, stop: Some(stop), task })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits up to a second for open connections: a scraper holding one open
    /// must not delay the exit.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(Duration::from_secs(1), &mut self.task).await.is_err() {
            tracing::debug!("the health server did not stop in time");
        }
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
