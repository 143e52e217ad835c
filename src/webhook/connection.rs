//! One accepted connection: the TLS handshake, then HTTP/1.1 or HTTP/2, with the first-request
//! timeout, the idle timeout and keep-alive pings of HTTP/2, and the graceful shutdown.
//!
//! hyper closes an HTTP/1.1 keep-alive connection that stays idle through its header read timeout
//! (`--idle-timeout`); HTTP/2 has no such timeout in hyper, so each connection counts its
//! requests in flight and sends GOAWAY once it has had none for `--idle-timeout`, and pings the
//! client every quarter of it (at most every 30 s) to find peers that vanished.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::listener::ServerConfig;
use super::metrics::{Metrics, reason};

/// Longest interval between HTTP/2 keep-alive pings.
const MAX_PING_INTERVAL: Duration = Duration::from_secs(30);
/// Time a ping has to be answered before the connection is closed.
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Serves accepted TCP connections, counts them, and shuts them down gracefully.
pub(super) struct Connections {
    tls: Arc<ArcSwap<rustls::ServerConfig>>,
    builders: Arc<Builders>,
    service: TowerToHyperService<Router>,
    handshake_timeout: Duration,
    first_request_timeout: Duration,
    idle_timeout: Duration,
    slots: Arc<Semaphore>,
    max_connections: u32,
    shutdown: watch::Sender<bool>,
    metrics: Arc<Metrics>,
}

impl Connections {
    pub fn new(
        config: &ServerConfig,
        tls: Arc<ArcSwap<rustls::ServerConfig>>,
        webhook: Router,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // hyper applies the HTTP/1.1 header read timeout also while a keep-alive connection waits
        // for its next request, so it is the idle timeout here; the first request of a connection
        // has the shorter `header_read_timeout` (see `serve`).
        builder.http1().timer(TokioTimer::new()).header_read_timeout(config.idle_timeout).keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some((config.idle_timeout / 4).clamp(Duration::from_millis(100), MAX_PING_INTERVAL)))
            .keep_alive_timeout(PING_TIMEOUT);
        let builders =
            Builders { http1: builder.clone().http1_only(), http2: builder.clone().http2_only(), sniffing: builder };
        let max_connections = u32::try_from(config.max_connections.max(1)).unwrap_or(u32::MAX);
        Connections {
            tls,
            builders: Arc::new(builders),
            service: TowerToHyperService::new(webhook),
            handshake_timeout: config.tls_handshake_timeout,
            first_request_timeout: config.header_read_timeout,
            idle_timeout: config.idle_timeout,
            slots: Arc::new(Semaphore::new(max_connections as usize)),
            max_connections,
            shutdown: watch::channel(false).0,
            metrics,
        }
    }

    /// Connections open now (in their handshake or serving).
    pub fn open(&self) -> usize {
        self.max_connections as usize - self.slots.available_permits()
    }

    /// Tells every connection to finish (HTTP/1.1 closes after the response in flight, idle ones
    /// at once; HTTP/2 gets GOAWAY) and waits until all are closed, or until `deadline`. True
    /// when all closed.
    pub async fn shut_down(&self, deadline: Instant) -> bool {
        self.shutdown.send_replace(true);
        tokio::time::timeout_at(deadline, self.slots.acquire_many(self.max_connections)).await.is_ok()
    }

    /// Handles one connection on its own task.
    pub fn serve(&self, stream: tokio::net::TcpStream, peer: SocketAddr) {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            self.metrics.error(reason::CONNECTION_LIMIT);
            tracing::debug!(%peer, "too many connections: closed");
            return;
        };
        // The configuration at accept time: a reloaded client CA applies to new connections.
        let acceptor = TlsAcceptor::from(self.tls.load_full());
        let builders = self.builders.clone();
        let service = self.service.clone();
        let (handshake_timeout, first_request_timeout, idle_timeout) =
            (self.handshake_timeout, self.first_request_timeout, self.idle_timeout);
        let metrics = self.metrics.clone();
        let mut shutdown = self.shutdown.subscribe();
        tokio::spawn(async move {
            let _slot = slot;
            let opened = Instant::now();
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
            let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            let http2 = alpn.as_deref() == Some(b"h2");
            let builder = builders.for_alpn(alpn.as_deref());
            let activity = Arc::new(Activity::new(opened));
            let counted = {
                let activity = activity.clone();
                hyper::service::service_fn(move |request| {
                    let in_flight = InFlight::enter(activity.clone());
                    let call = hyper::service::Service::call(&service, request);
                    async move {
                        let _in_flight = in_flight;
                        call.await
                    }
                })
            };
            let connection = builder.serve_connection(TokioIo::new(stream), counted);
            tokio::pin!(connection);
            let mut closing = false;
            loop {
                // What to check next: the first request's arrival; then, on HTTP/2, idleness (while a
                // request is in flight, look again an idle timeout later). Only the first request
                // wakes this loop; later ones do not need an earlier check, since the check at its
                // time reads what they left in `activity`. (A wake-up per request cost a second
                // poll of the whole connection for every admission; BENCHMARKS.md.)
                let awaiting_first = !activity.requested();
                let check_at = if awaiting_first {
                    Some(opened + first_request_timeout)
                } else if http2 {
                    Some(
                        activity
                            .idle_since()
                            .map_or_else(|| Instant::now() + idle_timeout, |since| since + idle_timeout),
                    )
                } else {
                    None
                };
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                        return;
                    }
                    _ = shutdown.wait_for(|stop| *stop), if !closing => {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    () = activity.first_request.notified(), if !closing && awaiting_first => {}
                    () = tokio::time::sleep_until(check_at.unwrap_or(opened)), if !closing && check_at.is_some() => {
                        if !activity.requested() {
                            // Dropping the connection closes it.
                            metrics.error(reason::HEADER_TIMEOUT);
                            tracing::debug!(%peer, "no request headers within the header read timeout: closed");
                            return;
                        }
                        if activity.idle_since().is_some_and(|since| since.elapsed() >= idle_timeout) {
                            tracing::debug!(%peer, "HTTP/2 connection idle for the idle timeout: GOAWAY");
                            closing = true;
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
        });
    }
}

/// What a connection's requests are doing, for its timeouts.
struct Activity {
    opened: Instant,
    started: AtomicU64,
    in_flight: AtomicUsize,
    /// When the last request finished, in nanoseconds since `opened`.
    last_finished: AtomicU64,
    /// Wakes the connection's task when its first request starts.
    first_request: Notify,
}

impl Activity {
    fn new(opened: Instant) -> Self {
        Activity {
            opened,
            started: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            last_finished: AtomicU64::new(0),
            first_request: Notify::new(),
        }
    }

    /// True once a request's headers have arrived.
    fn requested(&self) -> bool {
        self.started.load(Ordering::Acquire) > 0
    }

    /// Since when no request has been in flight, or `None` while one is.
    fn idle_since(&self) -> Option<Instant> {
        (self.in_flight.load(Ordering::Acquire) == 0)
            .then(|| self.opened + Duration::from_nanos(self.last_finished.load(Ordering::Acquire)))
    }
}

/// One request in flight on a connection; finished when dropped (answered or abandoned).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(activity: Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        if activity.started.fetch_add(1, Ordering::AcqRel) == 0 {
            activity.first_request.notify_one();
        }
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let since_open = u64::try_from(self.0.opened.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.0.last_finished.fetch_max(since_open, Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
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
