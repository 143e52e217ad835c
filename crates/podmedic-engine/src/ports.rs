//! The ports a Pod's containers use, so that a health port podmedic chooses is free.
//!
//! All containers of a Pod share one network namespace: a port is taken whatever address and
//! protocol binds it, and a proxy whose health server cannot bind exits ("failed to start HTTP
//! server"), crash-looping as a native sidecar. Counted here: every declared `containerPort`, the
//! ports set by flags or environment and those the database proxies open by default
//! ([`crate::proxies::bound_ports`]), and every port podmedic assigns while planning this Pod.

use std::collections::BTreeMap;

use crate::proxies::{BoundPorts, ProxyKind, bound_ports};
use crate::target::Slot;

/// A multiset of ports: a port stays taken until every container that uses it has let it go.
#[derive(Debug, Default)]
pub(crate) struct PodPorts {
    counts: BTreeMap<u16, u32>,
    /// Per slot (same order as the slots): the health port each container binds, if any.
    health: Vec<Option<u16>>,
}

impl PodPorts {
    /// The ports of every container of the Pod, in their final slots.
    pub fn of(slots: &[Slot<'_>]) -> PodPorts {
        let mut ports = PodPorts::default();
        for slot in slots {
            let c = slot.container;
            let kind = slot.profile.and_then(|p| ProxyKind::of(&p.startup_probe));
            let BoundPorts { health, others } = bound_ports(c, kind);
            let declared = c.ports().iter().filter_map(|p| u16::try_from(p.container_port).ok());
            for port in declared.chain(others).chain(health) {
                ports.take(port);
            }
            ports.health.push(health);
        }
        ports
    }

    /// The health port the container in slot `index` binds now (before podmedic changes it).
    pub fn health_of(&self, index: usize) -> Option<u16> {
        self.health.get(index).copied().flatten()
    }

    /// Marks a port as used once more. Port 0 is never a port.
    pub fn take(&mut self, port: u16) {
        if port != 0 {
            *self.counts.entry(port).or_default() += 1;
        }
    }

    /// Lets go of one use of a port.
    pub fn release(&mut self, port: u16) {
        if let Some(n) = self.counts.get_mut(&port) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&port);
            }
        }
    }

    /// Whether any container uses the port.
    pub fn is_used(&self, port: u16) -> bool {
        self.counts.contains_key(&port)
    }

    /// The first free port from `from` upwards, if there is one. Each step skips a used port, so
    /// this is linear in the number of ports the Pod uses.
    pub fn first_free(&self, from: u16) -> Option<u16> {
        (from.max(1)..=u16::MAX).find(|p| !self.is_used(*p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_stays_used_until_every_user_lets_go() {
        let mut ports = PodPorts::default();
        ports.take(9090);
        ports.take(9090);
        ports.take(0);
        assert!(!ports.is_used(0), "port 0 is never a port");
        ports.release(9090);
        assert!(ports.is_used(9090));
        assert_eq!(ports.first_free(9090), Some(9091));
        ports.release(9090);
        assert_eq!(ports.first_free(9090), Some(9090));
        assert_eq!(ports.first_free(0), Some(1));
        ports.take(u16::MAX);
        assert_eq!(ports.first_free(u16::MAX), None);
    }
}
