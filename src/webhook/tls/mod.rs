//! Serving certificates and client CAs: loading, hot reload, and the rustls server configuration.
//!
//! The certificate is served through [`CertResolver`], a rustls `ResolvesServerCert` backed by an
//! `ArcSwap`, so a new pair replaces the old one without locks and without a restart; handshakes
//! in progress keep the pair they started with. The client CA (`--client-ca`) lives in the
//! server configuration itself, so a new CA bundle means a new configuration, swapped the same
//! way and used from the next connection on (`reload.rs`).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::pki::{PkiError, generate_ca_and_leaf};

mod reload;

pub use reload::{CertFiles, CertReloader, ReloadOutcome};

/// ALPN protocols offered, preferred first. The API server speaks both.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Names the ephemeral certificate is valid for.
pub const EPHEMERAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Why certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not PEM, or holds no certificate.
    #[error("{path}: no PEM certificate found ({detail})")]
    NoCertificate {
        /// The file.
        path: String,
        /// What the PEM reader said.
        detail: String,
    },
    /// The key file holds no usable private key.
    #[error("{path}: no PEM private key found ({detail})")]
    NoKey {
        /// The file.
        path: String,
        /// What the PEM reader said.
        detail: String,
    },
    /// rustls refused the key or the certificate.
    #[error("{path}: {detail}")]
    Unusable {
        /// The key or certificate file.
        path: String,
        /// What rustls said.
        detail: String,
    },
    /// The key is not the certificate's key.
    #[error("the private key in {key} does not match the certificate in {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
    },
    /// The client CA bundle could not be used.
    #[error("client CA {path}: {detail}")]
    ClientCa {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// The ephemeral certificate could not be made.
    #[error(transparent)]
    Generate(#[from] PkiError),
    /// The ephemeral CA could not be written.
    #[error("cannot write the ephemeral CA to {path}: {source}")]
    WriteCa {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// rustls refused the configuration (should not happen).
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The crypto provider podmedic uses everywhere (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate resolver whose pair can be replaced at any time.
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver").finish_non_exhaustive()
    }
}

impl CertResolver {
    /// A resolver serving `key`.
    pub fn new(key: CertifiedKey) -> Self {
        CertResolver { current: ArcSwap::from_pointee(key) }
    }

    /// Serves `key` from the next handshake on.
    pub fn replace(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }

    /// The pair currently served.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

/// The `notAfter` of the key's leaf certificate, in seconds since the Unix epoch (what
/// `podmedic_tls_certificate_expiry_timestamp_seconds` exports); `None` if it cannot be parsed.
pub fn not_after(key: &CertifiedKey) -> Option<i64> {
    let leaf = key.cert.first()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(certificate.validity().not_after.timestamp())
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Parses a PEM certificate chain and private key (RSA or ECDSA, PKCS#8, PKCS#1 or SEC1) and
/// checks that the key belongs to the first certificate. `cert_origin` and `key_origin` name the
/// sources in errors.
pub fn certified_key_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_origin: &str,
    key_origin: &str,
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::NoCertificate { path: cert_origin.into(), detail: e.to_string() })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_origin.into(), detail: "the file is empty".into() });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| TlsError::NoKey { path: key_origin.into(), detail: e.to_string() })?;
    CertifiedKey::from_der(chain, key, &rustls::crypto::ring::default_provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            TlsError::KeyMismatch { cert: cert_origin.into(), key: key_origin.into() }
        }
        rustls::Error::General(detail) => TlsError::Unusable { path: key_origin.into(), detail },
        other => TlsError::Unusable { path: cert_origin.into(), detail: other.to_string() },
    })
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

/// Makes an ephemeral CA and a serving certificate for [`EPHEMERAL_NAMES`], writes the CA
/// certificate to `ca_file`, and returns the serving pair.
pub fn ephemeral(ca_file: &Path) -> Result<CertifiedKey, TlsError> {
    let names: Vec<String> = EPHEMERAL_NAMES.iter().map(|n| (*n).to_owned()).collect();
    let bundle = generate_ca_and_leaf("podmedic", &names, Duration::from_secs(365 * 24 * 3600))?;
    std::fs::write(ca_file, &bundle.ca_cert_pem)
        .map_err(|source| TlsError::WriteCa { path: path_text(ca_file), source })?;
    certified_key_from_pem(bundle.cert_pem.as_bytes(), bundle.key_pem.as_bytes(), "ephemeral", "ephemeral")
}

