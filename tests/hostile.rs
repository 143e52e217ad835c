//! Hostile and malformed input, end to end over HTTPS (issue 6): each case against the real server
//! on 127.0.0.1:0, checking the status (or a safe pass-through), the time to answer, and that the
//! server still serves a normal review afterwards. The memory and log checks run the real binary
//! as a child process and read its `VmRSS` from /proc.
//!
//! Times are printed (`cargo test --test hostile -- --nocapture`); the assertions on them are
//! generous, since this machine is shared: the figures for the README come from the printout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use hyper::body::{Bytes, Frame};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    let thousand: Vec<Value> = (0..1000)
        .map(|i| {
            let mut c = first_container.clone();
            c["name"] = json!(format!("c{i}"));
            c
        })
        .chain([json!({"name": "proxy", "image": "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0"})])
        .collect();
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

#[tokio::test]
async fn malformed_bodies_get_the_right_answer_quickly_and_the_server_keeps_serving() {
    let server = TestServer::start().await;
    let mut client = server.client().connect().await.unwrap();
    let mut times = Vec::new();
    for (what, body, expect) in body_cases() {
        let started = Instant::now();
        let reply = client.review(body.clone()).await;
        let elapsed = started.elapsed();
        check_reply(what, &body, &reply, &expect);
        times.push((what, body.len(), elapsed));
        // An error answer may close an HTTP/1.1 connection; the next case then takes a new one.
        if client.is_closed() {
            client = server.client().connect().await.unwrap();
        }
        a_normal_review_works(server.addr, &server.ca.cert_pem).await;
    }
    for (what, len, elapsed) in &times {
        println!("{:>9.1} ms  {len:>9} B  {what}", elapsed.as_secs_f64() * 1e3);
        // Generous: a debug build on a shared machine. The release figures are in the report.
        assert!(*elapsed < Duration::from_secs(5), "{what} took {elapsed:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Connection-level hostility.

fn tls_connector(ca_pem: &str) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Reads until the peer closes (or `limit` passes); returns what was read and whether it closed.
async fn read_until_closed<S: AsyncReadExt + Unpin>(stream: &mut S, limit: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

/// A slowloris: the request line and headers one byte a second. The header read timeout (2 s
/// here) cuts the connection long before the headers are complete.
#[tokio::test]
async fn a_client_sending_headers_one_byte_a_second_is_cut_off_by_the_header_timeout() {
    let server = TestServer::start_with(|c| c.header_read_timeout = Duration::from_secs(2)).await;
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut tls =
        tls_connector(&server.ca.cert_pem).connect(ServerName::IpAddress(server.addr.ip().into()), tcp).await.unwrap();
    let headers = b"POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n";
    let started = Instant::now();
    let mut sent = 0;
    for byte in headers {
        if tls.write_all(&[*byte]).await.is_err() || tls.flush().await.is_err() {
            break;
        }
        sent += 1;
        let (_, closed) = read_until_closed(&mut tls, Duration::from_secs(1)).await;
        if closed {
            break;
        }
    }
    let cut_after = started.elapsed();
    println!("slow headers: cut after {cut_after:?}, {sent} of {} bytes", headers.len());
    assert!(sent < headers.len(), "the whole header block was accepted");
    assert!(cut_after < Duration::from_secs(6), "cut after {cut_after:?}");
    a_normal_review_works(server.addr, &server.ca.cert_pem).await;
}

/// Hundreds of connections opened and abandoned in every state: before the ClientHello, in the
/// middle of it, after the handshake, in the middle of request headers and of a body.
#[tokio::test]
async fn hundreds_of_abandoned_connections_leave_the_server_serving() {
    let server = TestServer::start_with(|c| {
        c.tls_handshake_timeout = Duration::from_millis(500);
        c.header_read_timeout = Duration::from_millis(500);
    })
    .await;
    let connector = tls_connector(&server.ca.cert_pem);
    let mut abandoned = Vec::new();
    for i in 0..400 {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        match i % 4 {
            0 => abandoned.push(Box::new(tcp) as Box<dyn std::any::Any + Send>),
            1 => {
                tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]).await.unwrap();
                abandoned.push(Box::new(tcp));
            }
            2 => {
                let tls = connector.connect(ServerName::IpAddress(server.addr.ip().into()), tcp).await.unwrap();
                abandoned.push(Box::new(tls));
            }
            _ => {
                let mut tls = connector.connect(ServerName::IpAddress(server.addr.ip().into()), tcp).await.unwrap();
                tls.write_all(b"POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"api")
                    .await
                    .unwrap();
                abandoned.push(Box::new(tls));
            }
        }
    }
    // While they hang, the server answers quickly.
    let started = Instant::now();
    a_normal_review_works(server.addr, &server.ca.cert_pem).await;
    println!("a review with 400 abandoned connections open: {:?}", started.elapsed());
    drop(abandoned);
    tokio::time::sleep(Duration::from_millis(200)).await;
    a_normal_review_works(server.addr, &server.ca.cert_pem).await;
}

/// Random bytes instead of a ClientHello, and a plain-HTTP request on the TLS port: the server
/// closes the connection (with a TLS alert at most, never an HTTP answer) and keeps serving.
#[tokio::test]
async fn tls_garbage_and_plain_http_on_the_tls_port_are_closed() {
    let server = TestServer::start().await;
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let garbage: Vec<u8> = (0..4096)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng as u8
        })
        .collect();
    let plain_http = fixture("pod-create-by-job-controller.json");
    let plain_http = [
        format!(
            "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            plain_http.len()
        )
        .into_bytes(),
        plain_http,
    ]
    .concat();
    let tls_record_garbage = [&[0x16u8, 0x03, 0x03, 0x00, 0x10][..], &garbage[..16]].concat();
    for (what, bytes) in
        [("random bytes", garbage), ("plain HTTP", plain_http), ("a TLS record of garbage", tls_record_garbage)]
    {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        let started = Instant::now();
        let _ = tcp.write_all(&bytes).await;
        let (answer, closed) = read_until_closed(&mut tcp, Duration::from_secs(10)).await;
        println!("{what}: closed after {:?} with {} bytes back", started.elapsed(), answer.len());
        assert!(closed, "{what}: the connection stayed open");
        assert!(!answer.starts_with(b"HTTP/"), "{what}: answered in plain HTTP");
        assert!(answer.is_empty() || answer[0] == 0x15, "{what}: something other than a TLS alert: {answer:?}");
        a_normal_review_works(server.addr, &server.ca.cert_pem).await;
    }
}

/// A ClientHello offering only TLS 1.1 (rustls cannot speak 1.1, so the bytes are written by hand):
/// refused with a `protocol_version` alert, no handshake.
#[tokio::test]
async fn a_tls_1_1_client_is_refused() {
    let server = TestServer::start().await;
    let mut hello = vec![0x03, 0x02]; // client_version TLS 1.1
    hello.extend_from_slice(&[0x42; 32]); // random
    hello.push(0); // no session id
    hello.extend_from_slice(&[0x00, 0x06, 0xc0, 0x13, 0xc0, 0x14, 0x00, 0x2f]); // ECDHE-RSA-AES-SHA, AES128-SHA
    hello.extend_from_slice(&[0x01, 0x00]); // null compression
    let sni = b"localhost";
    let mut ext = vec![0x00, 0x00]; // server_name
    let list_len = sni.len() + 3;
    ext.extend_from_slice(&((list_len + 2) as u16).to_be_bytes());
    ext.extend_from_slice(&(list_len as u16).to_be_bytes());
    ext.push(0);
    ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    ext.extend_from_slice(sni);
    hello.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    hello.extend_from_slice(&ext);
    let mut handshake = vec![0x01];
    handshake.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x02];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);

    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(&record).await.unwrap();
    let (answer, closed) = read_until_closed(&mut tcp, Duration::from_secs(10)).await;
    assert!(closed, "the connection stayed open");
    // One alert record and nothing else (no ServerHello): type 21, version, length 2, level fatal
    // (2), then handshake_failure (40, what rustls sends when no version is shared) or
    // protocol_version (70).
    assert_eq!(answer.len(), 7, "not a single alert record: {answer:?}");
    assert_eq!(answer[0], 0x15, "not an alert: {answer:?}");
    assert!(answer[5] == 2 && matches!(answer[6], 40 | 70), "not a fatal version alert: {answer:?}");
    a_normal_review_works(server.addr, &server.ca.cert_pem).await;
}

