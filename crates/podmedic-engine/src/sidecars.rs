//! Which containers are long-running sidecars, and how they move into `initContainers`.
//!
//! Order of the rules: `podmedic.io/skip` (in [`crate::plan`]), then workloads that manage their own
//! containers, then the `podmedic.io/sidecars` annotation, then the catalogue.

use serde_json::Value;

use crate::annotations::{SIDECAR_POSITION_ANNOTATION, SIDECARS_ANNOTATION};
use crate::kubernetes::ImageRef;
use crate::mutation::{Change, ChangeKind, Context};
use crate::object::Container;
use crate::patch::PatchBuilder;
use crate::policy::{Policy, SidecarProfile};
use crate::target::{PodTarget, Section, Slot};

/// The sidecars chosen to move, in the order they will stand in `initContainers`.
#[derive(Debug, Default)]
pub(crate) struct Selection<'v> {
    /// (index in `containers`, catalogue entry if known), mesh proxies first.
    pub moved: Vec<(usize, Option<&'v SidecarProfile>)>,
    /// Place them before the regular init containers (after the mesh's own).
    pub first: bool,
}

/// The name of the self-managed workload kind the pod belongs to, if any.
pub(crate) fn self_managed<'p>(target: &PodTarget<'_>, policy: &'p Policy) -> Option<&'p str> {
    let metas = [target.object_meta, target.pod_meta];
    let names = || target.containers().iter().chain(target.init_containers()).map(|c| c.name.as_str());
    policy.self_managed_workloads.iter().find_map(|w| {
        let by_label = w.labels.iter().any(|l| metas.iter().flatten().any(|m| m.has_label(l)));
        let by_annotation = w.annotations.iter().any(|a| metas.iter().flatten().any(|m| m.has_annotation(a)));
        let by_name = w.container_names.iter().any(|n| names().any(|c| c == n));
        (by_label || by_annotation || by_name).then_some(w.name.as_str())
    })
}

/// Whether `word` appears as a whole word (or `word=...`) in the container's command line.
pub(crate) fn argv_has_word(container: &Container<'_>, word: &str) -> bool {
    container
        .argv()
        .flat_map(str::split_whitespace)
        .any(|token| token == word || token.strip_prefix(word).is_some_and(|rest| rest.starts_with('=')))
}

/// The catalogue entry a container matches.
pub(crate) fn profile_for<'p>(policy: &'p Policy, container: &Container<'_>) -> Option<&'p SidecarProfile> {
    let image = container.image.as_deref().map(ImageRef::parse);
    policy.sidecar_for(&container.name, image.as_ref(), &|word| argv_has_word(container, word))
}

/// Chooses the sidecars of a run-to-completion pod.
pub(crate) fn select<'v>(
    target: &PodTarget<'v>,
    ctx: &Context<'v>,
    warnings: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Selection<'v> {
    let containers = target.containers();
    let policy = ctx.policy;
    let mut candidates: Vec<(usize, Option<&'v SidecarProfile>)> = Vec::new();

    if let Some(list) = target.annotation(SIDECARS_ANNOTATION) {
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if let Some(i) = containers.iter().position(|c| c.name.as_str() == name) {
                if !candidates.iter().any(|(j, _)| *j == i) {
                    candidates.push((i, profile_for(policy, &containers[i])));
                }
            } else if !target.init_containers().iter().any(|c| c.name.as_str() == name && c.is_restartable()) {
                warnings.push(format!("{SIDECARS_ANNOTATION} names \"{name}\", which is not a container of this Pod"));
            }
        }
        candidates.sort_by_key(|(i, _)| *i);
    } else {
        for (i, c) in containers.iter().enumerate() {
            if let Some(profile) = profile_for(policy, c) {
                candidates.push((i, Some(profile)));
            }
        }
    }

    candidates.retain(|(i, _)| {
        let c = &containers[*i];
        if c.restart_policy.is_some() || c.restart_policy_rules {
            warnings.push(format!(
                "container {}: sets restartPolicy as a regular container; podmedic leaves it in place",
                c.name
            ));
            false
        } else if target.init_containers().iter().any(|init| init.name == c.name) {
            warnings.push(format!(
                "container {}: an init container has the same name; podmedic leaves it in place",
                c.name
            ));
            false
        } else {
            true
        }
    });
    if candidates.is_empty() {
        return Selection::default();
    }
    let names = || candidates.iter().map(|(i, _)| containers[*i].name.as_str()).collect::<Vec<_>>().join(", ");
    if candidates.len() == containers.len() {
        warnings.push(format!(
            "every container looks like a sidecar ({}); nothing moved: list the sidecars in {SIDECARS_ANNOTATION}",
            names()
        ));
        return Selection::default();
    }
    if let crate::kubernetes::NativeSidecars::Unavailable(reason) = ctx.native_sidecars {
        warnings.push(format!("native sidecars are not available ({reason}), so {} did not move", names()));
        return Selection::default();
    }

    // Mesh proxies go first among the moved sidecars, as the meshes order them in native mode.
    candidates.sort_by_key(|(i, profile)| (!profile.is_some_and(|p| p.mesh), *i));
    let first = match target.annotation(SIDECAR_POSITION_ANNOTATION).map(str::trim) {
        None | Some("" | "last") => false,
        Some("first") => true,
        Some(other) => {
            notes.push(format!("{SIDECAR_POSITION_ANNOTATION}: unknown value \"{other}\", using last"));
            warnings.push(format!("{SIDECAR_POSITION_ANNOTATION} must be first or last, not \"{other}\"; using last"));
            false
        }
    };
    Selection { moved: candidates, first }
}

