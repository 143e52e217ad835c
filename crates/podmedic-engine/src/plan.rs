//! The plan: every concern run in order on the pod spec of an object (located by
//! [`crate::target`]), and the changes recorded in `podmedic.io/changes`.

use serde_json::Value;

use crate::annotations::{CHANGES_ANNOTATION, SKIP_ANNOTATION, is_true};
use crate::mutation::{Change, Context, Mutation};
use crate::object::{Metadata, Object};
use crate::patch::{Location, PatchBuilder};
use crate::target::{Holder, PodTarget};
use crate::warnings::Warnings;
use crate::{probes, resources, sidecars, warnings};

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
        probes::add_startup_probes(&target, &slots, &mut patch, &mut out.changes, &mut probe_notes, &mut warnings);
    }
    let settings = resources::Settings::effective(ctx);
    resources::add_default_requests(&target, &slots, &settings, &mut patch, &mut out.changes, &mut out.notes);
    if !target.run_to_completion {
        probes::add_long_running_probes(&target, &slots, ctx, &mut patch, &mut out.changes);
    }
    warnings::collect(&target, &slots, &selection, &settings, ctx, &mut warnings);
    out.notes.extend(probe_notes.iter().cloned());

    if !out.changes.is_empty() {
        record_changes(&target, &out.changes, &probe_notes, &mut patch);
    }
    out.patch = patch.build();
    out.warnings = warnings.finish();
    out
}

fn is_skipped(target: &PodTarget<'_>) -> bool {
    let yes = |m: Option<&Metadata<'_>>| m.and_then(|m| m.annotation(SKIP_ANNOTATION)).is_some_and(is_true);
    yes(target.object_meta) || yes(target.pod_meta)
}

/// Longest `podmedic.io/changes` value podmedic writes. An object has 256 KiB for all its
/// annotations, and a record appended to on every change would grow without end (or arrive at
/// 3 MiB from a hostile client, to be sent back bigger): the newest entries are kept.
pub(crate) const MAX_CHANGES_LEN: usize = 4096;

/// Records the changes in `podmedic.io/changes` on the object and on its pod template.
fn record_changes(target: &PodTarget<'_>, changes: &[Change], notes: &[String], patch: &mut PatchBuilder) {
    let mut summary: Vec<String> = changes.iter().map(ToString::to_string).collect();
    summary.extend(notes.iter().cloned());
    let summary = summary.join("; ");
    let mut annotate = |meta: Option<&Metadata<'_>>, meta_loc: &Location| {
        let text = changes_record(meta.and_then(|m| m.annotation(CHANGES_ANNOTATION)), &summary);
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

/// The record after this mutation: the previous one, then `summary`, at most [`MAX_CHANGES_LEN`]
/// bytes; what does not fit is cut at an entry boundary and marked `...`.
fn changes_record(previous: Option<&str>, summary: &str) -> String {
    crate::work::step(summary.len().min(MAX_CHANGES_LEN));
    let summary = head_within(summary, MAX_CHANGES_LEN);
    let Some(previous) = previous.filter(|p| !p.is_empty()) else {
        return summary;
    };
    let room = MAX_CHANGES_LEN.saturating_sub(summary.len() + "; ".len());
    if previous.len() <= room {
        return format!("{previous}; {summary}");
    }
    crate::work::step(room);
    match tail_within(previous, room) {
        Some(newest) => format!("{newest}; {summary}"),
        None => summary,
    }
}

/// `text`, or its first entries (`; `-separated) followed by `; ...`, within `limit` bytes.
fn head_within(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut cut = limit - "; ...".len();
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let kept = text[..cut].rfind("; ").map_or(&text[..cut], |end| &text[..end]);
    format!("{kept}; ...")
}

/// `...; ` followed by the last entries of `text`, within `limit` bytes; `None` if no entry fits.
fn tail_within(text: &str, limit: usize) -> Option<String> {
    let mut start = text.len().checked_sub(limit.checked_sub("...; ".len())?)?;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let newest = &text[start..];
    let from = newest.find("; ")? + "; ".len();
    Some(format!("...; {}", &newest[from..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_changes_record_keeps_the_newest_entries_within_its_limit() {
        assert_eq!(changes_record(None, "a: moved"), "a: moved");
        assert_eq!(changes_record(Some(""), "a: moved"), "a: moved");
        assert_eq!(changes_record(Some("a: moved"), "b: probe"), "a: moved; b: probe");

        let old: Vec<String> = (0..100_000).map(|i| format!("c{i}: moved")).collect();
        let record = changes_record(Some(&old.join("; ")), "new: moved");
        assert!(record.len() <= MAX_CHANGES_LEN, "{}", record.len());
        assert!(record.starts_with("...; c") && record.ends_with("c99999: moved; new: moved"), "{record}");
        assert!(record.split("; ").skip(1).all(|entry| entry.ends_with(": moved")), "whole entries only");

        let huge = "é".repeat(3 << 20);
        let record = changes_record(Some(&huge), "new: moved");
        assert_eq!(record, "new: moved", "no entry of the old record fits");

        let many: Vec<String> = (0..10_000).map(|i| format!("c{i}: default requests cpu=100m")).collect();
        let record = changes_record(None, &many.join("; "));
        assert!(record.len() <= MAX_CHANGES_LEN && record.starts_with("c0: ") && record.ends_with("; ..."));
    }
}
