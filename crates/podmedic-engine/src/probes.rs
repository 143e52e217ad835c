//! Startup probes for moved sidecars, and opt-in default probes for long-running Pods.
//!
//! A native sidecar with a startup probe holds back the containers after it until the probe
//! succeeds, so a Job no longer starts before its database proxy listens. Probe timing suits a
//! proxy: checked every second, for up to a minute ([`STARTUP_PERIOD_SECONDS`] ×
//! [`STARTUP_FAILURE_THRESHOLD`]), before the kubelet restarts the sidecar.

use serde_json::{Value, json};

use crate::meshes::{self, HttpProbe, ProbeRules};
use crate::mutation::{Change, ChangeKind, Context};
use crate::patch::PatchBuilder;
use crate::policy::{Policy, ProbeProfile};
use crate::ports::PodPorts;
use crate::proxies::{ProxyKind, Setting, apply_settings, enable_health_check, exit_zero_on_sigterm};
use crate::target::{PodTarget, Section, Slot};
use crate::warnings::{WarningKind, Warnings};

/// Startup probe period.
pub const STARTUP_PERIOD_SECONDS: u32 = 1;
/// Startup probe failures tolerated: 60 × 1 s gives a sidecar a minute to start.
pub const STARTUP_FAILURE_THRESHOLD: u32 = 60;

