//! Service meshes in a Pod, and whether a startup probe podmedic adds to another sidecar reaches
//! it. A mesh redirects the Pod's inbound traffic to its proxy, the kubelet's probes included, and
//! each mesh rewrites probes only in its own injector, at injection time. So podmedic follows one
//! rule per mesh (each from the mesh's documentation and injector code):
//!
//! | mesh in the Pod | httpGet probe | tcpSocket probe |
//! |---|---|---|
//! | Istio | none: Istio answers a probe only through its agent, after its injector registered it in `ISTIO_KUBE_APP_PROBERS`, which podmedic does not do | as is (Envoy accepts the connection) |
//! | Linkerd | as is: Linkerd authorizes kubelet probes by default; none when the Pod sets a `config.linkerd.io/default-inbound-policy` other than `all-unauthenticated` | as is |
//! | Kuma / Kong Mesh | rewritten to Kuma's application probe proxy, as Kuma's injector writes it (`/<port><path>` on `kuma.io/application-probe-proxy-port`); none when that annotation is missing or `0` | as is |
//! | Consul | none, unless `consul.hashicorp.com/transparent-proxy: "false"`: only Consul's injector can expose a probe path through Envoy | as is |
//! | any other (a `meshInitContainers` name podmedic does not map, a user's `mesh: true` entry; OSM, FSM, App Mesh) | none | none |
//!
//! A tcpSocket probe through a mesh proxy only shows that the proxy accepts connections: harmless,
//! and no worse than no probe. The mesh proxies' own probes are not affected.

use crate::annotations::{CONSUL_TRANSPARENT_PROXY, KUMA_APPLICATION_PROBE_PROXY_PORT, LINKERD_DEFAULT_INBOUND_POLICY};
use crate::policy::Policy;
use crate::proxies::parse_port;
use crate::target::{PodTarget, Slot};

/// A service mesh found in a Pod.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Mesh {
    Istio,
    Linkerd,
    Kuma,
    Consul,
    /// A mesh podmedic has no rule for, named by what showed it.
    Unknown(String),
}

impl Mesh {
    /// The mesh of a catalogue entry marked `mesh: true`, by the built-in entry names.
    fn of_entry(name: &str) -> Mesh {
        match name {
            "istio-proxy" => Mesh::Istio,
            "linkerd-proxy" => Mesh::Linkerd,
            "kuma-dataplane" => Mesh::Kuma,
            "consul-dataplane" => Mesh::Consul,
            other => Mesh::Unknown(other.to_owned()),
        }
    }

    /// The mesh an init container of `meshInitContainers` belongs to.
    fn of_init_container(name: &str) -> Mesh {
        match name {
            "istio-init" | "istio-validation" => Mesh::Istio,
            "linkerd-init" | "linkerd-network-validator" => Mesh::Linkerd,
            "kuma-init" => Mesh::Kuma,
            "consul-connect-inject-init" => Mesh::Consul,
            other => Mesh::Unknown(other.to_owned()),
        }
    }
}

/// How an HTTP startup probe on a sidecar may be written in this Pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum HttpProbe {
    /// As the sidecar serves it.
    Direct,
    /// Through Kuma's application probe proxy on this port.
    ViaKuma(u16),
    /// Not at all, for this reason.
    Never(String),
}

/// What the meshes of a Pod allow for the startup probes podmedic adds to other sidecars.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProbeRules {
    /// For httpGet probes.
    pub http: HttpProbe,
    /// Why no tcpSocket probe either, when a mesh podmedic does not know is present.
    pub no_tcp: Option<String>,
}

/// The rules of every mesh in the Pod together: the strictest wins.
pub(crate) fn probe_rules(target: &PodTarget<'_>, slots: &[Slot<'_>], policy: &Policy) -> ProbeRules {
    let mut meshes: Vec<Mesh> =
        slots.iter().filter(|s| s.mesh).filter_map(|s| s.profile).map(|p| Mesh::of_entry(&p.name)).collect();
    meshes.extend(
        target
            .init_containers()
            .iter()
            .filter(|c| policy.mesh_init_containers.iter().any(|n| n == c.name.as_str()))
            .map(|c| Mesh::of_init_container(&c.name)),
    );
    let mut rules = ProbeRules { http: HttpProbe::Direct, no_tcp: None };
    for mesh in meshes {
        let http = match mesh {
            Mesh::Istio => HttpProbe::Never(
                "Istio's proxy would intercept it, and podmedic does not register probes in ISTIO_KUBE_APP_PROBERS"
                    .into(),
            ),
            Mesh::Linkerd => match target.annotation(LINKERD_DEFAULT_INBOUND_POLICY).map(str::trim) {
                None | Some("all-unauthenticated") => HttpProbe::Direct,
                Some(policy) => HttpProbe::Never(format!("Linkerd's default inbound policy {policy} may deny it")),
            },
            Mesh::Kuma => match target.annotation(KUMA_APPLICATION_PROBE_PROXY_PORT).and_then(parse_port) {
                Some(port) => HttpProbe::ViaKuma(port),
                None => {
                    HttpProbe::Never("Kuma's proxy would intercept it and its application probe proxy is off".into())
                }
            },
            Mesh::Consul if target.annotation(CONSUL_TRANSPARENT_PROXY).is_some_and(|v| v.trim() == "false") => {
                HttpProbe::Direct
            }
            Mesh::Consul => HttpProbe::Never(
                "Consul's transparent proxy would intercept it, and only Consul's injector can expose a probe".into(),
            ),
            Mesh::Unknown(name) => {
                let reason = format!("a service mesh podmedic has no probe rule for ({name}) may intercept it");
                rules.no_tcp.get_or_insert_with(|| reason.clone());
                HttpProbe::Never(reason)
            }
        };
        rules.http = match (rules.http, http) {
            (never @ HttpProbe::Never(_), _) | (_, never @ HttpProbe::Never(_)) => never,
            (kuma @ HttpProbe::ViaKuma(_), _) | (_, kuma @ HttpProbe::ViaKuma(_)) => kuma,
            (HttpProbe::Direct, HttpProbe::Direct) => HttpProbe::Direct,
        };
    }
    rules
}
