//! Graceful shutdown: on SIGTERM podmedic turns unready, stops accepting, finishes the requests
//! in flight, closes idle connections and exits 0 within the shutdown timeout.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use hyper::body::{Bytes, Frame};
use hyper::{Request, StatusCode};
use support::*;

/// The real binary, started with `args` after `serve`; stderr (JSON logs) is read on a thread.
struct Podmedic {
    child: Child,
    addr: SocketAddr,
    metrics_addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Podmedic {
    fn start(args: &[&str]) -> Podmedic {
        let mut child = Command::new(env!("CARGO_BIN_EXE_podmedic"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--log-format", "json", "--log-level", "info"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start podmedic");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<(String, SocketAddr)>();
        let kept = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
                    let message = event["message"].as_str().unwrap_or_default().to_owned();
                    if let Some(addr) = event["addr"].as_str().and_then(|a| a.parse().ok()) {
                        let _ = tx.send((message, addr));
                    }
                }
                kept.lock().expect("logs").push(line);
            }
        });
        let (mut addr, mut metrics_addr) = (None, None);
        while addr.is_none() || metrics_addr.is_none() {
            let (message, at) = rx.recv_timeout(PATIENCE).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("podmedic did not start: {:?}", logs.lock().expect("logs"))
            });
            if message.contains("webhook") {
                addr = Some(at);
            } else if message.contains("metrics") {
                metrics_addr = Some(at);
            }
        }
        Podmedic { child, addr: addr.expect("addr"), metrics_addr: metrics_addr.expect("addr"), logs }
    }

    fn sigterm(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit; panics after `limit`.
    async fn exited(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "podmedic did not exit: {:?}",
                self.logs.lock().expect("logs")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn readyz(&self) -> Option<StatusCode> {
        let stream = tokio::net::TcpStream::connect(self.metrics_addr).await.ok()?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.ok()?;
        tokio::spawn(conn);
        let request = Request::get("/readyz").header("host", "localhost").body(empty()).ok()?;
        sender.send_request(request).await.ok().map(|r| r.status())
    }
}

impl Drop for Podmedic {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls until `check` is true; panics after [`PATIENCE`].
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish_then_exits_0() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = temp_path(&dir, "ca.crt");
    let mut podmedic =
        Podmedic::start(&["--ephemeral-ca-file", ca_file.to_str().expect("path"), "--shutdown-timeout", "15s"]);
    let ca_pem = std::fs::read_to_string(&ca_file).expect("the ephemeral CA was written");
    assert_eq!(podmedic.readyz().await, Some(StatusCode::OK));

    // Headers and half of the body are sent before the signal.
    let request = fixture("pod-create-by-job-controller.json");
    let (head, tail) = request.split_at(request.len() / 2);
    let mut connection = ClientBuilder::to(podmedic.addr, &ca_pem).connect().await.expect("connect");
    let (mut body, streamed_body) = streamed();
    body.send(Frame::data(Bytes::from(head.to_vec()))).await.expect("send the head");
    let in_flight =
        tokio::spawn(async move { connection.send(post_request("/mutate", "application/json", streamed_body)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;

    podmedic.sigterm();

    // Not ready any more, and no new connections, while the request is still open.
    eventually("/readyz is 503", || async { podmedic.readyz().await == Some(StatusCode::SERVICE_UNAVAILABLE) }).await;
    eventually("the listener is closed", || async { tokio::net::TcpStream::connect(podmedic.addr).await.is_err() })
        .await;
    assert!(!in_flight.is_finished());

    body.send(Frame::data(Bytes::from(tail.to_vec()))).await.expect("send the tail");
    drop(body);
    let reply = tokio::time::timeout(PATIENCE, in_flight).await.expect("a reply").expect("join").expect("the request");
    let response = admission_response(&request, &reply);
    assert!(response.get("patch").is_some());

    let status = podmedic.exited(PATIENCE).await;
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn sigterm_with_nothing_in_flight_exits_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = temp_path(&dir, "ca.crt");
    let mut podmedic = Podmedic::start(&["--ephemeral-ca-file", ca_file.to_str().expect("path")]);
    // An idle keep-alive connection must not hold the exit up.
    let ca_pem = std::fs::read_to_string(&ca_file).expect("CA");
    let mut idle = ClientBuilder::to(podmedic.addr, &ca_pem).connect().await.expect("connect");
    let request = fixture("pod-delete.json");
    admission_response(&request, &idle.review(request.clone()).await);

    podmedic.sigterm();

    let status = podmedic.exited(PATIENCE).await;
    assert!(status.success(), "exit status {status}");
    idle.closed().await;
}

/// During --shutdown-delay the server is unready but still serves, so that requests routed to it
/// before the endpoints update are answered; then idle HTTP/1.1 and HTTP/2 connections are closed
/// and the server stops long before the shutdown timeout.
#[tokio::test]
async fn readyz_turns_503_at_shutdown_while_requests_are_still_served_during_the_delay() {
    let mut server = TestServer::start_with(|c| {
        c.shutdown_delay = Duration::from_secs(1);
        c.shutdown_timeout = Duration::from_secs(120);
    })
    .await;
    let mut h1 = server.client().http(Http::One).connect().await.expect("connect");
    let mut h2 = server.client().http(Http::Two).connect().await.expect("connect");
    let request = fixture("pod-delete.json");
    assert_eq!(server.get_plain("/readyz").await.status, StatusCode::OK);

    server.begin_shutdown();

    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let reply = server.get_plain("/readyz").await;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(reply.text().contains("shutting down"), "{}", reply.text());
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "/readyz stayed 200");
    }
    assert!(server.readiness.is_shutting_down());
    admission_response(&request, &h1.review(request.clone()).await);
    admission_response(&request, &h2.review(request.clone()).await);

    server.stopped().await;
    h1.closed().await;
    h2.closed().await;
}

/// A request that never completes is dropped when the shutdown timeout runs out.
#[tokio::test]
async fn the_shutdown_timeout_bounds_the_wait_for_requests_in_flight() {
    let mut server = TestServer::start_with(|c| {
        c.shutdown_timeout = Duration::from_millis(500);
        c.request_timeout = Duration::from_secs(600);
    })
    .await;
    let mut connection = server.client().connect().await.expect("connect");
    let (mut body, streamed_body) = streamed();
    body.send(Frame::data(Bytes::from_static(b"{"))).await.expect("send");
    let stuck =
        tokio::spawn(async move { connection.send(post_request("/mutate", "application/json", streamed_body)).await });
    tokio::time::sleep(Duration::from_millis(200)).await;

    server.begin_shutdown();

    server.stopped().await;
    drop(body);
    drop(stuck);
}
