//! Hot reload: the serving pair and the client CA bundle, re-read on a timer.
//!
//! [`CertReloader`] re-reads the files *by path* and compares contents. Watching files for events
//! would miss the kubelet's update of a mounted Secret, which writes a new timestamped directory
//! and atomically renames the `..data` symlink over the old one: the files named in the mount
//! (`tls.crt -> ..data/tls.crt`) never change themselves. In such a mount `..data` is resolved
//! once and both files of the pair are read from the directory it names, so a swap between the
//! two reads cannot pair an old certificate with a new key (that used to be refused, and counted
//! as a failed reload). The pair is checked as a pair and the client CA bundle parsed; anything
//! refused leaves the previous one in use.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::sign::CertifiedKey;

use super::{
    CertResolver, TlsError, certified_key_from_pem, client_verifier_from_pem, not_after, path_text, server_config_with,
};
use crate::webhook::metrics::Metrics;

/// The certificate and key files of `--tls-cert` and `--tls-key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// What one look at the files found.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// The files are as last seen.
    Unchanged,
    /// The new contents were loaded and are in use.
    Reloaded,
    /// The files changed but were refused; the previous ones are still in use.
    Refused(TlsError),
}

/// Re-reads the serving pair and the client CA bundle, and swaps what changed into the
/// [`CertResolver`] and the server configuration.
#[derive(Debug)]
pub struct CertReloader {
    /// `None` for the ephemeral certificate, which never changes.
    files: Option<CertFiles>,
    client_ca: Option<PathBuf>,
    resolver: Arc<CertResolver>,
    config: Arc<ArcSwap<ServerConfig>>,
    /// The contents last read, loaded or refused, so that a bad file is reported once.
    seen_pair: (Vec<u8>, Vec<u8>),
    seen_client_ca: Vec<u8>,
}

impl CertReloader {
    /// Loads the pair and builds the server configuration, without client authentication; fails
    /// when the pair cannot be used, since there is nothing to serve yet.
    pub fn load(files: CertFiles) -> Result<CertReloader, TlsError> {
        Self::load_with(Some(files), None, None)
    }

    /// Loads the pair from `files` (or serves `ephemeral`), and the client CA bundle when given.
    pub fn load_with(
        files: Option<CertFiles>,
        ephemeral: Option<CertifiedKey>,
        client_ca: Option<PathBuf>,
    ) -> Result<CertReloader, TlsError> {
        let (key, seen_pair) = match (&files, ephemeral) {
            (Some(files), _) => {
                let (cert_pem, key_pem) = read_pair(files)?;
                let key = certified_key_from_pem(&cert_pem, &key_pem, &path_text(&files.cert), &path_text(&files.key))?;
                (key, (cert_pem, key_pem))
            }
            (None, Some(key)) => (key, (Vec::new(), Vec::new())),
            (None, None) => {
                return Err(TlsError::Unusable { path: "--tls-cert".into(), detail: "no certificate given".into() });
            }
        };
        let resolver = Arc::new(CertResolver::new(key));
        let (verifier, seen_client_ca) = match &client_ca {
            Some(path) => {
                let pem = read(path)?;
                (Some(client_verifier_from_pem(&pem, &path_text(path))?), pem)
            }
            None => (None, Vec::new()),
        };
        let config = server_config_with(resolver.clone(), verifier)?;
        Ok(CertReloader {
            files,
            client_ca,
            resolver,
            config: Arc::new(ArcSwap::from_pointee(config)),
            seen_pair,
            seen_client_ca,
        })
    }

    /// The resolver this reloader updates.
    pub fn resolver(&self) -> Arc<CertResolver> {
        self.resolver.clone()
    }

    /// The server configuration in use; replaced when the client CA changes.
    pub fn config(&self) -> Arc<ArcSwap<ServerConfig>> {
        self.config.clone()
    }

    /// True when there is anything to re-read.
    pub fn watches_files(&self) -> bool {
        self.files.is_some() || self.client_ca.is_some()
    }

