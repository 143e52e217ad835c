//! What users run and apply: `podmedic fix` and `podmedic certs` as commands, and the manifests in
//! `deploy/` (rendered with kustomize where `kubectl` is on PATH) with the files `podmedic certs`
//! writes for them.
//!
//! `cargo test --test cli` runs them all; `cargo test --test cli deploy` only the manifests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod certs;
mod deploy;
mod fix;
