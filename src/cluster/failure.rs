//! Why a call to the API server failed, told apart so that the log points at the right fix: a
//! network path that does not reach the API server, a ServiceAccount without the RBAC podmedic
//! needs, credentials the API server does not accept, or another answer.
//!
//! kube reports a refused connection, a timeout, a name that does not resolve and a TLS failure as
//! `Error::Service` or `Error::HyperError` (the transport), and every error status as
//! `Error::Api` with its code; the watcher wraps both (`InitialListFailed`, `WatchFailed`, ...).

use std::fmt::Display;

use kube::core::Status;
use kube::runtime::watcher;

/// What went wrong talking to the API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiFailure {
    /// No answer: the connection was refused or timed out, the name did not resolve, or TLS failed.
    Unreachable {
        /// The innermost error, for example `Connection refused (os error 111)`.
        cause: String,
    },
    /// 403: podmedic's identity may not do this (RBAC).
    Forbidden {
        /// The API server's message, which names the user, verb and resource.
        message: String,
    },
    /// 401: the API server does not accept podmedic's credentials.
    Unauthorized {
        /// The API server's message.
        message: String,
    },
    /// Another error status (410 Gone, 429, 500, ...).
    Status {
        /// The HTTP status code.
        code: u16,
        /// The API server's message.
        message: String,
    },
    /// Anything else: an answer podmedic could not read, a client configuration error.
    Other {
        /// The error.
        error: String,
    },
}

impl ApiFailure {
    /// The failure behind an error of a call through the kube client.
    pub fn of_client(error: &kube::Error) -> ApiFailure {
        match error {
            kube::Error::Api(status) => ApiFailure::of_status(status),
            kube::Error::Service(_) | kube::Error::HyperError(_) | kube::Error::ReadEvents(_) => {
                ApiFailure::Unreachable { cause: wire_cause(error) }
            }
            other => ApiFailure::Other { error: other.to_string() },
        }
    }

    /// The failure behind an error of a watch (its list, its watch request, or an error event).
    pub fn of_watch(error: &watcher::Error) -> ApiFailure {
        match error {
            watcher::Error::InitialListFailed(e)
            | watcher::Error::WatchStartFailed(e)
            | watcher::Error::WatchFailed(e) => ApiFailure::of_client(e),
            watcher::Error::WatchError(status) => ApiFailure::of_status(status),
            watcher::Error::NoResourceVersion => ApiFailure::Other { error: error.to_string() },
        }
    }

    fn of_status(status: &Status) -> ApiFailure {
        let message = status.message.clone();
        if status.is_forbidden() {
            ApiFailure::Forbidden { message }
        } else if status.code == 401 || status.reason == "Unauthorized" {
            ApiFailure::Unauthorized { message }
        } else {
            ApiFailure::Status { code: status.code, message }
        }
    }

    /// A stable label for logs and metrics: `network`, `forbidden`, `unauthorized`, `api` or `other`.
    pub fn label(&self) -> &'static str {
        match self {
            ApiFailure::Unreachable { .. } => "network",
            ApiFailure::Forbidden { .. } => "forbidden",
            ApiFailure::Unauthorized { .. } => "unauthorized",
            ApiFailure::Status { .. } => "api",
            ApiFailure::Other { .. } => "other",
        }
    }

    /// What failed and where to look, in one phrase. Only a 403 sends the reader to RBAC, naming
    /// `permission` (for example `list and watch on nodes`).
    pub fn explain(&self, permission: &str) -> String {
        match self {
            ApiFailure::Unreachable { cause } => format!(
                "cannot reach the API server: {cause}. Check the network path to it (DNS, NetworkPolicy, \
                 firewall, the `kubernetes` Service) and that it is up"
            ),
            ApiFailure::Forbidden { message } => {
                format!(
                    "forbidden: {message}. podmedic's ServiceAccount needs {permission} (RBAC, deploy/base/rbac.yaml)"
                )
            }
            ApiFailure::Unauthorized { message } => format!(
                "the API server does not accept podmedic's credentials (401 {message}). Check the \
                 ServiceAccount token or the kubeconfig's user"
            ),
            ApiFailure::Status { code, message } => format!("the API server answered {code}: {message}"),
            ApiFailure::Other { error } => error.clone(),
        }
    }
}

/// Logs a failed call that is being retried: what was attempted, the failure's kind as the field
/// `failure`, and its explanation; the whole error as the field `error`.
pub(super) fn warn_retrying(attempt: &str, permission: &str, failure: &ApiFailure, error: &dyn Display) {
    tracing::warn!(failure = failure.label(), %error, "{attempt} failed, retrying with backoff: {}", failure.explain(permission));
}

/// The message of the last error in `error`'s source chain: the one that says what happened on
/// the wire (`Connection refused (os error 111)`, `failed to lookup address information`, `invalid
/// peer certificate`), after the kind of the I/O error on the way when the message does not say it
/// already (`timed out: deadline has elapsed`).
fn wire_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = error;
    let mut io_kind = None;
    loop {
        if let Some(io) = innermost.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        match innermost.source() {
            Some(source) => innermost = source,
            None => break,
        }
    }
    let message = innermost.to_string();
    match io_kind.map(|kind| kind.to_string()) {
        Some(kind) if kind != "other error" && !message.to_lowercase().contains(&kind) => format!("{kind}: {message}"),
        _ => message,
    }
}

#[cfg(test)]
mod tests;
