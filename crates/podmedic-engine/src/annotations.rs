//! Every `podmedic.io/*` annotation and label podmedic reads or writes, and the per-namespace
//! settings read from a namespace's annotations.

use std::collections::{BTreeMap, HashSet};

use crate::checks::{CheckSet, known_names};
use crate::policy::ResourceDefaults;

/// Spells a podmedic key: the one place the `podmedic.io/` prefix is written.
macro_rules! key {
    ($name:literal) => {
        concat!("podmedic.io/", $name)
    };
}

/// Prefix of every podmedic annotation and label.
pub const PREFIX: &str = key!("");

/// Namespace label that opts a namespace in (the webhook's `namespaceSelector`).
pub const ENABLED_LABEL: &str = key!("enabled");
/// Annotation that turns podmedic off for one object or pod template.
pub const SKIP_ANNOTATION: &str = key!("skip");
/// Annotation naming containers that are long-running sidecars (comma separated), in addition to
/// the ones the catalogue recognises.
pub const SIDECARS_ANNOTATION: &str = key!("sidecars");
/// Annotation naming containers that stay regular containers (comma separated), even when the
/// catalogue knows their image or [`SIDECARS_ANNOTATION`] names them too.
pub const NOT_SIDECARS_ANNOTATION: &str = key!("not-sidecars");
/// Annotation that places moved sidecars before the regular init containers (`first`).
pub const SIDECAR_POSITION_ANNOTATION: &str = key!("sidecar-position");
/// Annotation on which podmedic records what it changed, for people (shortened when long).
pub const CHANGES_ANNOTATION: &str = key!("changes");
/// Annotation on which podmedic records, for itself, the containers it moved into
/// `initContainers` and a fingerprint of each as the user wrote it (JSON, never shortened). An
/// UPDATE that sends the container back (a GitOps re-apply) is converged with it: see `converge`.
pub const MOVED_ANNOTATION: &str = key!("moved");
/// Annotation (on a namespace or a pod template) with default requests for regular containers.
pub const DEFAULT_REQUESTS_ANNOTATION: &str = key!("default-requests");
/// Annotation (on a namespace) with default requests for sidecars.
pub const DEFAULT_SIDECAR_REQUESTS_ANNOTATION: &str = key!("default-sidecar-requests");
/// Annotation (on a namespace) that turns on default probes for long-running Pods:
/// `readiness` or `readiness,liveness`, or `none`.
pub const DEFAULT_PROBES_ANNOTATION: &str = key!("default-probes");
/// Annotation (on a namespace) that opts the namespace out even though it carries the label.
pub const NAMESPACE_OPT_OUT_ANNOTATION: &str = key!("disabled");
/// Annotation (on a namespace, an object or a pod template) that turns off checks that warn about
/// Pods that will not start: `node-fit, probe-window`, or `all` (see [`crate::checks::CheckId`]).
pub const DISABLED_CHECKS_ANNOTATION: &str = key!("disabled-checks");

/// Most names podmedic reads from a list annotation such as [`SIDECARS_ANNOTATION`]; further names
/// are ignored, with a warning. Real Pods have a handful of containers; the API server validates
/// annotation sizes only after mutating admission, so an annotation can reach podmedic at 3 MiB.
pub const MAX_LISTED_NAMES: usize = 64;

/// The names of a comma-separated list annotation, as [`name_list`] reads them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameList<'a> {
    /// Trimmed, non-empty, each name once, in the order written; at most [`MAX_LISTED_NAMES`].
    pub names: Vec<&'a str>,
    /// Entries after the first [`MAX_LISTED_NAMES`] names, which were not read.
    pub ignored: usize,
}

/// Reads a comma-separated list of names (`podmedic.io/sidecars: "proxy, shipper"`), in one pass.
pub fn name_list(value: &str) -> NameList<'_> {
    let mut list = NameList::default();
    let mut seen = HashSet::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        crate::work::step(1);
        if seen.contains(name) {
            continue;
        }
        if list.names.len() < MAX_LISTED_NAMES {
            seen.insert(name);
            list.names.push(name);
        } else {
            list.ignored += 1;
        }
    }
    list
}

