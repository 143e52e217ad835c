//! The policy: the sidecar catalogue and the opt-in defaults, loaded from YAML and validated.
//!
//! The built-in policy (`src/default-policy.yaml`) is embedded in the binary, so podmedic needs no
//! file to run. A user's policy file is merged over it: a catalogue entry with the name of a
//! built-in entry replaces it, `catalogue.disable` removes built-in entries by name, and the other
//! sections override the built-in values field by field.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::mutate::{ImageRef, Quantity};

/// The built-in policy, embedded at compile time.
pub const DEFAULT_POLICY_YAML: &str = include_str!("default-policy.yaml");

/// The `apiVersion` a policy file must declare.
pub const POLICY_API_VERSION: &str = "podmedic.io/v1alpha1";

/// Why a policy could not be loaded. Every variant names the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or a field has the wrong type or name.
    #[error("policy {origin}: field `{field}`: {message}")]
    Parse {
        /// Where the policy came from.
        origin: String,
        /// The path of the offending field, for example `catalogue.sidecars[2].images`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The YAML parsed but a value is not acceptable.
    #[error("policy {origin}: field `{field}`: {message}")]
    Invalid {
        /// Where the policy came from.
        origin: String,
        /// The path of the offending field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

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
}

/// Validated resource quantities, keyed by resource name (`cpu`, `memory`, ...).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResourceDefaults(pub BTreeMap<String, Quantity>);

impl ResourceDefaults {
    /// Parses `cpu=100m,memory=128Mi` (the annotation form).
    pub fn parse_annotation(value: &str) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, quantity) =
                part.split_once('=').ok_or_else(|| format!("`{part}` is not of the form resource=quantity"))?;
            let name = name.trim();
            validate_resource_name(name)?;
            let quantity = Quantity::parse(quantity.trim()).map_err(|e| format!("{name}: {e}"))?;
            map.insert(name.to_owned(), quantity);
        }
        if map.is_empty() {
            return Err("no resources given (expected for example cpu=100m,memory=128Mi)".into());
        }
        Ok(ResourceDefaults(map))
    }

    fn from_map(map: &BTreeMap<String, String>, field: &str) -> Result<Self, (String, String)> {
        let mut out = BTreeMap::new();
        for (name, value) in map {
            validate_resource_name(name).map_err(|m| (format!("{field}.{name}"), m))?;
            let q = Quantity::parse(value).map_err(|m| (format!("{field}.{name}"), m))?;
            out.insert(name.clone(), q);
        }
        Ok(ResourceDefaults(out))
    }
}

fn validate_resource_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '/' | '_'));
    if valid { Ok(()) } else { Err(format!("`{name}` is not a valid resource name")) }
}

/// Default resource requests, effective values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DefaultRequests {
    /// Whether podmedic adds requests at all (the policy switch; a namespace annotation also enables).
    pub enabled: bool,
    /// For regular and init containers.
    pub containers: ResourceDefaults,
    /// For sidecars.
    pub sidecars: ResourceDefaults,
}

/// Which warnings are on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WarningSwitches {
    /// `latest` or missing tag.
    pub latest_tag: bool,
    /// No requests while defaults are off.
    pub missing_requests: bool,
    /// Backgrounded last command in a shell entrypoint.
    pub backgrounded_entrypoint: bool,
}

/// The effective, validated policy the engine uses.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The sidecar catalogue, built-in entries first.
    pub sidecars: Vec<SidecarProfile>,
    /// Workloads never touched.
    pub self_managed_workloads: Vec<SelfManagedWorkload>,
    /// Mesh init container names.
    pub mesh_init_containers: Vec<String>,
    /// Default requests.
    pub default_requests: DefaultRequests,
    /// Readiness probes for long-running Pods.
    pub readiness_probes: bool,
    /// Liveness probes for long-running Pods.
    pub liveness_probes: bool,
    /// Warning switches.
    pub warnings: WarningSwitches,
    /// Patterns pre-split into components, parallel to `sidecars` (so matching does not allocate).
    compiled: Vec<Vec<Vec<String>>>,
}

