//! `podmedic certs`: given a Service and namespace, it writes a CA and a serving certificate that
//! the API server accepts for `<service>.<namespace>.svc`, the Secret and the caBundle; run again,
//! it keeps the CA so that the caBundle does not change; with `--new-ca`, the caBundle trusts both.
//!
//! The chain is verified in Rust (rustls' WebPKI verifier, as a TLS client would) always, and with
//! `openssl verify` too where openssl is installed.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use base64::Engine as _;
use clap::Parser as _;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::Value;

const SERVICE_NAMES: [&str; 4] = [
    "podmedic",
    "podmedic.podmedic-system",
    "podmedic.podmedic-system.svc",
    "podmedic.podmedic-system.svc.cluster.local",
];

/// `podmedic certs` as the CLI parses it, so that the flags' defaults are what is tested.
#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    certs: podmedic::cli::CertsArgs,
}

fn certs(out: &Path, extra: &[&str]) -> anyhow::Result<std::process::ExitCode> {
    let mut argv = vec!["podmedic-certs", "--out", out.to_str().expect("utf-8 path")];
    argv.extend_from_slice(extra);
    let cli = Cli::try_parse_from(argv)?;
    podmedic::commands::certs::run(&cli.certs.into())
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("cannot read {name}: {e}"))
}

fn b64(data: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Verifies `leaf_pem` for `name` against the CAs in `ca_pem`, as the API server's TLS client does.
fn verify(ca_pem: &str, leaf_pem: &str, name: &str) -> Result<(), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.expect("CA PEM")).expect("a usable CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build().expect("verifier");
    let leaf = CertificateDer::from_pem_slice(leaf_pem.as_bytes()).expect("leaf PEM");
    let name = ServerName::try_from(name.to_owned()).expect("server name");
    verifier.verify_server_cert(&leaf, &[], &name, &[], UnixTime::now()).map(|_| ())
}

fn parse_cert(pem: &str) -> x509_parser::pem::Pem {
    x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM").1
}

fn dns_names(pem: &str) -> Vec<String> {
    let pem = parse_cert(pem);
    let cert = pem.parse_x509().expect("X.509");
    let san = cert.subject_alternative_name().expect("valid SAN").expect("a SAN extension");
    san.value
        .general_names
        .iter()
        .map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => (*d).to_owned(),
            other => panic!("unexpected SAN {other:?}"),
        })
        .collect()
}

fn days_valid(pem: &str) -> i64 {
    let pem = parse_cert(pem);
    let cert = pem.parse_x509().expect("X.509");
    (cert.validity().not_after.to_datetime() - time::OffsetDateTime::now_utc()).whole_days()
}

#[test]
fn writes_a_ca_and_a_serving_certificate_the_api_server_accepts_for_the_service() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs(dir.path(), &[]).expect("podmedic certs");
    let (ca, leaf) = (read(dir.path(), "ca.crt"), read(dir.path(), "tls.crt"));

    for name in SERVICE_NAMES {
        verify(&ca, &leaf, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for name in ["other.podmedic-system.svc", "podmedic.default.svc", "podmedic.podmedic-system.svc.evil.example"] {
        assert!(verify(&ca, &leaf, name).is_err(), "{name} must not be accepted");
    }
    let mut names = dns_names(&leaf);
    names.sort();
    assert_eq!(names, SERVICE_NAMES.map(str::to_owned), "exactly the Service's names");

    let leaf_pem = parse_cert(&leaf);
    let leaf_x509 = leaf_pem.parse_x509().expect("leaf");
    assert!(!leaf_x509.is_ca(), "the serving certificate cannot sign others");
    let eku = leaf_x509.extended_key_usage().expect("EKU").expect("an EKU extension");
    assert!(eku.value.server_auth, "usable as a TLS server certificate");
    assert!(parse_cert(&ca).parse_x509().expect("CA").is_ca());
    // --validity defaults to 365 days; a new CA (--ca-validity) to ten years.
    assert!((364..=365).contains(&days_valid(&leaf)), "{} days", days_valid(&leaf));
    assert!((3649..=3650).contains(&days_valid(&ca)), "{} days", days_valid(&ca));

    // Someone else's CA is not accepted: the chain really is checked.
    let other = tempfile::tempdir().expect("tempdir");
    certs(other.path(), &[]).expect("podmedic certs");
    assert!(verify(&read(other.path(), "ca.crt"), &leaf, SERVICE_NAMES[2]).is_err());
}

#[test]
fn openssl_verifies_the_chain_for_the_service_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs(dir.path(), &[]).expect("podmedic certs");
    let verify = |extra: &[&str]| {
        Command::new("openssl")
            .arg("verify")
            .args(extra)
            .args(["-purpose", "sslserver", "-CAfile", "ca.crt", "tls.crt"])
            .current_dir(dir.path())
            .output()
    };
    let output = match verify(&["-verify_hostname", "podmedic.podmedic-system.svc"]) {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("openssl not on PATH: `openssl verify` skipped (the Rust verification still ran)");
            return;
        }
        Err(e) => panic!("cannot run openssl: {e}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "openssl verify: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("tls.crt: OK"), "{stdout}");
    let wrong = verify(&["-verify_hostname", "podmedic.default.svc"]).expect("openssl");
    assert!(!wrong.status.success(), "openssl must refuse another name");
}

