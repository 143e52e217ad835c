//! Which containers are long-running sidecars, and how they move into `initContainers`.
//!
//! Order of the rules: `podmedic.io/skip` (in [`crate::plan`]), then workloads that manage their own
//! containers, then the `podmedic.io/sidecars` annotation, then the catalogue.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::annotations::{MAX_LISTED_NAMES, SIDECAR_POSITION_ANNOTATION, SIDECARS_ANNOTATION, name_list};
use crate::kubernetes::ImageRef;
use crate::mutation::{Change, ChangeKind, Context};
use crate::object::Container;
use crate::patch::PatchBuilder;
use crate::policy::{Policy, SidecarProfile};
use crate::target::{PodTarget, Section, Slot};
use crate::warnings::Warnings;

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

/// Chooses the sidecars of a run-to-completion pod.
pub(crate) fn select<'v>(
    target: &PodTarget<'v>,
    ctx: &Context<'v>,
    profiles: &Profiles<'v>,
    warnings: &mut Warnings,
    notes: &mut Vec<String>,
) -> Selection<'v> {
    let containers = target.containers();
    let mut candidates: Vec<(usize, Option<&'v SidecarProfile>)> = Vec::new();

    if let Some(list) = target.annotation(SIDECARS_ANNOTATION) {
        let list = name_list(list);
        if list.ignored > 0 {
            warnings.push(format!(
                "{SIDECARS_ANNOTATION} names more than {MAX_LISTED_NAMES} containers; {} further names were ignored",
                list.ignored
            ));
        }
        // The first container of each name (names are unique in a valid Pod).
        let mut by_name: HashMap<&str, usize> = HashMap::with_capacity(containers.len());
        for (i, c) in containers.iter().enumerate().rev() {
            crate::work::step(1);
            by_name.insert(c.name.as_str(), i);
        }
        let native: HashSet<&str> =
            target.init_containers().iter().filter(|c| c.is_restartable()).map(|c| c.name.as_str()).collect();
        for name in list.names {
            crate::work::step(1);
            if let Some(&i) = by_name.get(name) {
                candidates.push((i, profiles.regular(i)));
            } else if !native.contains(name) {
                warnings.push(format!("{SIDECARS_ANNOTATION} names \"{name}\", which is not a container of this Pod"));
            }
        }
        candidates.sort_by_key(|(i, _)| *i);
    } else {
        for i in 0..containers.len() {
            crate::work::step(1);
            if let Some(profile) = profiles.regular(i) {
                candidates.push((i, Some(profile)));
            }
        }
    }
    if candidates.is_empty() {
        return Selection::default();
    }

    let init_names: HashSet<&str> = target.init_containers().iter().map(|c| c.name.as_str()).collect();
    candidates.retain(|(i, _)| {
        crate::work::step(1);
        let c = &containers[*i];
        if c.restart_policy.is_some() || c.restart_policy_rules {
            warnings.push(format!(
                "container {}: sets restartPolicy as a regular container; podmedic leaves it in place",
                c.name
            ));
            false
        } else if init_names.contains(c.name.as_str()) {
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
    if candidates.len() > MAX_MOVED_SIDECARS {
        warnings.push(format!(
            "{} containers look like sidecars, more than the {MAX_MOVED_SIDECARS} podmedic moves in one Pod; nothing moved",
            candidates.len()
        ));
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
    profiles: &Profiles<'v>,
    policy: &Policy,
    patch: &mut PatchBuilder,
    changes: &mut Vec<Change>,
) -> Vec<Slot<'v>> {
    let containers = target.containers();
    let inits = target.init_containers();
    let is_mesh = |profile: Option<&SidecarProfile>| profile.is_some_and(|p| p.mesh);

    // Where the moved sidecars go in initContainers.
    let insert_at = if selection.first { first_position(target, profiles, policy) } else { inits.len() };

    // Final order of initContainers: existing ones with the moved sidecars inserted at `insert_at`.
    // (container, moved, catalogue entry of a moved sidecar, mesh proxy)
    let mut final_inits: Vec<(&'v Container<'v>, bool, Option<&'v SidecarProfile>, bool)> =
        Vec::with_capacity(inits.len() + selection.moved.len());
    let existing = |(j, c): (usize, &'v Container<'v>)| (c, false, None, is_mesh(profiles.init(j)));
    final_inits.extend(inits.iter().enumerate().take(insert_at).map(existing));
    final_inits.extend(selection.moved.iter().map(|(i, profile)| (&containers[*i], true, *profile, is_mesh(*profile))));
    final_inits.extend(inits.iter().enumerate().skip(insert_at).map(existing));
    let mut moved = vec![false; containers.len()];

    if !selection.moved.is_empty() {
        let init_loc = target.spec_loc.child("initContainers");
        if target.spec.init_containers.is_none() {
            patch.add(&init_loc, Value::Array(Vec::new()));
        }
        let containers_loc = target.spec_loc.child("containers");
        let mut gone = MovedSoFar::new(containers.len());
        for (k, (i, _)) in selection.moved.iter().enumerate() {
            // Where container `i` stands once the ones moved before it have left `containers`.
            let from = i - gone.before(*i);
            gone.insert(*i);
            moved[*i] = true;
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
        .map(|(index, (container, moved, profile, mesh))| {
            crate::work::step(1);
            Slot { container, section: Section::Init, index, moved, profile, mesh }
        })
        .collect();
    let remaining = (0..containers.len()).filter(|i| !moved[*i]);
    slots.extend(remaining.enumerate().map(|(index, i)| {
        crate::work::step(1);
        Slot {
            container: &containers[i],
            section: Section::Regular,
            index,
            moved: false,
            profile: None,
            mesh: is_mesh(profiles.regular(i)),
        }
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

/// Position for `podmedic.io/sidecar-position: first`: after the last init container that belongs
/// to a service mesh (its iptables init and its own proxy), before every other init container.
fn first_position(target: &PodTarget<'_>, profiles: &Profiles<'_>, policy: &Policy) -> usize {
    target
        .init_containers()
        .iter()
        .enumerate()
        .rposition(|(j, c)| {
            policy.mesh_init_containers.iter().any(|n| n == c.name.as_str())
                || (c.is_restartable() && profiles.init(j).is_some_and(|p| p.mesh))
        })
        .map_or(0, |i| i + 1)
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
