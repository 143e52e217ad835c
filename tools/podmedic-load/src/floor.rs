//! The floors: the least a webhook on our stack can do, served the way `podmedic serve` serves.
//!
//! Same runtime (tokio multi-thread, one worker when pinned to one core), same rustls
//! configuration and certificate, same hyper-util automatic HTTP/1.1 + HTTP/2 connection and
//! `TCP_NODELAY`; none of podmedic's timeouts, limits, metrics or logs. The *transport* floor reads
//! the body and answers a fixed AdmissionReview (the very bytes podmedic answers for the load
//! body); the *parse* floor first parses the body into a `serde_json::Value`.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use clap::ValueEnum;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::Args;

/// Which floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Read the body, answer.
    Transport,
    /// Read the body, parse it into a `serde_json::Value`, answer.
    Parse,
    /// Not a floor: the webhook users would write (`reference.rs`), on the same stack.
    Reference,
}

#[derive(Clone)]
struct Floor {
    kind: Kind,
    response: Bytes,
}

/// Serves a floor until killed.
pub fn main(kind: Kind, args: &Args) -> ExitCode {
    match serve(kind, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podmedic-load floor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(kind: Kind, args: &Args) -> anyhow::Result<()> {
    let listen = args.listen.context("--listen is required")?;
    let cert = args.tls_cert.as_deref().context("--tls-cert is required")?;
    let key = args.tls_key.as_deref().context("--tls-key is required")?;
    let response = std::fs::read(args.response.as_deref().context("--response is required")?)?;
    // As podmedic's main does.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let acceptor = TlsAcceptor::from(Arc::new(tls_config(cert, key)?));
        let listener = TcpListener::bind(listen).await?;
        let app = match kind {
            Kind::Reference => {
                tracing_subscriber::fmt().with_writer(std::io::stderr).with_ansi(false).init();
                Router::new().route("/mutate", post(crate::reference::mutate))
            }
            _ => {
                Router::new().route("/mutate", post(mutate)).with_state(Floor { kind, response: Bytes::from(response) })
            }
        };
        let service = TowerToHyperService::new(app);
        let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            let (acceptor, builder, service) = (acceptor.clone(), builder.clone(), service.clone());
            tokio::spawn(async move {
                if let Ok(stream) = acceptor.accept(stream).await {
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                }
            });
        }
    })
}

async fn mutate(State(floor): State<Floor>, body: Bytes) -> impl IntoResponse {
    if floor.kind == Kind::Parse {
        let parsed = serde_json::from_slice::<serde_json::Value>(&body);
        std::hint::black_box(&parsed);
    }
    ([(header::CONTENT_TYPE, "application/json")], floor.response)
}

/// podmedic's own rustls configuration, from podmedic's own code.
fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let (cert_pem, key_pem) = (std::fs::read(cert)?, std::fs::read(key)?);
    let key = podmedic::webhook::tls::certified_key_from_pem(&cert_pem, &key_pem, "--tls-cert", "--tls-key")?;
    Ok(podmedic::webhook::tls::server_config(Arc::new(podmedic::webhook::tls::CertResolver::new(key)), None)?)
}
