//! Hostile and malformed input, end to end over HTTPS (issue 6): each case against the real server
//! on 127.0.0.1:0, checking the status (or a safe pass-through), the time to answer, and that the
//! server still serves a normal review afterwards. The memory and log checks run the real binary
//! as a child process and read its `VmRSS` from /proc.
//!
//! Times are printed (`cargo test --test server hostile -- --nocapture`); the assertions on them are
//! generous, since this machine is shared: the figures for the README come from the printout.

mod bodies;
mod connections;
mod process;

use std::net::SocketAddr;

use crate::support::*;
use hyper::StatusCode;
use serde_json::{Value, json};

/// A review of `object` (any JSON text) for a Pod CREATE.
fn review_of(object: &str) -> Vec<u8> {
    review_with("CREATE", object)
}

fn review_with(operation: &str, object: &str) -> Vec<u8> {
    format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"hostile-1",
        "kind":{{"group":"","version":"v1","kind":"Pod"}},"resource":{{"group":"","version":"v1","resource":"pods"}},
        "namespace":"ns","operation":"{operation}","object":{object}}}}}"#
    )
    .into_bytes()
}

/// A Pod with a main container and a Cloud SQL proxy, with `containers` replaced when given.
fn job_pod(containers: Option<&str>) -> String {
    let containers = containers.unwrap_or(
        r#"[{"name":"main","image":"app:1"},{"name":"proxy","image":"gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0"}]"#,
    );
    format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"p"}},"spec":{{"restartPolicy":"Never","containers":{containers}}}}}"#
    )
}

/// Sends one case on `client` and checks the answer. After a 413 the server closes the
/// connection, possibly before the client has written the whole body (the send then fails) and
/// possibly before the client has noticed (the next send would fail): the client is replaced by a
/// new connection from `connect` after every 413 and whenever the old one is closed.
async fn send_case<F, Fut>(client: &mut Connection, connect: F, what: &str, body: &[u8], expect: &Expect)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Connection>,
{
    match client.send(post_request("/mutate", "application/json", full(body.to_vec()))).await {
        Ok(reply) => check_reply(what, body, &reply, expect),
        Err(e) => assert!(matches!(expect, Expect::TooLarge), "{what}: {e}"),
    }
    if matches!(expect, Expect::TooLarge) || client.is_closed() {
        *client = connect().await;
    }
}

/// What a case must get.
#[derive(Debug)]
enum Expect {
    /// HTTP 400 with a JSON error.
    BadRequest,
    /// HTTP 413.
    TooLarge,
    /// HTTP 200, allowed, no patch (ignored, unchanged or skipped).
    PassThrough,
    /// HTTP 200, allowed, no patch, and a `podmedic skipped this object` warning.
    Skipped,
    /// HTTP 200, allowed, with a patch that applies to the object.
    Patched,
}

