//! `probe-identical`, `probe-window`, `probe-port`: probes that put a container into a restart
//! loop (CrashLoopBackOff) although the application is fine.
//!
//! - A liveness probe that checks the same thing as the readiness probe (the same handler, ports
//!   resolved; timing ignored, as kube-score does): whatever makes the Pod unready, a slow
//!   dependency say, also gets it restarted, over and over.
//! - A liveness probe with no startup probe whose `initialDelaySeconds + periodSeconds ×
//!   failureThreshold` is under the policy's threshold: a slow start is killed before it ends.
//! - A probe on a port name the container does not declare: the kubelet resolves names only
//!   against the container's own `ports`, and the probe fails every time.

use super::Finding;
use crate::checks::{CheckId, CheckSet};
use crate::object::{Container, PortRef, Probe};
use crate::target::{Section, Slot};

/// Runs the probe checks on every container that runs alongside the others (regular containers
/// and native sidecars; other init containers cannot have probes).
pub(super) fn check(slots: &[Slot<'_>], enabled: CheckSet, min_window: u32, out: &mut Vec<Finding>) {
    for slot in slots.iter().filter(|s| s.section == Section::Regular || s.is_native_sidecar()) {
        let c = slot.container;
        let name = Some(c.name.as_str());
        if enabled.contains(CheckId::ProbeIdentical)
            && let (Some(liveness), Some(readiness)) = (&c.liveness_probe, &c.readiness_probe)
            && let Some(handler) = Handler::of(liveness, c)
            && Handler::of(readiness, c).as_ref() == Some(&handler)
        {
            out.push(Finding::new(
                CheckId::ProbeIdentical,
                name,
                format!(
                    "container {}: livenessProbe is the same check as readinessProbe: unready means restarted; use a \
                     simpler one",
                    c.name
                ),
            ));
        }
        if enabled.contains(CheckId::ProbeWindow)
            && c.startup_probe.is_none()
            && let Some(liveness) = &c.liveness_probe
            && liveness.failure_window_seconds() < i64::from(min_window)
        {
            out.push(Finding::new(
                CheckId::ProbeWindow,
                name,
                format!(
                    "container {}: livenessProbe restarts it unless healthy {}s after start; add a startupProbe",
                    c.name,
                    liveness.failure_window_seconds()
                ),
            ));
        }
        if enabled.contains(CheckId::ProbePort) {
            let probes = [
                ("startupProbe", &c.startup_probe),
                ("readinessProbe", &c.readiness_probe),
                ("livenessProbe", &c.liveness_probe),
            ];
            for (which, probe) in probes {
                if let Some(PortRef::Name(port)) = probe.as_ref().and_then(Probe::port)
                    && declared_port(c, port).is_none()
                {
                    out.push(Finding::new(
                        CheckId::ProbePort,
                        name,
                        format!(
                            "container {}: {which} port `{port}` is not declared in its ports; declare it or use a number",
                            c.name
                        ),
                    ));
                }
            }
        }
    }
}

/// The number of the container's port called `name`.
fn declared_port(c: &Container<'_>, name: &str) -> Option<i64> {
    c.ports().iter().find(|p| p.name.as_deref() == Some(name)).map(|p| p.container_port)
}

/// What a probe checks, with named ports resolved, for comparing two probes.
#[derive(Debug, PartialEq, Eq)]
enum Handler {
    Http { path: String, port: Port, host: String, scheme: String },
    Tcp { port: Port, host: String },
    Grpc { port: Option<i64>, service: String },
    Exec(Vec<String>),
}

#[derive(Debug, PartialEq, Eq)]
enum Port {
    Number(i64),
    /// A name the container does not declare (compared as written).
    Unresolved(String),
}

impl Handler {
    fn of(probe: &Probe<'_>, c: &Container<'_>) -> Option<Handler> {
        let port = |p: Option<&PortRef<'_>>| match p? {
            PortRef::Number(n) => Some(Port::Number(*n)),
            PortRef::Name(name) => {
                Some(declared_port(c, name).map_or_else(|| Port::Unresolved(name.to_string()), Port::Number))
            }
        };
        let text = |t: Option<&str>| t.unwrap_or_default().to_owned();
        if let Some(h) = &probe.http_get {
            let path = h.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/").to_owned();
            let scheme = h.scheme.as_deref().filter(|s| !s.is_empty()).unwrap_or("HTTP").to_ascii_uppercase();
            return Some(Handler::Http { path, port: port(h.port.as_ref())?, host: text(h.host.as_deref()), scheme });
        }
        if let Some(t) = &probe.tcp_socket {
            return Some(Handler::Tcp { port: port(t.port.as_ref())?, host: text(t.host.as_deref()) });
        }
        if let Some(g) = &probe.grpc {
            return Some(Handler::Grpc { port: g.port, service: text(g.service.as_deref()) });
        }
        let command = probe.exec.as_ref()?.command.as_ref()?;
        Some(Handler::Exec(command.iter().map(ToString::to_string).collect()))
    }
}
