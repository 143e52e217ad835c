//! The policy: the sidecar catalogue and the opt-in defaults, loaded from YAML and validated.
//!
//! The built-in policy (`default-policy.yaml` beside this file) is embedded in the binary, so podmedic needs no
//! file to run. A user's policy file is merged over it: a catalogue entry with the name of a
//! built-in entry replaces it, `catalogue.disable` removes built-in entries by name, and the other
//! sections override the built-in values field by field.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use crate::checks::{CheckId, CheckSet};
use crate::kubernetes::{ImageRef, Quantity};

mod error;
mod file;

pub use error::PolicyError;
pub use file::{
    CatalogueFile, DefaultRequestsFile, LongRunningPodsFile, POLICY_API_VERSION, PolicyFile, ProbeProfile,
    SelfManagedWorkload, SidecarProfile, WarningsFile,
};
use file::{merge, parse_file};

/// The built-in policy, embedded at compile time.
pub const DEFAULT_POLICY_YAML: &str = include_str!("default-policy.yaml");

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
    /// The checks that warn about Pods that will not start, switched off in the policy.
    pub disabled_checks: CheckSet,
    /// Nodes may be added on demand (a cluster autoscaler, Karpenter): the checks say "no current
    /// node" rather than "no node".
    pub node_autoscaling: bool,
    /// A liveness probe without a startup probe that fails a container sooner than this after it
    /// starts is warned about (`probe-window`).
    pub min_liveness_window_seconds: u32,
}

/// Default of `warnings.minLivenessWindowSeconds`: the window of a liveness probe with every timing
/// field at its API default (0 + 10 × 3 s), so a defaulted probe is never flagged.
pub const DEFAULT_MIN_LIVENESS_WINDOW_SECONDS: u32 = 30;

/// Largest `warnings.minLivenessWindowSeconds` accepted (one hour).
const MAX_LIVENESS_WINDOW_SECONDS: u32 = 3600;

/// The effective, validated policy the engine uses.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The sidecar catalogue, built-in entries first.
    pub sidecars: Vec<SidecarProfile>,
    /// Workloads never touched.
    pub self_managed_workloads: Vec<SelfManagedWorkload>,
    /// Mesh init container names.
    pub mesh_init_containers: Vec<String>,
    /// Container names podmedic never moves (another webhook owns their place).
    pub never_move: Vec<String>,
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
    /// Which entries a container can match, by container name and by image name.
    index: CatalogueIndex,
}

/// The catalogue indexed for [`Policy::sidecar_for`], which runs for every container of every Pod
/// (75,000 times for a 3 MiB Pod of small containers): an image is compared with the patterns
/// whose last component is its own last component, and with the few whose last component has a
/// wildcard, not with every pattern of the catalogue.
#[derive(Clone, Debug, Default)]
struct CatalogueIndex {
    /// Entry indices by container name.
    by_container_name: HashMap<String, Vec<usize>>,
    /// (entry, pattern) by the pattern's last component, when it is a plain name (lower case).
    by_image_name: HashMap<String, Vec<(usize, usize)>>,
    /// (entry, pattern) whose last component has a wildcard.
    wildcard: Vec<(usize, usize)>,
}

impl CatalogueIndex {
    fn new(sidecars: &[SidecarProfile], compiled: &[Vec<Vec<String>>]) -> CatalogueIndex {
        let mut index = CatalogueIndex::default();
        for (i, profile) in sidecars.iter().enumerate() {
            for name in &profile.container_names {
                index.by_container_name.entry(name.clone()).or_default().push(i);
            }
            for (j, pattern) in compiled[i].iter().enumerate() {
                match pattern.last() {
                    Some(last) if !last.contains('*') => {
                        index.by_image_name.entry(last.clone()).or_default().push((i, j))
                    }
                    _ => index.wildcard.push((i, j)),
                }
            }
        }
        index
    }
}

impl Policy {
    /// The built-in policy.
    pub fn builtin() -> Policy {
        // The embedded policy is validated by a unit test; failing here would be a build defect.
        Self::from_yaml_str(DEFAULT_POLICY_YAML, "built-in")
            .unwrap_or_else(|e| panic!("the embedded default policy is invalid: {e}"))
    }