/// Emits the moves and returns every container at its final position.
pub(crate) fn apply_moves<'v>(
    target: &PodTarget<'v>,
    selection: &Selection<'v>,
    policy: &Policy,
    patch: &mut PatchBuilder,
    changes: &mut Vec<Change>,
) -> Vec<Slot<'v>> {
    let containers = target.containers();
    let inits = target.init_containers();

    // Where the moved sidecars go in initContainers.
    let insert_at = if selection.first { first_position(target, policy) } else { inits.len() };

    // Final order of initContainers: existing ones with the moved sidecars inserted at `insert_at`.
    let mut final_inits: Vec<(&'v Container<'v>, bool, Option<&'v SidecarProfile>)> =
        inits.iter().map(|c| (c, false, None)).collect();
    for (k, (i, profile)) in selection.moved.iter().enumerate() {
        final_inits.insert(insert_at + k, (&containers[*i], true, *profile));
    }
    let mut remaining: Vec<usize> = (0..containers.len()).collect();

    if !selection.moved.is_empty() {
        let init_loc = target.spec_loc.child("initContainers");
        if target.spec.init_containers.is_none() {
            patch.add(&init_loc, Value::Array(Vec::new()));
        }
        let containers_loc = target.spec_loc.child("containers");
        for (k, (i, _)) in selection.moved.iter().enumerate() {
            let from = remaining.iter().position(|r| r == i).unwrap_or(*i);
            remaining.remove(from);
            patch.move_value(&containers_loc.index(from), &init_loc.index(insert_at + k));
        }
        for k in 0..selection.moved.len() {
            patch.add(&init_loc.index(insert_at + k).child("restartPolicy"), Value::String("Always".into()));
        }
        for (i, _) in &selection.moved {
            changes.push(Change {
                kind: ChangeKind::SidecarMoved,
                container: containers[*i].name.to_string(),
                detail: "moved to initContainers as a native sidecar (restartPolicy: Always)".into(),
            });
        }
    }

    let mut slots: Vec<Slot<'v>> = final_inits
        .into_iter()
        .enumerate()
        .map(|(index, (container, moved, profile))| Slot {
            container,
            section: Section::Init,
            index,
            moved,
            profile,
            // A moved sidecar's catalogue entry was looked up when it was selected.
            mesh: if moved { profile.is_some_and(|p| p.mesh) } else { is_mesh_proxy(policy, container) },
        })
        .collect();
    slots.extend(remaining.into_iter().enumerate().map(|(index, i)| Slot {
        container: &containers[i],
        section: Section::Regular,
        index,
        moved: false,
        profile: None,
        mesh: is_mesh_proxy(policy, &containers[i]),
    }));
    slots
}

/// Position for `podmedic.io/sidecar-position: first`: after the last init container that belongs
/// to a service mesh (its iptables init and its own proxy), before every other init container.
fn first_position(target: &PodTarget<'_>, policy: &Policy) -> usize {
    target
        .init_containers()
        .iter()
        .rposition(|c| {
            policy.mesh_init_containers.iter().any(|n| n == c.name.as_str())
                || (c.is_restartable() && is_mesh_proxy(policy, c))
        })
        .map_or(0, |i| i + 1)
}

/// Whether a container is a service mesh proxy (by the catalogue).
pub(crate) fn is_mesh_proxy(policy: &Policy, container: &Container<'_>) -> bool {
    profile_for(policy, container).is_some_and(|p| p.mesh)
}
