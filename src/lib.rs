//! podmedic: a Kubernetes mutating admission webhook that turns the long-running sidecars of
//! run-to-completion Pods into native sidecars, and prevents common causes of Pending and
//! CrashLoopBackOff.
//!
//! This crate is the binary's I/O around the pure engine (the `podmedic-engine` crate, which
//! decides every change). Dependencies point one way, `cli → commands / webhook / cluster →
//! engine` (ARCHITECTURE.md):
//! - [`cli`]: every clap type; converts the flags into the plain configurations below.
//! - [`webhook`]: `podmedic serve`, the engine behind axum and rustls, with metrics, readiness,
//!   certificate reload and graceful shutdown.
//! - [`cluster`]: what podmedic learns from the API server (versions, namespace settings).
//! - [`commands`]: `podmedic fix`, `podmedic audit`, `podmedic certs`.
//! - [`logging`]: the log filter and where lines go (in batches, for `serve`).
//! - [`pki`]: certificates, for `podmedic certs` and the ephemeral certificate of `serve`.
//!
//! The binary (`src/main.rs`) parses the command line and runs the chosen command.

pub mod cli;
pub mod cluster;
pub mod commands;
pub mod logging;
pub mod pki;
pub mod webhook;

pub use webhook::router;