impl Policy {
    /// The built-in policy.
    pub fn builtin() -> Policy {
        // The embedded policy is validated by a unit test; failing here would be a build defect.
        Self::from_yaml_str(DEFAULT_POLICY_YAML, "built-in")
            .unwrap_or_else(|e| panic!("the embedded default policy is invalid: {e}"))
    }

    /// The built-in policy with the file at `path` merged over it.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| PolicyError::Read { path: path.display().to_string(), source })?;
        Self::builtin_with(&text, &path.display().to_string())
    }

    /// The built-in policy with the given YAML merged over it; `origin` names it in errors.
    pub fn builtin_with(yaml: &str, origin: &str) -> Result<Policy, PolicyError> {
        let base = parse_file(DEFAULT_POLICY_YAML, "built-in")?;
        let user = parse_file(yaml, origin)?;
        // Validate the user's own entries first, so errors point into the user's file.
        compile_catalogue(&user.catalogue.sidecars, origin)?;
        validate_self_managed(&user.self_managed_workloads, origin)?;
        resolve(merge(base, user, origin)?, origin)
    }

    /// A policy from a complete YAML document (no merging).
    pub fn from_yaml_str(yaml: &str, origin: &str) -> Result<Policy, PolicyError> {
        resolve(parse_file(yaml, origin)?, origin)
    }

    /// The catalogue entry that `image` (with its command and args) matches, if any.
    pub fn sidecar_for(
        &self,
        name: &str,
        image: Option<&ImageRef<'_>>,
        words: &dyn Fn(&str) -> bool,
    ) -> Option<&SidecarProfile> {
        // Split the image once, not once per pattern: this runs for every container of every Pod.
        let components = image.map(ImageRef::components);
        self.sidecars.iter().zip(&self.compiled).find_map(|(profile, patterns)| {
            let by_name = profile.container_names.iter().any(|n| n == name);
            let by_image =
                components.as_deref().is_some_and(|c| patterns.iter().any(|p| ImageRef::components_match(c, p)));
            if !(by_name || by_image) {
                return None;
            }
            if let Some(required) = &profile.requires_arg
                && !words(required)
            {
                return None;
            }
            if let Some(excluded) = &profile.unless_arg
                && words(excluded)
            {
                return None;
            }
            Some(profile)
        })
    }

    /// The catalogue entry with this name.
    pub fn profile(&self, name: &str) -> Option<&SidecarProfile> {
        self.sidecars.iter().find(|p| p.name == name)
    }
}

fn parse_file(yaml: &str, origin: &str) -> Result<PolicyFile, PolicyError> {
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

fn merge(mut base: PolicyFile, user: PolicyFile, origin: &str) -> Result<PolicyFile, PolicyError> {
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
        b.latest_tag = user_w.latest_tag.or(b.latest_tag);
        b.missing_requests = user_w.missing_requests.or(b.missing_requests);
        b.backgrounded_entrypoint = user_w.backgrounded_entrypoint.or(b.backgrounded_entrypoint);
    }
    Ok(base)
}

