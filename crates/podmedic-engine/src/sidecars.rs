//! Which containers are long-running sidecars, and how they move into `initContainers`.
//!
//! Order of the rules: `podmedic.io/skip` (in [`crate::plan`]), then workloads that manage their own
//! containers; then the sidecars are what the catalogue recognises plus what `podmedic.io/sidecars`
//! names, less what `podmedic.io/not-sidecars` names and the policy's `neverMove` containers.

use std::collections::{BTreeSet, HashSet};

use serde_json::Value;

use crate::annotations::{
    MAX_LISTED_NAMES, NOT_SIDECARS_ANNOTATION, SIDECAR_POSITION_ANNOTATION, SIDECARS_ANNOTATION, is_true, name_list,
};
use crate::kubernetes::ImageRef;
use crate::mutation::{Change, ChangeKind, Context};
use crate::object::Container;
use crate::patch::PatchBuilder;
use crate::policy::{Policy, SidecarProfile};
use crate::target::{PodTarget, Section, Slot};
use crate::warnings::{WarningKind, Warnings};

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

/// Most sidecars podmedic moves in one Pod. Real Pods have a few; a Pod with more candidates is
/// left as it is (with a warning), so that the patch stays small whatever the Pod.
pub(crate) const MAX_MOVED_SIDECARS: usize = 64;

/// The catalogue entry of every container of the Pod, looked up once per container: selection,
/// the moves and the mesh checks all read it from here.
pub(crate) struct Profiles<'p> {
    regular: Vec<Option<&'p SidecarProfile>>,
    init: Vec<Option<&'p SidecarProfile>>,
}

impl<'p> Profiles<'p> {
    /// Looks up the catalogue entry of each regular and init container.
    pub fn look_up(target: &PodTarget<'_>, policy: &'p Policy) -> Profiles<'p> {
        let look_up = |containers: &[Container<'_>]| {
            containers
                .iter()
                .map(|c| {
                    crate::work::step(1);
                    profile_for(policy, c)
                })
                .collect()
        };
        Profiles { regular: look_up(target.containers()), init: look_up(target.init_containers()) }
    }

    /// The entry of regular container `i`.
    pub fn regular(&self, i: usize) -> Option<&'p SidecarProfile> {
        self.regular.get(i).copied().flatten()
    }

    /// The entry of init container `i`.
    pub fn init(&self, i: usize) -> Option<&'p SidecarProfile> {
        self.init.get(i).copied().flatten()
    }
}

/// The names listed in the comma-separated annotation `key` (at most [`MAX_LISTED_NAMES`], see
/// [`name_list`]; a warning says how many more were ignored), sorted so that warnings come in a
/// stable order.
fn listed_names<'a>(value: Option<&'a str>, key: &str, warnings: &mut Warnings) -> BTreeSet<&'a str> {
    let Some(value) = value else { return BTreeSet::new() };
    let list = name_list(value);
    if list.ignored > 0 {
        warnings.push(
            WarningKind::Annotation,
            format!("{key} names more than {MAX_LISTED_NAMES} containers; {} further names were ignored", list.ignored),
        );
    }
    list.names.into_iter().collect()
}

/// Warns about names in `podmedic.io/sidecars` and `podmedic.io/not-sidecars` that are not
/// containers of the Pod (only for Pods that set either annotation: the sets cost a pass each).
fn warn_about_unknown_names(
    target: &PodTarget<'_>,
    named_sidecars: &BTreeSet<&str>,
    named_regular: &BTreeSet<&str>,
    warnings: &mut Warnings,
) {
    let regular: HashSet<&str> = target.containers().iter().map(|c| c.name.as_str()).collect();
    let inits = target.init_containers();
    let init: HashSet<&str> = inits.iter().map(|c| c.name.as_str()).collect();
    let native: HashSet<&str> = inits.iter().filter(|c| c.is_restartable()).map(|c| c.name.as_str()).collect();
    for name in named_sidecars {
        // A sidecar podmedic moved earlier is a native sidecar now: no warning when it runs again.
        if !regular.contains(name) && !native.contains(name) {
            warnings.push(
                WarningKind::Annotation,
                format!("{SIDECARS_ANNOTATION} names \"{name}\", which is not a container of this Pod"),
            );
        }
    }
    for name in named_regular {
        if !regular.contains(name) && !init.contains(name) {
            warnings.push(
                WarningKind::Annotation,
                format!("{NOT_SIDECARS_ANNOTATION} names \"{name}\", which is not a container of this Pod"),
            );
        }
    }
}

