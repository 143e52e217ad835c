//! UPDATEs of Jobs and CronJobs whose pod template podmedic changed before: converging a GitOps
//! re-apply with podmedic's earlier move.
//!
//! After podmedic moved a sidecar into `initContainers`, every re-apply of the unchanged manifest
//! (`kubectl apply`, `kubectl apply --server-side`, `kubectl diff`, Argo CD, Flux, Helm) puts the
//! user's container back into `containers`, while podmedic's copy stays in `initContainers`:
//! two containers with one name, which the API server refuses. The user's container in
//! `containers` is the user's current intent, and this module decides, per placed init container
//! (`verdict`), what the update becomes:
//!
//! | the user's container | [`UpdateMode::Template`] (`/mutate`) | [`UpdateMode::Undo`] (`/converge`) |
//! |---|---|---|
//! | unchanged | the stored init container stays byte for byte, the copy in `containers` goes | CronJob: podmedic's init container goes, the user's container stays where the apply put it; Job: as in template mode |
//! | changed | the user's container replaces the init container in its place, with podmedic's additions made again | podmedic's init container goes |
//! | applied before this update, no longer applied (`applied`) | the init container goes | the init container goes |
//!
//! Byte for byte, not recomputed: a newer podmedic may choose other flags or ports, and a Job's
//! pod template is immutable, so a Job's re-apply is legal only if its template ends up equal to
//! the stored one. That is also why, in undo mode, a Job keeps its stored template: it cannot be
//! changed back. An undone move also leaves `podmedic.io/moved` and `podmedic.io/changes`.
//! `managedFields` are never touched.

mod applied;
mod rewrite;
mod verdict;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::annotations::{CHANGES_ANNOTATION, MOVED_ANNOTATION};
use crate::mutation::{Change, ChangeKind, Context, MutateError, Mutation};
use crate::record::MovedRecord;
use crate::warnings::{WarningKind, Warnings};
use rewrite::{annotation, at_mut, list_at, set_annotation};
use verdict::{Evidence, Finding, Verdict, is_restartable, name_of};

/// How an UPDATE treats podmedic's earlier moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateMode {
    /// Template mode: podmedic fixes templates, and its moves stand (`/mutate`).
    Template,
    /// Pods mode: podmedic fixes Pods only, and undoes the moves an earlier podmedic made in
    /// templates as they are re-applied (`/converge`).
    Undo,
}

/// A Job or a CronJob: where its pod template is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TemplateKind {
    Job,
    CronJob,
}

impl TemplateKind {
    fn of(object: &Value) -> Option<TemplateKind> {
        let batch_v1 = object.get("apiVersion").and_then(Value::as_str).is_none_or(|v| v == "batch/v1");
        match object.get("kind").and_then(Value::as_str) {
            Some("Job") if batch_v1 => Some(TemplateKind::Job),
            Some("CronJob") if batch_v1 => Some(TemplateKind::CronJob),
            _ => None,
        }
    }

    fn template(self) -> &'static [&'static str] {
        match self {
            TemplateKind::Job => &["spec", "template"],
            TemplateKind::CronJob => &["spec", "jobTemplate", "spec", "template"],
        }
    }

    fn name(self) -> &'static str {
        match self {
            TemplateKind::Job => "Job",
            TemplateKind::CronJob => "CronJob",
        }
    }
}

/// What becomes of one placed init container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    /// The stored init container stays; the user's copy leaves `containers`.
    Keep,
    /// The init container goes; the plan moves the user's container again.
    Replace,
    /// The init container goes; the user's container stays in `containers`.
    Restore,
    /// The init container goes; the user no longer applies it.
    Remove,
}

fn action(mode: UpdateMode, kind: TemplateKind, verdict: Verdict) -> Action {
    match (mode, verdict) {
        (_, Verdict::Removed { .. }) => Action::Remove,
        (UpdateMode::Template, Verdict::Unchanged { .. }) => Action::Keep,
        (UpdateMode::Template, Verdict::Changed { .. }) => Action::Replace,
        (UpdateMode::Undo, Verdict::Unchanged { .. }) if kind == TemplateKind::Job => Action::Keep,
        (UpdateMode::Undo, _) => Action::Restore,
    }
}

/// Converges an UPDATE given as the object's and the stored object's JSON text.
pub fn converge_update(
    object: &str,
    stored: Option<&str>,
    mode: UpdateMode,
    ctx: &Context<'_>,
) -> Result<Mutation, MutateError> {
    if !within_value_limit(object) || stored.is_some_and(|s| !within_value_limit(s)) {
        return Err(MutateError::Malformed(format!(
            "more than {} values in the object or its stored version; podmedic does not read objects this large",
            crate::object::MAX_ITEMS
        )));
    }
    let object: Value = serde_json::from_str(object).map_err(|e| MutateError::Malformed(e.to_string()))?;
    // An unreadable stored object only hides the stored init containers; the record still counts.
    let stored = stored.and_then(|s| serde_json::from_str::<Value>(s).ok()).unwrap_or(Value::Null);
    converge(&object, &stored, mode, ctx)
}

