//! TLS as the API server sees it: certificate rotation through a kubelet-mounted Secret, HTTP/2 and
//! HTTP/1.1 keep-alive, client certificates, TLS 1.2 and 1.3, RSA and ECDSA keys.

use std::time::Duration;

use crate::support::*;
use podmedic::webhook::{CertificateSource, Server};
use rustls::ProtocolVersion;
use rustls::pki_types::CertificateDer;

/// Opens new connections until one presents `expected`; panics after [`PATIENCE`].
async fn wait_for_certificate(server: &TestServer, expected: &CertificateDer<'_>) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let connection = server.client().connect().await.expect("connect");
        if &connection.peer_certificate == expected {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the new certificate was never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `/metrics` until it contains `line`; panics after [`PATIENCE`].
async fn wait_for_metric(server: &TestServer, line: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !server.get_plain("/metrics").await.text().contains(line) {
        assert!(tokio::time::Instant::now() < deadline, "never saw {line}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn works(connection: &mut Connection) {
    let request = fixture("pod-create-by-job-controller.json");
    let response = admission_response(&request, &connection.review(request.clone()).await);
    assert!(response.get("patch").is_some());
}

#[tokio::test]
async fn a_secret_updated_by_the_kubelet_is_served_without_a_restart() {
    let mut server = TestServer::start().await;
    let mut before = server.client().connect().await.unwrap();
    assert_eq!(before.peer_certificate, leaf_der(&server.pair.cert_pem));

    // The expiry of the certificate served is exported, and follows the rotation.
    let expiry = |pem: &str| {
        let (_, der) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let not_after = der.parse_x509().unwrap().validity().not_after.timestamp();
        format!("podmedic_tls_certificate_expiry_timestamp_seconds {not_after}\n")
    };
    let first = expiry(&server.pair.cert_pem);
    assert!(server.get_plain("/metrics").await.text().contains(&first), "{first}");

    let renewed = server.ca.server_pair_until("podmedic v2", (2031, 3, 1));
    server.mount.update(&renewed);

    wait_for_certificate(&server, &leaf_der(&renewed.cert_pem)).await;
    wait_for_metric(&server, r#"podmedic_tls_reloads_total{result="success"} 1"#).await;
    let second = expiry(&renewed.cert_pem);
    assert_ne!(first, second);
    assert_eq!(second, "podmedic_tls_certificate_expiry_timestamp_seconds 1930089600\n");
    assert!(server.get_plain("/metrics").await.text().contains(&second));
    // A connection made before the rotation keeps working.
    works(&mut before).await;
    works(&mut server.client().connect().await.unwrap()).await;
}

#[tokio::test]
async fn a_bad_new_pair_keeps_the_old_certificate() {
    let mut server = TestServer::start().await;
    let served = leaf_der(&server.pair.cert_pem);
    let (a, b) = (server.ca.server_pair("a"), server.ca.server_pair("b"));

    // A certificate with another certificate's key.
    server.mount.update(&Pair { cert_pem: a.cert_pem.clone(), key_pem: b.key_pem.clone() });
    wait_for_metric(&server, r#"podmedic_tls_reloads_total{result="error"} 1"#).await;
    assert_eq!(server.client().connect().await.unwrap().peer_certificate, served);

    // Not PEM at all.
    server.mount.update(&Pair { cert_pem: "garbage".into(), key_pem: a.key_pem.clone() });
    wait_for_metric(&server, r#"podmedic_tls_reloads_total{result="error"} 2"#).await;
    let mut connection = server.client().connect().await.unwrap();
    assert_eq!(connection.peer_certificate, served);
    works(&mut connection).await;

    // A good pair after the bad ones is taken.
    server.mount.update(&a);
    wait_for_certificate(&server, &leaf_der(&a.cert_pem)).await;
}

#[tokio::test]
async fn http2_is_negotiated_through_alpn() {
    let server = TestServer::start().await;
    let mut connection = server.client().http(Http::Two).connect().await.unwrap();
    assert_eq!(connection.alpn.as_deref(), Some("h2"));
    for _ in 0..3 {
        works(&mut connection).await;
    }
}

#[tokio::test]
async fn http1_keep_alive_reuses_the_connection() {
    let server = TestServer::start().await;
    let mut connection = server.client().http(Http::One).connect().await.unwrap();
    assert_eq!(connection.alpn.as_deref(), Some("http/1.1"));
    for _ in 0..5 {
        works(&mut connection).await;
        assert!(!connection.is_closed());
    }
}

#[tokio::test]
async fn tls_1_2_and_1_3_clients_both_work() {
    let server = TestServer::start().await;
    for (versions, expected) in [
        (vec![&rustls::version::TLS12], ProtocolVersion::TLSv1_2),
        (vec![&rustls::version::TLS13], ProtocolVersion::TLSv1_3),
        (vec![&rustls::version::TLS13, &rustls::version::TLS12], ProtocolVersion::TLSv1_3),
    ] {
        for http in [Http::One, Http::Two] {
            let mut connection = server.client().tls_versions(&versions).http(http).connect().await.unwrap();
            assert_eq!(connection.tls_version, expected);
            works(&mut connection).await;
        }
    }
}

#[tokio::test]
async fn an_rsa_key_works_and_can_replace_an_ecdsa_one() {
    let ca = TestCa::new("podmedic test CA");
    let rsa = ca.server_pair_for_key(&openssl_rsa_key(), "podmedic rsa");
    let mut server = TestServer::start_serving(ca, rsa.clone(), |_| {}).await;
    for versions in [vec![&rustls::version::TLS12], vec![&rustls::version::TLS13]] {
        let mut connection = server.client().tls_versions(&versions).connect().await.unwrap();
        assert_eq!(connection.peer_certificate, leaf_der(&rsa.cert_pem));
        works(&mut connection).await;
    }
    // Rotation between key types.
    let ecdsa = server.ca.server_pair("podmedic ecdsa");
    server.mount.update(&ecdsa);
    wait_for_certificate(&server, &leaf_der(&ecdsa.cert_pem)).await;
}

/// Writes the client CA where the server can read it.
fn client_ca_file(dir: &tempfile::TempDir, ca: &TestCa) -> std::path::PathBuf {
    let path = temp_path(dir, "client-ca.crt");
    std::fs::write(&path, &ca.cert_pem).expect("write the client CA");
    path
}

/// With TLS 1.3 the server checks the client certificate after the client has finished its side
/// of the handshake, so a refusal may show on the first request rather than on connect.
async fn refused(builder: ClientBuilder) -> bool {
    match builder.connect().await {
        Err(_) => true,
        Ok(mut connection) => {
            let request = fixture("pod-delete.json");
            connection.send(post_request("/mutate", "application/json", full(request))).await.is_err()
        }
    }
}

#[tokio::test]
async fn with_a_client_ca_only_clients_with_a_certificate_from_it_get_in() {
    let dir = tempfile::tempdir().unwrap();
    let client_ca = TestCa::new("API server client CA");
    let ca_file = client_ca_file(&dir, &client_ca);
    let server = TestServer::start_with(|c| c.client_ca = Some(ca_file)).await;

    for versions in [vec![&rustls::version::TLS12], vec![&rustls::version::TLS13]] {
        assert!(refused(server.client().tls_versions(&versions)).await, "no client certificate was accepted");
        let stranger = TestCa::new("someone else").client_pair("kube-apiserver");
        assert!(
            refused(server.client().tls_versions(&versions).identity(stranger)).await,
            "a client certificate from another CA was accepted"
        );
        let apiserver = client_ca.client_pair("kube-apiserver");
        let mut connection = server.client().tls_versions(&versions).identity(apiserver).connect().await.unwrap();
        works(&mut connection).await;
    }
    let metrics = server.get_plain("/metrics").await.text();
    assert!(metrics.contains(r#"podmedic_errors_total{reason="tls_handshake"}"#), "{metrics}");
}

/// The API server's client CA is rotated: after the next reload the new CA's clients get in and the
/// old CA's do not, without a restart.
#[tokio::test]
async fn a_new_client_ca_is_used_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (TestCa::new("client CA 2025"), TestCa::new("client CA 2026"));
    let ca_file = client_ca_file(&dir, &old_ca);
    let server = TestServer::start_with(|c| c.client_ca = Some(ca_file.clone())).await;
    let mut connection = server.client().identity(old_ca.client_pair("kube-apiserver")).connect().await.unwrap();
    works(&mut connection).await;
    assert!(refused(server.client().identity(new_ca.client_pair("kube-apiserver"))).await);

    std::fs::write(&ca_file, &new_ca.cert_pem).unwrap();
    let started = std::time::Instant::now();
    loop {
        let attempt = server.client().identity(new_ca.client_pair("kube-apiserver"));
        if !refused(attempt).await {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "the new client CA was never used");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused(server.client().identity(old_ca.client_pair("kube-apiserver"))).await);
    // The connection made before the rotation keeps working.
    works(&mut connection).await;
    let metrics = server.get_plain("/metrics").await.text();
    assert!(metrics.contains(r#"podmedic_tls_reloads_total{result="success"} 1"#), "{metrics}");
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_certificate_cannot_connect() {
    let server = TestServer::start().await;
    let other = TestCa::new("not podmedic's CA");
    assert!(ClientBuilder::to(server.addr, &other.cert_pem).connect().await.is_err());
}

/// Without --tls-cert, podmedic makes its own CA, writes it out, and serves a certificate for
/// 127.0.0.1 that the written CA verifies.
#[tokio::test]
async fn without_certificates_an_ephemeral_ca_is_written_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = temp_path(&dir, "podmedic-ca.crt");
    let config = server_config(CertificateSource::Ephemeral { ca_file: ca_file.clone() });
    let environment =
        podmedic_engine::admission::Environment::standalone(std::sync::Arc::new(podmedic_engine::Policy::builtin()));
    let readiness = podmedic::webhook::readiness::Readiness::new();
    let server = Server::bind(config, environment, readiness, Default::default()).await.unwrap();
    let addr = server.local_addr();
    let task = tokio::spawn(server.run(std::future::pending()));

    let ca_pem = std::fs::read_to_string(&ca_file).unwrap();
    let mut connection = ClientBuilder::to(addr, &ca_pem).connect().await.unwrap();
    works(&mut connection).await;
    task.abort();
}
