//! A small HTTPS client (hyper + tokio-rustls) that can force HTTP/1.1 or HTTP/2 through ALPN,
//! pick TLS versions and present a client certificate.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use super::*;

/// Which HTTP version to ask for through ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Http {
    /// ALPN `http/1.1`.
    One,
    /// ALPN `h2`.
    Two,
}

/// Builds a [`Connection`].
pub struct ClientBuilder {
    addr: SocketAddr,
    roots: rustls::RootCertStore,
    http: Http,
    versions: Vec<&'static rustls::SupportedProtocolVersion>,
    identity: Option<Pair>,
}

impl ClientBuilder {
    pub(super) fn new(addr: SocketAddr, ca_pem: &str) -> ClientBuilder {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.expect("CA PEM")).expect("add the CA");
        }
        ClientBuilder {
            addr,
            roots,
            http: Http::One,
            versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
            identity: None,
        }
    }

    /// A client for `addr` trusting the CA in `ca_pem`.
    pub fn to(addr: SocketAddr, ca_pem: &str) -> ClientBuilder {
        Self::new(addr, ca_pem)
    }

    /// Asks for this HTTP version.
    pub fn http(mut self, http: Http) -> Self {
        self.http = http;
        self
    }

    /// Offers only these TLS versions.
    pub fn tls_versions(mut self, versions: &[&'static rustls::SupportedProtocolVersion]) -> Self {
        self.versions = versions.to_vec();
        self
    }

    /// Presents this client certificate.
    pub fn identity(mut self, pair: Pair) -> Self {
        self.identity = Some(pair);
        self
    }

    /// Connects, shakes hands and starts HTTP.
    pub async fn connect(self) -> Result<Connection, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&self.versions)
            .map_err(|e| e.to_string())?
            .with_root_certificates(self.roots);
        let mut config = match self.identity {
            Some(pair) => {
                let chain = CertificateDer::pem_slice_iter(pair.cert_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| e.to_string())?;
                let key = PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes()).map_err(|e| e.to_string())?;
                builder.with_client_auth_cert(chain, key).map_err(|e| e.to_string())?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![match self.http {
            Http::One => b"http/1.1".to_vec(),
            Http::Two => b"h2".to_vec(),
        }];
        let tcp = TcpStream::connect(self.addr).await.map_err(|e| format!("connect: {e}"))?;
        let server_name = ServerName::IpAddress(self.addr.ip().into());
        let tls = TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let (_, session) = tls.get_ref();
        let peer_certificate = session
            .peer_certificates()
            .and_then(|c| c.first())
            .cloned()
            .ok_or("the server presented no certificate")?;
        let tls_version = session.protocol_version().ok_or("no TLS version")?;
        let alpn = session.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned());
        let io = TokioIo::new(tls);
        let (sender, driver) = match self.http {
            Http::One => {
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(io).await.map_err(|e| format!("HTTP/1.1: {e}"))?;
                (Sender::One(sender), tokio::spawn(async move { conn.await.map_err(|e| e.to_string()) }))
            }
            Http::Two => {
                let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|e| format!("HTTP/2: {e}"))?;
                (Sender::Two(sender), tokio::spawn(async move { conn.await.map_err(|e| e.to_string()) }))
            }
        };
        Ok(Connection { sender, driver, peer_certificate, tls_version, alpn })
    }
}

enum Sender {
    One(hyper::client::conn::http1::SendRequest<TestBody>),
    Two(hyper::client::conn::http2::SendRequest<TestBody>),
}

/// One client connection (HTTP/1.1 requests are sent one after the other on it).
pub struct Connection {
    sender: Sender,
    driver: JoinHandle<Result<(), String>>,
    /// The certificate the server presented.
    pub peer_certificate: CertificateDer<'static>,
    /// The negotiated TLS version.
    pub tls_version: rustls::ProtocolVersion,
    /// The negotiated ALPN protocol.
    pub alpn: Option<String>,
}

impl Connection {
    /// Sends a request and reads the whole response.
    pub async fn send(&mut self, request: Request<TestBody>) -> Result<Reply, String> {
        let response = match &mut self.sender {
            Sender::One(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(request).await
            }
            Sender::Two(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(request).await
            }
        }
        .map_err(|e| e.to_string())?;
        Ok(Reply::from(response).await)
    }

    /// `POST path` with a JSON body.
    pub async fn post(&mut self, path: &str, body: impl Into<Bytes>) -> Reply {
        self.send(post_request(path, "application/json", full(body))).await.expect("POST")
    }

    /// `POST /mutate` with an AdmissionReview.
    pub async fn review(&mut self, body: impl Into<Bytes>) -> Reply {
        self.post("/mutate", body).await
    }

    /// True once the server closed the connection.
    pub fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::One(s) => s.is_closed(),
            Sender::Two(s) => s.is_closed(),
        }
    }

    /// Waits until the server closes the connection; panics after [`PATIENCE`].
    pub async fn closed(self) {
        tokio::time::timeout(PATIENCE, self.driver).await.expect("the connection stayed open").expect("join").ok();
    }
}

/// A `POST` request with a content type.
pub fn post_request(path: &str, content_type: &str, body: TestBody) -> Request<TestBody> {
    Request::post(path)
        .header("host", "localhost")
        .header("content-type", content_type)
        .header("user-agent", "kube-apiserver-admission")
        .body(body)
        .expect("request")
}

/// A body sent in one piece, with its length.
pub fn full(body: impl Into<Bytes>) -> TestBody {
    Full::new(body.into()).boxed()
}

/// An empty body.
pub fn empty() -> TestBody {
    full(Bytes::new())
}

/// A body sent in pieces through the returned sender, without a length (chunked on HTTP/1.1).
pub fn streamed() -> (http_body_util::channel::Sender<Bytes>, TestBody) {
    let (tx, body) = http_body_util::channel::Channel::<Bytes>::new(4);
    (tx, body.boxed())
}

/// A whole response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub(super) async fn from(response: hyper::Response<hyper::body::Incoming>) -> Reply {
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        Reply { status: parts.status, headers: parts.headers, body }
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `error` of a JSON error body.
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_else(|| panic!("no error field: {}", self.text())).to_owned()
    }
}
