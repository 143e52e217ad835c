//! A borrowed, partial view of the objects podmedic reads.
//!
//! Only the fields the rules look at are decoded; everything else is skipped by the parser without
//! being built, and strings are borrowed from the input where they have no escapes. The view is
//! read-only: the patch is computed against positions in the original JSON, so fields unknown to
//! these types are never lost. The same view is decoded from raw JSON text (the webhook) and from a
//! [`serde_json::Value`] (`podmedic fix`).

use std::fmt;

use serde::Deserialize;

use crate::mutation::MutateError;

mod decode;
mod placement;
mod probe;
mod references;
mod source;

pub(crate) use decode::with_item_count;
pub use decode::{MAX_CONTAINERS, MAX_ITEMS, StrMap, Text};
use decode::{containers, counted, items, object, objects, podmedic_annotations, present};
pub use placement::{Affinity, NodeAffinity, NodeSelector, NodeSelectorTerm, SelectorRequirement, Toleration};
pub use probe::{ExecAction, GrpcAction, HttpGetAction, PortRef, Probe, TcpSocketAction};
pub use references::{EnvFromSource, EnvVarSource, Projected, Projection, Reference, Volume};
pub use source::Source;

/// Any Kubernetes object podmedic may look at.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Object<'a> {
    /// `v1`, `batch/v1`, ...
    #[serde(default, borrow)]
    pub api_version: Option<Text<'a>>,
    /// `Pod`, `Job`, `CronJob`, ...
    #[serde(default, borrow)]
    pub kind: Option<Text<'a>>,
    /// Object metadata.
    #[serde(default, borrow, deserialize_with = "object")]
    pub metadata: Option<Metadata<'a>>,
    /// The spec; a union of the fields of PodSpec, JobSpec, CronJobSpec and workload specs.
    #[serde(default, borrow, deserialize_with = "object")]
    pub spec: Option<Spec<'a>>,
    /// Where the object's raw JSON can be read again (set by the constructors below and by the
    /// admission handler).
    #[serde(skip)]
    pub source: Source<'a>,
}

impl<'a> Object<'a> {
    /// Decodes the view from JSON text (at most [`MAX_ITEMS`] items, [`MAX_CONTAINERS`] per list).
    pub fn from_json(raw: &'a str) -> Result<Object<'a>, MutateError> {
        let mut de = serde_json::Deserializer::from_str(raw);
        let object: Option<Object<'a>> =
            with_item_count(|| serde_path_to_error::deserialize(&mut de)).map_err(malformed)?;
        de.end().map_err(|e| MutateError::Malformed(e.to_string()))?;
        Ok(Object { source: Source::Json(raw), ..object.unwrap_or_default() })
    }

    /// Decodes the view from a parsed value (with the same limits).
    pub fn from_value(value: &'a serde_json::Value) -> Result<Object<'a>, MutateError> {
        let object: Option<Object<'a>> =
            with_item_count(|| serde_path_to_error::deserialize(value)).map_err(malformed)?;
        Ok(Object { source: Source::Value(value), ..object.unwrap_or_default() })
    }
}

fn malformed<E: fmt::Display>(e: serde_path_to_error::Error<E>) -> MutateError {
    let path = e.path().to_string();
    MutateError::Malformed(format!("at `{path}`: {}", without_value(&e.into_inner().to_string())))
}

/// A serde message without the value it quotes.
///
/// serde names the value it rejected (`invalid type: string "DB_PASSWORD=hunter2", expected a
/// sequence`), and the message goes to the logs and to the user's warnings; object values can be
/// secrets (an `env` written as a string, `args` as one string). The kind of value found and what
/// was expected are enough to fix the manifest.
fn without_value(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let found = rest.split([' ', ',']).next().unwrap_or_default();
            let expected = rest.rsplit_once(", expected ").map_or("something else", |(_, e)| e);
            return format!("{prefix}{found}, expected {expected}");
        }
    }
    message.to_owned()
}

/// Object or template metadata.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata<'a> {
    /// The object's name.
    #[serde(default, borrow)]
    pub name: Option<Text<'a>>,
    /// The name prefix of objects made by controllers (their `name` is set only after admission).
    #[serde(default, borrow)]
    pub generate_name: Option<Text<'a>>,
    /// Labels (keys and values).
    #[serde(default, borrow)]
    pub labels: Option<StrMap<'a>>,
    /// Annotations: all keys, but only the values of `podmedic.io/` annotations and of the few mesh
    /// settings the probe rules read ([`crate::annotations::is_read_annotation`]) are kept.
    #[serde(default, borrow, deserialize_with = "podmedic_annotations")]
    pub annotations: Option<StrMap<'a>>,
}

impl<'a> Metadata<'a> {
    /// The value of a label.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.as_ref().and_then(|m| m.get(key))
    }

    /// The value of an annotation podmedic reads (other values are not decoded).
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref().and_then(|m| m.get(key))
    }

    /// Whether an annotation key is present (any prefix).
    pub fn has_annotation(&self, key: &str) -> bool {
        self.annotations.as_ref().is_some_and(|m| m.contains_key(key))
    }

    /// Whether a label key is present.
    pub fn has_label(&self, key: &str) -> bool {
        self.labels.as_ref().is_some_and(|m| m.contains_key(key))
    }
}