    /// Reads the pair again and swaps it in when its contents changed and are valid.
    pub fn reload(&mut self) -> ReloadOutcome {
        let Some(files) = &self.files else { return ReloadOutcome::Unchanged };
        let (cert_pem, key_pem) = match read_pair(files) {
            Ok(pair) => pair,
            // A missing file is usually the middle of an update by hand; do not count it until
            // it persists with new contents.
            Err(e) => return ReloadOutcome::Refused(e),
        };
        if (&cert_pem, &key_pem) == (&self.seen_pair.0, &self.seen_pair.1) {
            return ReloadOutcome::Unchanged;
        }
        let outcome = match certified_key_from_pem(&cert_pem, &key_pem, &path_text(&files.cert), &path_text(&files.key))
        {
            Ok(key) => {
                self.resolver.replace(key);
                ReloadOutcome::Reloaded
            }
            Err(e) => ReloadOutcome::Refused(e),
        };
        self.seen_pair = (cert_pem, key_pem);
        outcome
    }

    /// Reads the client CA bundle again and, when it changed and is valid, makes new connections
    /// verify client certificates against it.
    pub fn reload_client_ca(&mut self) -> ReloadOutcome {
        let Some(path) = &self.client_ca else { return ReloadOutcome::Unchanged };
        let pem = match read(path) {
            Ok(pem) => pem,
            Err(e) => return ReloadOutcome::Refused(e),
        };
        if pem == self.seen_client_ca {
            return ReloadOutcome::Unchanged;
        }
        let outcome = match client_verifier_from_pem(&pem, &path_text(path))
            .and_then(|verifier| server_config_with(self.resolver.clone(), Some(verifier)))
        {
            Ok(config) => {
                self.config.store(Arc::new(config));
                ReloadOutcome::Reloaded
            }
            Err(e) => ReloadOutcome::Refused(e),
        };
        self.seen_client_ca = pem;
        outcome
    }

    /// Reloads every `interval` until the task is dropped, logging and counting each change.
    pub async fn run(mut self, interval: Duration, metrics: Arc<Metrics>) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut pair_read_error: Option<String> = None;
        let mut ca_read_error: Option<String> = None;
        loop {
            ticker.tick().await;
            // Reading small files; done off the async workers so a slow volume cannot stall them.
            let (reloader, pair, ca) = match tokio::task::spawn_blocking(move || {
                let pair = self.reload();
                let ca = self.reload_client_ca();
                (self, pair, ca)
            })
            .await
            {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!(error = %e, "certificate reload task failed; no more reloads");
                    return;
                }
            };
            self = reloader;
            if matches!(pair, ReloadOutcome::Reloaded) {
                metrics.tls_certificate_served(not_after(&self.resolver.current()));
            }
            report(pair, ("the TLS certificate", "serving the new TLS certificate"), &mut pair_read_error, &metrics);
            let ca_names = ("the client CA bundle", "verifying client certificates with the new client CA bundle");
            report(ca, ca_names, &mut ca_read_error, &metrics);
        }
    }
}

/// Logs and counts one reload's outcome; `(what, done)` name the files and say what a reload did.
/// A read error is logged once until it changes, and not counted (it is usually the middle of an
/// update).
fn report(outcome: ReloadOutcome, (what, done): (&str, &str), last_read_error: &mut Option<String>, metrics: &Metrics) {
    match outcome {
        ReloadOutcome::Unchanged => *last_read_error = None,
        ReloadOutcome::Reloaded => {
            *last_read_error = None;
            metrics.tls_reload(true);
            tracing::info!("{done}");
        }
        ReloadOutcome::Refused(e @ TlsError::Read { .. }) => {
            let message = e.to_string();
            if last_read_error.as_deref() != Some(&message) {
                tracing::warn!(error = %message, "cannot read {what}; still using the previous one");
                *last_read_error = Some(message);
            }
        }
        ReloadOutcome::Refused(e) => {
            *last_read_error = None;
            metrics.tls_reload(false);
            tracing::error!(error = %e, "refused the new contents of {what}; still using the previous one");
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path_text(path), source })
}

fn read_pair(files: &CertFiles) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let (cert, key) = resolved_pair(files);
    Ok((read(&cert)?, read(&key)?))
}

/// Where to read the pair from: when both files are in one kubelet-style Secret mount, the
/// directory `..data` points to now (read once), else the paths as given.
fn resolved_pair(files: &CertFiles) -> (PathBuf, PathBuf) {
    let as_given = (files.cert.clone(), files.key.clone());
    let (Some(dir), Some(cert_name), Some(key_name)) =
        (files.cert.parent(), files.cert.file_name(), files.key.file_name())
    else {
        return as_given;
    };
    if files.key.parent() != Some(dir) {
        return as_given;
    }
    let Ok(target) = std::fs::read_link(dir.join("..data")) else { return as_given };
    let data = dir.join(target);
    let (cert, key) = (data.join(cert_name), data.join(key_name));
    if cert.is_file() && key.is_file() { (cert, key) } else { as_given }
}