fn body_cases() -> Vec<(&'static str, Vec<u8>, Expect)> {
    let fixture_pod = fixture("pod-create-by-job-controller.json");
    let first_container = {
        let review: Value = serde_json::from_slice(&fixture_pod).unwrap();
        review["request"]["object"]["spec"]["containers"][0].clone()
    };
    // `podmedic_engine::object::MAX_CONTAINERS` in one list: read and patched; one more: skipped.
    let many = |n: usize| -> Vec<Value> {
        (0..n - 1)
            .map(|i| {
                let mut c = first_container.clone();
                c["name"] = json!(format!("c{i}"));
                c
            })
            .chain([json!({"name": "proxy", "image": "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0"})])
            .collect()
    };
    let thousand = many(podmedic_engine::object::MAX_CONTAINERS);
    let thousand_and_one = many(podmedic_engine::object::MAX_CONTAINERS + 1);
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let five_mb = "x".repeat(5 << 20);
    let mut invalid_utf8_uid = review_of(&job_pod(None));
    let at = invalid_utf8_uid.windows(9).position(|w| w == b"hostile-1").unwrap();
    invalid_utf8_uid[at] = 0xff;
    let mut invalid_utf8_object = review_of(&job_pod(None));
    let at = invalid_utf8_object.windows(6).position(|w| w == b"app:1\"").unwrap();
    invalid_utf8_object[at] = 0xfe;

    vec![
        ("empty body", Vec::new(), Expect::BadRequest),
        ("not JSON", b"<xml>podmedic</xml>".to_vec(), Expect::BadRequest),
        ("a JSON array", b"[{\"apiVersion\":\"admission.k8s.io/v1\"}]".to_vec(), Expect::BadRequest),
        ("a JSON number", b"1e999".to_vec(), Expect::BadRequest),
        (
            "request missing",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
            Expect::BadRequest,
        ),
        (
            "request null",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}"#.to_vec(),
            Expect::BadRequest,
        ),
        (
            "uid missing",
            String::from_utf8(review_of(&job_pod(None))).unwrap().replace(r#""uid":"hostile-1","#, "").into_bytes(),
            Expect::BadRequest,
        ),
        (
            "wrong apiVersion",
            String::from_utf8(review_of(&job_pod(None))).unwrap().replacen("admission.k8s.io/v1", "v1", 1).into_bytes(),
            Expect::BadRequest,
        ),
        (
            "wrong kind",
            String::from_utf8(review_of(&job_pod(None))).unwrap().replacen("AdmissionReview", "Pod", 1).into_bytes(),
            Expect::BadRequest,
        ),
        ("object null on CREATE", review_of("null"), Expect::PassThrough),
        ("object null on DELETE", review_with("DELETE", "null"), Expect::PassThrough),
        ("the API server's DELETE", fixture("pod-delete.json"), Expect::PassThrough),
        ("containers as an object", review_of(&job_pod(Some(r#"{"name":"main","image":"app:1"}"#))), Expect::Skipped),
        (
            "ports as strings",
            review_of(&job_pod(Some(
                r#"[{"name":"main","image":"app:1","ports":[{"containerPort":"80"}]},
                   {"name":"proxy","image":"gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0"}]"#,
            ))),
            Expect::Skipped,
        ),
        ("metadata as an array (fuzz finding)", fixture_regression("metadata-array.json"), Expect::Skipped),
        // Fields podmedic does not read are skipped without recursion: the Pod is still fixed.
        (
            "10,000-deep nesting in the object",
            review_of(&job_pod(None).replacen("{", &format!("{{\"x-deep\":{deep},"), 1)),
            Expect::Patched,
        ),
        ("10,000-deep nesting in the envelope", format!("{{\"x\":{deep}}}").into_bytes(), Expect::BadRequest),
        (
            "a 5 MB string",
            review_of(&job_pod(None).replacen(
                "\"name\":\"p\"",
                &format!("\"name\":\"p\",\"annotations\":{{\"big\":\"{five_mb}\"}}"),
                1,
            )),
            Expect::Patched,
        ),
        ("a body over the limit", vec![b' '; 8 << 20], Expect::TooLarge),
        ("invalid UTF-8 in the uid", invalid_utf8_uid, Expect::BadRequest),
        ("invalid UTF-8 in the object", invalid_utf8_object, Expect::BadRequest),
        (
            "a Pod with 1,000 containers",
            review_of(&job_pod(Some(&serde_json::to_string(&thousand).unwrap()))),
            Expect::Patched,
        ),
        (
            "a Pod with 1,001 containers",
            review_of(&job_pod(Some(&serde_json::to_string(&thousand_and_one).unwrap()))),
            Expect::Skipped,
        ),
        (
            "duplicate keys in the envelope",
            String::from_utf8(review_of(&job_pod(None))).unwrap().replacen("{", r#"{"request":null,"#, 1).into_bytes(),
            Expect::BadRequest,
        ),
        (
            "duplicate keys in the object",
            review_of(&job_pod(None).replacen("\"kind\":\"Pod\"", "\"kind\":\"Pod\",\"kind\":\"Pod\"", 1)),
            Expect::Skipped,
        ),
        ("a lone surrogate in a container name", review_of(&job_pod(Some(r#"[{"name":"\ud800"}]"#))), Expect::Skipped),
        (
            "a port out of every range",
            review_of(&job_pod(Some(r#"[{"name":"a","ports":[{"containerPort":1e400}]}]"#))),
            Expect::Skipped,
        ),
        ("CONNECT", review_with("CONNECT", &job_pod(None)), Expect::PassThrough),
        ("unknown operation", review_with("PATCH", &job_pod(None)), Expect::BadRequest),
    ]
}

fn fixture_regression(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/fuzz/regressions/admit/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn check_reply(what: &str, body: &[u8], reply: &Reply, expect: &Expect) {
    let status = reply.status;
    match expect {
        Expect::BadRequest => {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {}", reply.text());
            assert!(!reply.error().is_empty(), "{what}");
        }
        Expect::TooLarge => assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{what}"),
        Expect::PassThrough | Expect::Skipped | Expect::Patched => {
            let response = allowed_response(body, reply);
            let warnings: Vec<&str> =
                response["warnings"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            match expect {
                Expect::Patched => {
                    assert!(response.get("patch").is_some(), "{what}: no patch");
                    // (A body nested deeper than serde_json's recursion limit cannot be checked here.)
                    if serde_json::from_slice::<Value>(body).is_ok() {
                        patched_object(body, &response);
                    }
                }
                _ => assert!(response.get("patch").is_none(), "{what}: unexpected patch"),
            }
            if matches!(expect, Expect::Skipped) {
                assert!(warnings.iter().any(|w| w.starts_with("podmedic skipped this object")), "{what}: {warnings:?}");
            }
            assert!(warnings.iter().all(|w| w.len() < 120), "{what}: {warnings:?}");
        }
    }
}

/// The `response` of a 200 reply: allowed, with the request's uid. (The request is read leniently:
/// some cases nest deeper than serde_json's recursion limit, and their uid is `hostile-1`.)
fn allowed_response(body: &[u8], reply: &Reply) -> Value {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let review = reply.json();
    assert_eq!(review["kind"], "AdmissionReview");
    let uid = serde_json::from_slice::<Value>(body)
        .map(|r| r["request"]["uid"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_else(|_| "hostile-1".to_owned());
    let response = review["response"].clone();
    assert_eq!(response["uid"], uid.as_str());
    assert_eq!(response["allowed"], true);
    response
}

async fn a_normal_review_works(server_addr: SocketAddr, ca_pem: &str) {
    let request = fixture("pod-create-by-job-controller.json");
    let mut client = ClientBuilder::to(server_addr, ca_pem).connect().await.expect("connect after the case");
    let reply = client.review(request.clone()).await;
    let response = admission_response(&request, &reply);
    assert!(response.get("patch").is_some());
}