/// A union of the spec fields of Pods, Jobs, CronJobs and pod-template workloads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec<'a> {
    /// PodSpec: `Always`, `OnFailure` or `Never`.
    #[serde(default, borrow)]
    pub restart_policy: Option<Text<'a>>,
    /// PodSpec: regular containers.
    #[serde(default, borrow, deserialize_with = "containers")]
    pub containers: Option<Vec<Container<'a>>>,
    /// PodSpec: init containers, including native sidecars.
    #[serde(default, borrow, deserialize_with = "containers")]
    pub init_containers: Option<Vec<Container<'a>>>,
    /// PodSpec: ephemeral containers (names only matter).
    #[serde(default, borrow, deserialize_with = "containers")]
    pub ephemeral_containers: Option<Vec<Container<'a>>>,
    /// JobSpec and workload specs: the pod template.
    #[serde(default, borrow, deserialize_with = "object")]
    pub template: Option<Box<Template<'a>>>,
    /// CronJobSpec: the job template.
    #[serde(default, borrow, deserialize_with = "object")]
    pub job_template: Option<Box<Template<'a>>>,
    /// PodSpec: the Pod uses the node's network namespace.
    #[serde(default)]
    pub host_network: Option<bool>,
    /// PodSpec: pod-level resources (Kubernetes 1.32+).
    #[serde(default, borrow, deserialize_with = "object")]
    pub resources: Option<Resources<'a>>,
    /// JobSpec: the pod failure policy.
    #[serde(default, deserialize_with = "object")]
    pub pod_failure_policy: Option<PodFailurePolicy>,
    /// PodSpec: node labels the Pod requires (every pair must match).
    #[serde(default, borrow)]
    pub node_selector: Option<StrMap<'a>>,
    /// PodSpec: affinity (node affinity is read).
    #[serde(default, borrow, deserialize_with = "object")]
    pub affinity: Option<Affinity<'a>>,
    /// PodSpec: tolerations.
    #[serde(default, borrow, deserialize_with = "objects")]
    pub tolerations: Option<Vec<Toleration<'a>>>,
    /// PodSpec: the runtime's overhead per Pod (normally set at Pod creation from a RuntimeClass).
    #[serde(default, borrow)]
    pub overhead: Option<StrMap<'a>>,
    /// PodSpec: a node chosen by hand (the scheduler is bypassed).
    #[serde(default, borrow)]
    pub node_name: Option<Text<'a>>,
    /// PodSpec: the scheduler that places the Pod (`default-scheduler` when empty).
    #[serde(default, borrow)]
    pub scheduler_name: Option<Text<'a>>,
    /// PodSpec: the ServiceAccount the Pod runs as.
    #[serde(default, borrow)]
    pub service_account_name: Option<Text<'a>>,
    /// PodSpec: the deprecated alias of `serviceAccountName`.
    #[serde(default, borrow, rename = "serviceAccount")]
    pub deprecated_service_account: Option<Text<'a>>,
    /// PodSpec: volumes (those that name another object are read).
    #[serde(default, borrow, deserialize_with = "objects")]
    pub volumes: Option<Vec<Volume<'a>>>,
}

impl Spec<'_> {
    /// The pod spec's tolerations.
    pub fn tolerations(&self) -> &[Toleration<'_>] {
        self.tolerations.as_deref().unwrap_or_default()
    }

    /// The pod spec's volumes.
    pub fn volumes(&self) -> &[Volume<'_>] {
        self.volumes.as_deref().unwrap_or_default()
    }
}

/// A pod template or job template: metadata and a spec.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Template<'a> {
    /// Template metadata.
    #[serde(default, borrow, deserialize_with = "object")]
    pub metadata: Option<Metadata<'a>>,
    /// Template spec.
    #[serde(default, borrow, deserialize_with = "object")]
    pub spec: Option<Spec<'a>>,
}

/// JobSpec.podFailurePolicy, reduced to what the warning needs.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodFailurePolicy {
    /// The rules.
    #[serde(default, deserialize_with = "counted")]
    pub rules: Vec<PodFailurePolicyRule>,
}

/// One podFailurePolicy rule.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodFailurePolicyRule {
    /// The action (`FailJob`, `Ignore`, `Count`, `FailIndex`).
    #[serde(default)]
    pub action: Option<String>,
    /// The exit-code requirement.
    #[serde(default, deserialize_with = "object")]
    pub on_exit_codes: Option<OnExitCodes>,
}

/// `onExitCodes` of a podFailurePolicy rule.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OnExitCodes {
    /// Restricts the rule to one container.
    #[serde(default)]
    pub container_name: Option<String>,
    /// `In` or `NotIn`.
    #[serde(default)]
    pub operator: Option<String>,
    /// The exit codes.
    #[serde(default, deserialize_with = "counted")]
    pub values: Vec<i64>,
}

