//! Connecting to the API server: an explicit kubeconfig, or whatever kube infers.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};

/// Why the cluster layer could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The kubeconfig given explicitly could not be read or used.
    #[error("cannot use kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What kube said.
        source: KubeconfigError,
    },
    /// A client could not be built from the configuration.
    #[error("cannot build a Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// What [`connect`] found.
pub enum Connection {
    /// A client for the cluster (not yet known to answer).
    Client(Client),
    /// No cluster is configured, and podmedic does not run in one (`podmedic serve` on a laptop).
    NoCluster,
    /// podmedic runs in a Pod (`KUBERNETES_SERVICE_HOST` is set) but found no usable configuration
    /// (no service account token mounted, say): the cluster exists, podmedic cannot see it.
    InClusterWithoutConfig(String),
}

/// True when podmedic runs in a Pod: the kubelet sets `KUBERNETES_SERVICE_HOST` in every container
/// (whatever `enableServiceLinks` says).
pub fn in_a_pod() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|v| !v.is_empty())
}

/// A client for the cluster: from `kubeconfig` when given (an error if it cannot be used), else from
/// `KUBECONFIG`, `~/.kube/config` or the in-cluster service account.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<Connection, ClusterError> {
    let config = match kubeconfig {
        Some(path) => {
            let wrap = |source| ClusterError::Kubeconfig { path: path.to_owned(), source };
            let file = Kubeconfig::read_from(path).map_err(wrap)?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await.map_err(wrap)?
        }
        None => match Config::infer().await {
            Ok(config) => config,
            Err(error) => {
                if in_a_pod() {
                    return Ok(Connection::InClusterWithoutConfig(error.to_string()));
                }
                // KUBECONFIG set but unusable is a mistake worth seeing; no configuration at all is not.
                if std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty()) {
                    tracing::warn!(%error, "KUBECONFIG is set but no cluster configuration could be loaded from it");
                } else {
                    tracing::debug!(%error, "no Kubernetes configuration found");
                }
                return Ok(Connection::NoCluster);
            }
        },
    };
    Client::try_from(config).map(Connection::Client).map_err(ClusterError::Client)
}