/// Loads a PEM CA bundle for verifying client certificates.
pub fn client_verifier(ca_file: &Path) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let path = path_text(ca_file);
    let pem = std::fs::read(ca_file).map_err(|source| TlsError::Read { path: path.clone(), source })?;
    client_verifier_from_pem(&pem, &path)
}

/// A verifier of client certificates signed by the CAs of a PEM bundle; `path` names it in errors.
pub fn client_verifier_from_pem(pem: &[u8], path: &str) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let path = path.to_owned();
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| TlsError::ClientCa { path: path.clone(), detail: e.to_string() })?;
        roots.add(cert).map_err(|e| TlsError::ClientCa { path: path.clone(), detail: e.to_string() })?;
    }
    if roots.is_empty() {
        return Err(TlsError::ClientCa { path, detail: "no certificate found".into() });
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::ClientCa { path, detail: e.to_string() })
}

/// The rustls server configuration: TLS 1.3 and 1.2, ALPN `h2` and `http/1.1`, certificates from
/// `resolver`, and client certificates verified when `client_ca` is given.
pub fn server_config(resolver: Arc<CertResolver>, client_ca: Option<&Path>) -> Result<ServerConfig, TlsError> {
    server_config_with(resolver, client_ca.map(client_verifier).transpose()?)
}

/// [`server_config`] with a client certificate verifier already built.
pub fn server_config_with(
    resolver: Arc<CertResolver>,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match client_verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn bundle() -> crate::pki::CertBundle {
        generate_ca_and_leaf("localhost", &["localhost".into()], Duration::from_secs(3600)).unwrap()
    }

    #[test]
    fn the_expiry_is_the_leaf_certificates_not_after() {
        let bundle = bundle();
        let key = certified_key_from_pem(bundle.cert_pem.as_bytes(), bundle.key_pem.as_bytes(), "c", "k").unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(bundle.cert_pem.as_bytes()).unwrap();
        let expected = pem.parse_x509().unwrap().validity().not_after.timestamp();
        assert_eq!(not_after(&key), Some(expected));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        assert!(expected > i64::try_from(now).unwrap(), "a fresh certificate expires in the future");
    }

    #[test]
    fn loads_an_ecdsa_pair() {
        let b = bundle();
        let key = certified_key_from_pem(b.cert_pem.as_bytes(), b.key_pem.as_bytes(), "c", "k").unwrap();
        assert_eq!(key.cert.len(), 1);
    }

    #[test]
    fn refuses_a_key_of_another_certificate() {
        let (a, b) = (bundle(), bundle());
        let err = certified_key_from_pem(a.cert_pem.as_bytes(), b.key_pem.as_bytes(), "c", "k").unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn refuses_garbage_and_empty_files() {
        let b = bundle();
        assert!(matches!(
            certified_key_from_pem(b"", b.key_pem.as_bytes(), "c", "k"),
            Err(TlsError::NoCertificate { .. })
        ));
        assert!(matches!(
            certified_key_from_pem(b.cert_pem.as_bytes(), b"not a key", "c", "k"),
            Err(TlsError::NoKey { .. })
        ));
        // A certificate where the key should be.
        assert!(certified_key_from_pem(b.cert_pem.as_bytes(), b.cert_pem.as_bytes(), "c", "k").is_err());
    }

    #[test]
    fn the_ephemeral_ca_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        ephemeral(&ca).unwrap();
        assert!(std::fs::read_to_string(&ca).unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
    }

    #[test]
    fn the_server_offers_h2_and_http1() {
        let b = bundle();
        let key = certified_key_from_pem(b.cert_pem.as_bytes(), b.key_pem.as_bytes(), "c", "k").unwrap();
        let config = server_config(Arc::new(CertResolver::new(key)), None).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
    }
}
