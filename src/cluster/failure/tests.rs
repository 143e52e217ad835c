//! Real kube clients against loopback: nothing listening, and a stand-in that answers every request
//! with the Status kube-apiserver sends for 401, 403 and 500.

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::watcher;
use kube::{Api, Client, Config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

const NODES: &str = "list and watch on nodes";

fn client_for(addr: SocketAddr) -> Client {
    let url = format!("http://{addr}").parse().expect("url");
    Client::try_from(Config::new(url)).expect("a client")
}

/// An address where nothing listens: a port bound and released.
async fn nothing_listening() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

/// A stand-in API server on loopback that answers every request with `code` and `status_json`
/// (a `Status` as kube-apiserver writes it), then closes the connection.
async fn answering(code: u16, status_json: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 65_536 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 {code} Status\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{status_json}",
                    status_json.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

/// The first error the Node watch meets, as `watch_nodes` receives it.
async fn first_node_watch_error(client: Client) -> watcher::Error {
    let mut events = watcher(Api::<Node>::all(client), watcher::Config::default()).boxed();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), events.next()).await.expect("an event in time");
        if let Err(error) = event.expect("the watch goes on") {
            return error;
        }
    }
}

#[tokio::test]
async fn a_refused_connection_is_a_network_failure_and_does_not_send_users_to_rbac() {
    let error = first_node_watch_error(client_for(nothing_listening().await)).await;
    assert!(matches!(error, watcher::Error::InitialListFailed(_)), "{error}");
    let failure = ApiFailure::of_watch(&error);
    assert_eq!(failure.label(), "network", "{failure:?}");
    let ApiFailure::Unreachable { cause } = &failure else { unreachable!() };
    assert!(cause.to_lowercase().contains("connection refused"), "the cause is named: {cause}");
    let text = failure.explain(NODES);
    assert!(text.starts_with("cannot reach the API server: ") && text.contains("network path"), "{text}");
    assert!(!text.contains("RBAC") && !text.contains(NODES), "a network failure is not about permissions: {text}");

    // The API server's version (read beside the watches) fails the same way.
    let version = client_for(nothing_listening().await).apiserver_version().await.expect_err("refused");
    assert_eq!(ApiFailure::of_client(&version).label(), "network");
}

#[tokio::test]
async fn a_403_is_forbidden_and_names_the_permission_podmedic_lacks() {
    const FORBIDDEN: &str = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"nodes is forbidden: User \"system:serviceaccount:podmedic-system:podmedic\" cannot list resource \"nodes\" in API group \"\" at the cluster scope","reason":"Forbidden","details":{"kind":"nodes"},"code":403}"#;
    let error = first_node_watch_error(client_for(answering(403, FORBIDDEN).await)).await;
    let failure = ApiFailure::of_watch(&error);
    assert_eq!(failure.label(), "forbidden", "{failure:?}");
    let text = failure.explain(NODES);
    assert!(text.contains("RBAC") && text.contains(NODES), "{text}");
    assert!(text.contains(r#"cannot list resource "nodes""#), "the API server's words are kept: {text}");
}

#[tokio::test]
async fn a_401_is_about_credentials_not_rbac() {
    const UNAUTHORIZED: &str = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#;
    let error = first_node_watch_error(client_for(answering(401, UNAUTHORIZED).await)).await;
    let failure = ApiFailure::of_watch(&error);
    assert_eq!(failure.label(), "unauthorized", "{failure:?}");
    let text = failure.explain(NODES);
    assert!(text.contains("credentials") && !text.contains("RBAC"), "{text}");
}

#[tokio::test]
async fn another_error_status_keeps_its_code_and_message() {
    // 500, which kube's client does not retry (429, 503 and 504 it retries with backoff first).
    const INTERNAL: &str = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Internal error occurred: etcdserver: request timed out","reason":"InternalError","details":{"causes":[{"message":"etcdserver: request timed out"}]},"code":500}"#;
    let client = client_for(answering(500, INTERNAL).await);
    let error = Api::<Node>::all(client).list(&Default::default()).await.expect_err("500");
    let failure = ApiFailure::of_client(&error);
    assert_eq!(
        failure,
        ApiFailure::Status { code: 500, message: "Internal error occurred: etcdserver: request timed out".into() }
    );
    assert_eq!(failure.label(), "api");
    assert!(!failure.explain(NODES).contains("RBAC"));
}

#[test]
fn a_timeout_names_itself_even_when_its_message_does_not() {
    // hyper-timeout reports a connect timeout as an io::Error of kind TimedOut around tokio's
    // `Elapsed`, whose message is only "deadline has elapsed".
    let timeout = std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline has elapsed");
    let failure = ApiFailure::of_client(&kube::Error::Service(Box::new(timeout)));
    assert_eq!(failure, ApiFailure::Unreachable { cause: "timed out: deadline has elapsed".into() });
    let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    let failure = ApiFailure::of_client(&kube::Error::Service(Box::new(refused)));
    assert_eq!(failure, ApiFailure::Unreachable { cause: "connection refused".into() }, "said once");
}
