//! The plain-HTTP listener of `/healthz`, `/readyz` and `/metrics` (`--metrics-listen`), on a
//! thread and a runtime of its own.
//!
//! `podmedic serve` binds it before anything else (the policy, the cluster client, the
//! certificates): the kubelet probes a container as soon as it runs, and a port that is not bound
//! yet gives `Readiness probe failed: connection refused`. Bound first, it answers at once, and
//! `/readyz` says what podmedic is still waiting for. On its own thread, whatever the webhook's
//! workers are busy with (TLS handshakes, bodies, engine calls), the kubelet's probes and the
//! scraper are answered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::error::ServeError;
use super::metrics::Metrics;
use super::readiness::Readiness;
use super::router::health_router;

/// How long [`HealthServer::stop`] waits for open connections: a scraper holding one open must not
/// delay the exit.
const STOP_PATIENCE: Duration = Duration::from_secs(1);

/// The health and metrics server, serving from [`HealthServer::start`] until
/// [`HealthServer::stop`] (or until it is dropped, which stops it without waiting).
#[derive(Debug)]
pub struct HealthServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    stopped: Option<oneshot::Receiver<()>>,
}

impl HealthServer {
    /// Binds `addr` (port 0 picks a free port) and serves [`health_router`] on it at once, from a
    /// thread of its own. Must run inside a Tokio runtime (the bind is async).
    pub async fn start(addr: SocketAddr, readiness: Readiness, metrics: Arc<Metrics>) -> Result<Self, ServeError> {
        let bind_error = |source| ServeError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let bound = listener.local_addr().unwrap_or(addr);
        let listener = listener.into_std().map_err(bind_error)?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(bind_error)?;
        let router = health_router(readiness, metrics);
        let (stop, stop_requested) = oneshot::channel::<()>();
        let (done, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("podmedic-health".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let result = match TcpListener::from_std(listener) {
                        Ok(listener) => {
                            axum::serve(listener, router)
                                .with_graceful_shutdown(async move {
                                    let _ = stop_requested.await;
                                })
                                .await
                        }
                        Err(e) => Err(e),
                    };
                    if let Err(e) = result {
                        tracing::error!(error = %e, "the health and metrics server failed");
                    }
                });
                let _ = done.send(());
            })
            .map_err(bind_error)?;
        tracing::info!(addr = %bound, "serving /healthz, /readyz and /metrics over HTTP");
        Ok(HealthServer { addr: bound, stop: Some(stop), stopped: Some(stopped) })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits up to a second for open connections to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stopped) = self.stopped.take()
            && tokio::time::timeout(STOP_PATIENCE, stopped).await.is_err()
        {
            tracing::debug!("the health server did not stop in time");
        }
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
