//! Connection-level hostility: slow headers, abandoned connections, TLS garbage, old TLS, HTTP/2 floods.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::support::*;
use hyper::body::{Bytes, Frame};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
