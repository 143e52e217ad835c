//! What podmedic knows about the Cloud SQL Auth Proxy (v2 and v1) and the AlloyDB Auth Proxy: how
//! their command line and environment are read, which ports they bind, and the flags or variables
//! podmedic adds to them.
//!
//! Sources: `cmd/root.go` and `internal/proxy/proxy.go` of GoogleCloudPlatform/cloud-sql-proxy
//! (v2.15) and alloydb-auth-proxy (v1.13), and the v1 proxy's `cmd/cloud_sql_proxy`. Flags win
//! over environment variables (`CSQL_PROXY_*`, `ALLOYDB_PROXY_*`), which win over a config file.

use serde_json::{Value, json};

use crate::object::Container;
use crate::patch::{Location, PatchBuilder};
use crate::policy::ProbeProfile;
use crate::ports::PodPorts;

/// The proxies podmedic configures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProxyKind {
    /// Cloud SQL Auth Proxy v2.
    CloudSqlV2,
    /// AlloyDB Auth Proxy (the same flags as Cloud SQL v2, another environment prefix).
    AlloyDb,
    /// Cloud SQL Auth Proxy v1 (`gce-proxy`), single-dash flags, no environment form.
    CloudSqlV1,
}

impl ProxyKind {
    /// The proxy a catalogue probe profile stands for.
    pub fn of(profile: &ProbeProfile) -> Option<ProxyKind> {
        match profile {
            ProbeProfile::CloudSqlProxyV2 => Some(ProxyKind::CloudSqlV2),
            ProbeProfile::AlloyDbAuthProxy => Some(ProxyKind::AlloyDb),
            ProbeProfile::CloudSqlProxyV1 => Some(ProxyKind::CloudSqlV1),
            _ => None,
        }
    }

    /// The environment form of the flags (`CSQL_PROXY_`), for the v2-style proxies.
    pub fn env_prefix(self) -> &'static str {
        match self {
            ProxyKind::CloudSqlV2 => "CSQL_PROXY_",
            ProxyKind::AlloyDb => "ALLOYDB_PROXY_",
            ProxyKind::CloudSqlV1 => "",
        }
    }
}

/// The health server's default port: `--http-port` (v2, AlloyDB) and `-health_check_port` (v1).
pub(crate) fn default_health_port(kind: ProxyKind) -> u16 {
    match kind {
        ProxyKind::CloudSqlV1 => 8090,
        _ => 9090,
    }
}

/// The admin server's default port (`--admin-port`), opened by `--quitquitquit` or `--debug`.
const DEFAULT_ADMIN_PORT: u16 = 9091;

/// A flag or environment variable to add to a container.
pub(crate) enum Setting {
    /// Append to `args` (before a `--` terminator if there is one).
    Arg(String),
    /// Append to `env`.
    Env(String, String),
}

impl Setting {
    /// The setting as shown in `podmedic.io/changes`.
    pub fn describe(&self) -> String {
        match self {
            Setting::Arg(a) => a.clone(),
            Setting::Env(n, v) => format!("{n}={v}"),
        }
    }
}

