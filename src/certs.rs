//! Certificate authorities and serving certificates made with rcgen: the ephemeral pair `podmedic
//! serve` uses when no certificate is given, and the files `podmedic certs` writes for a cluster.

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// Why certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// rcgen refused the parameters.
    #[error("cannot generate the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A subject alternative name is not acceptable.
    #[error("invalid name {0:?}: {1}")]
    InvalidName(String, String),
}

/// A CA and a serving certificate signed by it, all PEM.
#[derive(Clone)]
pub struct CertBundle {
    /// The CA certificate (the `caBundle` of the webhook configuration).
    pub ca_cert_pem: String,
    /// The CA's private key (kept only by `podmedic certs`, for re-signing).
    pub ca_key_pem: String,
    /// The serving certificate.
    pub cert_pem: String,
    /// The serving certificate's private key.
    pub key_pem: String,
}

impl std::fmt::Debug for CertBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertBundle").finish_non_exhaustive()
    }
}

/// Makes a fresh ECDSA P-256 CA and a serving certificate for `names` (DNS names or IP addresses),
/// valid for `validity` from now.
pub fn generate_ca_and_leaf(common_name: &str, names: &[String], validity: Duration) -> Result<CertBundle, CertsError> {
    let now = time::OffsetDateTime::now_utc();
    let not_before = now - time::Duration::minutes(5);
    let not_after = now + time::Duration::seconds(i64::try_from(validity.as_secs()).unwrap_or(i64::MAX / 2));

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{common_name} CA"));
    dn.push(DnType::OrganizationName, "podmedic");
    ca_params.distinguished_name = dn;
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let mut sans = Vec::with_capacity(names.len());
    for name in names {
        sans.push(match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) if !is_dns_name(name) => {
                return Err(CertsError::InvalidName(name.clone(), "not a DNS name (RFC 1123) or IP address".into()));
            }
            Err(_) => SanType::DnsName(
                name.clone()
                    .try_into()
                    .map_err(|e: rcgen::Error| CertsError::InvalidName(name.clone(), e.to_string()))?,
            ),
        });
    }
    let leaf_key = KeyPair::generate()?;
    let mut leaf = CertificateParams::default();
    leaf.subject_alt_names = sans;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    leaf.distinguished_name = dn;
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = not_before;
    leaf.not_after = not_after;
    leaf.use_authority_key_identifier_extension = true;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;

    Ok(CertBundle {
        ca_cert_pem: ca_cert.pem(),
        ca_key_pem: ca_key.serialize_pem(),
        cert_pem: leaf_cert.pem(),
        key_pem: leaf_key.serialize_pem(),
    })
}

/// RFC 1123 host name, optionally with a leading `*.` wildcard label.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_a_ca_and_a_leaf_for_dns_and_ip_names() {
        let b = generate_ca_and_leaf("localhost", &["localhost".into(), "127.0.0.1".into()], Duration::from_secs(3600))
            .unwrap();
        assert!(b.ca_cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(b.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(b.key_pem.contains("PRIVATE KEY"));
        assert_ne!(b.ca_cert_pem, b.cert_pem);
    }

    #[test]
    fn rejects_invalid_names() {
        assert!(generate_ca_and_leaf("x", &["bad name with spaces".into()], Duration::from_secs(60)).is_err());
    }
}

/// `podmedic certs`: makes a CA and serving certificate for the in-cluster Service.
#[derive(Debug, Clone, clap::Args)]
pub struct CertsArgs {
    /// Name of the webhook's Service.
    #[arg(long, env = "PODMEDIC_SERVICE", default_value = "podmedic")]
    pub service: String,
    /// Namespace of the webhook's Service.
    #[arg(long, env = "PODMEDIC_NAMESPACE", default_value = "podmedic-system")]
    pub namespace: String,
    /// Directory to write the files into (created if missing).
    #[arg(long, env = "PODMEDIC_CERTS_OUT", default_value = "certs")]
    pub out: std::path::PathBuf,
}

/// Runs `podmedic certs`.
pub fn run(args: &CertsArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("podmedic certs is not wired yet (service {}, namespace {})", args.service, args.namespace)
}
