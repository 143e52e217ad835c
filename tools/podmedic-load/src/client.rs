//! The load generator: HTTPS/1.1 over rustls, open loop on a fixed timetable, closed loop for
//! maximum throughput.
//!
//! Open loop: a pacer thread releases request *i* at `start + i / rate` into a queue; whichever
//! connection is free takes it (like the API server's connection pool). Latency is measured from
//! the scheduled time, so a server that stalls is charged for every request that waited behind the
//! stall, not only for the one it was answering (coordinated omission). The pacer sleeps until
//! shortly before each release and then spins, so releases are accurate to a few microseconds
//! rather than the runtime timer's millisecond.
//!
//! HTTP/1.1 is written by hand: one fixed request, responses with Content-Length (what hyper sends
//! for a full body). Anything else is counted as an error.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Mutex, mpsc};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// What every request of a run shares.
#[derive(Clone)]
pub struct Client {
    connector: TlsConnector,
    addr: SocketAddr,
    keep_alive: Arc<Vec<u8>>,
    close: Arc<Vec<u8>>,
}

impl Client {
    /// A client for `addr` trusting `ca_pem`, sending `body` to `/mutate`.
    pub fn new(addr: SocketAddr, ca_pem: &str, body: &[u8]) -> anyhow::Result<Client> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert?)?;
        }
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
        // The API server speaks HTTP/1.1 to webhooks and does not resume TLS sessions: every new
        // connection is a full handshake.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.resumption = rustls::client::Resumption::disabled();
        let request = |connection: &str| {
            let mut r = format!(
                "POST /mutate?timeout=10s HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-apiserver-admission\r\n\
                 Content-Type: application/json\r\nAccept: application/json, */*\r\nContent-Length: {}\r\n{connection}\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(body);
            Arc::new(r)
        };
        Ok(Client {
            connector: TlsConnector::from(Arc::new(config)),
            addr,
            keep_alive: request(""),
            close: request("Connection: close\r\n"),
        })
    }

    /// Connects and completes the TLS handshake.
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        // Each closed connection holds its 4-tuple in TIME_WAIT for a minute; one handshake per
        // request at thousands per second would run out of ports on one source address, so the
        // source rotates over 127.0.0.2-127.0.0.251.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed) % 250;
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from(([127, 0, 0, 2 + u8::try_from(n).unwrap_or(0)], 0)))?;
        let tcp = socket.connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::IpAddress(self.addr.ip().into());
        let tls = self.connector.connect(name, tcp).await?;
        Ok(Connection { tls, buf: Vec::with_capacity(16 * 1024) })
    }

    /// One request on a new connection that is closed afterwards.
    pub async fn one_shot(&self) -> anyhow::Result<()> {
        let mut c = self.connect().await?;
        c.exchange(&self.close).await
    }
}

/// A TLS connection to the server.
pub struct Connection {
    tls: TlsStream<TcpStream>,
    buf: Vec<u8>,
}

impl Connection {
    /// Sends the keep-alive request and reads the response; errors on anything but 200.
    pub async fn request(&mut self, client: &Client) -> anyhow::Result<()> {
        self.exchange(&client.keep_alive).await
    }

    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<()> {
        self.tls.write_all(request).await?;
        self.buf.clear();
        let (header_end, content_length, status) = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end]).context("response head is not UTF-8")?;
                let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).context("no status")?;
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
                    })
                    .context("response without Content-Length")?;
                break (end + 4, length, status);
            }
            self.read_more().await?;
        };
        while self.buf.len() < header_end + content_length {
            self.read_more().await?;
        }
        if status != 200 {
            bail!("HTTP {status}");
        }
        Ok(())
    }

    async fn read_more(&mut self) -> anyhow::Result<()> {
        let len = self.buf.len();
        self.buf.resize(len + 16 * 1024, 0);
        let n = self.tls.read(&mut self.buf[len..]).await?;
        self.buf.truncate(len + n);
        if n == 0 {
            bail!("connection closed");
        }
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What a load step measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Latencies of the successful requests, sorted.
    pub latencies: Vec<Duration>,
    /// Failed or unanswered requests.
    pub errors: u64,
    /// Requests scheduled (open loop) or sent (closed loop).
    pub sent: u64,
    /// From the first scheduled request to the last answer.
    pub wall: Duration,
    /// CPU time the load generator used (to see when the client, not the server, is the limit).
    pub client_cpu: Duration,
    /// The first error, for the log.
    pub first_error: Option<String>,
}

/// The `q` quantile of `sorted` latencies (the nearest-rank method), or `None` when there are none.
pub fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

impl Outcome {
    /// Successful requests per second.
    pub fn achieved_rate(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0..=1) of the latencies, nearest rank.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        quantile(&self.latencies, q)
    }

    /// Fraction of the load generator's core it used.
    pub fn client_load(&self) -> f64 {
        self.client_cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }
}

/// How requests travel in an open-loop step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `n` keep-alive connections, opened (and used once) before the clock starts.
    KeepAlive(usize),
    /// A new connection and TLS handshake per request, at most `n` at a time.
    HandshakeEach(usize),
}

