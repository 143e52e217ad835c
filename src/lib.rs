//! podmedic: a Kubernetes mutating admission webhook that turns the long-running sidecars of
//! run-to-completion Pods into native sidecars, and prevents common causes of Pending and
//! CrashLoopBackOff.
//!
//! Layout: [`mutate`] is the pure engine; [`admission`] decodes AdmissionReviews and dispatches to
//! it; [`config`] is the policy; [`fix`] and [`certs`] are the offline commands. [`server`] serves
//! the webhook over HTTPS ([`tls`] loads and reloads its certificates) with [`metrics`] and
//! [`readiness`] on a plain-HTTP port; [`cluster`] learns the cluster's capability and namespace
//! settings, and [`audit`] reports on a live cluster. The binary (`src/main.rs`) parses the [`cli`] and runs the
//! chosen subcommand.

pub mod audit;
pub mod certs;
pub mod cli;
pub mod cluster;
pub mod fix;
pub mod metrics;
pub mod readiness;
pub mod server;
pub mod tls;

pub use server::router;
