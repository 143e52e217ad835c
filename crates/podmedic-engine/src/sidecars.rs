//! Which containers are long-running sidecars, and how they move into `initContainers`.
//!
//! Order of the rules: `podmedic.io/skip` (in [`crate::plan`]), then workloads that manage their own
//! containers; then the sidecars are what the catalogue recognises plus what `podmedic.io/sidecars`
//! names, less what `podmedic.io/not-sidecars` names and the policy's `neverMove` containers.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::annotations::{NOT_SIDECARS_ANNOTATION, SIDECAR_POSITION_ANNOTATION, SIDECARS_ANNOTATION, is_true};
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
    let profile = policy.sidecar_for(&container.name, image.as_ref(), &|word| argv_has_word(container, word))?;
    let one_shot = profile.unless_env.iter().any(|name| {
        // The last definition wins in Kubernetes; a value from a reference is unknown, so not `true`.
        container
            .env()
            .iter()
            .rev()
            .find(|e| e.name.as_str() == name.as_str())
            .and_then(|e| e.value.as_deref())
            .is_some_and(is_true)
    });
    (!one_shot).then_some(profile)
}

/// The names listed in a comma-separated annotation, trimmed, without empty entries.
fn listed_names(value: Option<&str>) -> BTreeSet<&str> {
    value.into_iter().flat_map(|v| v.split(',')).map(str::trim).filter(|n| !n.is_empty()).collect()
}

