//! Certificate authorities and serving certificates made with rcgen: the ephemeral pair `podmedic
//! serve` uses when no certificate is given, and the files `podmedic certs` writes for a cluster.

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
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
pub fn generate_ca_and_leaf(common_name: &str, names: &[String], validity: Duration) -> Result<CertBundle, CertsError> {
    let (ca_cert_pem, ca_key_pem) = generate_ca(common_name, validity)?;
    sign_leaf(&ca_cert_pem, &ca_key_pem, common_name, names, validity)
}

/// Makes a fresh ECDSA P-256 CA named `<common_name> CA`, valid for `validity` from now; returns the
/// certificate and the private key, PEM.
pub fn generate_ca(common_name: &str, validity: Duration) -> Result<(String, String), CertsError> {
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
) -> Result<CertBundle, CertsError> {
    let (not_before, not_after) = validity_from_now(validity);
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let not_after = check_ca(ca_cert_pem, &ca_key, not_after)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, &ca_key)?;

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
) -> Result<time::OffsetDateTime, CertsError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(ca_cert_pem.as_bytes())
        .map_err(|e| CertsError::BadCa(format!("not a PEM certificate: {e}")))?;
    let ca = pem.parse_x509().map_err(|e| CertsError::BadCa(format!("not an X.509 certificate: {e}")))?;
    if !ca.is_ca() {
        return Err(CertsError::BadCa("not a CA certificate (basicConstraints CA:FALSE)".into()));
    }
    if ca.public_key().raw != ca_key.subject_public_key_info().as_slice() {
        return Err(CertsError::BadCa("the CA key does not belong to the CA certificate".into()));
    }
    let ca_not_after = ca.validity().not_after.to_datetime();
    if ca_not_after + time::Duration::minutes(1) < leaf_not_after {
        return Err(CertsError::BadCa(format!(
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

/// `podmedic certs`: makes a CA and serving certificate for the in-cluster Service.
#[derive(Debug, Clone, clap::Args)]
pub struct CertsArgs {
    /// Name of the webhook's Service.
    #[arg(long, env = "PODMEDIC_SERVICE", default_value = "podmedic")]
    pub service: String,
    /// Namespace of the webhook's Service.
    #[arg(long, env = "PODMEDIC_NAMESPACE", default_value = "podmedic-system")]
    pub namespace: String,
    /// Directory to write the files into (created if missing). If it already holds `ca.crt` and
    /// `ca.key`, that CA signs the new serving certificate and the caBundle stays the same.
    #[arg(long, env = "PODMEDIC_CERTS_OUT", default_value = "certs")]
    pub out: std::path::PathBuf,
    /// How long the serving certificate stays valid: a number of days (`365d`) or hours (`12h`).
    #[arg(long, env = "PODMEDIC_CERTS_VALIDITY", default_value = "365d", value_parser = parse_validity)]
    pub validity: Duration,
    /// How long a new CA stays valid; it must outlive every serving certificate it signs.
    #[arg(long, env = "PODMEDIC_CERTS_CA_VALIDITY", default_value = "3650d", value_parser = parse_validity)]
    pub ca_validity: Duration,
    /// Make a new CA even if `--out` holds one. The caBundle then trusts the old and the new CA,
    /// so that Pods still serving the old certificate keep working until they load the new one.
    #[arg(long, env = "PODMEDIC_CERTS_NEW_CA")]
    pub new_ca: bool,
}

/// The name of the Secret the Deployment in `deploy/` mounts.
pub const SECRET_NAME: &str = "podmedic-tls";

/// What `podmedic certs` writes into `--out`, by file name.
pub mod files {
    /// The CA certificate (PEM).
    pub const CA_CERT: &str = "ca.crt";
    /// The CA's private key (PEM, mode 0600): keep it to sign the next serving certificate.
    pub const CA_KEY: &str = "ca.key";
    /// The serving certificate (PEM).
    pub const TLS_CERT: &str = "tls.crt";
    /// The serving certificate's private key (PEM, mode 0600).
    pub const TLS_KEY: &str = "tls.key";
    /// The `kubernetes.io/tls` Secret holding the three above (mode 0600: it holds the key).
    pub const SECRET: &str = "secret.yaml";
    /// The base64 caBundle of the webhook configuration, one line.
    pub const CA_BUNDLE: &str = "caBundle.b64";
    /// A JSON patch (RFC 6902) that sets the caBundle, used by `deploy/overlays/self-managed`.
    pub const CA_BUNDLE_PATCH: &str = "webhook-ca-bundle-patch.yaml";
}

/// The DNS names the API server may use to reach `service` in `namespace`.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// Parses `365d` or `12h` (a bare number is days).
pub fn parse_validity(s: &str) -> Result<Duration, String> {
    let (number, unit_secs) = match s.strip_suffix('d') {
        Some(n) => (n, 86_400),
        None => match s.strip_suffix('h') {
            Some(n) => (n, 3_600),
            None => (s, 86_400),
        },
    };
    match number.parse::<u64>() {
        Ok(n) if n > 0 && n <= 100 * 365 * 86_400 / unit_secs => Ok(Duration::from_secs(n * unit_secs)),
        _ => Err(format!("{s:?} is not a validity such as 365d or 12h (at most 100 years)")),
    }
}

/// Runs `podmedic certs`: makes (or reuses) the CA, signs a serving certificate for the Service, and
/// writes the files listed in [`files`]. The caBundle goes to stdout, a summary to stderr.
pub fn run(args: &CertsArgs) -> anyhow::Result<std::process::ExitCode> {
    use anyhow::Context as _;
    use base64::Engine as _;

    for (flag, value) in [("--service", &args.service), ("--namespace", &args.namespace)] {
        if !is_dns_label(value) {
            anyhow::bail!("{flag} {value:?} is not a Kubernetes name (RFC 1123 label)");
        }
    }
    let out = &args.out;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let path = |name: &str| out.join(name);
    let common_name = format!("{}.{}.svc", args.service, args.namespace);

    let existing_cert = read_if_exists(&path(files::CA_CERT))?;
    let existing_key = read_if_exists(&path(files::CA_KEY))?;

    // The CA that signs, and the CA certificates the API server must trust meanwhile.
    let (ca_cert, ca_key, trusted) = match (existing_cert, existing_key, args.new_ca) {
        (Some(cert), Some(key), false) => {
            eprintln!("reusing the CA in {}", path(files::CA_CERT).display());
            (cert.clone(), key, vec![cert])
        }
        (Some(_), None, false) | (None, Some(_), false) => {
            let (have, missing) = if path(files::CA_CERT).exists() {
                (files::CA_CERT, files::CA_KEY)
            } else {
                (files::CA_KEY, files::CA_CERT)
            };
            anyhow::bail!(
                "{} exists but {} does not: restore it, or pass --new-ca to replace the CA",
                path(have).display(),
                path(missing).display()
            );
        }
        (old_cert, _, _) => {
            let (cert, key) = generate_ca(&common_name, args.ca_validity)?;
            let mut trusted = vec![cert.clone()];
            if let Some(old) = old_cert {
                eprintln!("replacing the CA; the caBundle trusts the old one too until the next run");
                trusted.push(old);
            }
            (cert, key, trusted)
        }
    };
    let names = service_dns_names(&args.service, &args.namespace);
    let bundle = sign_leaf(&ca_cert, &ca_key, &common_name, &names, args.validity)
        .with_context(|| format!("cannot sign with the CA in {}", path(files::CA_CERT).display()))?;

    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let ca_bundle = b64(&trusted.iter().map(|pem| format!("{}\n", pem.trim_end())).collect::<String>());
    let secret = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": SECRET_NAME,
            "namespace": args.namespace,
            "labels": { "app.kubernetes.io/name": "podmedic" },
        },
        "type": "kubernetes.io/tls",
        "data": {
            "ca.crt": b64(&bundle.ca_cert_pem),
            "tls.crt": b64(&bundle.cert_pem),
            "tls.key": b64(&bundle.key_pem),
        },
    });
    let secret = format!(
        "# Written by `podmedic certs`: the serving certificate of {common_name} and its key. Do not commit it.\n{}",
        yaml_serde::to_string(&secret)?
    );
    let patch = format!(
        "# Written by `podmedic certs`: the webhook's caBundle (the CA, and the previous one after --new-ca).\n\
         # A JSON patch for deploy/overlays/self-managed.\n\
         - op: add\n  path: /webhooks/0/clientConfig/caBundle\n  value: {ca_bundle}\n"
    );

    // Keys first, so that no certificate is ever on disk without its key.
    write_file(&path(files::CA_KEY), &bundle.ca_key_pem, SECRET_MODE)?;
    write_file(&path(files::TLS_KEY), &bundle.key_pem, SECRET_MODE)?;
    write_file(&path(files::CA_CERT), &bundle.ca_cert_pem, PUBLIC_MODE)?;
    write_file(&path(files::TLS_CERT), &bundle.cert_pem, PUBLIC_MODE)?;
    write_file(&path(files::SECRET), &secret, SECRET_MODE)?;
    write_file(&path(files::CA_BUNDLE), &format!("{ca_bundle}\n"), PUBLIC_MODE)?;
    write_file(&path(files::CA_BUNDLE_PATCH), &patch, PUBLIC_MODE)?;

    eprintln!(
        "wrote {}, {}, {}, {}, {}, {} and {} into {} for {}; the caBundle follows",
        files::CA_CERT,
        files::CA_KEY,
        files::TLS_CERT,
        files::TLS_KEY,
        files::SECRET,
        files::CA_BUNDLE,
        files::CA_BUNDLE_PATCH,
        out.display(),
        names.join(", ")
    );
    println!("{ca_bundle}");
    Ok(std::process::ExitCode::SUCCESS)
}

fn read_if_exists(path: &std::path::Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(pem) => Ok(Some(pem)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display()))),
    }
}

const SECRET_MODE: u32 = 0o600;
const PUBLIC_MODE: u32 = 0o644;

/// Writes through a temporary file and a rename, so that a reader (`kubectl apply`, a running
/// server) never sees half a file, and a key file is never readable by others, not even briefly.
fn write_file(path: &std::path::Path, contents: &str, mode: u32) -> Result<(), CertsError> {
    use std::io::Write as _;

    let err = |source| CertsError::Write { path: path.display().to_string(), source };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let result = options.open(&tmp).and_then(|mut f| {
        // The mode above applies only when the file is created; a stale temporary file keeps its own.
        #[cfg(unix)]
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()
    });
    result.and_then(|()| std::fs::rename(&tmp, path)).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

/// An RFC 1123 label: what Kubernetes accepts as a Service or Namespace name.
fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
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
