//! The names of the checks that warn, at admission, about Pods that will not start
//! ([`crate::diagnose`]), and sets of them: what a namespace annotation or an object's annotation
//! turns off (`podmedic.io/disabled-checks`), shared by `annotations.rs`, the policy and the checks.

use std::fmt;

/// One check. Its [`name`](CheckId::name) is what users write in `podmedic.io/disabled-checks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckId {
    /// The Pod's effective request is larger than the allocatable of every node it could use.
    NodeFit,
    /// `nodeSelector` or required node affinity matches no node.
    NodeSelector,
    /// Every node the selector allows has a taint the Pod does not tolerate.
    NodeTaints,
    /// A ConfigMap, Secret, PersistentVolumeClaim or ServiceAccount the Pod needs was not seen.
    References,
    /// A liveness probe identical to the readiness probe.
    ProbeIdentical,
    /// A liveness probe that gives up too soon, with no startup probe.
    ProbeWindow,
    /// A probe on a named port the container does not declare.
    ProbePort,
}

impl CheckId {
    /// Every check, in the order their warnings are emitted.
    pub const ALL: [CheckId; 7] = [
        CheckId::NodeFit,
        CheckId::NodeSelector,
        CheckId::NodeTaints,
        CheckId::References,
        CheckId::ProbeIdentical,
        CheckId::ProbeWindow,
        CheckId::ProbePort,
    ];

    /// The stable name (annotations, logs, `podmedic fix -v`).
    pub fn name(self) -> &'static str {
        match self {
            CheckId::NodeFit => "node-fit",
            CheckId::NodeSelector => "node-selector",
            CheckId::NodeTaints => "node-taints",
            CheckId::References => "references",
            CheckId::ProbeIdentical => "probe-identical",
            CheckId::ProbeWindow => "probe-window",
            CheckId::ProbePort => "probe-port",
        }
    }

    /// The check with this name.
    pub fn from_name(name: &str) -> Option<CheckId> {
        CheckId::ALL.into_iter().find(|c| c.name().eq_ignore_ascii_case(name))
    }

    /// What the check cannot see, and so never claims (README's "Why is my Pod not running?").
    pub fn cannot_see(self) -> &'static str {
        match self {
            CheckId::NodeFit => {
                "what other Pods already use on each node (so a Pod may still pend on a full node), nodes an \
                 autoscaler would add, LimitRange defaults and RuntimeClass overhead applied when the Pod is \
                 created, extended resources, hugepages and DRA claims"
            }
            CheckId::NodeSelector => "nodes an autoscaler would add with those labels; labels a node will get later",
            CheckId::NodeTaints => {
                "tolerations other webhooks add when the Pod is created; taints of nodes that are not Ready \
                 (it says nothing while a matching node is not Ready)"
            }
            CheckId::References => {
                "objects created in the same sync after the workload (so it says \"not seen yet\"), keys \
                 inside a ConfigMap or Secret, and namespaces podmedic does not watch"
            }
            CheckId::ProbeIdentical => {
                "whether the endpoint checks dependencies (the usual reason a shared probe hurts)"
            }
            CheckId::ProbeWindow => "how long the application really takes to start",
            CheckId::ProbePort => "ports other webhooks add to the container when the Pod is created",
        }
    }
}

impl serde::Serialize for CheckId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckSet(u16);

impl CheckSet {
    /// No check.
    pub const EMPTY: CheckSet = CheckSet(0);

    /// Every check.
    pub fn all() -> CheckSet {
        CheckId::ALL.into_iter().collect()
    }

    /// Whether `check` is in the set.
    pub fn contains(self, check: CheckId) -> bool {
        self.0 & Self::bit(check) != 0
    }

    /// Adds `check`.
    pub fn insert(&mut self, check: CheckId) {
        self.0 |= Self::bit(check);
    }

    /// The union of two sets.
    pub fn union(self, other: CheckSet) -> CheckSet {
        CheckSet(self.0 | other.0)
    }

    /// True when no check is in the set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Parses `node-fit, probe-window` (or `all`). Unknown names are returned beside the set of the
    /// known ones, so that a typo turns off what it can and is reported.
    pub fn parse_list(value: &str) -> (CheckSet, Vec<String>) {
        let mut set = CheckSet::EMPTY;
        let mut unknown = Vec::new();
        for word in value.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            if word.eq_ignore_ascii_case("all") {
                set = CheckSet::all();
            } else {
                match CheckId::from_name(word) {
                    Some(check) => set.insert(check),
                    None => unknown.push(word.to_owned()),
                }
            }
        }
        (set, unknown)
    }

    fn bit(check: CheckId) -> u16 {
        1 << check as u16
    }
}

impl FromIterator<CheckId> for CheckSet {
    fn from_iter<I: IntoIterator<Item = CheckId>>(iter: I) -> Self {
        let mut set = CheckSet::EMPTY;
        for check in iter {
            set.insert(check);
        }
        set
    }
}

/// Every check's name, for messages: `node-fit, node-selector, ...`.
pub fn known_names() -> String {
    CheckId::ALL.map(CheckId::name).join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_lists_parse() {
        for check in CheckId::ALL {
            assert_eq!(CheckId::from_name(check.name()), Some(check));
        }
        let (set, unknown) = CheckSet::parse_list(" node-fit , Probe-Window,, nodefit ");
        assert!(set.contains(CheckId::NodeFit) && set.contains(CheckId::ProbeWindow));
        assert!(!set.contains(CheckId::References));
        assert_eq!(unknown, ["nodefit"]);
        assert_eq!(CheckSet::parse_list("all").0, CheckSet::all());
        assert!(CheckSet::parse_list("").0.is_empty());
    }
}
