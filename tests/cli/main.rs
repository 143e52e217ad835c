//! What users run and apply: `podmedic fix` and `podmedic certs` as commands, and the manifests in
//! `deploy/` (rendered with kustomize where `kubectl` is on PATH) with the files `podmedic certs`
//! writes for them; and what a release is made of (`release`: the version everywhere, the dist
//! profile, the release workflow, which cannot run here, parsed and checked).
//!
//! `cargo test --test cli` runs them all; `cargo test --test cli deploy` only the manifests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod certs;
mod deploy;
mod fix;
mod plugin;
mod release;
mod reports;