/// Chooses the sidecars of a run-to-completion pod: what the catalogue recognises plus what
/// `podmedic.io/sidecars` names, less what `podmedic.io/not-sidecars` names and the policy's
/// `neverMove` containers.
pub(crate) fn select<'v>(
    target: &PodTarget<'v>,
    ctx: &Context<'v>,
    profiles: &Profiles<'v>,
    warnings: &mut Warnings,
    notes: &mut Vec<String>,
) -> Selection<'v> {
    let containers = target.containers();
    let policy = ctx.policy;
    let named_sidecars = listed_names(target.annotation(SIDECARS_ANNOTATION), SIDECARS_ANNOTATION, warnings);
    let named_regular = listed_names(target.annotation(NOT_SIDECARS_ANNOTATION), NOT_SIDECARS_ANNOTATION, warnings);
    if !named_sidecars.is_empty() || !named_regular.is_empty() {
        warn_about_unknown_names(target, &named_sidecars, &named_regular, warnings);
    }

    let mut candidates: Vec<(usize, Option<&'v SidecarProfile>)> = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        crate::work::step(1);
        let name = c.name.as_str();
        let named = named_sidecars.contains(name);
        let profile = profiles.regular(i);
        if !named && profile.is_none() {
            continue;
        }
        if named_regular.contains(name) {
            if named {
                warnings.push(WarningKind::Annotation, format!(
                    "container {name} is in {SIDECARS_ANNOTATION} and {NOT_SIDECARS_ANNOTATION}; it stays a regular container"
                ));
            } else {
                notes.push(format!("{name}: kept a regular container ({NOT_SIDECARS_ANNOTATION})"));
            }
            continue;
        }
        if ctx.held_regular.contains(name) {
            notes.push(format!(
                "{name}: no longer applied, but kept in containers by another field manager; left regular"
            ));
            continue;
        }
        if policy.never_move.iter().any(|n| n == name) {
            if named {
                warnings.push(
                    WarningKind::SidecarNotMoved,
                    format!("container {name}: another webhook owns its place; podmedic never moves it"),
                );
            }
            continue;
        }
        candidates.push((i, profile));
    }
    if candidates.is_empty() {
        return Selection::default();
    }

    let init_names: HashSet<&str> = target.init_containers().iter().map(|c| c.name.as_str()).collect();
    // Names two regular containers share (the API server refuses such a Pod after admission):
    // which of the two the user means is unknown, and the next request would read the other.
    let mut seen = HashSet::new();
    let shared: HashSet<&str> = containers.iter().map(|c| c.name.as_str()).filter(|name| !seen.insert(*name)).collect();
    candidates.retain(|(i, _)| {
        crate::work::step(1);
        let c = &containers[*i];
        if c.restart_policy.is_some() || c.restart_policy_rules {
            warnings.push(
                WarningKind::SidecarNotMoved,
                format!("container {}: sets restartPolicy as a regular container; podmedic leaves it in place", c.name),
            );
            false
        } else if shared.contains(c.name.as_str()) {
            warnings.push(
                WarningKind::SidecarNotMoved,
                format!("container {}: another container has the same name; podmedic leaves both in place", c.name),
            );
            false
        } else if init_names.contains(c.name.as_str()) {
            warnings.push(
                WarningKind::SidecarNotMoved,
                format!("container {}: an init container has the same name; podmedic leaves it in place", c.name),
            );
            false
        } else {
            true
        }
    });
    if candidates.is_empty() {
        return Selection::default();
    }
    if candidates.len() > MAX_MOVED_SIDECARS {
        warnings.push(WarningKind::SidecarNotMoved, format!(
            "{} containers look like sidecars, more than the {MAX_MOVED_SIDECARS} podmedic moves in one Pod; nothing moved",
            candidates.len()
        ));
        return Selection::default();
    }
    let names = || candidates.iter().map(|(i, _)| containers[*i].name.as_str()).collect::<Vec<_>>().join(", ");
    if candidates.len() == containers.len() {
        warnings.push(WarningKind::SidecarNotMoved, format!(
            "every container looks like a sidecar ({}); nothing moved: name the main one in {NOT_SIDECARS_ANNOTATION}",
            names()
        ));
        return Selection::default();
    }
    if let crate::kubernetes::NativeSidecars::Unavailable(reason) = ctx.native_sidecars {
        warnings.push(
            WarningKind::NativeSidecarsUnavailable,
            format!("native sidecars are not available ({reason}), so {} did not move", names()),
        );
        return Selection::default();
    }

    // Mesh proxies go first among the moved sidecars, as the meshes order them in native mode.
    candidates.sort_by_key(|(i, profile)| (!profile.is_some_and(|p| p.mesh), *i));
    let first = match target.annotation(SIDECAR_POSITION_ANNOTATION).map(str::trim) {
        None | Some("" | "last") => false,
        Some("first") => true,
        Some(other) => {
            notes.push(format!("{SIDECAR_POSITION_ANNOTATION}: unknown value \"{other}\", using last"));
            warnings.push(
                WarningKind::Annotation,
                format!("{SIDECAR_POSITION_ANNOTATION} must be first or last, not \"{other}\"; using last"),
            );
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
    profiles: &Profiles<'v>,
    policy: &Policy,
    patch: &mut PatchBuilder,
    changes: &mut Vec<Change>,
) -> Vec<Slot<'v>> {
    let containers = target.containers();
    let inits = target.init_containers();
    let is_mesh_init = |c: &Container<'_>| policy.mesh_init_containers.iter().any(|n| n == c.name.as_str());
    let is_native_mesh_proxy = |j: usize| inits[j].is_restartable() && profiles.init(j).is_some_and(|p| p.mesh);

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

    // Final order of initContainers: (container, index in `containers` if moved, catalogue entry).
    type Entry<'v> = (&'v Container<'v>, Option<usize>, Option<&'v SidecarProfile>);
    let mut final_inits: Vec<Entry<'v>> = Vec::with_capacity(inits.len() + selection.moved.len());
    let moved_entry = |(i, profile): &(usize, Option<&'v SidecarProfile>)| (&containers[*i], Some(*i), *profile);
    let existing = inits.iter().enumerate().map(|(j, c)| Some((c, None, profiles.init(j))));
    for (j, entry) in existing.chain([None]).enumerate() {
        crate::work::step(1);
        if j == mesh_at {
            final_inits.extend(mesh_block.clone().map(moved_entry));
        }
        if j == others_at {
            final_inits.extend(other_block.clone().map(moved_entry));
        }
        final_inits.extend(entry);
    }
    let mut moved = vec![false; containers.len()];

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
        let mut gone = MovedSoFar::new(containers.len());
        for &(at, i) in &moves {
            // Where container `i` stands once the ones moved before it have left `containers`.
            let from = i - gone.before(i);
            gone.insert(i);
            moved[i] = true;
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
        .map(|(index, (container, from, profile))| {
            crate::work::step(1);
            let mesh = profile.is_some_and(|p| p.mesh);
            Slot { container, section: Section::Init, index, moved: from.is_some(), profile, mesh }
        })
        .collect();
    let remaining = (0..containers.len()).filter(|i| !moved[*i]);
    slots.extend(remaining.enumerate().map(|(index, i)| {
        crate::work::step(1);
        let profile = profiles.regular(i);
        let mesh = profile.is_some_and(|p| p.mesh);
        Slot { container: &containers[i], section: Section::Regular, index, moved: false, profile, mesh }
    }));
    slots
}

/// The indices of `containers` moved so far, to tell where a container stands after the moves
/// before it (a Fenwick tree: both operations take log n steps, so n moves stay n log n).
struct MovedSoFar(Vec<usize>);

impl MovedSoFar {
    fn new(len: usize) -> Self {
        MovedSoFar(vec![0; len + 1])
    }

    /// Records that index `i` moved.
    fn insert(&mut self, i: usize) {
        let mut at = i + 1;
        while at < self.0.len() {
            crate::work::step(1);
            self.0[at] += 1;
            at += at & at.wrapping_neg();
        }
    }

    /// How many indices below `i` moved.
    fn before(&self, i: usize) -> usize {
        let (mut at, mut count) = (i, 0);
        while at > 0 {
            crate::work::step(1);
            count += self.0[at];
            at &= at - 1;
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::MovedSoFar;

    #[test]
    fn moved_so_far_counts_the_indices_below() {
        let mut gone = MovedSoFar::new(10);
        for i in [7, 2, 9, 0] {
            gone.insert(i);
        }
        let counts: Vec<usize> = (0..10).map(|i| gone.before(i)).collect();
        assert_eq!(counts, [0, 1, 1, 2, 2, 2, 2, 2, 3, 3]);
    }
}