/// True for a podmedic annotation or label key.
pub fn is_podmedic_key(key: &str) -> bool {
    key.starts_with(PREFIX)
}

/// Linkerd's default inbound policy for a Pod (`all-unauthenticated`, `deny`, ...).
pub const LINKERD_DEFAULT_INBOUND_POLICY: &str = "config.linkerd.io/default-inbound-policy";
/// The port of Kuma's application probe proxy, written by Kuma's injector (`0`: off).
pub const KUMA_APPLICATION_PROBE_PROXY_PORT: &str = "kuma.io/application-probe-proxy-port";
/// Consul's transparent proxy switch for a Pod (`"false"` turns it off).
pub const CONSUL_TRANSPARENT_PROXY: &str = "consul.hashicorp.com/transparent-proxy";

/// Whether podmedic reads an annotation's value: its own, and the few service-mesh settings its
/// probe rules depend on. Other values (`last-applied-configuration`, for one) are skipped unread.
pub fn is_read_annotation(key: &str) -> bool {
    is_podmedic_key(key)
        || matches!(key, LINKERD_DEFAULT_INBOUND_POLICY | KUMA_APPLICATION_PROBE_PROXY_PORT | CONSUL_TRANSPARENT_PROXY)
}

/// Kubernetes-style boolean annotation value.
pub fn is_true(value: &str) -> bool {
    value.trim().eq_ignore_ascii_case("true")
}

/// Per-namespace settings, read from namespace annotations by [`namespace_settings`].
///
/// Every field is an override: `None` means "use the policy".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NamespaceSettings {
    /// The namespace opted out (`podmedic.io/disabled: "true"`).
    pub opted_out: bool,
    /// Default requests for regular and init containers.
    pub default_requests: Option<ResourceDefaults>,
    /// Default requests for sidecars.
    pub default_sidecar_requests: Option<ResourceDefaults>,
    /// Readiness probes for long-running Pods.
    pub readiness_probes: Option<bool>,
    /// TCP liveness probes for long-running Pods.
    pub liveness_probes: Option<bool>,
    /// Checks turned off in this namespace.
    pub disabled_checks: CheckSet,
}

/// Parses a namespace's annotations into its settings, with one message per value that was ignored.
///
/// Bad values never fail: each is ignored (the policy applies) and reported. The opt-out is the
/// exception that errs on the safe side: any value of `podmedic.io/disabled` other than `false`
/// opts the namespace out, since the user plainly meant to say something about turning podmedic off.
pub fn namespace_settings(annotations: &BTreeMap<String, String>) -> (NamespaceSettings, Vec<String>) {
    let mut settings = NamespaceSettings::default();
    let mut problems = Vec::new();
    for (key, value) in annotations.iter().filter(|(k, _)| is_podmedic_key(k)) {
        let trimmed = value.trim();
        match key.as_str() {
            NAMESPACE_OPT_OUT_ANNOTATION => {
                settings.opted_out = !trimmed.eq_ignore_ascii_case("false");
                if !trimmed.eq_ignore_ascii_case("true") && !trimmed.eq_ignore_ascii_case("false") {
                    problems.push(format!(
                        "{key}: `{value}` is neither \"true\" nor \"false\"; treating the namespace as opted out"
                    ));
                }
            }
            DEFAULT_REQUESTS_ANNOTATION => match ResourceDefaults::parse_annotation(trimmed) {
                Ok(r) => settings.default_requests = Some(r),
                Err(e) => problems.push(format!("{key}: `{value}`: {e}; ignored")),
            },
            DEFAULT_SIDECAR_REQUESTS_ANNOTATION => match ResourceDefaults::parse_annotation(trimmed) {
                Ok(r) => settings.default_sidecar_requests = Some(r),
                Err(e) => problems.push(format!("{key}: `{value}`: {e}; ignored")),
            },
            DEFAULT_PROBES_ANNOTATION => match parse_probe_setting(trimmed) {
                Ok((readiness, liveness)) => {
                    settings.readiness_probes = Some(readiness);
                    settings.liveness_probes = Some(liveness);
                }
                Err(e) => problems.push(format!("{key}: `{value}`: {e}; ignored")),
            },
            DISABLED_CHECKS_ANNOTATION => {
                let (checks, unknown) = CheckSet::parse_list(trimmed);
                settings.disabled_checks = checks;
                if !unknown.is_empty() {
                    problems.push(format!(
                        "{key}: unknown check(s) {}; ignored (known: {}, or all)",
                        unknown.join(", "),
                        known_names()
                    ));
                }
            }
            // Object-level annotations are harmless on a namespace; only point out the likely mistake.
            SKIP_ANNOTATION => problems.push(format!(
                "{key} has no effect on a namespace; use {NAMESPACE_OPT_OUT_ANNOTATION}: \"true\" to opt it out"
            )),
            _ if is_object_annotation(key) => {}
            _ => problems.push(format!("{key} is not a namespace setting podmedic knows; ignored")),
        }
    }
    (settings, problems)
}

