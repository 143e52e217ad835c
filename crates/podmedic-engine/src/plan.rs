//! The plan: every concern run in order on the pod spec of an object (located by
//! [`crate::target`]), and what it did recorded in `podmedic.io/changes` and `podmedic.io/moved`.

use serde_json::Value;

use crate::annotations::{CHANGES_ANNOTATION, SKIP_ANNOTATION, is_true};
use crate::mutation::{Change, Context, Mutation};
use crate::object::{Metadata, Object};
use crate::patch::{Location, PatchBuilder};
use crate::target::{Holder, PodTarget};
use crate::warnings::Warnings;
use crate::{diagnose, probes, record, resources, sidecars, warnings};

/// Runs all concerns on the object.
pub(crate) fn plan(object: &Object<'_>, ctx: &Context<'_>) -> Mutation {
    let Some(target) = PodTarget::locate(object) else {
        return Mutation::default();
    };
    let mut out = Mutation::default();
    if target.containers().is_empty() {
        return out;
    }
    if is_skipped(&target) {
        out.notes.push(format!("{SKIP_ANNOTATION} is set: nothing changed"));
        return out;
    }
    if let Some(workload) = sidecars::self_managed(&target, ctx.policy) {
        out.notes.push(format!("{workload} manages its own containers: nothing changed"));
        return out;
    }

    let mut patch = PatchBuilder::new();
    let mut warnings = Warnings::default();
    let profiles = sidecars::Profiles::look_up(&target, ctx.policy);
    let selection = if target.run_to_completion {
        sidecars::select(&target, ctx, &profiles, &mut warnings, &mut out.notes)
    } else {
        sidecars::Selection::default()
    };
    let slots = sidecars::apply_moves(&target, &selection, &profiles, ctx.policy, &mut patch, &mut out.changes);
    let mut probe_notes = Vec::new();
    if !selection.moved.is_empty() {
        probes::add_startup_probes(
            &target,
            &slots,
            ctx.policy,
            &mut patch,
            &mut out.changes,
            &mut probe_notes,
            &mut warnings,
        );
    }
    let settings = resources::Settings::effective(ctx);
    resources::add_default_requests(&target, &slots, &settings, &mut patch, &mut out.changes, &mut out.notes);
    if !target.run_to_completion {
        probes::add_long_running_probes(&target, &slots, ctx, &mut patch, &mut out.changes);
    }
    warnings::collect(&target, &slots, &selection, &settings, ctx, &mut warnings);
    if diagnose::runs_at_admission(&target) {
        for (kind, finding) in diagnose::diagnose(&target, &slots, ctx).into_warnings() {
            warnings.push(kind, finding);
        }
    }
    out.notes.extend(probe_notes.iter().cloned());

    write_records(object, &target, &selection, &out.changes, &probe_notes, &mut patch);
    out.patch = patch.build();
    (out.warnings, out.warning_kinds) = warnings.finish();
    out
}

fn is_skipped(target: &PodTarget<'_>) -> bool {
    let yes = |m: Option<&Metadata<'_>>| m.and_then(|m| m.annotation(SKIP_ANNOTATION)).is_some_and(is_true);
    yes(target.object_meta) || yes(target.pod_meta)
}

/// The one place the plan writes annotations: podmedic's two records (see [`crate::record`]).
/// `podmedic.io/changes` first, since it creates the annotations map where there is none: a move
/// is always a change, so `podmedic.io/moved` (on the pod template only) finds the map in place.
fn write_records(
    object: &Object<'_>,
    target: &PodTarget<'_>,
    selection: &sidecars::Selection<'_>,
    changes: &[Change],
    notes: &[String],
    patch: &mut PatchBuilder,
) {
    if !changes.is_empty() {
        record_changes(target, changes, notes, patch);
    }
    record::moved::record_moves(object, target, selection, patch);
}

/// Records the changes in `podmedic.io/changes` on the object and on its pod template, rewriting
/// what an earlier run recorded there (see [`crate::record::changes`]).
fn record_changes(target: &PodTarget<'_>, changes: &[Change], notes: &[String], patch: &mut PatchBuilder) {
    let mut summary: Vec<String> = changes.iter().map(Change::entry).collect();
    summary.extend(notes.iter().cloned());
    let mut annotate = |meta: Option<&Metadata<'_>>, meta_loc: &Location| {
        let text = record::changes::rewrite(meta.and_then(|m| m.annotation(CHANGES_ANNOTATION)), &summary);
        match meta {
            None => patch.add(meta_loc, serde_json::json!({ "annotations": { CHANGES_ANNOTATION: text } })),
            Some(m) => patch.set_map_entry(
                &meta_loc.child("annotations"),
                m.annotations.is_some(),
                CHANGES_ANNOTATION,
                Value::String(text),
            ),
        }
    };
    annotate(target.pod_meta, &target.pod_meta_loc);
    if target.holder != Holder::Pod {
        annotate(target.object_meta, &Location::new(["metadata"]));
    }
}
