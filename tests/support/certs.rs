//! Test certificates: a CA made with rcgen, server and client pairs, and a Secret mounted the way
//! the kubelet mounts it (a `..data` symlink swapped on update).

use podmedic::webhook::tls::CertFiles;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A test certificate authority.
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    /// The CA certificate, PEM.
    pub cert_pem: String,
}

/// A certificate and its key, PEM.
#[derive(Clone)]
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    /// A fresh ECDSA P-256 CA.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        let cert_pem = params.self_signed(&key).expect("CA certificate").pem();
        TestCa { params, key, cert_pem }
    }

    /// A serving certificate for 127.0.0.1 and localhost with a fresh ECDSA key.
    pub fn server_pair(&self, common_name: &str) -> Pair {
        self.issue(KeyPair::generate().expect("key"), common_name, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A serving certificate like [`TestCa::server_pair`] whose `notAfter` is the start of the day
    /// `(year, month, day)`, UTC.
    pub fn server_pair_until(&self, common_name: &str, (year, month, day): (i32, u8, u8)) -> Pair {
        let mut params = Self::leaf_params(common_name, ExtendedKeyUsagePurpose::ServerAuth);
        params.not_after = rcgen::date_time_ymd(year, month, day);
        self.sign(params, KeyPair::generate().expect("key"))
    }

    /// A serving certificate for the given key (PEM, for example RSA made by openssl).
    pub fn server_pair_for_key(&self, key_pem: &str, common_name: &str) -> Pair {
        let key = KeyPair::from_pem(key_pem).expect("parse the key");
        self.issue(key, common_name, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate (what the API server would present).
    pub fn client_pair(&self, common_name: &str) -> Pair {
        self.issue(KeyPair::generate().expect("key"), common_name, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, key: KeyPair, common_name: &str, usage: ExtendedKeyUsagePurpose) -> Pair {
        self.sign(Self::leaf_params(common_name, usage), key)
    }

    fn leaf_params(common_name: &str, usage: ExtendedKeyUsagePurpose) -> CertificateParams {
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("names");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        params
    }

    fn sign(&self, params: CertificateParams, key: KeyPair) -> Pair {
        let issuer = Issuer::new(self.params.clone(), &self.key);
        let cert = params.signed_by(&key, &issuer).expect("sign");
        Pair { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }
}

/// The DER of the first certificate in `pem`, to compare with what a server presented.
pub fn leaf_der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::pem_slice_iter(pem.as_bytes()).next().expect("a certificate").expect("PEM")
}

/// An RSA 2048 private key in PKCS#8 PEM, made by the openssl command (ring cannot generate RSA).
pub fn openssl_rsa_key() -> String {
    let out = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("PEM is text")
}

/// A directory laid out like a Secret mounted by the kubelet:
/// `..<timestamp>/tls.{crt,key}`, `..data -> ..<timestamp>`, `tls.crt -> ..data/tls.crt`.
pub struct SecretMount {
    pub dir: tempfile::TempDir,
    generation: u32,
}

impl SecretMount {
    /// A mount holding `pair`.
    pub fn new(pair: &Pair) -> SecretMount {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut mount = SecretMount { dir, generation: 0 };
        mount.update(pair);
        for name in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), mount.dir.path().join(name)).expect("symlink");
        }
        mount
    }

    /// The files podmedic is pointed at.
    pub fn files(&self) -> CertFiles {
        CertFiles { cert: self.dir.path().join("tls.crt"), key: self.dir.path().join("tls.key") }
    }

    /// Updates the Secret the kubelet's way: a new timestamped directory, then `..data` replaced
    /// atomically by renaming a new symlink over it.
    pub fn update(&mut self, pair: &Pair) {
        self.generation += 1;
        let stamp = format!("..2026_11_22_00_00_00.{:04}", self.generation);
        let data = self.dir.path().join(&stamp);
        std::fs::create_dir(&data).expect("mkdir");
        std::fs::write(data.join("tls.crt"), &pair.cert_pem).expect("write cert");
        std::fs::write(data.join("tls.key"), &pair.key_pem).expect("write key");
        let tmp = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&stamp, &tmp).expect("symlink");
        std::fs::rename(&tmp, self.dir.path().join("..data")).expect("rename ..data");
    }
}