/// An HTTP/2 client opening thousands of streams on one connection: requests whose bodies never
/// end, and requests cancelled right after they were sent (the "rapid reset" pattern). The server
/// bounds the work (streams per connection, --max-concurrency) and keeps answering others.
#[tokio::test]
async fn an_http2_stream_flood_does_not_stop_the_server() {
    let server = TestServer::start_with(|c| c.max_concurrency = 64).await;
    let request = fixture("pod-create-by-job-controller.json");
    let mut flood = server.client().http(Http::Two).connect().await.unwrap();

    // Bodies that never end: each holds a stream open.
    let mut hanging = Vec::new();
    for _ in 0..300 {
        let (mut tx, body) = streamed();
        let _ = tx.send(Frame::data(Bytes::from_static(b"{\"apiVersion\":"))).await;
        hanging.push(tx);
        let request = post_request("/mutate", "application/json", body);
        let fut = flood.send(request);
        // Give the request a moment to go out, then leave it pending (dropped = reset).
        let _ = tokio::time::timeout(Duration::from_millis(1), fut).await;
    }
    // Rapid reset: start and cancel.
    for _ in 0..2000 {
        let fut = flood.send(post_request("/mutate", "application/json", full(request.clone())));
        drop(tokio::time::timeout(Duration::from_micros(1), fut).await);
    }
    let started = Instant::now();
    a_normal_review_works(server.addr, &server.ca.cert_pem).await;
    println!("a review during an HTTP/2 flood: {:?}", started.elapsed());
    let mut h2 = server.client().http(Http::Two).connect().await.unwrap();
    admission_response(&request, &h2.review(request.clone()).await);
    drop(hanging);
    drop(flood);
}

