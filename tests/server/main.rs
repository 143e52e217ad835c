//! The webhook server, end to end: a real podmedic (in process on 127.0.0.1:0, or the binary as a
//! child process) behind HTTPS, driven by the shared test client in `tests/support/`.
//!
//! `cargo test --test server` runs them all; a module's name selects it, for example
//! `cargo test --test server hostile -- --nocapture`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
mod support;

mod admission;
mod cluster;
mod faults;
mod hostile;
mod http_errors;
mod isolation;
mod monitoring;
mod shutdown;
mod startup;
mod tls;
