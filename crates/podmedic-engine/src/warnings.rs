//! Short, actionable warnings about what podmedic saw but cannot safely fix, and the collection that
//! keeps them few: deduplicated, shortened and capped ([`Warnings`]).

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

use crate::checks::CheckId;
use crate::kubernetes::{ImageRef, NativeSidecars};
use crate::mutation::Context;
use crate::object::Container;
use crate::resources::{Settings, has_pod_level_resources, reserves_nothing};
use crate::sidecars::Selection;
use crate::target::{PodTarget, Section, Slot};

/// Longest warning podmedic emits; Kubernetes asks admission warnings to stay under 120 characters.
pub const MAX_WARNING_LEN: usize = 119;

/// Most warnings podmedic returns for one object; the others are counted in one last warning
/// (`... and N more warnings`). The API server keeps only a few KiB of a webhook's warnings, and a
/// user reads the first few.
pub const MAX_WARNINGS: usize = 10;

/// What a warning is about: a stable name for the reports of `podmedic fix --check` and `podmedic
/// audit` (SARIF `ruleId`, JUnit failure `type`), where the text alone would have to be matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WarningKind {
    /// A check of a Pod that will not start ([`crate::diagnose`]), named by its check.
    Check(CheckId),
    /// A shell command that ends with a backgrounded process.
    BackgroundedEntrypoint,
    /// An image with the `latest` tag or none.
    LatestTag,
    /// Containers without resource requests.
    MissingRequests,
    /// A main container that still stops its sidecars itself after they became native sidecars.
    StopsSidecarsItself,
    /// Native sidecars in a Pod where the cluster's kubelets cannot run them.
    NativeSidecarsUnavailable,
    /// A Job's `podFailurePolicy` rule that can match a native sidecar's exit code.
    PodFailurePolicy,
    /// A `podmedic.io/*` annotation names something that is not there or has a value podmedic
    /// does not understand.
    Annotation,
    /// A sidecar podmedic recognised but did not move (and why).
    SidecarNotMoved,
    /// A moved sidecar that did not get a startup probe (and why).
    ProbeNotAdded,
    /// A re-applied template whose sidecar an earlier podmedic had moved.
    TemplateReapplied,
    /// The last line that counts the warnings left out.
    Omitted,
}

impl WarningKind {
    /// Every kind that is not a check's.
    pub const OWN: [WarningKind; 11] = [
        WarningKind::BackgroundedEntrypoint,
        WarningKind::LatestTag,
        WarningKind::MissingRequests,
        WarningKind::StopsSidecarsItself,
        WarningKind::NativeSidecarsUnavailable,
        WarningKind::PodFailurePolicy,
        WarningKind::Annotation,
        WarningKind::SidecarNotMoved,
        WarningKind::ProbeNotAdded,
        WarningKind::TemplateReapplied,
        WarningKind::Omitted,
    ];

    /// The stable name: a check's own name (`node-fit`), or the kind's in kebab case.
    pub fn name(self) -> &'static str {
        match self {
            WarningKind::Check(check) => check.name(),
            WarningKind::BackgroundedEntrypoint => "backgrounded-entrypoint",
            WarningKind::LatestTag => "latest-tag",
            WarningKind::MissingRequests => "missing-requests",
            WarningKind::StopsSidecarsItself => "stops-sidecars-itself",
            WarningKind::NativeSidecarsUnavailable => "native-sidecars-unavailable",
            WarningKind::PodFailurePolicy => "pod-failure-policy",
            WarningKind::Annotation => "annotation",
            WarningKind::SidecarNotMoved => "sidecar-not-moved",
            WarningKind::ProbeNotAdded => "probe-not-added",
            WarningKind::TemplateReapplied => "template-reapplied",
            WarningKind::Omitted => "more-warnings",
        }
    }
}

/// The warnings of one object, as they are found: each shortened to [`MAX_WARNING_LEN`], each kept
/// once, the first [`MAX_WARNINGS`] in the order found and the others only counted.
///
/// A hostile object can make a warning per container or per annotation entry (tens of thousands):
/// a push costs one hash of at most 119 bytes, whatever came before, and nothing past the cap is
/// kept but its hash.
#[derive(Debug, Default)]
pub(crate) struct Warnings {
    kept: Vec<String>,
    /// The kind of each kept warning.
    kinds: Vec<WarningKind>,
    /// Hashes of every distinct warning seen (a collision could only merge two of the uncounted).
    seen: HashSet<u64>,
    hasher: RandomState,
    more: usize,
}

impl Warnings {
    /// Adds a warning of `kind`, unless the same text was added before.
    pub fn push(&mut self, kind: WarningKind, warning: String) {
        crate::work::step(1);
        let warning = shorten(warning);
        if !self.seen.insert(self.hasher.hash_one(&warning)) {
            return;
        }
        if self.kept.len() < MAX_WARNINGS {
            self.kept.push(warning);
            self.kinds.push(kind);
        } else {
            self.more += 1;
        }
    }