    /// What `--policy` asks for: the built-in policy, with the file at `path` merged over it when
    /// one is given. The one place `serve`, `fix` and `audit` turn the flag into a policy.
    pub fn load_or_builtin(path: Option<&Path>) -> Result<Policy, PolicyError> {
        match path {
            Some(path) => Self::load(path),
            None => Ok(Self::builtin()),
        }
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

    /// The catalogue entry that `image` (with its command and args) matches, if any: the first in
    /// catalogue order whose container name or image pattern matches and whose argument conditions
    /// hold.
    pub fn sidecar_for(
        &self,
        name: &str,
        image: Option<&ImageRef<'_>>,
        words: &dyn Fn(&str) -> bool,
    ) -> Option<&SidecarProfile> {
        let mut candidates: Vec<usize> = self.index.by_container_name.get(name).cloned().unwrap_or_default();
        // Split the image once, not once per pattern. A reference longer than a registry accepts
        // cannot be pulled: it matches by name only.
        if let Some(image) = image.filter(|i| i.fits_registry_limits()) {
            let components = image.components();
            let last = components.last().map(|c| c.to_ascii_lowercase()).unwrap_or_default();
            let same_name = self.index.by_image_name.get(&last).into_iter().flatten();
            for &(i, j) in same_name.chain(&self.index.wildcard) {
                crate::work::step(1);
                if ImageRef::components_match(&components, &self.compiled[i][j]) {
                    candidates.push(i);
                }
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        candidates.into_iter().map(|i| &self.sidecars[i]).find(|profile| {
            let required = profile.requires_arg.as_ref().is_none_or(|word| words(word));
            let excluded = profile.unless_arg.as_ref().is_some_and(|word| words(word));
            required && !excluded
        })
    }

    /// The catalogue entry with this name.
    pub fn profile(&self, name: &str) -> Option<&SidecarProfile> {
        self.sidecars.iter().find(|p| p.name == name)
    }
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
    let min_liveness_window_seconds = w.min_liveness_window_seconds.unwrap_or(DEFAULT_MIN_LIVENESS_WINDOW_SECONDS);
    if !(1..=MAX_LIVENESS_WINDOW_SECONDS).contains(&min_liveness_window_seconds) {
        return Err(invalid(
            "warnings.minLivenessWindowSeconds".into(),
            format!("must be 1-{MAX_LIVENESS_WINDOW_SECONDS}, not {min_liveness_window_seconds}"),
        ));
    }
    let switched_on = |check: CheckId| match check {
        CheckId::NodeFit => w.node_fit,
        CheckId::NodeSelector => w.node_selector,
        CheckId::NodeTaints => w.node_taints,
        CheckId::References => w.references,
        CheckId::ProbeIdentical => w.probe_identical,
        CheckId::ProbeWindow => w.probe_window,
        CheckId::ProbePort => w.probe_port,
    };
    let disabled_checks: CheckSet = CheckId::ALL.into_iter().filter(|c| switched_on(*c) == Some(false)).collect();
    let index = CatalogueIndex::new(&file.catalogue.sidecars, &compiled);
    Ok(Policy {
        sidecars: file.catalogue.sidecars,
        self_managed_workloads: file.self_managed_workloads,
        mesh_init_containers: file.mesh_init_containers.unwrap_or_default(),
        never_move: file.never_move,
        default_requests: DefaultRequests { enabled, containers, sidecars },
        readiness_probes: lr.readiness_probes.unwrap_or(false),
        liveness_probes: lr.liveness_probes.unwrap_or(false),
        warnings: WarningSwitches {
            latest_tag: w.latest_tag.unwrap_or(true),
            missing_requests: w.missing_requests.unwrap_or(true),
            backgrounded_entrypoint: w.backgrounded_entrypoint.unwrap_or(true),
            disabled_checks,
            node_autoscaling: w.node_autoscaling.unwrap_or(false),
            min_liveness_window_seconds,
        },
        compiled,
        index,
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
mod tests;