/// Annotations that belong on workloads, which a namespace may carry without it being a mistake
/// (for example copied by a tool that annotates everything).
fn is_object_annotation(key: &str) -> bool {
    matches!(
        key,
        SIDECARS_ANNOTATION
            | NOT_SIDECARS_ANNOTATION
            | SIDECAR_POSITION_ANNOTATION
            | CHANGES_ANNOTATION
            | MOVED_ANNOTATION
    )
}

/// `none`, `readiness`, `readiness,liveness` (any order) into (readiness, liveness).
fn parse_probe_setting(value: &str) -> Result<(bool, bool), String> {
    if value.eq_ignore_ascii_case("none") {
        return Ok((false, false));
    }
    let (mut readiness, mut liveness) = (false, false);
    for word in value.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        match word.to_ascii_lowercase().as_str() {
            "readiness" => readiness = true,
            "liveness" => liveness = true,
            _ => return Err(format!("unknown probe `{word}` (expected none, readiness or readiness,liveness)")),
        }
    }
    if !(readiness || liveness) {
        return Err("empty (expected none, readiness or readiness,liveness)".into());
    }
    Ok((readiness, liveness))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::CheckId;

    #[test]
    fn name_lists_are_trimmed_deduplicated_and_capped() {
        assert_eq!(name_list(" proxy, ,shipper,proxy ,").names, ["proxy", "shipper"]);
        assert_eq!(name_list("").names, Vec::<&str>::new());
        let long: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
        let joined = long.join(",");
        let list = name_list(&joined);
        assert_eq!(list.names.len(), MAX_LISTED_NAMES);
        assert_eq!(list.names[MAX_LISTED_NAMES - 1], format!("c{}", MAX_LISTED_NAMES - 1));
        assert_eq!(list.ignored, 100 - MAX_LISTED_NAMES);
        // Repeats of a name that was read are not "ignored".
        let repeats = format!("{},c0,c1", long.join(","));
        assert_eq!(name_list(&repeats).ignored, 100 - MAX_LISTED_NAMES);
    }

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn every_key_has_the_prefix() {
        for key in [ENABLED_LABEL, SKIP_ANNOTATION, CHANGES_ANNOTATION, MOVED_ANNOTATION, NAMESPACE_OPT_OUT_ANNOTATION]
        {
            assert!(is_podmedic_key(key) && key.len() > PREFIX.len(), "{key}");
        }
        assert_eq!(PREFIX, "podmedic.io/");
        assert_eq!(SIDECARS_ANNOTATION, "podmedic.io/sidecars");
        assert_eq!(NOT_SIDECARS_ANNOTATION, "podmedic.io/not-sidecars");
        assert!(!is_podmedic_key("podmedic.iox/skip"));
    }

    #[test]
    fn no_annotations_means_the_policy_applies() {
        assert_eq!(namespace_settings(&BTreeMap::new()), (NamespaceSettings::default(), vec![]));
    }

    #[test]
    fn reads_every_namespace_setting() {
        let (settings, problems) = namespace_settings(&annotations(&[
            (DEFAULT_REQUESTS_ANNOTATION, "cpu=100m, memory=128Mi"),
            (DEFAULT_SIDECAR_REQUESTS_ANNOTATION, "cpu=10m,memory=32Mi"),
            (DEFAULT_PROBES_ANNOTATION, "readiness,liveness"),
            (NAMESPACE_OPT_OUT_ANNOTATION, "false"),
            (DISABLED_CHECKS_ANNOTATION, "node-fit,probe-window"),
            ("team.example.com/owner", "payments"),
        ]));
        assert_eq!(problems, Vec::<String>::new());
        assert!(!settings.opted_out);
        assert_eq!(
            settings.default_requests,
            Some(ResourceDefaults::parse_annotation("cpu=100m,memory=128Mi").unwrap())
        );
        assert_eq!(
            settings.default_sidecar_requests,
            Some(ResourceDefaults::parse_annotation("cpu=10m,memory=32Mi").unwrap())
        );
        assert_eq!((settings.readiness_probes, settings.liveness_probes), (Some(true), Some(true)));
        assert_eq!(settings.disabled_checks, [CheckId::NodeFit, CheckId::ProbeWindow].into_iter().collect());
    }

    #[test]
    fn an_unknown_check_name_is_reported_and_the_known_ones_still_turned_off() {
        let (settings, problems) =
            namespace_settings(&annotations(&[(DISABLED_CHECKS_ANNOTATION, "references,nodefit")]));
        assert_eq!(settings.disabled_checks, [CheckId::References].into_iter().collect());
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("nodefit") && problems[0].contains("node-fit"), "{problems:?}");
    }

    #[test]
    fn probe_settings() {
        let probes = |v: &str| {
            let (s, p) = namespace_settings(&annotations(&[(DEFAULT_PROBES_ANNOTATION, v)]));
            (s.readiness_probes, s.liveness_probes, p.len())
        };
        assert_eq!(probes("none"), (Some(false), Some(false), 0));
        assert_eq!(probes("readiness"), (Some(true), Some(false), 0));
        assert_eq!(probes("Liveness, readiness"), (Some(true), Some(true), 0));
        assert_eq!(probes("startup"), (None, None, 1));
        assert_eq!(probes(""), (None, None, 1));
    }

    #[test]
    fn bad_values_are_ignored_and_reported() {
        let (settings, problems) = namespace_settings(&annotations(&[
            (DEFAULT_REQUESTS_ANNOTATION, "cpu=lots"),
            (DEFAULT_SIDECAR_REQUESTS_ANNOTATION, "memory"),
            (DEFAULT_PROBES_ANNOTATION, "readyness"),
            ("podmedic.io/default-request", "cpu=1"),
            (SKIP_ANNOTATION, "true"),
            (SIDECARS_ANNOTATION, "proxy"),
        ]));
        assert_eq!(settings, NamespaceSettings::default());
        assert_eq!(problems.len(), 5, "{problems:#?}");
        assert!(problems.iter().any(|p| p.starts_with("podmedic.io/default-requests: `cpu=lots`")));
        assert!(problems.iter().any(|p| p.contains("podmedic.io/default-request is not a namespace setting")));
        assert!(problems.iter().any(|p| p.contains("use podmedic.io/disabled")));
    }

    #[test]
    fn opt_out_errs_on_the_side_of_leaving_the_namespace_alone() {
        let opt_out = |v: &str| {
            let (s, p) = namespace_settings(&annotations(&[(NAMESPACE_OPT_OUT_ANNOTATION, v)]));
            (s.opted_out, p.len())
        };
        assert_eq!(opt_out("true"), (true, 0));
        assert_eq!(opt_out("True"), (true, 0));
        assert_eq!(opt_out("false"), (false, 0));
        assert_eq!(opt_out("yes"), (true, 1));
    }
}
