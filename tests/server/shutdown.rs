//! Graceful shutdown: on SIGTERM podmedic turns unready, stops accepting, finishes the requests
//! in flight, closes idle connections and exits 0 within the shutdown timeout.

use std::time::Duration;

use crate::support::process::ServeProcess;
use crate::support::*;
use hyper::StatusCode;
use hyper::body::{Bytes, Frame};

#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish_then_exits_0() {
    // The body's second half arrives after the signal: the deadline must not run out first.
    let mut podmedic = ServeProcess::start(&["--shutdown-timeout", "15s", "--admission-deadline", "10s"]);
    let ca_pem = podmedic.ca_pem().to_owned();
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
    let mut podmedic = ServeProcess::start(&[]);
    // An idle keep-alive connection must not hold the exit up.
    let ca_pem = podmedic.ca_pem().to_owned();
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
