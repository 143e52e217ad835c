//! podmedic: a Kubernetes mutating admission webhook that turns the long-running sidecars of
//! run-to-completion Pods into native sidecars, and prevents common causes of Pending and
//! CrashLoopBackOff.
//!
//! Layout: [`mutate`] is the pure engine; [`admission`] decodes AdmissionReviews and dispatches to
//! it; [`config`] is the policy; [`fix`] and [`certs`] are the offline commands. The binary
//! (`src/main.rs`) wires these to the CLI.

pub mod admission;
pub mod audit;
pub mod certs;
pub mod cluster;
pub mod config;
pub mod fix;
pub mod mutate;