// ---------------------------------------------------------------------------------------------
// The real binary: memory after hostile traffic, and what its logs contain.

/// The real binary serving a certificate from `tests/support`'s CA; stderr (JSON logs) is kept.
struct Podmedic {
    child: Child,
    addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
    ca_pem: String,
}

impl Podmedic {
    fn start(extra: &[&str]) -> Podmedic {
        let ca = TestCa::new("hostile CA");
        let pair = ca.server_pair("podmedic");
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert, &pair.cert_pem).unwrap();
        std::fs::write(&key, &pair.key_pem).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_podmedic"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--log-format", "json", "--log-level", "info"])
            .args(["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()])
            .args(["--header-read-timeout", "1s", "--tls-handshake-timeout", "1s"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start podmedic");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<SocketAddr>();
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let (kept, tx) = (logs.clone(), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Ok(event) = serde_json::from_str::<Value>(&line)
                        && event["message"].as_str().is_some_and(|m| m.contains("webhook"))
                        && let Some(addr) = event["addr"].as_str().and_then(|a| a.parse().ok())
                    {
                        let _ = tx.send(addr);
                    }
                    kept.lock().unwrap().push(line);
                }
            });
        }
        let addr = rx.recv_timeout(PATIENCE).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("podmedic did not start: {:?}", logs.lock().unwrap())
        });
        Podmedic { child, addr, logs, _dir: dir, ca_pem: ca.cert_pem }
    }

    /// A `kB` field of /proc/<pid>/status: `VmRSS` (resident now) or `VmHWM` (peak).
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    async fn reviews(&self, n: usize) {
        let request = fixture("pod-create-by-job-controller.json");
        let mut client = ClientBuilder::to(self.addr, &self.ca_pem).connect().await.unwrap();
        for _ in 0..n {
            admission_response(&request, &client.review(request.clone()).await);
        }
    }
}

impl Drop for Podmedic {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn memory_returns_near_its_level_after_hostile_traffic() {
    let podmedic = Podmedic::start(&[]);
    podmedic.reviews(300).await;
    let before = podmedic.status_kib("VmRSS");

