//! What a container needs to exist before it can start: ConfigMaps and Secrets (environment,
//! `envFrom`, volumes, projected volumes) and PersistentVolumeClaims.

use serde::Deserialize;

use super::Text;
use super::decode::{object, objects};

/// A reference to a ConfigMap, Secret or PersistentVolumeClaim by name.
///
/// The same shape serves every place a name appears: `configMapKeyRef`, `configMapRef`, a
/// `configMap` volume and projection use `name`; a `secret` volume uses `secretName`; a
/// `persistentVolumeClaim` volume uses `claimName`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reference<'a> {
    /// The object's name.
    #[serde(default, borrow, alias = "secretName", alias = "claimName")]
    pub name: Option<Text<'a>>,
    /// `optional: true`: the container starts without it.
    #[serde(default)]
    pub optional: Option<bool>,
}

impl Reference<'_> {
    /// The name, when one is given and the reference is not optional.
    pub fn required_name(&self) -> Option<&str> {
        if self.optional == Some(true) {
            return None;
        }
        self.name.as_deref().filter(|n| !n.is_empty())
    }
}

/// `env[].valueFrom`: only the references to other objects.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource<'a> {
    /// A key of a ConfigMap.
    #[serde(default, borrow, deserialize_with = "object")]
    pub config_map_key_ref: Option<Reference<'a>>,
    /// A key of a Secret.
    #[serde(default, borrow, deserialize_with = "object")]
    pub secret_key_ref: Option<Reference<'a>>,
}

/// `envFrom[]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvFromSource<'a> {
    /// Every key of a ConfigMap.
    #[serde(default, borrow, deserialize_with = "object")]
    pub config_map_ref: Option<Reference<'a>>,
    /// Every key of a Secret.
    #[serde(default, borrow, deserialize_with = "object")]
    pub secret_ref: Option<Reference<'a>>,
}

/// A pod volume, reduced to the sources that name another object.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume<'a> {
    /// The volume name.
    #[serde(default, borrow)]
    pub name: Text<'a>,
    /// A ConfigMap volume.
    #[serde(default, borrow, deserialize_with = "object")]
    pub config_map: Option<Reference<'a>>,
    /// A Secret volume (`secretName`).
    #[serde(default, borrow, deserialize_with = "object")]
    pub secret: Option<Reference<'a>>,
    /// A PersistentVolumeClaim volume (`claimName`).
    #[serde(default, borrow, deserialize_with = "object")]
    pub persistent_volume_claim: Option<Reference<'a>>,
    /// A projected volume.
    #[serde(default, borrow, deserialize_with = "object")]
    pub projected: Option<Projected<'a>>,
}

/// A projected volume's sources.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Projected<'a> {
    /// The sources.
    #[serde(default, borrow, deserialize_with = "objects")]
    pub sources: Option<Vec<Projection<'a>>>,
}

/// One projected source.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Projection<'a> {
    /// A ConfigMap's keys.
    #[serde(default, borrow, deserialize_with = "object")]
    pub config_map: Option<Reference<'a>>,
    /// A Secret's keys.
    #[serde(default, borrow, deserialize_with = "object")]
    pub secret: Option<Reference<'a>>,
}
