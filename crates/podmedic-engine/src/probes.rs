//! Startup probes for moved sidecars, and opt-in default probes for long-running Pods.
//!
//! A native sidecar with a startup probe holds back the containers after it until the probe
//! succeeds, so a Job no longer starts before its database proxy listens. Probe timing suits a
//! proxy: checked every second, for up to a minute ([`STARTUP_PERIOD_SECONDS`] ×
//! [`STARTUP_FAILURE_THRESHOLD`]), before the kubelet restarts the sidecar.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::mutation::{Change, ChangeKind, Context};
use crate::object::Container;
use crate::patch::PatchBuilder;
use crate::policy::ProbeProfile;
use crate::target::{PodTarget, Section, Slot};
use crate::warnings::Warnings;

/// Startup probe period.
pub const STARTUP_PERIOD_SECONDS: u32 = 1;
/// Startup probe failures tolerated: 60 × 1 s gives a sidecar a minute to start.
pub const STARTUP_FAILURE_THRESHOLD: u32 = 60;

/// Adds startup probes to the sidecars moved in this mutation.
pub(crate) fn add_startup_probes(
    target: &PodTarget<'_>,
    slots: &[Slot<'_>],
    patch: &mut PatchBuilder,
    changes: &mut Vec<Change>,
    notes: &mut Vec<String>,
    warnings: &mut Warnings,
) {
    // A sidecar that starts before a mesh proxy sees its traffic redirected to a proxy that is not
    // running; with a startup probe it would never become ready and the Pod would stay in Init.
    if let Some(mesh) = slots.iter().find(|s| s.section == Section::Regular && s.mesh) {
        let moved: Vec<&str> = slots.iter().filter(|s| s.moved).map(|s| s.container.name.as_str()).collect();
        notes.push(format!(
            "no startup probe on {}: mesh proxy {} stays a regular container",
            moved.join(", "),
            mesh.container.name
        ));
        return;
    }
    let used_ports = used_ports(slots);
    for slot in slots.iter().filter(|s| s.moved) {
        let c = slot.container;
        if c.startup_probe {
            continue;
        }
        let profile = slot.profile.map(|p| &p.startup_probe).unwrap_or(&ProbeProfile::FirstContainerPort);
        let at = slot.location(&target.spec_loc);
        let plan = match profile {
            ProbeProfile::None => continue,
            ProbeProfile::HttpGet { path, port } => Ok(ProbePlan::http(path, *port)),
            ProbeProfile::TcpSocket { port } => Ok(ProbePlan::tcp(*port)),
            ProbeProfile::FirstContainerPort => match c.ports().iter().find(|p| p.is_tcp()) {
                Some(p) => u16::try_from(p.container_port)
                    .map(ProbePlan::tcp)
                    .map_err(|_| format!("containerPort {} is out of range", p.container_port)),
                None => Err("no containerPort declared".to_owned()),
            },
            ProbeProfile::CloudSqlProxyV2 => health_check_v2(c, "CSQL_PROXY_", &used_ports),
            ProbeProfile::AlloyDbAuthProxy => health_check_v2(c, "ALLOYDB_PROXY_", &used_ports),
            ProbeProfile::CloudSqlProxyV1 => health_check_v1(c, &used_ports),
        };
        match plan {
            Ok(plan) => {
                apply_settings(c, &at, &plan.settings, patch);
                if !plan.settings.is_empty() {
                    let shown: Vec<String> = plan.settings.iter().map(Setting::describe).collect();
                    changes.push(Change {
                        kind: ChangeKind::HealthCheckEnabled,
                        container: c.name.to_string(),
                        detail: format!("health check enabled ({})", shown.join(" ")),
                    });
                }
                patch.add(&at.child("startupProbe"), plan.probe.clone());
                changes.push(Change {
                    kind: ChangeKind::ProbeAdded,
                    container: c.name.to_string(),
                    detail: format!("startupProbe {}", plan.describe),
                });
            }
            Err(reason) => {
                notes.push(format!("{}: no startup probe ({reason})", c.name));
                if reason.contains("not reachable") {
                    warnings.push(format!("container {}: {reason}; no startup probe added", c.name));
                }
            }
        }
    }
}

/// Ports declared by any container of the Pod (a new health port must not clash with them).
fn used_ports(slots: &[Slot<'_>]) -> BTreeSet<i64> {
    slots.iter().flat_map(|s| s.container.ports().iter().map(|p| p.container_port)).collect()
}

/// A startup probe and the settings the sidecar needs for it.
struct ProbePlan {
    probe: Value,
    describe: String,
    settings: Vec<Setting>,
}

impl ProbePlan {
    fn http(path: &str, port: u16) -> ProbePlan {
        ProbePlan {
            probe: with_timing(json!({ "httpGet": { "path": path, "port": port } })),
            describe: format!("httpGet {path} on port {port}"),
            settings: Vec::new(),
        }
    }

    fn tcp(port: u16) -> ProbePlan {
        ProbePlan {
            probe: with_timing(json!({ "tcpSocket": { "port": port } })),
            describe: format!("tcpSocket on port {port}"),
            settings: Vec::new(),
        }
    }
}

fn with_timing(mut probe: Value) -> Value {
    if let Some(map) = probe.as_object_mut() {
        map.insert("periodSeconds".into(), json!(STARTUP_PERIOD_SECONDS));
        map.insert("failureThreshold".into(), json!(STARTUP_FAILURE_THRESHOLD));
        map.insert("timeoutSeconds".into(), json!(1));
    }
    probe
}

/// A flag or environment variable to add to the sidecar.
enum Setting {
    /// Append to `args` (before a `--` terminator if there is one).
    Arg(String),
    /// Append to `env`.
    Env(String, String),
}

impl Setting {
    fn describe(&self) -> String {
        match self {
            Setting::Arg(a) => a.clone(),
            Setting::Env(n, v) => format!("{n}={v}"),
        }
    }
}

/// Adds the flags to `args` and the variables to `env`, creating each list once when it is missing;
/// flags go before a `--` terminator when there is one.
fn apply_settings(c: &Container<'_>, at: &crate::patch::Location, settings: &[Setting], patch: &mut PatchBuilder) {
    let args: Vec<Value> =
        settings.iter().filter_map(|s| if let Setting::Arg(a) = s { Some(json!(a)) } else { None }).collect();
    let env: Vec<Value> = settings
        .iter()
        .filter_map(|s| if let Setting::Env(n, v) = s { Some(json!({ "name": n, "value": v })) } else { None })
        .collect();
    if !args.is_empty() {
        let list = at.child("args");
        match c.args.as_deref().map(|a| a.iter().position(|x| x.as_str() == "--")) {
            None => patch.add(&list, Value::Array(args)),
            Some(Some(terminator)) => {
                for (k, arg) in args.into_iter().enumerate() {
                    patch.add(&list.index(terminator + k), arg);
                }
            }
            Some(None) => args.into_iter().for_each(|arg| patch.append(&list, arg)),
        }
    }
    if !env.is_empty() {
        let list = at.child("env");
        match &c.env {
            None => patch.add(&list, Value::Array(env)),
            Some(_) => env.into_iter().for_each(|var| patch.append(&list, var)),
        }
    }
}

/// What a container's command line and environment say about one setting.
enum Found {
    Absent,
    /// Set, with its value (`None` for a bare boolean flag).
    Flag(Option<String>),
    Env(String),
    /// Set from a secret or config map: the value is unknown.
    EnvFrom,
}

/// Looks up a flag given as `--name`, `-name`, `--name=value`, `-name=value` or `--name value`.
fn find_flag(c: &Container<'_>, name: &str, takes_value: bool) -> Found {
    let argv: Vec<&str> = c.argv().collect();
    for (i, arg) in argv.iter().enumerate() {
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else { continue };
        if body == name {
            let next = argv.get(i + 1).filter(|n| takes_value && !n.starts_with('-'));
            return Found::Flag(next.map(|n| (*n).to_owned()));
        }
        if let Some(value) = body.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            return Found::Flag(Some(value.to_owned()));
        }
    }
    Found::Absent
}

fn find_env(c: &Container<'_>, name: &str) -> Found {
    match c.env().iter().rev().find(|e| e.name.as_str() == name) {
        Some(e) if e.value_from => Found::EnvFrom,
        Some(e) => Found::Env(e.value.as_deref().unwrap_or_default().to_owned()),
        None => Found::Absent,
    }
}

fn lookup(c: &Container<'_>, flag: &str, env: &str, takes_value: bool) -> Found {
    match find_flag(c, flag, takes_value) {
        Found::Absent => find_env(c, env),
        found => found,
    }
}

fn is_false(v: &str) -> bool {
    matches!(v.trim().to_ascii_lowercase().as_str(), "false" | "0" | "f" | "no")
}

/// A port for a new health endpoint: `preferred` unless another container uses it.
fn free_port(preferred: u16, used: &BTreeSet<i64>) -> u16 {
    (preferred..=u16::MAX).find(|p| !used.contains(&i64::from(*p))).unwrap_or(preferred)
}

/// Cloud SQL Auth Proxy v2 and AlloyDB Auth Proxy: `--health-check`, `--http-address`,
/// `--http-port` (9090), `/startup`. `env_prefix` is the environment form (`CSQL_PROXY_`).
fn health_check_v2(c: &Container<'_>, env_prefix: &str, used: &BTreeSet<i64>) -> Result<ProbePlan, String> {
    if c.shell_script().is_some() {
        return Err("runs through a shell; add --health-check yourself".into());
    }
    let env_form = c.env().iter().any(|e| e.name.starts_with(env_prefix));
    let env_name = |suffix: &str| format!("{env_prefix}{suffix}");
    let setting = |flag: &str, env_suffix: &str, value: &str| {
        if env_form {
            Setting::Env(env_name(env_suffix), value.to_owned())
        } else if value == "true" {
            Setting::Arg(format!("--{flag}"))
        } else {
            Setting::Arg(format!("--{flag}={value}"))
        }
    };
    let mut settings = Vec::new();

    match lookup(c, "health-check", &env_name("HEALTH_CHECK"), false) {
        Found::Absent => settings.push(setting("health-check", "HEALTH_CHECK", "true")),
        Found::Flag(Some(v)) | Found::Env(v) if is_false(&v) => {
            return Err("the health check is switched off explicitly".into());
        }
        Found::EnvFrom => return Err(format!("{} comes from a reference", env_name("HEALTH_CHECK"))),
        _ => {}
    }
    match lookup(c, "http-address", &env_name("HTTP_ADDRESS"), true) {
        Found::Absent => settings.push(setting("http-address", "HTTP_ADDRESS", "0.0.0.0")),
        Found::Flag(Some(v)) | Found::Env(v) if !matches!(v.as_str(), "0.0.0.0" | "::" | "[::]") => {
            return Err(format!("--http-address={v} is not reachable by the kubelet"));
        }
        Found::EnvFrom => return Err(format!("{} comes from a reference", env_name("HTTP_ADDRESS"))),
        _ => {}
    }
    let port = match lookup(c, "http-port", &env_name("HTTP_PORT"), true) {
        Found::Absent => {
            let port = free_port(9090, used);
            if port != 9090 {
                settings.push(setting("http-port", "HTTP_PORT", &port.to_string()));
            }
            port
        }
        Found::Flag(Some(v)) | Found::Env(v) => {
            v.trim().parse::<u16>().map_err(|_| format!("--http-port={v} is not a port"))?
        }
        Found::Flag(None) => return Err("--http-port has no value".into()),
        Found::EnvFrom => return Err(format!("{} comes from a reference", env_name("HTTP_PORT"))),
    };
    let mut plan = ProbePlan::http("/startup", port);
    plan.settings = settings;
    Ok(plan)
}

/// Cloud SQL Auth Proxy v1: `-use_http_health_check`, `-health_check_port` (8090), `/startup`.
fn health_check_v1(c: &Container<'_>, used: &BTreeSet<i64>) -> Result<ProbePlan, String> {
    if c.shell_script().is_some() {
        return Err("runs through a shell; add -use_http_health_check yourself".into());
    }
    let mut settings = Vec::new();
    match find_flag(c, "use_http_health_check", false) {
        Found::Absent => settings.push(Setting::Arg("-use_http_health_check".into())),
        Found::Flag(Some(v)) if is_false(&v) => return Err("the health check is switched off explicitly".into()),
        _ => {}
    }
    let port = match find_flag(c, "health_check_port", true) {
        Found::Flag(Some(v)) => v.trim().parse::<u16>().map_err(|_| format!("-health_check_port={v} is not a port"))?,
        _ => {
            let port = free_port(8090, used);
            if port != 8090 {
                settings.push(Setting::Arg(format!("-health_check_port={port}")));
            }
            port
        }
    };
    let mut plan = ProbePlan::http("/startup", port);
    plan.settings = settings;
    Ok(plan)
}

/// Opt-in probes for long-running Pods: a TCP readiness probe (and, only when asked, a TCP
/// liveness probe with generous thresholds) on the first declared port of each regular container
/// that has no probe at all.
pub(crate) fn add_long_running_probes(
    target: &PodTarget<'_>,
    slots: &[Slot<'_>],
    ctx: &Context<'_>,
    patch: &mut PatchBuilder,
    changes: &mut Vec<Change>,
) {
    let ns = ctx.namespace;
    let readiness = ns.and_then(|n| n.readiness_probes).unwrap_or(ctx.policy.readiness_probes);
    let liveness = ns.and_then(|n| n.liveness_probes).unwrap_or(ctx.policy.liveness_probes);
    if !readiness && !liveness {
        return;
    }
    for slot in slots.iter().filter(|s| s.section == Section::Regular) {
        let c = slot.container;
        if c.has_any_probe() || slot.mesh {
            continue;
        }
        let Some(port) = c.ports().iter().find(|p| p.is_tcp()).and_then(|p| u16::try_from(p.container_port).ok())
        else {
            continue;
        };
        let at = slot.location(&target.spec_loc);
        if readiness {
            patch.add(
                &at.child("readinessProbe"),
                json!({ "tcpSocket": { "port": port }, "periodSeconds": 10, "timeoutSeconds": 1, "failureThreshold": 3 }),
            );
            changes.push(Change {
                kind: ChangeKind::ProbeAdded,
                container: c.name.to_string(),
                detail: format!("readinessProbe tcpSocket on port {port}"),
            });
        }
        if liveness {
            patch.add(
                &at.child("livenessProbe"),
                json!({ "tcpSocket": { "port": port }, "initialDelaySeconds": 30, "periodSeconds": 20,
                        "timeoutSeconds": 5, "failureThreshold": 6 }),
            );
            changes.push(Change {
                kind: ChangeKind::ProbeAdded,
                container: c.name.to_string(),
                detail: format!("livenessProbe tcpSocket on port {port}"),
            });
        }
    }
}