    // Rounds of everything, so that a leak shows as growth round after round.
    let mut after_round = Vec::new();
    let mut peak_after_first = 0;
    for round in 0..3 {
        let mut client = ClientBuilder::to(podmedic.addr, &podmedic.ca_pem).connect().await.unwrap();
        for (what, body, expect) in body_cases() {
            match client.send(post_request("/mutate", "application/json", full(body.clone()))).await {
                Ok(reply) => check_reply(what, &body, &reply, &expect),
                // The 413 may come (and the connection close) before the client wrote the whole body.
                Err(e) => assert!(matches!(expect, Expect::TooLarge), "{what}: {e}"),
            }
            // podmedic closes the connection after a 413; the client may not have seen the close
            // yet when the next request goes out ("channel closed"), so do not wait to see it.
            if client.is_closed() || matches!(expect, Expect::TooLarge) {
                client = ClientBuilder::to(podmedic.addr, &podmedic.ca_pem).connect().await.unwrap();
            }
        }
        let mut abandoned = Vec::new();
        for _ in 0..300 {
            abandoned.push(TcpStream::connect(podmedic.addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(1500)).await; // past the handshake timeout
        drop(abandoned);
        podmedic.reviews(300).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        after_round.push(podmedic.status_kib("VmRSS"));
        if round == 0 {
            peak_after_first = podmedic.status_kib("VmHWM");
        }
    }
    let peak = podmedic.status_kib("VmHWM");
    println!(
        "VmRSS: before {before} KiB, after each round {after_round:?} KiB, peak {peak_after_first} KiB after round 1, {peak} KiB at the end"
    );
    // The 5 MB string and the 8 MiB body over the limit need memory while they are handled, and
    // glibc keeps freed memory in per-thread arenas: which worker handled the big bodies decides
    // whether ~10 MiB stays resident (observed: 32-43 MiB after a round, from 29 MiB). A leak
    // would instead raise the high-water mark round after round.
    let last = *after_round.last().unwrap();
    assert!(peak <= peak_after_first + 12 * 1024, "the peak grew after round 1: {peak_after_first} -> {peak} KiB");
    assert!(last <= before + 24 * 1024, "RSS {last} KiB after, {before} KiB before");
}

/// Env values, args and annotation values never reach the logs at info level: not for a Pod that
/// is patched, nor for one that is skipped because a field has the wrong type (serde's messages
/// quote the value they rejected).
#[tokio::test]
async fn info_logs_carry_no_env_values_or_object_content() {
    const SECRET: &str = "s3cr3t-Hunter2-do-not-log";
    let podmedic = Podmedic::start(&[]);
    let mut client = ClientBuilder::to(podmedic.addr, &podmedic.ca_pem).connect().await.unwrap();
    let patched = review_of(&job_pod(Some(&format!(
        r#"[{{"name":"main","image":"app:1","env":[{{"name":"DB_PASSWORD","value":"{SECRET}"}}],"args":["--token={SECRET}"]}},
           {{"name":"proxy","image":"gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0","env":[{{"name":"X","value":"{SECRET}"}}]}}]"#
    ))));
    let response = admission_response(&patched, &client.review(patched.clone()).await);
    assert!(response.get("patch").is_some());
    for wrong_type in [
        format!(r#"[{{"name":"main","env":"DB_PASSWORD={SECRET}"}}]"#),
        format!(r#"[{{"name":"main","env":[{{"name":"P","value":["{SECRET}"]}}]}}]"#),
        format!(r#"[{{"name":"main","args":"--password={SECRET}"}}]"#),
        format!(r#"[{{"name":"main","ports":[{{"containerPort":"{SECRET}"}}]}}]"#),
        format!(r#"[{{"name":"main","resources":{{"limits":{{"cpu":{{"v":"{SECRET}"}}}}}}}}]"#),
    ] {
        let body = review_of(&job_pod(Some(&wrong_type)));
        let response = admission_response(&body, &client.review(body.clone()).await);
        assert!(response.get("patch").is_none());
    }
    let annotated = review_of(&job_pod(None).replacen(
        "\"name\":\"p\"",
        &format!("\"name\":\"p\",\"annotations\":{{\"token\":\"{SECRET}\"}}"),
        1,
    ));
    admission_response(&annotated, &client.review(annotated.clone()).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = podmedic.logs.lock().unwrap().clone();
    assert!(logs.iter().any(|l| l.contains("\"admission\"")), "no admission log lines: {logs:?}");
    let leaked: Vec<&String> = logs.iter().filter(|l| l.contains(SECRET)).collect();
    assert!(leaked.is_empty(), "secret in the logs: {leaked:#?}");
}