/// Adds the flags to `args` and the variables to `env`, creating each list once when it is missing;
/// flags go before a `--` terminator when there is one.
pub(crate) fn apply_settings(c: &Container<'_>, at: &Location, settings: &[&Setting], patch: &mut PatchBuilder) {
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
pub(crate) enum Found {
    Absent,
    /// Set, with its value (`None` for a bare boolean flag).
    Flag(Option<String>),
    Env(String),
    /// Set from a secret or config map: the value is unknown.
    EnvFrom,
}

impl Found {
    /// The value given, if it is known.
    fn value(&self) -> Option<&str> {
        match self {
            Found::Flag(Some(v)) | Found::Env(v) => Some(v),
            _ => None,
        }
    }

    /// Whether a boolean setting may be on: given bare, or with a value Go's `ParseBool` reads as
    /// true, or from a reference whose value podmedic cannot see.
    fn may_be_on(&self) -> bool {
        match self {
            Found::Absent => false,
            Found::Flag(None) | Found::EnvFrom => true,
            Found::Flag(Some(v)) | Found::Env(v) => !is_false(v),
        }
    }
}

/// Looks up a flag given as `--name`, `-name`, `--name=value`, `-name=value` or `--name value`.
pub(crate) fn find_flag(c: &Container<'_>, name: &str, takes_value: bool) -> Found {
    let mut argv = c.argv().peekable();
    while let Some(arg) = argv.next() {
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else { continue };
        if body == name {
            let next = argv.peek().filter(|n| takes_value && !n.starts_with('-'));
            return Found::Flag(next.map(|n| (*n).to_owned()));
        }
        if let Some(value) = body.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            return Found::Flag(Some(value.to_owned()));
        }
    }
    Found::Absent
}

/// The last definition (the one Kubernetes uses) of the environment variable whose name `is_name`
/// accepts.
fn find_env(c: &Container<'_>, is_name: impl Fn(&str) -> bool) -> Found {
    match c.env().iter().rev().find(|e| is_name(e.name.as_str())) {
        Some(e) if e.value_from.is_some() => Found::EnvFrom,
        Some(e) => Found::Env(e.value.as_deref().unwrap_or_default().to_owned()),
        None => Found::Absent,
    }
}

/// A setting of a v2-style proxy: the flag, else its environment form (`CSQL_PROXY_HTTP_PORT`).
pub(crate) fn lookup(c: &Container<'_>, kind: ProxyKind, flag: &str, takes_value: bool) -> Found {
    match find_flag(c, flag, takes_value) {
        Found::Absent if kind != ProxyKind::CloudSqlV1 => find_env(c, |name| is_env_name(name, kind, flag)),
        found => found,
    }
}

/// Whether `name` is [`env_name`]`(kind, flag)`, compared without building it: the proxies'
/// settings are looked up a dozen times per Pod, and each name built costs three allocations.
fn is_env_name(name: &str, kind: ProxyKind, flag: &str) -> bool {
    let Some(rest) = name.strip_prefix(kind.env_prefix()) else { return false };
    rest.len() == flag.len()
        && rest.bytes().zip(flag.bytes()).all(|(n, f)| n == if f == b'-' { b'_' } else { f.to_ascii_uppercase() })
}

/// `http-port` → `CSQL_PROXY_HTTP_PORT` (the proxies' own mapping: upper case, `-` → `_`).
pub(crate) fn env_name(kind: ProxyKind, flag: &str) -> String {
    format!("{}{}", kind.env_prefix(), flag.to_ascii_uppercase().replace('-', "_"))
}

/// Go's `strconv.ParseBool` false values, and `no`.
pub(crate) fn is_false(v: &str) -> bool {
    matches!(v.trim().to_ascii_lowercase().as_str(), "false" | "0" | "f" | "no")
}

/// A TCP port number: 1-65535. Port 0 asks the kernel for any port, so it is never one to probe or
/// to keep free.
pub(crate) fn parse_port(text: &str) -> Option<u16> {
    text.trim().parse::<u16>().ok().filter(|p| *p != 0)
}

/// Why podmedic must not add flags or variables to this proxy, if it must not: settings it cannot
/// read (`envFrom`, a config file) could be overridden by them, since flags win over both.
pub(crate) fn unreadable_settings(c: &Container<'_>, kind: ProxyKind) -> Option<&'static str> {
    if !c.env_from().is_empty() {
        return Some("it has envFrom, which podmedic cannot read, so it adds no flags that could override it");
    }
    let config = match kind {
        ProxyKind::CloudSqlV1 => Found::Absent,
        _ => lookup(c, kind, "config-file", true),
    };
    (!matches!(config, Found::Absent))
        .then_some("it reads a config file, which podmedic cannot read, so it adds no flags that could override it")
}

/// The ports a container binds as far as its command line and environment tell: its health
/// server's (the one podmedic may choose) and every other one.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct BoundPorts {
    /// The health (and metrics) server's port, when the server is or may be on.
    pub health: Option<u16>,
    /// Every other port: listeners, admin servers, ports set by flags or environment.
    pub others: Vec<u16>,
}

