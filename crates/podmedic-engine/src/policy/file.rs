//! The policy file as users write it (and as the built-in policy is written): its serde types,
//! reading it with errors that name the field, and merging a user's file over the built-in one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::PolicyError;

/// The `apiVersion` a policy file must declare.
pub const POLICY_API_VERSION: &str = "podmedic.io/v1alpha1";

/// A policy file as written by users (and as the built-in policy is written).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyFile {
    /// Must be `podmedic.io/v1alpha1`.
    pub api_version: String,
    /// Must be `Policy`.
    pub kind: String,
    /// Changes to the sidecar catalogue.
    #[serde(default)]
    pub catalogue: CatalogueFile,
    /// Workloads that manage their own containers and must never be touched.
    #[serde(default)]
    pub self_managed_workloads: Vec<SelfManagedWorkload>,
    /// Container names that belong to a service mesh's own init step (`istio-init`, ...).
    /// Sidecars placed `first` still go after these.
    #[serde(default)]
    pub mesh_init_containers: Option<Vec<String>>,
    /// Container names podmedic never moves, whatever the annotations say, because another
    /// webhook owns their place in the Pod (GKE's `gke-gcsfuse-sidecar`). Sidecars placed `first`
    /// go after such a container when it is already an init container. A user's list adds to the
    /// built-in one.
    #[serde(default)]
    pub never_move: Vec<String>,
    /// Default resource requests.
    #[serde(default)]
    pub default_requests: Option<DefaultRequestsFile>,
    /// Default probes for long-running Pods (`restartPolicy: Always`).
    #[serde(default)]
    pub long_running_pods: Option<LongRunningPodsFile>,
    /// Warnings that can be switched off.
    #[serde(default)]
    pub warnings: Option<WarningsFile>,
}

/// The `catalogue` section of a policy file.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogueFile {
    /// Names of built-in entries to remove.
    #[serde(default)]
    pub disable: Vec<String>,
    /// Entries to add; an entry with a built-in name replaces that entry.
    #[serde(default)]
    pub sidecars: Vec<SidecarProfile>,
}

/// A well-known long-running sidecar.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarProfile {
    /// Unique name of the entry, for example `cloud-sql-proxy-v2`.
    pub name: String,
    /// Image repository patterns. A pattern matches the end of the image's repository path
    /// (registry host and mirror prefixes, tag and digest do not matter) component by component;
    /// `*` inside a component is a wildcard and a `**` component matches any number of components.
    #[serde(default)]
    pub images: Vec<String>,
    /// Container names that identify the sidecar whatever its image (used for mesh proxies).
    #[serde(default)]
    pub container_names: Vec<String>,
    /// The image only counts as this sidecar when its command or args contain this word
    /// (Vault is a sidecar only when it runs `vault agent`).
    #[serde(default)]
    pub requires_arg: Option<String>,
    /// The image is not this sidecar when its command or args contain this word
    /// (for example a one-shot mode flag).
    #[serde(default)]
    pub unless_arg: Option<String>,
    /// The image is not this sidecar when one of these environment variables is set to `true`
    /// (a one-shot mode switched on through the environment, like git-sync's `GITSYNC_ONE_TIME`).
    #[serde(default)]
    pub unless_env: Vec<String>,
    /// A service mesh proxy: moved first among sidecars, and blocks startup probes on others
    /// while it stays a regular container.
    #[serde(default)]
    pub mesh: bool,
    /// How to probe the sidecar's startup once it is a native sidecar.
    #[serde(default)]
    pub startup_probe: ProbeProfile,
}