/// Whether the JSON text `json` has at most [`crate::object::MAX_ITEMS`] brackets and commas
/// outside strings (about one per list item or map entry, two per empty list in a list), so that
/// parsing it into a `serde_json::Value` stays bounded in memory: a tree costs 32 to 100 bytes per
/// value, and 3 MiB of `[],` would be a million of them. One pass over the bytes.
pub(crate) fn within_value_limit(json: &str) -> bool {
    let (mut values, mut in_string, mut escaped) = (0usize, false, false);
    for byte in json.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' | b',' => {
                values += 1;
                if values > crate::object::MAX_ITEMS {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

/// Converges an UPDATE of `object`, whose stored version is `stored` (`null` when unknown).
pub fn converge(object: &Value, stored: &Value, mode: UpdateMode, ctx: &Context<'_>) -> Result<Mutation, MutateError> {
    let kind = TemplateKind::of(object);
    let template = kind.map(TemplateKind::template).unwrap_or_default();
    let spec: Vec<&str> = template.iter().copied().chain(["spec"]).collect();
    // What the user applies now and applied before: a container the user stopped applying is
    // never moved (another field manager keeps it in `containers`; the next request would remove
    // the move as deleted from Git).
    let (applied, applied_before) = match kind {
        Some(_) => (applied::applied_names(object, &spec), applied::applied_names(stored, &spec)),
        None => (None, None),
    };
    let held_regular: BTreeSet<String> = match (&applied, &applied_before) {
        (Some(now), Some(before)) => before.difference(now).cloned().collect(),
        _ => BTreeSet::new(),
    };
    let ctx = &Context { held_regular: &held_regular, ..*ctx };

    // Without a move to converge, a CronJob's update is planned as on CREATE (its template may
    // predate podmedic); a Job's is left alone: its template is immutable, and moving anything
    // would make the API server refuse an update that is legal without podmedic.
    let plan_only = || match (mode, kind) {
        (UpdateMode::Template, Some(TemplateKind::CronJob)) => crate::mutate_value(object, ctx),
        _ => Ok(Mutation::default()),
    };
    let Some(kind) = kind else { return plan_only() };
    let meta: Vec<&str> = template.iter().copied().chain(["metadata"]).collect();
    let containers = list_at(object, &[&spec[..], &["containers"]].concat());
    let init = list_at(object, &[&spec[..], &["initContainers"]].concat());

    let record_text =
        annotation(object, &meta, MOVED_ANNOTATION).or_else(|| annotation(stored, &meta, MOVED_ANNOTATION));
    let mut said_moved = BTreeSet::new();
    for (value, at_meta) in [(object, &meta[..]), (object, &["metadata"][..]), (stored, &meta[..])] {
        said_moved.extend(annotation(value, at_meta, CHANGES_ANNOTATION).into_iter().flat_map(rewrite::said_moved));
    }
    let evidence = Evidence {
        record: MovedRecord::from_annotation(record_text),
        said_moved: said_moved.into_iter().map(str::to_owned).collect(),
        stored: list_at(stored, &[&spec[..], &["initContainers"]].concat())
            .iter()
            .filter(|c| is_restartable(c))
            .filter_map(|c| Some((name_of(c)?, c)))
            .rev()
            .collect(),
        applied,
        applied_before,
    };
    let findings = verdict::findings(containers, init, &evidence);
    if findings.is_empty() {
        return plan_only();
    }

    let actions: Vec<(&Finding<'_>, Action)> = findings.iter().map(|f| (f, action(mode, kind, f.verdict))).collect();
    let mut out = Mutation::default();
    let mut result = object.clone();
    rewrite_template(&mut result, &spec, containers, init, &actions);
    let forgotten: BTreeSet<&str> = actions.iter().filter(|(_, a)| *a != Action::Keep).map(|(f, _)| f.name).collect();
    forget(&mut result, &meta, &forgotten, record_text);
    for (finding, action) in &actions {
        report(kind, finding, *action, &mut out);
    }

    let replaced: Vec<(&str, Option<&str>)> = anchors(&actions, init);
    if mode == UpdateMode::Template && (kind == TemplateKind::CronJob || !replaced.is_empty()) {
        // The user's changed containers are moved again, with today's additions; a CronJob's
        // update is also checked for anything new, as on CREATE.
        let planned = crate::mutate_value(&result, ctx)?;
        json_patch::patch(&mut result, &planned.patch)
            .map_err(|e| MutateError::Malformed(format!("internal error: the plan's patch does not apply: {e}")))?;
        if let Some(Value::Array(list)) = at_mut(&mut result, &[&spec[..], &["initContainers"]].concat()) {
            rewrite::reposition(list, &replaced);
        }
        out.changes.extend(planned.changes);
        out.warnings.extend(planned.warnings);
        out.warning_kinds.extend(planned.warning_kinds);
        out.notes.extend(planned.notes);
    }
    out.patch = rewrite::patch_between(object, &result);
    let warnings = std::mem::take(&mut out.warnings);
    let kinds = std::mem::take(&mut out.warning_kinds);
    (out.warnings, out.warning_kinds) = kinds.into_iter().zip(warnings).collect::<Warnings>().finish();
    Ok(out)
}

/// Applies the actions to the pod spec's two lists.
fn rewrite_template(
    result: &mut Value,
    spec: &[&str],
    containers: &[Value],
    init: &[Value],
    actions: &[(&Finding<'_>, Action)],
) {
    let by_init: BTreeMap<usize, (&Finding<'_>, Action)> = actions.iter().map(|(f, a)| (f.init, (*f, *a))).collect();
    let dropped_users: BTreeSet<usize> = actions
        .iter()
        .filter_map(|(f, a)| match (f.verdict, a) {
            (Verdict::Unchanged { user } | Verdict::Changed { user }, Action::Keep) => Some(user),
            (Verdict::Removed { user }, _) => user,
            _ => None,
        })
        .collect();
    let new_init: Vec<Value> = init
        .iter()
        .enumerate()
        .filter_map(|(i, entry)| match by_init.get(&i) {
            None => Some(entry.clone()),
            Some((finding, Action::Keep)) => Some(finding.stored.unwrap_or(entry).clone()),
            Some(_) => None,
        })
        .collect();
    let new_containers: Vec<Value> =
        containers.iter().enumerate().filter(|(i, _)| !dropped_users.contains(i)).map(|(_, c)| c.clone()).collect();
    if let Some(Value::Object(pod_spec)) = at_mut(result, spec) {
        pod_spec.insert("containers".into(), Value::Array(new_containers));
        if new_init.is_empty() {
            pod_spec.remove("initContainers");
        } else {
            pod_spec.insert("initContainers".into(), Value::Array(new_init));
        }
    }
}

/// Drops the undone moves from `podmedic.io/moved` (template) and `podmedic.io/changes`
/// (template and object).
fn forget(result: &mut Value, meta: &[&str], names: &BTreeSet<&str>, record_text: Option<&str>) {
    if names.is_empty() {
        return;
    }
    if let Some(text) = record_text.filter(|_| annotation(result, meta, MOVED_ANNOTATION).is_some()) {
        let mut record = MovedRecord::from_annotation(Some(text));
        let mut changed = false;
        for name in names {
            changed |= record.remove(name);
        }
        if changed {
            let text = (!record.is_empty()).then(|| record.to_json());
            set_annotation(result, meta, MOVED_ANNOTATION, text);
        }
    }
    for at_meta in [meta, &["metadata"]] {
        if let Some(text) = annotation(result, at_meta, CHANGES_ANNOTATION) {
            let rest = rewrite::without_segments_of(text, names);
            if rest.as_deref() != Some(text) {
                set_annotation(result, at_meta, CHANGES_ANNOTATION, rest);
            }
        }
    }
}

/// Each replaced sidecar and the init container it followed (among those that stay).
fn anchors<'v>(actions: &[(&Finding<'v>, Action)], init: &'v [Value]) -> Vec<(&'v str, Option<&'v str>)> {
    let gone: BTreeSet<usize> = actions.iter().filter(|(_, a)| *a != Action::Keep).map(|(f, _)| f.init).collect();
    let mut last_kept: Option<&str> = None;
    let mut out = Vec::new();
    let replaced: BTreeMap<usize, &str> =
        actions.iter().filter(|(_, a)| *a == Action::Replace).map(|(f, _)| (f.init, f.name)).collect();
    for (i, entry) in init.iter().enumerate() {
        if let Some(name) = replaced.get(&i) {
            out.push((*name, last_kept));
        } else if !gone.contains(&i) {
            last_kept = name_of(entry).or(last_kept);
        }
    }
    out
}

/// The change (and, where the user should know, the warning) for one action.
fn report(kind: TemplateKind, finding: &Finding<'_>, action: Action, out: &mut Mutation) {
    let name = finding.name;
    let (change, detail) = match action {
        Action::Keep => (ChangeKind::SidecarKept, "applied unchanged: the native sidecar stays as stored"),
        Action::Replace => {
            out.notes.push(format!("{name}: changed since podmedic moved it; the applied container replaces it"));
            return;
        }
        Action::Restore => {
            if matches!(finding.verdict, Verdict::Changed { .. }) && kind == TemplateKind::Job {
                out.warnings.push(format!(
                    "container {name}: changed, but a Job's pod template cannot change; the API server refuses this"
                ));
                out.warning_kinds.push(WarningKind::TemplateReapplied);
            } else {
                out.warnings.push(format!(
                    "container {name}: back in containers as applied; podmedic fixes this {}'s Pods instead",
                    kind.name()
                ));
                out.warning_kinds.push(WarningKind::TemplateReapplied);
            }
            (ChangeKind::SidecarRestored, "back in containers as applied (podmedic fixes the Pods)")
        }
        Action::Remove => (ChangeKind::SidecarRemoved, "no longer applied: its native sidecar is removed too"),
    };
    out.changes.push(Change { kind: change, container: name.to_owned(), detail: detail.to_owned() });
}

#[cfg(test)]
mod tests;