/// Flags that set a port on any container; their values are kept free whatever the image.
const PORT_FLAGS: [&str; 4] = ["http-port", "admin-port", "port", "health_check_port"];

/// The ports a container binds: declared ports aside (see `ports.rs`), those its flags and
/// environment set, and for the proxies those they open by default.
pub(crate) fn bound_ports(c: &Container<'_>, kind: Option<ProxyKind>) -> BoundPorts {
    let mut bound = match kind {
        Some(ProxyKind::CloudSqlV1) => v1_ports(c),
        Some(kind) => v2_ports(c, kind),
        None => BoundPorts::default(),
    };
    for flag in PORT_FLAGS {
        bound.others.extend(find_flag(c, flag, true).value().and_then(parse_port));
    }
    let proxy_port_var =
        |name: &str| (name.starts_with("CSQL_PROXY_") || name.starts_with("ALLOYDB_PROXY_")) && name.ends_with("_PORT");
    bound.others.extend(
        c.env().iter().filter(|e| proxy_port_var(&e.name)).filter_map(|e| e.value.as_deref().and_then(parse_port)),
    );
    bound
}

fn v2_ports(c: &Container<'_>, kind: ProxyKind) -> BoundPorts {
    let unknown = unreadable_settings(c, kind).is_some();
    let http_on = unknown
        || lookup(c, kind, "health-check", false).may_be_on()
        || lookup(c, kind, "prometheus", false).may_be_on();
    let health = match lookup(c, kind, "http-port", true).value() {
        Some(v) => parse_port(v),
        None => http_on.then_some(default_health_port(kind)),
    };
    let mut others = Vec::new();
    let admin_on =
        unknown || lookup(c, kind, "quitquitquit", false).may_be_on() || lookup(c, kind, "debug", false).may_be_on();
    if admin_on {
        others.extend(match lookup(c, kind, "admin-port", true).value() {
            Some(v) => parse_port(v),
            None => Some(DEFAULT_ADMIN_PORT),
        });
    }
    others.extend(listener_ports(c, kind));
    BoundPorts { health, others }
}

/// The database listeners: `?port=` per instance; the others count up from `--port`, or, without
/// it, from each engine's default (Cloud SQL: MySQL 3306, PostgreSQL 5432, SQL Server 1433, which
/// podmedic cannot tell apart; AlloyDB: 5432).
fn listener_ports(c: &Container<'_>, kind: ProxyKind) -> Vec<u16> {
    let mut instances: Vec<String> = c.argv().filter(|w| is_instance(w, kind)).map(str::to_owned).collect();
    if instances.is_empty() {
        instances = env_instances(c, kind);
    }
    let mut ports: Vec<u16> = instances.iter().filter_map(|i| query_port(i)).collect();
    // An instance from a config file podmedic cannot see still listens somewhere: count one.
    let counted = instances.iter().filter(|i| query_port(i).is_none()).count().max(usize::from(instances.is_empty()));
    let port_flag = match lookup(c, kind, "port", true) {
        Found::Absent => find_flag(c, "p", true),
        found => found,
    };
    let first_ports: Vec<u16> = match port_flag.value().and_then(parse_port) {
        Some(port) => vec![port],
        None if kind == ProxyKind::AlloyDb => vec![5432],
        None => vec![3306, 5432, 1433],
    };
    for first in first_ports {
        ports.extend((0..counted).map_while(|k| u16::try_from(usize::from(first) + k).ok()));
    }
    ports
}

