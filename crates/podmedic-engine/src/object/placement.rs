//! Where a Pod may run: `nodeSelector` is a plain map in [`super::Spec`]; required node affinity
//! and tolerations are read here, with the fields the scheduler looks at and nothing else.

use serde::Deserialize;

use super::Text;
use super::decode::{items, object, objects};

/// `spec.affinity`, reduced to node affinity (pod affinity depends on other Pods, which podmedic
/// cannot see).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Affinity<'a> {
    /// Node affinity.
    #[serde(default, borrow, deserialize_with = "object")]
    pub node_affinity: Option<NodeAffinity<'a>>,
}

/// `nodeAffinity`: only the required part; preferences never keep a Pod from scheduling.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeAffinity<'a> {
    /// `requiredDuringSchedulingIgnoredDuringExecution`.
    #[serde(default, borrow, deserialize_with = "object", rename = "requiredDuringSchedulingIgnoredDuringExecution")]
    pub required: Option<NodeSelector<'a>>,
}

/// A node selector: its terms are ORed.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelector<'a> {
    /// The terms.
    #[serde(default, borrow, deserialize_with = "objects")]
    pub node_selector_terms: Option<Vec<NodeSelectorTerm<'a>>>,
}

/// One term: its expressions and fields are ANDed.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelectorTerm<'a> {
    /// Requirements on node labels.
    #[serde(default, borrow, deserialize_with = "objects")]
    pub match_expressions: Option<Vec<SelectorRequirement<'a>>>,
    /// Requirements on node fields (only `metadata.name` exists).
    #[serde(default, borrow, deserialize_with = "objects")]
    pub match_fields: Option<Vec<SelectorRequirement<'a>>>,
}

/// `{key, operator, values}`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectorRequirement<'a> {
    /// The label key (or field path).
    #[serde(default, borrow)]
    pub key: Text<'a>,
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt`, `Lt`.
    #[serde(default, borrow)]
    pub operator: Text<'a>,
    /// The values.
    #[serde(default, borrow, deserialize_with = "items")]
    pub values: Option<Vec<Text<'a>>>,
}

impl SelectorRequirement<'_> {
    /// The values (none when absent).
    pub fn values(&self) -> &[Text<'_>] {
        self.values.as_deref().unwrap_or_default()
    }
}

/// A toleration.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Toleration<'a> {
    /// The taint key; empty matches every key (with `Exists`).
    #[serde(default, borrow)]
    pub key: Option<Text<'a>>,
    /// `Equal` (the default), `Exists`, `Lt`, `Gt`.
    #[serde(default, borrow)]
    pub operator: Option<Text<'a>>,
    /// The value for `Equal`, `Lt`, `Gt`.
    #[serde(default, borrow)]
    pub value: Option<Text<'a>>,
    /// `NoSchedule`, `PreferNoSchedule`, `NoExecute`; empty matches every effect.
    #[serde(default, borrow)]
    pub effect: Option<Text<'a>>,
}