#[test]
fn keys_are_private_and_the_secret_and_ca_bundle_carry_the_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("nested/certs");
    certs(&out, &[]).expect("podmedic certs creates --out");

    #[cfg(unix)]
    for (name, mode) in [
        ("ca.key", 0o600),
        ("tls.key", 0o600),
        ("secret.yaml", 0o600),
        ("ca.crt", 0o644),
        ("tls.crt", 0o644),
        ("caBundle.b64", 0o644),
    ] {
        use std::os::unix::fs::PermissionsExt as _;
        let actual = std::fs::metadata(out.join(name)).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(actual, mode, "{name} has mode {actual:o}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .expect("read_dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".tmp") || n.starts_with(".podmedic-certs-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let secret: Value = yaml_serde::from_str(&read(&out, "secret.yaml")).expect("secret.yaml is YAML");
    assert_eq!(secret["apiVersion"], "v1");
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(secret["metadata"]["name"], "podmedic-tls", "the Secret the Deployment mounts");
    assert_eq!(secret["metadata"]["namespace"], "podmedic-system");
    for (key, file) in [("tls.crt", "tls.crt"), ("tls.key", "tls.key"), ("ca.crt", "ca.crt")] {
        assert_eq!(secret["data"][key], b64(&read(&out, file)), "data.{key} is {file}, base64");
    }

    let ca_bundle = read(&out, "caBundle.b64");
    assert_eq!(ca_bundle.trim(), b64(&read(&out, "ca.crt")), "the caBundle is ca.crt, base64");
    assert!(!ca_bundle.trim().contains('\n'), "one line, ready to paste");

    // Each webhook's name is tested before its caBundle is set (deploy/ checks the overlay
    // renders with every webhook trusting the CA).
    let patch_for = |webhooks: &[&str]| {
        let ops = webhooks.iter().enumerate().flat_map(|(i, name)| {
            [
                serde_json::json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": name}),
                serde_json::json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"),
                                   "value": ca_bundle.trim()}),
            ]
        });
        Value::Array(ops.collect())
    };
    let patch: Value = yaml_serde::from_str(&read(&out, "webhook-ca-bundle-patch.yaml")).expect("patch is YAML");
    assert_eq!(patch, patch_for(&["mutate.podmedic.io", "converge.podmedic.io"]));
    let patch: Value =
        yaml_serde::from_str(&read(&out, "validating-webhook-ca-bundle-patch.yaml")).expect("patch is YAML");
    assert_eq!(patch, patch_for(&["warn.podmedic.io", "warn-workloads.podmedic.io"]));
}

/// Someone who can write to `--out` plants symlinks: at the temporary names the files used to be
/// written through, and at a file's own name. Nothing is written through them.
#[cfg(unix)]
#[test]
fn symlinks_in_the_output_directory_redirect_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, victim) = (dir.path().join("certs"), dir.path().join("victim"));
    std::fs::create_dir(&out).expect("mkdir");
    std::fs::write(&victim, "precious").expect("write");
    for name in ["tls.key.tmp", "ca.key.tmp", "secret.yaml.tmp", "secret.yaml"] {
        std::os::unix::fs::symlink(&victim, out.join(name)).expect("symlink");
    }
    certs(&out, &[]).expect("podmedic certs");
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious", "written through a symlink");
    let secret = std::fs::symlink_metadata(out.join("secret.yaml")).expect("metadata");
    assert!(secret.file_type().is_file(), "secret.yaml is a file of its own now");
    assert!(read(&out, "secret.yaml").contains("kind: Secret"));
}

