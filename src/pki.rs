//! Certificate authorities and serving certificates made with rcgen: the ephemeral pair `podmedic
//! serve` uses when no certificate is given (`webhook`), and the pair `podmedic certs`
//! writes for a cluster (`commands::certs`).

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};

/// Why certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused the parameters.
    #[error("cannot generate the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A subject alternative name is not acceptable.
    #[error("invalid name {0:?}: {1}")]
    InvalidName(String, String),
    /// The CA given to sign with cannot be used.
    #[error("unusable CA: {0}")]
    BadCa(String),
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
pub fn generate_ca_and_leaf(common_name: &str, names: &[String], validity: Duration) -> Result<CertBundle, PkiError> {
    let (ca_cert_pem, ca_key_pem) = generate_ca(common_name, validity)?;
    sign_leaf(&ca_cert_pem, &ca_key_pem, common_name, names, validity)
}

/// Makes a fresh ECDSA P-256 CA named `<common_name> CA`, valid for `validity` from now; returns the
/// certificate and the private key, PEM.
pub fn generate_ca(common_name: &str, validity: Duration) -> Result<(String, String), PkiError> {
    let (not_before, not_after) = validity_from_now(validity);
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
    Ok((ca_cert.pem(), ca_key.serialize_pem()))
}

/// Signs a fresh ECDSA P-256 serving certificate for `names` (DNS names or IP addresses) with an
/// existing CA, valid for `validity` from now. Refuses a CA that is not one, a key that does not
/// belong to it, and a CA that would expire before the new certificate.
pub fn sign_leaf(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    common_name: &str,
    names: &[String],
    validity: Duration,
) -> Result<CertBundle, PkiError> {
    let (not_before, not_after) = validity_from_now(validity);
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let not_after = check_ca(ca_cert_pem, &ca_key, not_after)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, &ca_key)?;

    let mut sans = Vec::with_capacity(names.len());
    for name in names {
        sans.push(match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) if !is_dns_name(name) => {
                return Err(PkiError::InvalidName(name.clone(), "not a DNS name (RFC 1123) or IP address".into()));
            }
            Err(_) => SanType::DnsName(
                name.clone()
                    .try_into()
                    .map_err(|e: rcgen::Error| PkiError::InvalidName(name.clone(), e.to_string()))?,
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
        ca_cert_pem: ca_cert_pem.to_owned(),
        ca_key_pem: ca_key_pem.to_owned(),
        cert_pem: leaf_cert.pem(),
        key_pem: leaf_key.serialize_pem(),
    })
}

/// Five minutes of slack before now, so that a node whose clock is a little behind accepts the
/// certificate at once.
fn validity_from_now(validity: Duration) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    let secs = i64::try_from(validity.as_secs()).unwrap_or(i64::MAX / 2);
    (now - time::Duration::minutes(5), now.saturating_add(time::Duration::seconds(secs)))
}

/// A CA that signs a certificate outliving it, or with a key that is not its own, produces a
/// certificate that fails later or at once; say so now instead. Returns the leaf's expiry, cut to
/// the CA's when it is later by at most a minute (a CA made a moment before, with whole seconds).
fn check_ca(
    ca_cert_pem: &str,
    ca_key: &KeyPair,
    leaf_not_after: time::OffsetDateTime,
) -> Result<time::OffsetDateTime, PkiError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(ca_cert_pem.as_bytes())
        .map_err(|e| PkiError::BadCa(format!("not a PEM certificate: {e}")))?;
    let ca = pem.parse_x509().map_err(|e| PkiError::BadCa(format!("not an X.509 certificate: {e}")))?;
    if !ca.is_ca() {
        return Err(PkiError::BadCa("not a CA certificate (basicConstraints CA:FALSE)".into()));
    }
    if ca.public_key().raw != ca_key.subject_public_key_info().as_slice() {
        return Err(PkiError::BadCa("the CA key does not belong to the CA certificate".into()));
    }
    let ca_not_after = ca.validity().not_after.to_datetime();
    if ca_not_after + time::Duration::minutes(1) < leaf_not_after {
        return Err(PkiError::BadCa(format!(
            "the CA expires on {}, before the new certificate would ({}): make a new CA or shorten the validity",
            ca_not_after.date(),
            leaf_not_after.date()
        )));
    }
    Ok(leaf_not_after.min(ca_not_after))
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
    fn refuses_to_sign_with_a_certificate_that_is_not_a_ca() {
        let b = generate_ca_and_leaf("x", &["x".into()], Duration::from_secs(3600)).unwrap();
        let err = sign_leaf(&b.cert_pem, &b.key_pem, "y", &["y".into()], Duration::from_secs(60)).unwrap_err();
        assert!(err.to_string().contains("not a CA"), "{err}");
    }

    #[test]
    fn rejects_invalid_names() {
        assert!(generate_ca_and_leaf("x", &["bad name with spaces".into()], Duration::from_secs(60)).is_err());
    }
}