/// How podmedic gives a moved sidecar a startup probe.
///
/// Written in YAML as a name (`cloudSqlProxyV2`, `cloudSqlProxyV1`, `alloyDbAuthProxy`,
/// `firstContainerPort`, `none`) or as `{httpGet: {path, port}}` / `{tcpSocket: {port}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", try_from = "ProbeProfileRepr")]
pub enum ProbeProfile {
    /// Cloud SQL Auth Proxy v2: `--health-check`, `--http-address=0.0.0.0`, `/startup` on `--http-port`.
    CloudSqlProxyV2,
    /// AlloyDB Auth Proxy: the same flags as Cloud SQL v2, `ALLOYDB_PROXY_*` environment form.
    AlloyDbAuthProxy,
    /// Cloud SQL Auth Proxy v1: `-use_http_health_check`, `/startup` on `-health_check_port`.
    CloudSqlProxyV1,
    /// An HTTP GET on a fixed path and port the image always serves.
    HttpGet {
        /// The path, for example `/healthz/ready`.
        path: String,
        /// The port number.
        port: u16,
    },
    /// A TCP connect on a fixed port.
    TcpSocket {
        /// The port number.
        port: u16,
    },
    /// A TCP connect on the container's first declared `containerPort` (the default).
    #[default]
    FirstContainerPort,
    /// Never add a startup probe.
    None,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ProbeProfileRepr {
    Name(String),
    Spec(ProbeSpecRepr),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProbeSpecRepr {
    #[serde(default)]
    http_get: Option<HttpGetRepr>,
    #[serde(default)]
    tcp_socket: Option<TcpSocketRepr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpGetRepr {
    path: String,
    port: u16,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TcpSocketRepr {
    port: u16,
}

impl TryFrom<ProbeProfileRepr> for ProbeProfile {
    type Error = String;
    fn try_from(repr: ProbeProfileRepr) -> Result<Self, String> {
        match repr {
            ProbeProfileRepr::Name(name) => match name.as_str() {
                "cloudSqlProxyV2" => Ok(ProbeProfile::CloudSqlProxyV2),
                "cloudSqlProxyV1" => Ok(ProbeProfile::CloudSqlProxyV1),
                "alloyDbAuthProxy" => Ok(ProbeProfile::AlloyDbAuthProxy),
                "firstContainerPort" => Ok(ProbeProfile::FirstContainerPort),
                "none" => Ok(ProbeProfile::None),
                other => Err(format!(
                    "unknown probe profile `{other}` (expected cloudSqlProxyV2, cloudSqlProxyV1, alloyDbAuthProxy, \
                     firstContainerPort, none, {{httpGet: {{path, port}}}} or {{tcpSocket: {{port}}}})"
                )),
            },
            ProbeProfileRepr::Spec(ProbeSpecRepr { http_get: Some(h), tcp_socket: None }) => {
                Ok(ProbeProfile::HttpGet { path: h.path, port: h.port })
            }
            ProbeProfileRepr::Spec(ProbeSpecRepr { http_get: None, tcp_socket: Some(t) }) => {
                Ok(ProbeProfile::TcpSocket { port: t.port })
            }
            ProbeProfileRepr::Spec(_) => Err("give exactly one of httpGet or tcpSocket".into()),
        }
    }
}

/// A workload kind that manages its own containers; podmedic leaves its Pods alone.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SelfManagedWorkload {
    /// Name, shown in notes (for example `argo-workflows`).
    pub name: String,
    /// Label keys; the presence of any one of them on the pod (template) matches.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Annotation keys; the presence of any one of them matches.
    #[serde(default)]
    pub annotations: Vec<String>,
    /// Container (or init container) names; the presence of any one of them matches.
    #[serde(default)]
    pub container_names: Vec<String>,
}

/// The `defaultRequests` section.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefaultRequestsFile {
    /// Add default requests to containers that have none (off unless set).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Requests for regular and init containers, for example `{cpu: 100m, memory: 128Mi}`.
    #[serde(default)]
    pub containers: Option<BTreeMap<String, String>>,
    /// Requests for sidecars (smaller).
    #[serde(default)]
    pub sidecars: Option<BTreeMap<String, String>>,
}

/// The `longRunningPods` section.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LongRunningPodsFile {
    /// TCP readiness probes on the first `containerPort` of containers that have no probes.
    #[serde(default)]
    pub readiness_probes: Option<bool>,
    /// TCP liveness probes with generous thresholds (off by default: a wrong liveness probe
    /// itself causes CrashLoopBackOff).
    #[serde(default)]
    pub liveness_probes: Option<bool>,
}

/// The `warnings` section: each warning can be switched off.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WarningsFile {
    /// Warn about images tagged `latest` or untagged.
    #[serde(default)]
    pub latest_tag: Option<bool>,
    /// Warn about containers with no resource requests while defaults are off.
    #[serde(default)]
    pub missing_requests: Option<bool>,
    /// Warn about shell entrypoints whose last command is backgrounded.
    #[serde(default)]
    pub backgrounded_entrypoint: Option<bool>,
    /// Warn when the Pod's effective request fits no node (`node-fit`).
    #[serde(default)]
    pub node_fit: Option<bool>,
    /// Warn when `nodeSelector` or required node affinity matches no node (`node-selector`).
    #[serde(default)]
    pub node_selector: Option<bool>,
    /// Warn when every node the selector allows has a taint the Pod does not tolerate (`node-taints`).
    #[serde(default)]
    pub node_taints: Option<bool>,
    /// Warn about ConfigMaps, Secrets, PersistentVolumeClaims and ServiceAccounts not seen yet
    /// (`references`; needs `podmedic serve --watch-references`).
    #[serde(default)]
    pub references: Option<bool>,
    /// Warn about a liveness probe identical to the readiness probe (`probe-identical`).
    #[serde(default)]
    pub probe_identical: Option<bool>,
    /// Warn about a liveness probe with no startup probe that gives up sooner than
    /// `minLivenessWindowSeconds` (`probe-window`).
    #[serde(default)]
    pub probe_window: Option<bool>,
    /// Warn about a probe on a port name the container does not declare (`probe-port`).
    #[serde(default)]
    pub probe_port: Option<bool>,
    /// Nodes are added on demand (cluster autoscaler, Karpenter): say "no current node".
    #[serde(default)]
    pub node_autoscaling: Option<bool>,
    /// The `probe-window` threshold in seconds (default 30).
    #[serde(default)]
    pub min_liveness_window_seconds: Option<u32>,
}

