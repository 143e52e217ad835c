//! The plain-HTTP server of `/healthz`, `/readyz` and `/metrics`, on a thread and a runtime of its
//! own: whatever the webhook's workers are busy with (TLS handshakes, bodies, engine calls), the
//! kubelet's probes and the scraper are answered.

use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The running health server.
pub(super) struct HealthServer {
    stop: oneshot::Sender<()>,
    stopped: oneshot::Receiver<()>,
}

impl HealthServer {
    /// Serves `router` on `listener` from a new thread.
    pub fn start(listener: TcpListener, router: Router) -> std::io::Result<HealthServer> {
        let listener = listener.into_std()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (stop, stop_requested) = oneshot::channel::<()>();
        let (done, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new().name("podmedic-health".into()).spawn(move || {
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
        })?;
        Ok(HealthServer { stop, stopped })
    }

    /// Stops it; waits at most `patience` (a scraper holding a connection must not delay the exit).
    pub async fn stop(self, patience: Duration) {
        let _ = self.stop.send(());
        if tokio::time::timeout(patience, self.stopped).await.is_err() {
            tracing::debug!("the health server did not stop in time");
        }
    }
}
