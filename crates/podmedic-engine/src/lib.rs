//! podmedic's engine: pure functions from a Kubernetes object's raw JSON to the JSON Patch that
//! fixes it, and from an AdmissionReview body to the AdmissionReview answer.
//!
//! Nothing in this crate performs network I/O or depends on an async runtime, a Kubernetes client,
//! TLS or a command-line parser: the webhook (`podmedic serve`), `podmedic fix` and `podmedic audit`
//! all call into it, and its tests, property tests, fuzz replay and benchmarks link nothing else.
//!
//! - [`admission`]: the AdmissionReview envelope in, the wire response out ([`admission::admit`]).
//! - [`object`]: a borrowed, partial view of the object; [`mutate_json`] / [`mutate_value`] /
//!   [`mutate_object`] run the plan on it with a [`Context`] (policy, the cluster's capability,
//!   the namespace's settings) and return a [`Mutation`].
//! - the plan (`plan.rs`, on the pod spec located by `target.rs`) and its concerns: sidecars,
//!   probes, resources, warnings, and the patch builder.
//! - [`policy`]: the sidecar catalogue and defaults (the embedded default plus a user's YAML file).
//! - [`kubernetes`]: Kubernetes value types: image references, quantities, versions and the
//!   native-sidecar rule.
//! - [`annotations`]: every `podmedic.io/*` key, and the namespace settings read from them.
//! - [`diagnose`]: checks that warn about Pods that will not start (nodes, references, probes),
//!   named in [`checks`], against what [`cluster`] describes of the cluster.
//! - [`converge`]: UPDATEs of Jobs and CronJobs whose template podmedic changed before (GitOps
//!   re-applies), by what [`record`] says podmedic moved.
//! - [`record`]: podmedic's records on the objects it changes: `podmedic.io/changes` for people,
//!   `podmedic.io/moved` for podmedic.
//!
//! The engine reads a borrowed, partial view of the object (see [`object`]) and emits
//! `move`/`add` operations against the object exactly as it was received, so fields that our
//! types do not know survive untouched.

pub mod admission;
pub mod annotations;
pub mod checks;
pub mod cluster;
pub mod converge;
pub mod diagnose;
pub mod kubernetes;
mod meshes;
mod mutation;
pub mod object;
mod patch;
mod plan;
pub mod policy;
mod ports;
mod probes;
mod proxies;
pub mod record;
mod resources;
mod sidecars;
mod target;
mod warnings;
pub mod work;

pub use annotations::NamespaceSettings;
pub use kubernetes::{ImageRef, KubeVersion, NativeSidecars, Quantity};
pub use mutation::{Change, ChangeKind, Context, MutateError, Mutation};
pub use patch::{Location, PatchBuilder, escape_pointer_token};
pub use policy::Policy;
pub use probes::{STARTUP_FAILURE_THRESHOLD, STARTUP_PERIOD_SECONDS};
pub use record::MAX_CHANGES_LEN;
pub use warnings::{MAX_WARNING_LEN, MAX_WARNINGS, WarningKind, shorten as shorten_warning, shorten_to};

/// Computes the mutation for an object given as raw JSON text.
pub fn mutate_json(raw: &str, ctx: &Context<'_>) -> Result<Mutation, MutateError> {
    let object = object::Object::from_json(raw)?;
    Ok(plan::plan(&object, ctx))
}

/// Computes the mutation for an object already decoded into the engine's view (the webhook decodes
/// it together with the AdmissionReview, in one pass).
pub fn mutate_object(object: &object::Object<'_>, ctx: &Context<'_>) -> Mutation {
    plan::plan(object, ctx)
}

/// Runs the checks of [`diagnose`] on any object with a pod spec, Pods included, with the
/// containers where they are (`podmedic audit` explains a stuck Pod with them).
pub fn diagnose_value(value: &serde_json::Value, ctx: &Context<'_>) -> Result<diagnose::Diagnosis, MutateError> {
    let object = object::Object::from_value(value)?;
    Ok(diagnose::diagnose_object(&object, ctx))
}

/// Computes the mutation for an object already parsed into a [`serde_json::Value`].
pub fn mutate_value(value: &serde_json::Value, ctx: &Context<'_>) -> Result<Mutation, MutateError> {
    let object = object::Object::from_value(value)?;
    Ok(plan::plan(&object, ctx))
}

#[cfg(test)]
mod tests;

/// The README's example, compiled and run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExample;