fn resolve(file: PolicyFile, origin: &str) -> Result<Policy, PolicyError> {
    let invalid = |field: String, message: String| PolicyError::Invalid { origin: origin.to_owned(), field, message };
    let compiled = compile_catalogue(&file.catalogue.sidecars, origin)?;
    validate_self_managed(&file.self_managed_workloads, origin)?;
    let requests = file.default_requests.unwrap_or_default();
    let containers = ResourceDefaults::from_map(&requests.containers.unwrap_or_default(), "defaultRequests.containers")
        .map_err(|(f, m)| invalid(f, m))?;
    let sidecars = ResourceDefaults::from_map(&requests.sidecars.unwrap_or_default(), "defaultRequests.sidecars")
        .map_err(|(f, m)| invalid(f, m))?;
    let enabled = requests.enabled.unwrap_or(false);
    if enabled && containers.0.is_empty() {
        return Err(invalid(
            "defaultRequests.containers".into(),
            "must name at least one resource when enabled".into(),
        ));
    }
    let lr = file.long_running_pods.unwrap_or_default();
    let w = file.warnings.unwrap_or_default();
    Ok(Policy {
        sidecars: file.catalogue.sidecars,
        self_managed_workloads: file.self_managed_workloads,
        mesh_init_containers: file.mesh_init_containers.unwrap_or_default(),
        default_requests: DefaultRequests { enabled, containers, sidecars },
        readiness_probes: lr.readiness_probes.unwrap_or(false),
        liveness_probes: lr.liveness_probes.unwrap_or(false),
        warnings: WarningSwitches {
            latest_tag: w.latest_tag.unwrap_or(true),
            missing_requests: w.missing_requests.unwrap_or(true),
            backgrounded_entrypoint: w.backgrounded_entrypoint.unwrap_or(true),
        },
        compiled,
    })
}

/// Checks catalogue entries and splits their image patterns into components.
fn compile_catalogue(sidecars: &[SidecarProfile], origin: &str) -> Result<Vec<Vec<Vec<String>>>, PolicyError> {
    let invalid = |field: String, message: String| PolicyError::Invalid { origin: origin.to_owned(), field, message };
    let mut names = HashSet::new();
    let mut compiled = Vec::with_capacity(sidecars.len());
    for (i, profile) in sidecars.iter().enumerate() {
        let at = format!("catalogue.sidecars[{i}]");
        if profile.name.trim().is_empty() {
            return Err(invalid(format!("{at}.name"), "must not be empty".into()));
        }
        if !names.insert(profile.name.as_str()) {
            return Err(invalid(format!("{at}.name"), format!("`{}` appears twice", profile.name)));
        }
        if profile.images.is_empty() && profile.container_names.is_empty() {
            return Err(invalid(format!("{at}.images"), "give at least one image pattern or container name".into()));
        }
        let mut patterns = Vec::with_capacity(profile.images.len());
        for (j, pattern) in profile.images.iter().enumerate() {
            let components: Vec<String> = pattern.trim_matches('/').split('/').map(str::to_ascii_lowercase).collect();
            if pattern.trim().is_empty() || components.iter().any(|c| c.is_empty()) {
                return Err(invalid(
                    format!("{at}.images[{j}]"),
                    format!("`{pattern}` is not a repository path pattern"),
                ));
            }
            if pattern.contains(['@']) || components.last().is_some_and(|c| c.contains(':')) {
                return Err(invalid(
                    format!("{at}.images[{j}]"),
                    format!("`{pattern}`: give the repository path without tag or digest"),
                ));
            }
            if components.iter().all(|c| c == "**") {
                return Err(invalid(format!("{at}.images[{j}]"), "a pattern must name at least one component".into()));
            }
            patterns.push(components);
        }
        match &profile.startup_probe {
            ProbeProfile::HttpGet { path, port } => {
                if !path.starts_with('/') {
                    return Err(invalid(format!("{at}.startupProbe.httpGet.path"), "must start with /".into()));
                }
                if *port == 0 {
                    return Err(invalid(format!("{at}.startupProbe.httpGet.port"), "must be 1-65535".into()));
                }
            }
            ProbeProfile::TcpSocket { port: 0 } => {
                return Err(invalid(format!("{at}.startupProbe.tcpSocket.port"), "must be 1-65535".into()));
            }
            _ => {}
        }
        compiled.push(patterns);
    }
    Ok(compiled)
}