/// An instance argument: `project:region:instance` (Cloud SQL, a domain-scoped project adds one
/// part) or `projects/P/locations/L/clusters/C/instances/I` (AlloyDB), with an optional `?query`.
fn is_instance(word: &str, kind: ProxyKind) -> bool {
    let base = word.split('?').next().unwrap_or_default();
    if word.starts_with('-') || base.contains(['=', ' ']) {
        return false;
    }
    match kind {
        ProxyKind::AlloyDb => base.starts_with("projects/") && base.contains("/instances/"),
        _ => !base.contains('/') && base.split(':').count() >= 3 && base.split(':').all(|p| !p.is_empty()),
    }
}

/// Instances given in the environment (only read when there are no instance arguments):
/// `CSQL_PROXY_INSTANCE_CONNECTION_NAME`, or `..._0`, `..._1`, ... up to the first missing one.
fn env_instances(c: &Container<'_>, kind: ProxyKind) -> Vec<String> {
    let base = match kind {
        ProxyKind::AlloyDb => "ALLOYDB_PROXY_INSTANCE_URI",
        _ => "CSQL_PROXY_INSTANCE_CONNECTION_NAME",
    };
    let value = |name: &str| c.env().iter().rev().find(|e| e.name.as_str() == name).and_then(|e| e.value.as_deref());
    if let Some(single) = value(base) {
        return vec![single.to_owned()];
    }
    (0..c.env().len()).map_while(|i| value(&format!("{base}_{i}")).map(str::to_owned)).collect()
}

/// The `port` query parameter of an instance (`p:r:i?port=5433&private-ip=true`).
fn query_port(instance: &str) -> Option<u16> {
    let (_, query) = instance.split_once('?')?;
    query.split('&').find_map(|pair| pair.strip_prefix("port=")).and_then(parse_port)
}

/// v1: `-health_check_port` (8090) when `-use_http_health_check` is on; listeners from
/// `-instances=p:r:i=tcp:5432,p:r:j=tcp:0.0.0.0:5433`.
fn v1_ports(c: &Container<'_>) -> BoundPorts {
    let health = match find_flag(c, "health_check_port", true).value() {
        Some(v) => parse_port(v),
        None => find_flag(c, "use_http_health_check", false).may_be_on().then_some(8090),
    };
    let instances = find_flag(c, "instances", true);
    let others = instances
        .value()
        .into_iter()
        .flat_map(|list| list.split(','))
        .filter_map(|spec| spec.split_once("=tcp:").and_then(|(_, addr)| parse_port(addr.rsplit(':').next()?)))
        .collect();
    BoundPorts { health, others }
}

/// The health server podmedic switches on: the settings it adds and the port to probe.
pub(crate) struct HealthServer {
    /// Flags or variables to add (none when the user switched everything on already).
    pub settings: Vec<Setting>,
    /// The port the health server listens on.
    pub port: u16,
}

/// Switches on a proxy's health server where the kubelet can reach it, on a free port: its own
/// current health port (`own`) is set aside while choosing, and the chosen one is taken in `ports`.
pub(crate) fn enable_health_check(
    c: &Container<'_>,
    kind: ProxyKind,
    own: Option<u16>,
    ports: &mut PodPorts,
) -> Result<HealthServer, String> {
    if c.shell_script().is_some() {
        let flag = if kind == ProxyKind::CloudSqlV1 { "-use_http_health_check" } else { "--health-check" };
        return Err(format!("runs through a shell; add {flag} yourself"));
    }
    if let Some(why) = unreadable_settings(c, kind) {
        return Err(why.to_owned());
    }
    match kind {
        ProxyKind::CloudSqlV1 => v1_health_check(c, own, ports),
        _ => v2_health_check(c, kind, own, ports),
    }
}