#[test]
fn running_again_keeps_the_ca_so_the_ca_bundle_does_not_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs(dir.path(), &[]).expect("first run");
    let [ca, ca_key, leaf, bundle] = ["ca.crt", "ca.key", "tls.crt", "caBundle.b64"].map(|f| read(dir.path(), f));
    certs(dir.path(), &["--validity", "30d"]).expect("second run");

    assert_eq!(read(dir.path(), "ca.crt"), ca);
    assert_eq!(read(dir.path(), "ca.key"), ca_key);
    assert_eq!(read(dir.path(), "caBundle.b64"), bundle, "the webhook configuration need not change");
    let renewed = read(dir.path(), "tls.crt");
    assert_ne!(renewed, leaf, "a new serving certificate");
    assert_ne!(read(dir.path(), "tls.key"), "", "with its key");
    verify(&ca, &renewed, SERVICE_NAMES[2]).expect("the renewed certificate verifies against the kept CA");
    assert!((29..=30).contains(&days_valid(&renewed)), "--validity 30d: {} days", days_valid(&renewed));
}

#[test]
fn a_new_ca_is_trusted_alongside_the_old_one_until_the_next_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs(dir.path(), &[]).expect("first run");
    let (old_ca, old_leaf) = (read(dir.path(), "ca.crt"), read(dir.path(), "tls.crt"));

    certs(dir.path(), &["--new-ca"]).expect("--new-ca");
    let (new_ca, new_leaf) = (read(dir.path(), "ca.crt"), read(dir.path(), "tls.crt"));
    assert_ne!(new_ca, old_ca);
    assert!(verify(&old_ca, &new_leaf, SERVICE_NAMES[2]).is_err(), "signed by the new CA");
    let bundle =
        base64::engine::general_purpose::STANDARD.decode(read(dir.path(), "caBundle.b64").trim()).expect("base64");
    let bundle = String::from_utf8(bundle).expect("PEM");
    // Pods still serving the old certificate and those serving the new one are both accepted.
    verify(&bundle, &old_leaf, SERVICE_NAMES[2]).expect("old certificate, during the rollout");
    verify(&bundle, &new_leaf, SERVICE_NAMES[2]).expect("new certificate");

    certs(dir.path(), &[]).expect("third run");
    assert_eq!(read(dir.path(), "caBundle.b64").trim(), b64(&new_ca), "the old CA is dropped");
}

#[test]
fn errors_name_the_file_at_fault() {
    let dir = tempfile::tempdir().expect("tempdir");
    certs(dir.path(), &[]).expect("first run");

    // A CA certificate without its key.
    std::fs::remove_file(dir.path().join("ca.key")).expect("rm");
    let err = certs(dir.path(), &[]).expect_err("no CA key").to_string();
    assert!(err.contains(&dir.path().join("ca.key").display().to_string()), "{err}");

    // A key that belongs to another CA.
    let other = tempfile::tempdir().expect("tempdir");
    certs(other.path(), &[]).expect("other CA");
    std::fs::copy(other.path().join("ca.key"), dir.path().join("ca.key")).expect("cp");
    let err = format!("{:#}", certs(dir.path(), &[]).expect_err("mismatched CA key"));
    assert!(err.contains("ca.crt") && err.contains("does not belong"), "{err}");

    // A certificate that would outlive its CA.
    let short = tempfile::tempdir().expect("tempdir");
    certs(short.path(), &["--validity", "1d", "--ca-validity", "2d"]).expect("short CA");
    let err = format!("{:#}", certs(short.path(), &["--validity", "10d"]).expect_err("outlives the CA"));
    assert!(err.contains("ca.crt") && err.contains("expires"), "{err}");

    // --out is a file.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").expect("write");
    let err = format!("{:#}", certs(&file, &[]).expect_err("--out is a file"));
    assert!(err.contains(&file.display().to_string()), "{err}");

    // Names Kubernetes would not accept.
    let err = certs(dir.path(), &["--namespace", "Podmedic.System"]).expect_err("bad namespace").to_string();
    assert!(err.contains("--namespace"), "{err}");
}

#[test]
fn validity_takes_days_or_hours() {
    use podmedic::cli::parse_validity;
    use std::time::Duration;
    assert_eq!(parse_validity("365d"), Ok(Duration::from_secs(365 * 86_400)));
    assert_eq!(parse_validity("12h"), Ok(Duration::from_secs(12 * 3_600)));
    assert_eq!(parse_validity("7"), Ok(Duration::from_secs(7 * 86_400)));
    for bad in ["0d", "", "d", "1y", "-1d", "99999999d", "1.5d"] {
        assert!(parse_validity(bad).is_err(), "{bad:?}");
    }
}
