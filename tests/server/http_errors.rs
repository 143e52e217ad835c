//! What podmedic answers to requests that are not AdmissionReviews, or too big, too slow, too many.
//! Every error is JSON `{"error": "..."}` saying what is wrong.

use std::time::Duration;

use crate::support::*;
use hyper::Request;
use hyper::StatusCode;
use hyper::body::{Bytes, Frame};

/// A review with `request` replaced by `request` (raw JSON text).
fn review_with_request(request: &str) -> Vec<u8> {
    format!(r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{request}}}"#).into_bytes()
}

const GOOD_REQUEST: &str = r#"{"uid":"u-1","kind":{"group":"","version":"v1","kind":"Pod"},
    "resource":{"group":"","version":"v1","resource":"pods"},"namespace":"ns","operation":"CREATE",
    "object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"a"}]}}}"#;

#[tokio::test]
async fn bodies_that_are_not_admission_reviews_get_400_saying_why() {
    let fixture_body = fixture("pod-create-by-job-controller.json");
    let mut invalid_utf8 =
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe]);
    invalid_utf8.extend_from_slice(br#""}}"#);
    let deep = format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u","object":{}{}}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty body", Vec::new(), "empty"),
        ("whitespace only", b"  \n ".to_vec(), "empty"),
        ("not JSON", b"hello".to_vec(), "not a valid AdmissionReview"),
        ("YAML", b"apiVersion: admission.k8s.io/v1\nkind: AdmissionReview\n".to_vec(), "not a valid AdmissionReview"),
        ("JSON null", b"null".to_vec(), "AdmissionReview"),
        ("JSON string", br#""AdmissionReview""#.to_vec(), "AdmissionReview"),
        ("JSON array", b"[]".to_vec(), "AdmissionReview"),
        ("no apiVersion or kind", br#"{"request":{}}"#.to_vec(), "AdmissionReview"),
        ("missing request", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(), "request"),
        (
            "wrong apiVersion",
            String::from_utf8(review_with_request(GOOD_REQUEST))
                .unwrap()
                .replace("admission.k8s.io/v1", "admission.k8s.io/v1beta1")
                .into_bytes(),
            "v1beta1",
        ),
        (
            "wrong kind",
            String::from_utf8(review_with_request(GOOD_REQUEST))
                .unwrap()
                .replace("AdmissionReview", "ConversionReview")
                .into_bytes(),
            "ConversionReview",
        ),
        ("missing uid", review_with_request(&GOOD_REQUEST.replace(r#""uid":"u-1","#, "")), "uid"),
        ("uid of the wrong type", review_with_request(&GOOD_REQUEST.replace(r#""uid":"u-1""#, r#""uid":42"#)), "uid"),
        (
            "kind of the wrong type",
            review_with_request(
                &GOOD_REQUEST.replace(r#""kind":{"group":"","version":"v1","kind":"Pod"}"#, r#""kind":"Pod""#),
            ),
            "kind",
        ),
        ("unknown operation", review_with_request(&GOOD_REQUEST.replace("CREATE", "PATCH")), "operation"),
        ("invalid UTF-8", invalid_utf8, "not a valid AdmissionReview"),
        ("truncated JSON", fixture_body[..fixture_body.len() / 2].to_vec(), "not a valid AdmissionReview"),
        (
            "trailing garbage",
            [review_with_request(GOOD_REQUEST), b"}{".to_vec()].concat(),
            "not a valid AdmissionReview",
        ),
        ("deep nesting", deep.into_bytes(), "not a valid AdmissionReview"),
    ];
    let server = TestServer::start().await;
    let mut client = server.client().connect().await.unwrap();
    for (what, body, expected) in cases {
        let reply = client.review(body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{what}: {}", reply.text());
        assert_eq!(reply.headers["content-type"], "application/json", "{what}");
        let error = reply.error();
        assert!(error.contains(expected), "{what}: {error:?} does not mention {expected:?}");
    }
    // The connection survives every one of them.
    let request = fixture("pod-delete.json");
    admission_response(&request, &client.review(request.clone()).await);
    let metrics = server.get_plain("/metrics").await.text();
    assert!(metrics.contains(r#"podmedic_errors_total{reason="decode"}"#), "{metrics}");
    assert!(metrics.contains(r#"podmedic_errors_total{reason="wrong_type"}"#), "{metrics}");
}

#[tokio::test]
async fn a_body_that_is_not_json_by_content_type_gets_415() {
    let server = TestServer::start().await;
    let mut client = server.client().connect().await.unwrap();
    let body = fixture("pod-delete.json");
    for content_type in ["text/plain", "application/yaml", "application/json-patch+json", ""] {
        let reply = client.send(post_request("/mutate", content_type, full(body.clone()))).await.unwrap();
        assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type:?}");
        assert!(reply.error().contains("application/json"));
    }
    let no_type = Request::post("/mutate").header("host", "localhost").body(full(body.clone())).unwrap();
    assert_eq!(client.send(no_type).await.unwrap().status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Parameters are fine.
    let reply = client.send(post_request("/mutate", "application/json; charset=utf-8", full(body))).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(
        server
            .get_plain("/metrics")
            .await
            .text()
            .contains(r#"podmedic_errors_total{reason="unsupported_media_type"} 5"#)
    );
}

#[tokio::test]
async fn other_methods_get_405() {
    let server = TestServer::start().await;
    let mut client = server.client().connect().await.unwrap();
    for method in ["GET", "PUT", "DELETE"] {
        let request =
            Request::builder().method(method).uri("/mutate").header("host", "localhost").body(empty()).unwrap();
        let reply = client.send(request).await.unwrap();
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(reply.headers["allow"], "POST");
    }
}

#[tokio::test]
async fn a_body_over_the_limit_by_content_length_gets_413_at_once() {
    let server = TestServer::start_with(|c| c.max_body_bytes = 1024).await;
    let mut client = server.client().connect().await.unwrap();

    let reply = client.review(vec![b' '; 2048]).await;

    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(reply.error().contains("1024"), "{}", reply.error());
    assert!(
        server.get_plain("/metrics").await.text().contains(r#"podmedic_errors_total{reason="payload_too_large"} 1"#)
    );
}

/// A chunked body has no length to check up front: podmedic reads up to the limit and stops. The
/// client here would send 640 MiB; the 413 comes after the first KiB.
#[tokio::test]
async fn a_chunked_body_over_the_limit_gets_413_without_being_read_to_the_end() {
    let server = TestServer::start_with(|c| c.max_body_bytes = 1024).await;
    let mut client = server.client().connect().await.unwrap();
    let (mut tx, body) = streamed();
    let sending = tokio::spawn(async move {
        let chunk = Bytes::from(vec![b' '; 64 * 1024]);
        let mut sent = 0usize;
        for _ in 0..10_000 {
            if tx.send(Frame::data(chunk.clone())).await.is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });

    let reply = client.send(post_request("/mutate", "application/json", body)).await.unwrap();

    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let sent = tokio::time::timeout(PATIENCE, sending).await.expect("the sender stops").unwrap();
    assert!(sent < 10_000, "the whole body was read");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_gets_408() {
    let server = TestServer::start_with(|c| c.request_timeout = Duration::from_millis(300)).await;
    let mut client = server.client().connect().await.unwrap();
    let (mut tx, body) = streamed();
    tx.send(Frame::data(Bytes::from_static(b"{\"apiVersion\":"))).await.unwrap();

    let reply = client.send(post_request("/mutate", "application/json", body)).await.unwrap();

    assert_eq!(reply.status, StatusCode::REQUEST_TIMEOUT);
    drop(tx);
}

/// A client that connects and never sends its request headers is disconnected.
#[tokio::test]
async fn a_client_that_sends_no_headers_is_disconnected() {
    let server = TestServer::start_with(|c| c.header_read_timeout = Duration::from_millis(300)).await;
    let client = server.client().connect().await.unwrap();
    client.closed().await;
}

/// With every slot taken, the next request is refused at once with 503 instead of waiting.
#[tokio::test]
async fn excess_requests_are_shed_with_503() {
    let server = TestServer::start_with(|c| c.max_concurrency = 1).await;
    let mut slow = server.client().connect().await.unwrap();
    let (mut tx, body) = streamed();
    let in_flight = tokio::spawn(async move { slow.send(post_request("/mutate", "application/json", body)).await });
    let request = fixture("pod-delete.json");
    tx.send(Frame::data(Bytes::from(request[..10].to_vec()))).await.unwrap();

    // The slow request holds the only slot once the server has its headers.
    let mut other = server.client().connect().await.unwrap();
    let mut shed = None;
    for _ in 0..200 {
        let reply = other.review(request.clone()).await;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            shed = Some(reply);
            break;
        }
        assert_eq!(reply.status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shed = shed.expect("no request was shed");
    assert!(shed.error().contains("overloaded"));

    tx.send(Frame::data(Bytes::from(request[10..].to_vec()))).await.unwrap();
    drop(tx);
    let reply = tokio::time::timeout(PATIENCE, in_flight).await.unwrap().unwrap().unwrap();
    admission_response(&request, &reply);
    assert!(server.get_plain("/metrics").await.text().contains(r#"podmedic_errors_total{reason="overloaded"}"#));
}

/// An idle keep-alive connection outlives the (short) header read timeout: the API server's Go
/// client keeps idle connections for 90 s and must be the side that closes them.
#[tokio::test]
async fn idle_keep_alive_connections_stay_open_past_the_header_timeout() {
    let server = TestServer::start_with(|c| c.header_read_timeout = Duration::from_millis(200)).await;
    let mut client = server.client().connect().await.unwrap();
    assert_eq!(client.review(fixture("pod-delete.json")).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!client.is_closed(), "an idle connection must not be closed by the header timeout");
    assert_eq!(client.review(fixture("pod-delete.json")).await.status, StatusCode::OK);
}

/// The idle timeout does close keep-alive connections that stay unused.
#[tokio::test]
async fn idle_keep_alive_connections_close_after_the_idle_timeout() {
    let server = TestServer::start_with(|c| c.idle_timeout = Duration::from_millis(300)).await;
    let mut client = server.client().connect().await.unwrap();
    assert_eq!(client.review(fixture("pod-delete.json")).await.status, StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(5), client.closed()).await.expect("closed after the idle timeout");
}

/// Connections beyond --max-connections are closed at once; the others keep working.
#[tokio::test]
async fn connections_beyond_the_limit_are_refused() {
    let server = TestServer::start_with(|c| c.max_connections = 2).await;
    let mut first = server.client().connect().await.unwrap();
    let _second = server.client().connect().await.unwrap();
    assert!(server.client().connect().await.is_err(), "the third connection is refused");
    assert_eq!(first.review(fixture("pod-delete.json")).await.status, StatusCode::OK);
    drop(first);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = server.client().connect().await.unwrap();
    assert_eq!(again.review(fixture("pod-delete.json")).await.status, StatusCode::OK);
}