/// A container, reduced to the fields podmedic reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container<'a> {
    /// The container name.
    #[serde(borrow)]
    pub name: Text<'a>,
    /// The image reference.
    #[serde(default, borrow)]
    pub image: Option<Text<'a>>,
    /// The command (entrypoint).
    #[serde(default, borrow, deserialize_with = "items")]
    pub command: Option<Vec<Text<'a>>>,
    /// The arguments.
    #[serde(default, borrow, deserialize_with = "items")]
    pub args: Option<Vec<Text<'a>>>,
    /// Environment variables.
    #[serde(default, borrow, deserialize_with = "objects")]
    pub env: Option<Vec<EnvVar<'a>>>,
    /// Environment variables from every key of a ConfigMap or Secret.
    #[serde(default, borrow, deserialize_with = "objects")]
    pub env_from: Option<Vec<EnvFromSource<'a>>>,
    /// Declared ports.
    #[serde(default, deserialize_with = "objects")]
    pub ports: Option<Vec<ContainerPort<'a>>>,
    /// Resource requests and limits.
    #[serde(default, borrow, deserialize_with = "object")]
    pub resources: Option<Resources<'a>>,
    /// The startup probe.
    #[serde(default, borrow, deserialize_with = "object")]
    pub startup_probe: Option<Probe<'a>>,
    /// The readiness probe.
    #[serde(default, borrow, deserialize_with = "object")]
    pub readiness_probe: Option<Probe<'a>>,
    /// The liveness probe.
    #[serde(default, borrow, deserialize_with = "object")]
    pub liveness_probe: Option<Probe<'a>>,
    /// The container-level restart policy (`Always` makes an init container a native sidecar).
    #[serde(default, borrow)]
    pub restart_policy: Option<Text<'a>>,
    /// Whether restart policy rules (Kubernetes 1.34+) are set.
    #[serde(default, deserialize_with = "present")]
    pub restart_policy_rules: bool,
}

impl<'a> Container<'a> {
    /// Command followed by args, as the kubelet runs them.
    pub fn argv(&self) -> impl Iterator<Item = &str> {
        self.command.iter().flatten().chain(self.args.iter().flatten()).map(Text::as_str)
    }

    /// The container's declared ports.
    pub fn ports(&self) -> &[ContainerPort<'a>] {
        self.ports.as_deref().unwrap_or_default()
    }

    /// The container's environment.
    pub fn env(&self) -> &[EnvVar<'a>] {
        self.env.as_deref().unwrap_or_default()
    }

    /// Whether any probe is set.
    pub fn has_any_probe(&self) -> bool {
        self.startup_probe.is_some() || self.readiness_probe.is_some() || self.liveness_probe.is_some()
    }

    /// The container's `envFrom` sources.
    pub fn env_from(&self) -> &[EnvFromSource<'a>] {
        self.env_from.as_deref().unwrap_or_default()
    }

    /// The script a container runs through a shell (`sh -c SCRIPT`, `bash -ec SCRIPT`, with the
    /// shell in `command` and the script in `args` or anywhere in between), if it does.
    pub fn shell_script(&self) -> Option<&str> {
        let mut argv = self.argv();
        let shell = argv.next()?;
        let base = shell.rsplit('/').next().unwrap_or(shell);
        if !matches!(base, "sh" | "bash" | "ash" | "dash" | "zsh" | "ksh") {
            return None;
        }
        // Options such as -e, -x, -ec may precede or combine with -c.
        let mut argv = argv.skip_while(|a| !(a.starts_with('-') && !a.starts_with("--") && a.contains('c')));
        argv.next()?;
        argv.next()
    }

    /// Whether this is a native sidecar (an init container with `restartPolicy: Always`).
    pub fn is_restartable(&self) -> bool {
        self.restart_policy.as_deref() == Some("Always")
    }
}

/// An environment variable. Values may be secret: they are never logged.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar<'a> {
    /// The variable name.
    #[serde(borrow)]
    pub name: Text<'a>,
    /// A literal value.
    #[serde(default, borrow)]
    pub value: Option<Text<'a>>,
    /// Where the value comes from instead (a Secret, a ConfigMap, a field, a resource).
    #[serde(default, borrow, deserialize_with = "object")]
    pub value_from: Option<EnvVarSource<'a>>,
}

impl fmt::Debug for EnvVar<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print values: they are often secrets.
        f.debug_struct("EnvVar").field("name", &self.name).finish_non_exhaustive()
    }
}

/// A declared container port.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort<'a> {
    /// The port number.
    pub container_port: i64,
    /// The port name.
    #[serde(default, borrow)]
    pub name: Option<Text<'a>>,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default, borrow)]
    pub protocol: Option<Text<'a>>,
}

impl ContainerPort<'_> {
    /// True for TCP ports (the default protocol).
    pub fn is_tcp(&self) -> bool {
        self.protocol.as_deref().is_none_or(|p| p == "TCP")
    }
}

/// Resource requirements.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources<'a> {
    /// Requests by resource name.
    #[serde(default, borrow)]
    pub requests: Option<StrMap<'a>>,
    /// Limits by resource name.
    #[serde(default, borrow)]
    pub limits: Option<StrMap<'a>>,
}

#[cfg(test)]
mod tests;