/// Adds startup probes to the sidecars moved in this mutation, switches on the health server of
/// the database proxies among them (each on a port free in the Pod), and makes those proxies exit
/// 0 when the kubelet stops them, where their version is known to have the flag.
pub(crate) fn add_startup_probes(
    target: &PodTarget<'_>,
    slots: &[Slot<'_>],
    policy: &Policy,
    patch: &mut PatchBuilder,
    changes: &mut Vec<Change>,
    notes: &mut Vec<String>,
    warnings: &mut Warnings,
) {
    let moved = || slots.iter().filter(|s| s.moved).map(|s| s.container.name.as_str()).collect::<Vec<_>>().join(", ");
    // A sidecar that starts before a mesh proxy sees its traffic redirected to a proxy that is not
    // running; with a startup probe it would never become ready and the Pod would stay in Init.
    let mut probes_allowed = true;
    if let Some(mesh) = slots.iter().find(|s| s.section == Section::Regular && s.mesh) {
        notes.push(format!(
            "no startup probe on {}: mesh proxy {} stays a regular container",
            moved(),
            mesh.container.name
        ));
        probes_allowed = false;
    }
    // On the node's network a health server listens on every node interface (--http-address=0.0.0.0
    // is what makes it reachable) and races the node's own services for its port.
    if probes_allowed && target.spec.host_network == Some(true) {
        notes.push(format!(
            "no health flags and no startup probe on {}: hostNetwork is on, where a health endpoint would listen on \
             every node interface and race the node's services for its port",
            moved()
        ));
        probes_allowed = false;
    }
    let mut ports = PodPorts::of(slots);
    let rules = meshes::probe_rules(target, slots, policy);
    for (index, slot) in slots.iter().enumerate().filter(|(_, s)| s.moved) {
        let c = slot.container;
        let at = slot.location(&target.spec_loc);
        let plan = if probes_allowed && c.startup_probe.is_none() {
            startup_plan(slot, ports.health_of(index), &rules, &mut ports).unwrap_or_else(|reason| {
                if reason.contains("not reachable") {
                    warnings.push(
                        WarningKind::ProbeNotAdded,
                        format!("container {}: {reason}; no startup probe added", c.name),
                    );
                }
                notes.push(format!("{}: no startup probe ({reason})", c.name));
                None
            })
        } else {
            None
        };
        let proxy = slot.profile.and_then(|p| ProxyKind::of(&p.startup_probe));
        let exit_zero = proxy.and_then(|kind| exit_zero_on_sigterm(c, kind)).and_then(|found| match found {
            Ok(setting) => Some(setting),
            Err(note) => {
                notes.push(format!("{}: {note}", c.name));
                None
            }
        });

        let health = plan.as_ref().map(|p| p.settings.as_slice()).unwrap_or_default();
        let all: Vec<&Setting> = health.iter().chain(&exit_zero).collect();
        apply_settings(c, &at, &all, patch);
        if !health.is_empty() {
            let shown: Vec<String> = health.iter().map(Setting::describe).collect();
            changes.push(Change {
                kind: ChangeKind::HealthCheckEnabled,
                container: c.name.to_string(),
                detail: format!("health check enabled ({})", shown.join(" ")),
            });
        }
        if let Some(setting) = &exit_zero {
            changes.push(Change {
                kind: ChangeKind::ExitZeroOnSigterm,
                container: c.name.to_string(),
                detail: format!("exits 0 instead of 143 when stopped ({})", setting.describe()),
            });
        }
        if let Some(plan) = plan {
            patch.add(&at.child("startupProbe"), plan.probe());
            changes.push(Change {
                kind: ChangeKind::ProbeAdded,
                container: c.name.to_string(),
                detail: format!("startupProbe {}", plan.describe()),
            });
        }
    }
}

/// The startup probe of one moved sidecar (`None`: its catalogue entry wants none), or why it gets
/// none. `own` is the health port the container binds now.
fn startup_plan(
    slot: &Slot<'_>,
    own: Option<u16>,
    rules: &ProbeRules,
    ports: &mut PodPorts,
) -> Result<Option<ProbePlan>, String> {
    let c = slot.container;
    let profile = slot.profile.map(|p| &p.startup_probe).unwrap_or(&ProbeProfile::FirstContainerPort);
    // A mesh's own proxy is probed on its own health port, which its mesh never intercepts.
    if !slot.mesh {
        let http = matches!(profile, ProbeProfile::HttpGet { .. }) || ProxyKind::of(profile).is_some();
        match (&rules.http, &rules.no_tcp) {
            (HttpProbe::Never(why), _) if http => return Err(why.clone()),
            (_, Some(why)) if !http => return Err(why.clone()),
            _ => {}
        }
    }
    let plan = match profile {
        ProbeProfile::None => return Ok(None),
        ProbeProfile::HttpGet { path, port } => ProbePlan::http(path, *port),
        ProbeProfile::TcpSocket { port } => ProbePlan::tcp(*port),
        ProbeProfile::FirstContainerPort => c
            .ports()
            .iter()
            .filter(|p| p.is_tcp())
            .find_map(|p| u16::try_from(p.container_port).ok().filter(|port| *port != 0))
            .map(ProbePlan::tcp)
            .ok_or_else(|| "no TCP containerPort declared".to_owned())?,
        proxy => match ProxyKind::of(proxy) {
            Some(kind) => {
                let health = enable_health_check(c, kind, own, ports)?;
                ProbePlan { settings: health.settings, ..ProbePlan::http("/startup", health.port) }
            }
            None => return Ok(None),
        },
    };
    Ok(Some(match &rules.http {
        HttpProbe::ViaKuma(proxy_port) if !slot.mesh => plan.via_kuma(*proxy_port),
        _ => plan,
    }))
}

/// A startup probe and the settings the sidecar needs for it.
struct ProbePlan {
    check: Check,
    settings: Vec<Setting>,
}

/// What the probe checks.
enum Check {
    Http {
        path: String,
        port: u16,
    },
    Tcp {
        port: u16,
    },
    /// An HTTP check through Kuma's application probe proxy: `/<port><path>` on `proxy_port`.
    KumaHttp {
        path: String,
        port: u16,
        proxy_port: u16,
    },
}

impl ProbePlan {
    fn http(path: &str, port: u16) -> ProbePlan {
        ProbePlan { check: Check::Http { path: path.to_owned(), port }, settings: Vec::new() }
    }

    fn tcp(port: u16) -> ProbePlan {
        ProbePlan { check: Check::Tcp { port }, settings: Vec::new() }
    }

    /// The same check written the way Kuma's injector rewrites probes (an HTTP check only).
    fn via_kuma(self, proxy_port: u16) -> ProbePlan {
        let check = match self.check {
            Check::Http { path, port } => Check::KumaHttp { path, port, proxy_port },
            other => other,
        };
        ProbePlan { check, ..self }
    }

    fn probe(&self) -> Value {
        with_timing(match &self.check {
            Check::Http { path, port } => json!({ "httpGet": { "path": path, "port": port } }),
            Check::Tcp { port } => json!({ "tcpSocket": { "port": port } }),
            Check::KumaHttp { path, port, proxy_port } => {
                json!({ "httpGet": { "path": format!("/{port}{path}"), "port": proxy_port } })
            }
        })
    }

    fn describe(&self) -> String {
        match &self.check {
            Check::Http { path, port } => format!("httpGet {path} on port {port}"),
            Check::Tcp { port } => format!("tcpSocket on port {port}"),
            Check::KumaHttp { path, port, proxy_port } => {
                format!("httpGet /{port}{path} on port {proxy_port} (Kuma's application probe proxy)")
            }
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