    /// The warnings to return: the kept ones, then `... and N more warnings` when some were left
    /// out; and the kind of each, in the same order.
    pub fn finish(self) -> (Vec<String>, Vec<WarningKind>) {
        let (mut out, mut kinds) = (self.kept, self.kinds);
        if self.more > 0 {
            let noun = if self.more == 1 { "warning" } else { "warnings" };
            out.push(format!("... and {} more {noun} (podmedic shows the first {MAX_WARNINGS})", self.more));
            kinds.push(WarningKind::Omitted);
        }
        (out, kinds)
    }
}

impl FromIterator<(WarningKind, String)> for Warnings {
    /// The warnings of `iter`, kept as [`Warnings::push`] keeps them.
    fn from_iter<I: IntoIterator<Item = (WarningKind, String)>>(iter: I) -> Self {
        let mut warnings = Warnings::default();
        for (kind, warning) in iter {
            warnings.push(kind, warning);
        }
        warnings
    }
}

/// Collects the warnings for one pod.
pub(crate) fn collect(
    target: &PodTarget<'_>,
    slots: &[Slot<'_>],
    selection: &Selection<'_>,
    settings: &Settings<'_>,
    ctx: &Context<'_>,
    warnings: &mut Warnings,
) {
    let switches = ctx.policy.warnings;
    if switches.backgrounded_entrypoint {
        for slot in slots.iter().filter(|s| s.section == Section::Regular || s.is_native_sidecar()) {
            if ends_in_background(slot.container) {
                let effect = if target.run_to_completion {
                    "it exits before its work is done"
                } else {
                    "it exits and the Pod restarts (CrashLoopBackOff)"
                };
                warnings.push(
                    WarningKind::BackgroundedEntrypoint,
                    format!(
                        "container {}: the shell command ends with a backgrounded process (&); {effect}",
                        slot.container.name
                    ),
                );
            }
        }
    }
    if switches.latest_tag {
        for slot in slots {
            if let Some(image) = slot.container.image.as_deref() {
                let parsed = ImageRef::parse(image);
                if parsed.is_latest() {
                    let what = if parsed.tag.is_some() { "the latest tag" } else { "no tag" };
                    let text = format!("container {}: image {image} has {what}; pin a version", slot.container.name);
                    warnings.push(WarningKind::LatestTag, text);
                }
            }
        }
    }
    if switches.missing_requests && !settings.enabled {
        let missing: Vec<&str> =
            slots.iter().filter(|s| reserves_nothing(s.container)).map(|s| s.container.name.as_str()).collect();
        if !missing.is_empty() && !has_pod_level_resources(target) {
            warnings.push(
                WarningKind::MissingRequests,
                format!(
                    "no resource requests on {}: the scheduler reserves nothing for them; set requests",
                    missing.join(", ")
                ),
            );
        }
    }
    if !selection.moved.is_empty() {
        for slot in slots.iter().filter(|s| s.section == Section::Regular) {
            if let Some(how) = stops_sidecars_itself(slot.container) {
                warnings.push(
                    WarningKind::StopsSidecarsItself,
                    format!(
                        "container {}: still stops sidecars itself ({how}); that now restarts them, drop it",
                        slot.container.name
                    ),
                );
            }
        }
    }
    // An older kubelet runs a restartable init container as an ordinary one and waits for it to
    // exit, which a sidecar never does.
    if let NativeSidecars::Unavailable(reason) = ctx.native_sidecars {
        let native: Vec<&str> =
            target.init_containers().iter().filter(|c| c.is_restartable()).map(|c| c.name.as_str()).collect();
        if !native.is_empty() {
            warnings.push(
                WarningKind::NativeSidecarsUnavailable,
                format!("native sidecars {} hang in Init on kubelets older than 1.29 ({reason})", native.join(", ")),
            );
        }
    }
    let has_sidecars = slots.iter().any(Slot::is_native_sidecar);
    if has_sidecars {
        let rules = target.job_spec.and_then(|j| j.pod_failure_policy.as_ref()).map(|p| p.rules.as_slice());
        for (i, rule) in rules.unwrap_or_default().iter().enumerate() {
            if rule.on_exit_codes.as_ref().is_some_and(|c| c.container_name.as_deref().is_none_or(str::is_empty)) {
                warnings.push(
                    WarningKind::PodFailurePolicy,
                    format!("podFailurePolicy rule {i} has no containerName: it can match a sidecar's exit code 143"),
                );
            }
        }
    }
}

/// Keeps a warning under 120 characters, cutting on a character boundary.
pub fn shorten(warning: String) -> String {
    shorten_to(warning, MAX_WARNING_LEN)
}

/// Keeps a text within `max` bytes (at least 3), cutting on a character boundary and ending it
/// with `...` when cut.
pub fn shorten_to(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max.saturating_sub(3);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// Whether the last command of the container's shell script runs in the background.
fn ends_in_background(c: &Container<'_>) -> bool {
    let Some(script) = c.shell_script() else { return false };
    last_statement(script).is_some_and(|s| s.ends_with('&') && !s.ends_with("&&"))
}

/// The last statement of a shell script, ignoring comments, blank lines and a trailing `;`.
fn last_statement(script: &str) -> Option<&str> {
    let line = script.lines().map(|l| strip_comment(l).trim()).rfind(|l| !l.is_empty())?;
    // Split on `;` only: `a & b` leaves `b` in the foreground, `a && b &` backgrounds the list.
    line.split(';').map(str::trim).rfind(|s| !s.is_empty())
}

fn strip_comment(line: &str) -> &str {
    // A `#` at the start of a word starts a comment (quotes are rare enough here to ignore).
    let bytes = line.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

/// How a main container stops its sidecars the pre-1.29 way, if it does.
fn stops_sidecars_itself(c: &Container<'_>) -> Option<&'static str> {
    let words = || c.argv().flat_map(|a| a.split(|ch: char| ch.is_whitespace() || ch == ';' || ch == '&' || ch == '|'));
    if c.argv().any(|a| a.contains("/quitquitquit")) {
        return Some("/quitquitquit");
    }
    if c.argv().any(|a| a.contains("kubexit")) || c.env().iter().any(|e| e.name.starts_with("KUBEXIT_")) {
        return Some("kubexit");
    }
    for (word, label) in [("pkill", "pkill"), ("killall", "killall"), ("kill", "kill")] {
        if words().any(|w| w == word || w.ends_with(&format!("/{word}"))) {
            return Some(label);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_last_statement() {
        assert_eq!(last_statement("nohup node server.js &"), Some("nohup node server.js &"));
        assert_eq!(last_statement("a &\nb\n# done\n\n"), Some("b"));
        assert_eq!(last_statement("start-daemon & ; node server.js"), Some("node server.js"));
        assert_eq!(last_statement("a && b &  # background"), Some("a && b &"));
        assert_eq!(last_statement("   \n  "), None);
    }

    #[test]
    fn warnings_are_kept_once_in_order_and_capped() {
        let mut warnings = Warnings::default();
        for i in 0..3 {
            warnings.push(WarningKind::LatestTag, format!("first {i}"));
            warnings.push(WarningKind::LatestTag, format!("first {i}"));
        }
        let (texts, kinds) = warnings.finish();
        assert_eq!(texts, ["first 0", "first 1", "first 2"]);
        assert_eq!(kinds, [WarningKind::LatestTag; 3]);

        let mut warnings = Warnings::default();
        for i in 0..40_000 {
            warnings.push(
                WarningKind::Annotation,
                format!("podmedic.io/sidecars names \"c{}\", which is not a container", i % 25),
            );
        }
        let (out, kinds) = warnings.finish();
        assert_eq!(kinds.len(), out.len());
        assert_eq!(kinds[MAX_WARNINGS], WarningKind::Omitted);
        assert_eq!(out.len(), MAX_WARNINGS + 1);
        assert!(out[0].contains("\"c0\"") && out[MAX_WARNINGS - 1].contains("\"c9\""), "{out:?}");
        assert_eq!(out[MAX_WARNINGS], "... and 15 more warnings (podmedic shows the first 10)");
        assert!(out.iter().all(|w| w.len() <= MAX_WARNING_LEN));
    }

    #[test]
    fn long_warnings_that_differ_only_past_the_cut_are_one_warning() {
        let mut warnings = Warnings::default();
        let long = "x".repeat(200);
        warnings.push(WarningKind::LatestTag, format!("{long} a"));
        warnings.push(WarningKind::LatestTag, format!("{long} b"));
        assert_eq!(warnings.finish().0.len(), 1);
    }

    #[test]
    fn kind_names_are_unique_and_apart_from_the_checks() {
        let mut names: Vec<&str> = WarningKind::OWN.iter().map(|k| k.name()).collect();
        names.extend(CheckId::ALL.iter().map(|c| WarningKind::Check(*c).name()));
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "{names:?}");
        assert_eq!(WarningKind::Check(CheckId::NodeFit).name(), CheckId::NodeFit.name());
    }

    #[test]
    fn shortens_on_char_boundaries() {
        let long = "é".repeat(100);
        let short = shorten(long);
        assert!(short.len() <= MAX_WARNING_LEN && short.ends_with("..."));
        assert_eq!(shorten("ok".into()), "ok");
    }
}
