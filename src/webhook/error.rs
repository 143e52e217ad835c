//! Why `podmedic serve` could not start.

use std::net::SocketAddr;

use podmedic_engine::policy::PolicyError;

use super::tls::TlsError;
use crate::cluster::ClusterError;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Certificates could not be loaded or made.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The policy file could not be loaded.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The cluster connection given could not be used.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// No certificate was given, and podmedic runs in a Pod.
    #[error(
        "no --tls-cert given, and podmedic runs in a Pod (KUBERNETES_SERVICE_HOST is set): no API server \
         trusts an ephemeral certificate; mount the serving certificate and pass --tls-cert and --tls-key \
         (deploy/ does), or pass --allow-ephemeral-certificate"
    )]
    EphemeralInCluster,
    /// A listener could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}