#[cfg(test)]
mod tests {
    use super::super::tests::bundle;
    use super::*;

    #[test]
    fn reloads_only_when_contents_change_and_keeps_the_old_pair_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let files = CertFiles { cert: dir.path().join("tls.crt"), key: dir.path().join("tls.key") };
        let first = bundle();
        std::fs::write(&files.cert, &first.cert_pem).unwrap();
        std::fs::write(&files.key, &first.key_pem).unwrap();
        let mut reloader = CertReloader::load(files.clone()).unwrap();
        let resolver = reloader.resolver();
        let served = resolver.current().cert[0].clone();
        assert!(matches!(reloader.reload(), ReloadOutcome::Unchanged));

        let other = bundle();
        std::fs::write(&files.cert, &other.cert_pem).unwrap();
        assert!(matches!(reloader.reload(), ReloadOutcome::Refused(TlsError::KeyMismatch { .. })));
        assert_eq!(resolver.current().cert[0], served);
        // The same bad pair is not reported again.
        assert!(matches!(reloader.reload(), ReloadOutcome::Unchanged));

        std::fs::write(&files.key, &other.key_pem).unwrap();
        assert!(matches!(reloader.reload(), ReloadOutcome::Reloaded));
        assert_ne!(resolver.current().cert[0], served);
    }

    /// A kubelet-style mount: `..2024_x/tls.{crt,key}`, `..data -> ..2024_x`, `tls.crt -> ..data/tls.crt`.
    fn mount(dir: &Path, stamp: &str, pair: &crate::pki::CertBundle) {
        let data = dir.join(stamp);
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("tls.crt"), &pair.cert_pem).unwrap();
        std::fs::write(data.join("tls.key"), &pair.key_pem).unwrap();
        let _ = std::fs::remove_file(dir.join("..data"));
        std::os::unix::fs::symlink(stamp, dir.join("..data")).unwrap();
        for name in ["tls.crt", "tls.key"] {
            if std::fs::symlink_metadata(dir.join(name)).is_err() {
                std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
            }
        }
    }

    #[test]
    fn a_secret_mount_is_read_from_the_directory_data_names() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (bundle(), bundle());
        mount(dir.path(), "..2024_01", &first);
        let files = CertFiles { cert: dir.path().join("tls.crt"), key: dir.path().join("tls.key") };
        assert_eq!(resolved_pair(&files), (dir.path().join("..2024_01/tls.crt"), dir.path().join("..2024_01/tls.key")));
        let mut reloader = CertReloader::load(files.clone()).unwrap();
        mount(dir.path(), "..2024_02", &second);
        assert!(matches!(reloader.reload(), ReloadOutcome::Reloaded));
        assert_eq!(resolved_pair(&files).0, dir.path().join("..2024_02/tls.crt"));
        // Files outside such a mount are read where they are.
        let plain = CertFiles { cert: "/a/tls.crt".into(), key: "/b/tls.key".into() };
        assert_eq!(resolved_pair(&plain), (plain.cert.clone(), plain.key.clone()));
    }

    #[test]
    fn a_new_client_ca_is_used_for_new_connections_and_a_bad_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let serving = bundle();
        let files = CertFiles { cert: dir.path().join("tls.crt"), key: dir.path().join("tls.key") };
        std::fs::write(&files.cert, &serving.cert_pem).unwrap();
        std::fs::write(&files.key, &serving.key_pem).unwrap();
        let ca = dir.path().join("client-ca.crt");
        std::fs::write(&ca, bundle().ca_cert_pem).unwrap();
        let mut reloader = CertReloader::load_with(Some(files), None, Some(ca.clone())).unwrap();
        let config = reloader.config();
        let before = config.load_full();
        assert!(matches!(reloader.reload_client_ca(), ReloadOutcome::Unchanged));

        std::fs::write(&ca, "not a certificate").unwrap();
        assert!(matches!(reloader.reload_client_ca(), ReloadOutcome::Refused(TlsError::ClientCa { .. })));
        assert!(Arc::ptr_eq(&before, &config.load_full()), "the old configuration stays");

        std::fs::write(&ca, bundle().ca_cert_pem).unwrap();
        assert!(matches!(reloader.reload_client_ca(), ReloadOutcome::Reloaded));
        assert!(!Arc::ptr_eq(&before, &config.load_full()));
    }
}