pub(super) fn parse_file(yaml: &str, origin: &str) -> Result<PolicyFile, PolicyError> {
    let de = yaml_serde::Deserializer::from_str(yaml);
    let file: PolicyFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        PolicyError::Parse {
            origin: origin.to_owned(),
            field: if field == "." { "(document)".to_owned() } else { field },
            message: e.into_inner().to_string(),
        }
    })?;
    let invalid = |field: &str, message: String| PolicyError::Invalid {
        origin: origin.to_owned(),
        field: field.to_owned(),
        message,
    };
    if file.api_version != POLICY_API_VERSION {
        return Err(invalid("apiVersion", format!("must be {POLICY_API_VERSION}, not `{}`", file.api_version)));
    }
    if file.kind != "Policy" {
        return Err(invalid("kind", format!("must be Policy, not `{}`", file.kind)));
    }
    Ok(file)
}

pub(super) fn merge(mut base: PolicyFile, user: PolicyFile, origin: &str) -> Result<PolicyFile, PolicyError> {
    for (i, name) in user.catalogue.disable.iter().enumerate() {
        let before = base.catalogue.sidecars.len();
        base.catalogue.sidecars.retain(|p| &p.name != name);
        if base.catalogue.sidecars.len() == before {
            return Err(PolicyError::Invalid {
                origin: origin.to_owned(),
                field: format!("catalogue.disable[{i}]"),
                message: format!("`{name}` is not a built-in catalogue entry"),
            });
        }
    }
    for entry in user.catalogue.sidecars {
        match base.catalogue.sidecars.iter_mut().find(|p| p.name == entry.name) {
            Some(existing) => *existing = entry,
            None => base.catalogue.sidecars.push(entry),
        }
    }
    base.self_managed_workloads.extend(user.self_managed_workloads);
    base.never_move.extend(user.never_move);
    if user.mesh_init_containers.is_some() {
        base.mesh_init_containers = user.mesh_init_containers;
    }
    if let Some(user_requests) = user.default_requests {
        let b = base.default_requests.get_or_insert_with(Default::default);
        b.enabled = user_requests.enabled.or(b.enabled);
        b.containers = user_requests.containers.or(b.containers.take());
        b.sidecars = user_requests.sidecars.or(b.sidecars.take());
    }
    if let Some(user_lr) = user.long_running_pods {
        let b = base.long_running_pods.get_or_insert_with(Default::default);
        b.readiness_probes = user_lr.readiness_probes.or(b.readiness_probes);
        b.liveness_probes = user_lr.liveness_probes.or(b.liveness_probes);
    }
    if let Some(user_w) = user.warnings {
        let b = base.warnings.get_or_insert_with(Default::default);
        // Every field: the user's value where given, else the built-in one.
        macro_rules! over {
            ($($field:ident),*) => { $(b.$field = user_w.$field.or(b.$field);)* };
        }
        over!(
            latest_tag,
            missing_requests,
            backgrounded_entrypoint,
            node_fit,
            node_selector,
            node_taints,
            references,
            probe_identical,
            probe_window,
            probe_port,
            node_autoscaling,
            min_liveness_window_seconds
        );
    }
    Ok(base)
}