/// Cloud SQL Auth Proxy v2 and AlloyDB Auth Proxy: `--health-check`, `--http-address`,
/// `--http-port` (9090), `/startup`; in the environment form when the container uses it.
fn v2_health_check(
    c: &Container<'_>,
    kind: ProxyKind,
    own: Option<u16>,
    ports: &mut PodPorts,
) -> Result<HealthServer, String> {
    let env_form = c.env().iter().any(|e| e.name.starts_with(kind.env_prefix()));
    let setting = |flag: &str, value: &str| {
        if env_form {
            Setting::Env(env_name(kind, flag), value.to_owned())
        } else if value == "true" {
            Setting::Arg(format!("--{flag}"))
        } else {
            Setting::Arg(format!("--{flag}={value}"))
        }
    };
    let mut settings = Vec::new();
    match lookup(c, kind, "health-check", false) {
        Found::Absent => settings.push(setting("health-check", "true")),
        Found::Flag(Some(v)) | Found::Env(v) if is_false(&v) => {
            return Err("the health check is switched off explicitly".into());
        }
        Found::EnvFrom => return Err(format!("{} comes from a reference", env_name(kind, "health-check"))),
        _ => {}
    }
    match lookup(c, kind, "http-address", true) {
        Found::Absent => settings.push(setting("http-address", "0.0.0.0")),
        Found::Flag(Some(v)) | Found::Env(v) if !matches!(v.as_str(), "0.0.0.0" | "::" | "[::]") => {
            return Err(format!("--http-address={v} is not reachable by the kubelet"));
        }
        Found::EnvFrom => return Err(format!("{} comes from a reference", env_name(kind, "http-address"))),
        _ => {}
    }
    let default = default_health_port(kind);
    let port = match lookup(c, kind, "http-port", true) {
        Found::Absent => {
            let port = choose_port(default, own, ports)?;
            if port != default {
                settings.push(setting("http-port", &port.to_string()));
            }
            port
        }
        Found::Flag(Some(v)) | Found::Env(v) => {
            parse_port(&v).ok_or_else(|| format!("--http-port={v} is not a port the kubelet can probe"))?
        }
        Found::Flag(None) => return Err("--http-port has no value".into()),
        Found::EnvFrom => return Err(format!("{} comes from a reference", env_name(kind, "http-port"))),
    };
    Ok(HealthServer { settings, port })
}

/// Cloud SQL Auth Proxy v1: `-use_http_health_check`, `-health_check_port` (8090), `/startup`.
fn v1_health_check(c: &Container<'_>, own: Option<u16>, ports: &mut PodPorts) -> Result<HealthServer, String> {
    let mut settings = Vec::new();
    match find_flag(c, "use_http_health_check", false) {
        Found::Absent => settings.push(Setting::Arg("-use_http_health_check".into())),
        Found::Flag(Some(v)) if is_false(&v) => return Err("the health check is switched off explicitly".into()),
        _ => {}
    }
    let default = default_health_port(ProxyKind::CloudSqlV1);
    let port = match find_flag(c, "health_check_port", true) {
        Found::Flag(Some(v)) => {
            parse_port(&v).ok_or_else(|| format!("-health_check_port={v} is not a port the kubelet can probe"))?
        }
        _ => {
            let port = choose_port(default, own, ports)?;
            if port != default {
                settings.push(Setting::Arg(format!("-health_check_port={port}")));
            }
            port
        }
    };
    Ok(HealthServer { settings, port })
}

/// The first free port from `preferred`, with the container's own health port (`own`) set aside;
/// the chosen port is taken, so the next proxy of the Pod gets another one.
fn choose_port(preferred: u16, own: Option<u16>, ports: &mut PodPorts) -> Result<u16, String> {
    if let Some(own) = own {
        ports.release(own);
    }
    match ports.first_free(preferred) {
        Some(port) => {
            ports.take(port);
            Ok(port)
        }
        None => {
            if let Some(own) = own {
                ports.take(own);
            }
            Err(format!("no free port from {preferred} up"))
        }
    }
}

mod exit_code;
pub(crate) use exit_code::exit_zero_on_sigterm;

#[cfg(test)]
mod tests;