/// Requests at `rate` per second for `duration`, open loop; requests still unanswered `grace`
/// after the last release count as errors.
pub async fn open_loop(client: &Client, mode: Mode, rate: f64, duration: Duration, grace: Duration) -> Outcome {
    let total = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let (workers, keep_alive) = match mode {
        Mode::KeepAlive(n) => (n, true),
        Mode::HandshakeEach(n) => (n, false),
    };
    let mut connections = Vec::new();
    if keep_alive {
        for _ in 0..workers {
            if let Ok(mut c) = client.connect().await
                && c.request(client).await.is_ok()
            {
                connections.push(Some(c));
            }
        }
        if connections.is_empty() {
            return Outcome { errors: total, sent: total, wall: duration, ..Outcome::default() };
        }
    } else {
        connections.resize_with(workers, || None);
    }

    let (tx, rx) = mpsc::unbounded_channel::<Instant>();
    let queue = Arc::new(Mutex::new(rx));
    let errors = Arc::new(std::sync::Mutex::new(None::<String>));
    let cpu_before = crate::procs::own_cpu_time();
    let start = Instant::now() + Duration::from_millis(5);
    let period = Duration::from_secs_f64(1.0 / rate);
    let pacer = std::thread::spawn(move || {
        for i in 0..total {
            let due = start + period.mul_f64(i as f64);
            wait_until(due);
            if tx.send(due).is_err() {
                return;
            }
        }
    });

    let mut tasks = tokio::task::JoinSet::new();
    for connection in connections {
        let (queue, errors, client) = (queue.clone(), errors.clone(), client.clone());
        tasks.spawn(async move {
            let mut connection = connection;
            let mut latencies = Vec::with_capacity((total as usize / workers.max(1)) * 2 + 16);
            loop {
                let Some(due) = queue.lock().await.recv().await else { break };
                let result = if keep_alive {
                    match connection.as_mut() {
                        Some(c) => c.request(&client).await,
                        None => match client.connect().await {
                            Ok(mut c) => {
                                let r = c.request(&client).await;
                                connection = Some(c);
                                r
                            }
                            Err(e) => Err(e),
                        },
                    }
                } else {
                    client.one_shot().await
                };
                match result {
                    Ok(()) => latencies.push(due.elapsed()),
                    Err(e) => {
                        if let Ok(mut first) = errors.lock() {
                            first.get_or_insert_with(|| format!("{e:#}"));
                        }
                        // A broken keep-alive connection is replaced on the next request.
                        connection = None;
                    }
                }
            }
            latencies
        });
    }
    let deadline = start + duration + grace;
    let mut latencies = Vec::with_capacity(total as usize);
    let mut last = start;
    loop {
        match tokio::time::timeout_at(deadline.into(), tasks.join_next()).await {
            Ok(Some(Ok(mut l))) => latencies.append(&mut l),
            Ok(Some(Err(_))) => {}
            Ok(None) => break,
            Err(_) => {
                tasks.abort_all();
                break;
            }
        }
        last = Instant::now();
    }
    let _ = pacer.join();
    latencies.sort_unstable();
    let answered = latencies.len() as u64;
    Outcome {
        errors: total - answered,
        sent: total,
        wall: last.saturating_duration_since(start).max(duration),
        client_cpu: crate::procs::own_cpu_time().saturating_sub(cpu_before),
        latencies,
        first_error: errors.lock().ok().and_then(|mut e| e.take()),
    }
}

/// `connections` keep-alive connections sending back to back for `duration`.
pub async fn closed_loop(client: &Client, connections: usize, duration: Duration) -> Outcome {
    let mut opened = Vec::new();
    for _ in 0..connections {
        if let Ok(c) = client.connect().await {
            opened.push(c);
        }
    }
    let cpu_before = crate::procs::own_cpu_time();
    let start = Instant::now();
    let end = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for mut c in opened {
        let client = client.clone();
        tasks.spawn(async move {
            let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0u64, None::<String>);
            while Instant::now() < end {
                let sent = Instant::now();
                match tokio::time::timeout_at((end + Duration::from_secs(5)).into(), c.request(&client)).await {
                    Ok(Ok(())) => latencies.push(sent.elapsed()),
                    result => {
                        errors += 1;
                        first_error.get_or_insert_with(|| match result {
                            Ok(Err(e)) => format!("{e:#}"),
                            _ => "timed out".to_owned(),
                        });
                        match client.connect().await {
                            Ok(fresh) => c = fresh,
                            Err(_) => break,
                        }
                    }
                }
            }
            (latencies, errors, first_error)
        });
    }
    let mut out = Outcome::default();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((mut l, e, first)) = joined {
            out.latencies.append(&mut l);
            out.errors += e;
            out.first_error = out.first_error.or(first);
        }
    }
    out.wall = start.elapsed();
    out.client_cpu = crate::procs::own_cpu_time().saturating_sub(cpu_before);
    out.latencies.sort_unstable();
    out.sent = out.latencies.len() as u64 + out.errors;
    out
}

/// Polls until the server answers an admission (or `limit` passes); returns when it first did.
pub async fn wait_answering(client: &Client, limit: Duration) -> anyhow::Result<Instant> {
    let give_up = Instant::now() + limit;
    loop {
        match client.one_shot().await {
            Ok(()) => return Ok(Instant::now()),
            Err(e) if Instant::now() > give_up => bail!("no answer within {limit:?}: {e:#}"),
            // Nothing else runs meanwhile; a thread sleep polls finer than the runtime's 1 ms timer.
            Err(_) => std::thread::sleep(Duration::from_micros(200)),
        }
    }
}

/// Sleeps until shortly before `due`, then spins (yielding the core) until it.
fn wait_until(due: Instant) {
    const SPIN: Duration = Duration::from_micros(120);
    let now = Instant::now();
    if due > now + SPIN {
        std::thread::sleep(due - now - SPIN);
    }
    while Instant::now() < due {
        std::thread::yield_now();
    }
}