fn validate_self_managed(workloads: &[SelfManagedWorkload], origin: &str) -> Result<(), PolicyError> {
    for (i, w) in workloads.iter().enumerate() {
        if w.labels.is_empty() && w.annotations.is_empty() && w.container_names.is_empty() {
            return Err(PolicyError::Invalid {
                origin: origin.to_owned(),
                field: format!("selfManagedWorkloads[{i}]"),
                message: "give at least one of labels, annotations, containerNames".into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "apiVersion: podmedic.io/v1alpha1\nkind: Policy\n";

    fn err(body: &str) -> String {
        Policy::builtin_with(&format!("{HEADER}{body}"), "policy.yaml").unwrap_err().to_string()
    }

    #[test]
    fn the_builtin_policy_is_valid_and_has_the_catalogue() {
        let p = Policy::builtin();
        for name in [
            "cloud-sql-proxy-v1",
            "cloud-sql-proxy-v2",
            "alloydb-auth-proxy",
            "istio-proxy",
            "linkerd-proxy",
            "envoy",
            "fluent-bit",
            "fluentd",
            "vector",
            "promtail",
            "grafana-alloy",
            "opentelemetry-collector",
            "datadog-agent",
            "vault-agent",
            "pgbouncer",
        ] {
            assert!(p.profile(name).is_some(), "{name}");
        }
        assert!(!p.default_requests.enabled);
        assert!(!p.readiness_probes && !p.liveness_probes);
    }

    #[test]
    fn user_files_add_override_and_disable_entries() {
        let p = Policy::builtin_with(
            &format!(
                "{HEADER}catalogue:\n  disable: [fluentd]\n  sidecars:\n  - name: acme-db-proxy\n    images: [acme/db-proxy]\n    startupProbe: {{tcpSocket: {{port: 5432}}}}\n  - name: envoy\n    images: [acme/envoy]\ndefaultRequests: {{enabled: true}}\n"
            ),
            "policy.yaml",
        )
        .unwrap();
        assert!(p.profile("fluentd").is_none());
        assert_eq!(p.profile("acme-db-proxy").unwrap().startup_probe, ProbeProfile::TcpSocket { port: 5432 });
        assert_eq!(p.profile("envoy").unwrap().images, ["acme/envoy"]);
        assert!(p.default_requests.enabled);
        assert_eq!(p.default_requests.containers.0["cpu"].as_str(), "100m", "built-in values stay");
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let cases = [
            ("catalogue:\n  sidecars:\n  - name: x\n    imagez: [a]\n", "catalogue.sidecars[0]"),
            ("catalogue:\n  sidecars:\n  - name: x\n    images: a\n", "catalogue.sidecars[0].images"),
            ("catalogue:\n  sidecars:\n  - name: x\n    images: ['acme/x:1.0']\n", "catalogue.sidecars[0].images[0]"),
            ("catalogue:\n  sidecars:\n  - name: x\n    images: []\n", "catalogue.sidecars[0].images"),
            ("catalogue:\n  sidecars:\n  - name: x\n    images: [a]\n    startupProbe: sometimes\n", "startupProbe"),
            ("catalogue:\n  disable: [nope]\n", "catalogue.disable[0]"),
            ("defaultRequests: {enabled: true, containers: {cpu: lots}}\n", "defaultRequests.containers.cpu"),
            ("longRunningPods: {readinessProbes: maybe}\n", "longRunningPods.readinessProbes"),
            ("selfManagedWorkloads:\n- name: empty\n", "selfManagedWorkloads[0]"),
        ];
        for (body, field) in cases {
            let e = err(body);
            assert!(e.contains("policy.yaml") && e.contains(field), "{body} -> {e}");
        }
        let e = Policy::builtin_with("apiVersion: v1\nkind: Policy\n", "p.yaml").unwrap_err().to_string();
        assert!(e.contains("apiVersion"), "{e}");
    }

    #[test]
    fn annotation_defaults_parse_and_reject_garbage() {
        let d = ResourceDefaults::parse_annotation("cpu=100m, memory=128Mi").unwrap();
        assert_eq!(d.0["memory"].as_str(), "128Mi");
        for bad in ["", "cpu", "cpu=lots", "cpu=-1", "bad name=1"] {
            assert!(ResourceDefaults::parse_annotation(bad).is_err(), "{bad}");
        }
    }
}
