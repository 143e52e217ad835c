//! Connecting to the API server: an explicit kubeconfig, or whatever kube infers.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::ClusterError;

/// A client for the cluster: from `kubeconfig` when given (an error if it cannot be used), else from
/// `KUBECONFIG`, `~/.kube/config` or the in-cluster service account. `Ok(None)` when no cluster is
/// configured at all.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<Option<Client>, ClusterError> {
    let config = match kubeconfig {
        Some(path) => {
            let wrap = |source| ClusterError::Kubeconfig { path: path.to_owned(), source };
            let file = Kubeconfig::read_from(path).map_err(wrap)?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await.map_err(wrap)?
        }
        None => match Config::infer().await {
            Ok(config) => config,
            Err(error) => {
                // KUBECONFIG set but unusable is a mistake worth seeing; no configuration at all is not.
                if std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty()) {
                    tracing::warn!(%error, "KUBECONFIG is set but no cluster configuration could be loaded from it");
                } else {
                    tracing::debug!(%error, "no Kubernetes configuration found");
                }
                return Ok(None);
            }
        },
    };
    Client::try_from(config).map(Some).map_err(ClusterError::Client)
}