/// Chooses the sidecars of a run-to-completion pod: what the catalogue recognises plus what
/// `podmedic.io/sidecars` names, less what `podmedic.io/not-sidecars` names and the policy's
/// `neverMove` containers.
pub(crate) fn select<'v>(
    target: &PodTarget<'v>,
    ctx: &Context<'v>,
    warnings: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Selection<'v> {
    let containers = target.containers();
    let policy = ctx.policy;
    let named_sidecars = listed_names(target.annotation(SIDECARS_ANNOTATION));
    let named_regular = listed_names(target.annotation(NOT_SIDECARS_ANNOTATION));
    let is_container = |name: &str| containers.iter().any(|c| c.name.as_str() == name);
    for name in &named_sidecars {
        // A sidecar podmedic moved earlier is a native sidecar now: no warning when it runs again.
        if !is_container(name)
            && !target.init_containers().iter().any(|c| c.name.as_str() == *name && c.is_restartable())
        {
            warnings.push(format!("{SIDECARS_ANNOTATION} names \"{name}\", which is not a container of this Pod"));
        }
    }
    for name in &named_regular {
        if !is_container(name) && !target.init_containers().iter().any(|c| c.name.as_str() == *name) {
            warnings.push(format!("{NOT_SIDECARS_ANNOTATION} names \"{name}\", which is not a container of this Pod"));
        }
    }

    let mut candidates: Vec<(usize, Option<&'v SidecarProfile>)> = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        let name = c.name.as_str();
        let named = named_sidecars.contains(name);
        let profile = profile_for(policy, c);
        if !named && profile.is_none() {
            continue;
        }
        if named_regular.contains(name) {
            if named {
                warnings.push(format!(
                    "container {name} is in {SIDECARS_ANNOTATION} and {NOT_SIDECARS_ANNOTATION}; it stays a regular container"
                ));
            } else {
                notes.push(format!("{name}: kept a regular container ({NOT_SIDECARS_ANNOTATION})"));
            }
            continue;
        }
        if policy.never_move.iter().any(|n| n == name) {
            if named {
                warnings.push(format!("container {name}: another webhook owns its place; podmedic never moves it"));
            }
            continue;
        }
        candidates.push((i, profile));
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
            "every container looks like a sidecar ({}); nothing moved: name the main one in {NOT_SIDECARS_ANNOTATION}",
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
///
/// A moved mesh proxy goes before every init container but the mesh's own leading ones (its
/// iptables init, a proxy already native): the meshes' own native mode, so that the other init
/// containers run inside the mesh. That holds in a later reinvocation too, when sidecars podmedic
/// moved earlier are already init containers. The other sidecars go last, or with
/// `podmedic.io/sidecar-position: first` before the regular init containers.
pub(crate) fn apply_moves<'v>(
    target: &PodTarget<'v>,
    selection: &Selection<'v>,
    policy: &'v Policy,
    patch: &mut PatchBuilder,
    changes: &mut Vec<Change>,
) -> Vec<Slot<'v>> {
    let containers = target.containers();
    let inits = target.init_containers();
    let init_profiles: Vec<Option<&'v SidecarProfile>> = inits.iter().map(|c| profile_for(policy, c)).collect();
    let is_mesh_init = |c: &Container<'_>| policy.mesh_init_containers.iter().any(|n| n == c.name.as_str());
    let is_native_mesh_proxy = |j: usize| inits[j].is_restartable() && init_profiles[j].is_some_and(|p| p.mesh);

    // Where the moved sidecars go, as positions among the existing init containers.
    let mesh_at = (0..inits.len()).take_while(|&j| is_mesh_init(&inits[j]) || is_native_mesh_proxy(j)).count();
    let others_at = if selection.first {
        // After the mesh's own init containers and proxy and the containers another webhook
        // places (GKE's FUSE sidecar): other init containers may need what those set up.
        (0..inits.len())
            .rposition(|j| {
                is_mesh_init(&inits[j])
                    || is_native_mesh_proxy(j)
                    || policy.never_move.iter().any(|n| n == inits[j].name.as_str())
            })
            .map_or(0, |j| j + 1)
    } else {
        inits.len()
    };
    let is_mesh = |profile: &Option<&SidecarProfile>| profile.is_some_and(|p| p.mesh);
    let mesh_block = selection.moved.iter().filter(|(_, p)| is_mesh(p));
    let other_block = selection.moved.iter().filter(|(_, p)| !is_mesh(p));

    // Final order of initContainers: (container, moved, catalogue entry, index in `containers`).
    type Entry<'v> = (&'v Container<'v>, Option<usize>, Option<&'v SidecarProfile>);
    let mut final_inits: Vec<Entry<'v>> = Vec::with_capacity(inits.len() + selection.moved.len());
    let moved_entry = |(i, profile): &(usize, Option<&'v SidecarProfile>)| (&containers[*i], Some(*i), *profile);
    let existing = inits.iter().zip(&init_profiles).map(|(c, profile)| Some((c, None, *profile)));
    for (j, entry) in existing.chain([None]).enumerate() {
        if j == mesh_at {
            final_inits.extend(mesh_block.clone().map(moved_entry));
        }
        if j == others_at {
            final_inits.extend(other_block.clone().map(moved_entry));
        }
        final_inits.extend(entry);
    }

    let mut remaining: Vec<usize> = (0..containers.len()).collect();
    if !selection.moved.is_empty() {
        let init_loc = target.spec_loc.child("initContainers");
        if target.spec.init_containers.is_none() {
            patch.add(&init_loc, Value::Array(Vec::new()));
        }
        let containers_loc = target.spec_loc.child("containers");
        // Inserting in the order of the final positions puts each one where it belongs: every
        // container before it is already in place.
        let moves: Vec<(usize, usize)> =
            final_inits.iter().enumerate().filter_map(|(at, (_, from, _))| Some((at, (*from)?))).collect();
        for &(at, i) in &moves {
            let from = remaining.iter().position(|r| *r == i).unwrap_or(i);
            remaining.remove(from);
            patch.move_value(&containers_loc.index(from), &init_loc.index(at));
        }
        for &(at, _) in &moves {
            patch.add(&init_loc.index(at).child("restartPolicy"), Value::String("Always".into()));
        }
        for &(_, i) in &moves {
            changes.push(Change {
                kind: ChangeKind::SidecarMoved,
                container: containers[i].name.to_string(),
                detail: "moved to initContainers as a native sidecar (restartPolicy: Always)".into(),
            });
        }
    }

    let mut slots: Vec<Slot<'v>> = final_inits
        .into_iter()
        .enumerate()
        .map(|(index, (container, from, profile))| Slot {
            container,
            section: Section::Init,
            index,
            moved: from.is_some(),
            profile,
            mesh: profile.is_some_and(|p| p.mesh),
        })
        .collect();
    slots.extend(remaining.into_iter().enumerate().map(|(index, i)| {
        let profile = profile_for(policy, &containers[i]);
        let mesh = profile.is_some_and(|p| p.mesh);
        Slot { container: &containers[i], section: Section::Regular, index, moved: false, profile, mesh }
    }));
    slots
}
