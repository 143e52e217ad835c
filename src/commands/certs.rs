//! `podmedic certs`: a CA and a serving certificate for the webhook's in-cluster Service, written
//! as PEM files, a Secret manifest, the `caBundle` and the self-managed overlay's patch.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;

use crate::pki::{generate_ca, sign_leaf};

/// What `podmedic certs` makes (from `cli::CertsArgs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertsConfig {
    /// Name of the webhook's Service.
    pub service: String,
    /// Namespace of the webhook's Service.
    pub namespace: String,
    /// Directory to write the files into (created if missing); a CA already there signs.
    pub out: PathBuf,
    /// How long the serving certificate stays valid.
    pub validity: Duration,
    /// How long a new CA stays valid.
    pub ca_validity: Duration,
    /// Make a new CA even if `out` holds one (the caBundle then trusts both).
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
    /// A JSON patch (RFC 6902) that sets the caBundle of the MutatingWebhookConfiguration's
    /// webhooks, used by `deploy/overlays/self-managed`.
    pub const CA_BUNDLE_PATCH: &str = "webhook-ca-bundle-patch.yaml";
    /// The same for the ValidatingWebhookConfiguration's webhooks.
    pub const VALIDATING_CA_BUNDLE_PATCH: &str = "validating-webhook-ca-bundle-patch.yaml";
}

/// The webhooks of `deploy/base`, in order, by configuration: each patch tests a webhook's name
/// before it sets its caBundle, so that a reordered configuration fails to render rather than
/// trusting the wrong CA.
const MUTATING_WEBHOOKS: [&str; 2] = ["mutate.podmedic.io", "converge.podmedic.io"];
const VALIDATING_WEBHOOKS: [&str; 2] = ["warn.podmedic.io", "warn-workloads.podmedic.io"];

/// A JSON patch (YAML) that sets the caBundle of each of `webhooks`.
fn ca_bundle_patch(kind: &str, webhooks: &[&str], ca_bundle: &str) -> String {
    let mut patch = format!(
        "# Written by `podmedic certs`: the caBundle of the {kind}'s webhooks (the CA, and the previous one\n\
         # after --new-ca). A JSON patch for deploy/overlays/self-managed.\n"
    );
    for (i, name) in webhooks.iter().enumerate() {
        patch.push_str(&format!(
            "- op: test\n  path: /webhooks/{i}/name\n  value: {name}\n\
             - op: add\n  path: /webhooks/{i}/clientConfig/caBundle\n  value: {ca_bundle}\n"
        ));
    }
    patch
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

/// Runs `podmedic certs`: makes (or reuses) the CA, signs a serving certificate for the Service, and
/// writes the files listed in [`files`]. The caBundle goes to stdout, a summary to stderr.
pub fn run(config: &CertsConfig) -> anyhow::Result<ExitCode> {
    for (flag, value) in [("--service", &config.service), ("--namespace", &config.namespace)] {
        if !is_dns_label(value) {
            anyhow::bail!("{flag} {value:?} is not a Kubernetes name (RFC 1123 label)");
        }
    }
    let out = &config.out;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let path = |name: &str| out.join(name);
    let common_name = format!("{}.{}.svc", config.service, config.namespace);

    let existing_cert = read_if_exists(&path(files::CA_CERT))?;
    let existing_key = read_if_exists(&path(files::CA_KEY))?;

    // The CA that signs, and the CA certificates the API server must trust meanwhile.
    let (ca_cert, ca_key, trusted) = match (existing_cert, existing_key, config.new_ca) {
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
            let (cert, key) = generate_ca(&common_name, config.ca_validity)?;
            let mut trusted = vec![cert.clone()];
            if let Some(old) = old_cert {
                eprintln!("replacing the CA; the caBundle trusts the old one too until the next run");
                trusted.push(old);
            }
            (cert, key, trusted)
        }
    };
    let names = service_dns_names(&config.service, &config.namespace);
    let bundle = sign_leaf(&ca_cert, &ca_key, &common_name, &names, config.validity)
        .with_context(|| format!("cannot sign with the CA in {}", path(files::CA_CERT).display()))?;

    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let ca_bundle = b64(&trusted.iter().map(|pem| format!("{}\n", pem.trim_end())).collect::<String>());
    let secret = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": SECRET_NAME,
            "namespace": config.namespace,
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
    let patch = ca_bundle_patch("MutatingWebhookConfiguration", &MUTATING_WEBHOOKS, &ca_bundle);
    let validating_patch = ca_bundle_patch("ValidatingWebhookConfiguration", &VALIDATING_WEBHOOKS, &ca_bundle);

    // Keys first, so that no certificate is ever on disk without its key.
    write_file(&path(files::CA_KEY), &bundle.ca_key_pem, SECRET_MODE)?;
    write_file(&path(files::TLS_KEY), &bundle.key_pem, SECRET_MODE)?;
    write_file(&path(files::CA_CERT), &bundle.ca_cert_pem, PUBLIC_MODE)?;
    write_file(&path(files::TLS_CERT), &bundle.cert_pem, PUBLIC_MODE)?;
    write_file(&path(files::SECRET), &secret, SECRET_MODE)?;
    write_file(&path(files::CA_BUNDLE), &format!("{ca_bundle}\n"), PUBLIC_MODE)?;
    write_file(&path(files::CA_BUNDLE_PATCH), &patch, PUBLIC_MODE)?;
    write_file(&path(files::VALIDATING_CA_BUNDLE_PATCH), &validating_patch, PUBLIC_MODE)?;

    eprintln!(
        "wrote {}, {}, {}, {}, {}, {}, {} and {} into {} for {}; the caBundle follows",
        files::CA_CERT,
        files::CA_KEY,
        files::TLS_CERT,
        files::TLS_KEY,
        files::SECRET,
        files::CA_BUNDLE,
        files::CA_BUNDLE_PATCH,
        files::VALIDATING_CA_BUNDLE_PATCH,
        out.display(),
        names.join(", ")
    );
    println!("{ca_bundle}");
    Ok(ExitCode::SUCCESS)
}

fn read_if_exists(path: &Path) -> anyhow::Result<Option<String>> {
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
///
/// The temporary file is made by `tempfile`: a new, unpredictable name opened with `O_EXCL` and
/// the final mode from the start, so a symlink planted in `--out` cannot redirect the key (a fixed
/// `<name>.tmp` opened with `O_CREAT` followed it and truncated its target). The rename replaces
/// a symlink at `path` itself rather than writing through it.
fn write_file(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    builder.prefix(".podmedic-certs-");
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(mode));
    #[cfg(not(unix))]
    let _ = mode;
    let context = || format!("cannot write {}", path.display());
    let mut tmp = builder.tempfile_in(dir).with_context(context)?;
    tmp.write_all(contents.as_bytes()).with_context(context)?;
    tmp.as_file().sync_all().with_context(context)?;
    tmp.persist(path).map_err(|e| anyhow::Error::new(e.error)).with_context(context)?;
    Ok(())
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
    fn the_service_is_reachable_by_every_name_the_api_server_may_use() {
        assert_eq!(
            service_dns_names("podmedic", "podmedic-system"),
            [
                "podmedic",
                "podmedic.podmedic-system",
                "podmedic.podmedic-system.svc",
                "podmedic.podmedic-system.svc.cluster.local"
            ]
        );
    }

    #[test]
    fn service_and_namespace_must_be_kubernetes_names() {
        for good in ["podmedic", "podmedic-system", "a1"] {
            assert!(is_dns_label(good), "{good}");
        }
        for bad in ["", "Podmedic", "-a", "a-", "a.b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }
}
