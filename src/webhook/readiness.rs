//! Readiness: podmedic is ready when every registered gate is open and shutdown has not started.
//!
//! Each subsystem that must be up before the webhook can answer well registers its own named gate
//! (`certificates`, `policy`, later the cluster watcher) and opens it when it is. `/readyz` reports
//! the gates still closed, so a failing readiness probe says why.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Shared readiness state; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    gates: Mutex<BTreeMap<String, bool>>,
    shutting_down: AtomicBool,
}

/// Why podmedic is not ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotReady {
    /// Shutdown has started.
    ShuttingDown,
    /// These gates are still closed.
    Waiting(Vec<String>),
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::ShuttingDown => f.write_str("shutting down"),
            NotReady::Waiting(gates) => write!(f, "waiting for {}", gates.join(", ")),
        }
    }
}

impl Readiness {
    /// Readiness with no gates (ready until shutdown starts).
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a gate named `name`, closed until [`Gate::open`] is called. Registering a name
    /// twice returns a handle to the same gate.
    pub fn gate(&self, name: &str) -> Gate {
        self.inner.gates().entry(name.to_owned()).or_insert(false);
        Gate { name: name.to_owned(), readiness: self.clone() }
    }

    /// `Ok` when every gate is open and shutdown has not started.
    pub fn check(&self) -> Result<(), NotReady> {
        if self.inner.shutting_down.load(Ordering::SeqCst) {
            return Err(NotReady::ShuttingDown);
        }
        let closed: Vec<String> =
            self.inner.gates().iter().filter(|(_, open)| !**open).map(|(name, _)| name.clone()).collect();
        if closed.is_empty() { Ok(()) } else { Err(NotReady::Waiting(closed)) }
    }

    /// True when [`Readiness::check`] is `Ok`.
    pub fn is_ready(&self) -> bool {
        self.check().is_ok()
    }

    /// Marks the process as shutting down: not ready from now on, whatever the gates say.
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
    }

    /// True once [`Readiness::begin_shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }
}

impl Inner {
    fn gates(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, bool>> {
        // A panic while holding this lock cannot leave the map half-updated; keep going.
        self.gates.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One subsystem's say in readiness.
#[derive(Clone, Debug)]
pub struct Gate {
    name: String,
    readiness: Readiness,
}

impl Gate {
    /// The subsystem is ready.
    pub fn open(&self) {
        self.set(true);
    }

    /// The subsystem is not ready (again).
    pub fn close(&self) {
        self.set(false);
    }

    /// Sets the gate.
    pub fn set(&self, open: bool) {
        self.readiness.inner.gates().insert(self.name.clone(), open);
    }

    /// The gate's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_gate_is_open() {
        let readiness = Readiness::new();
        assert!(readiness.is_ready());
        let certs = readiness.gate("certificates");
        let cluster = readiness.gate("cluster");
        assert_eq!(readiness.check(), Err(NotReady::Waiting(vec!["certificates".into(), "cluster".into()])));
        certs.open();
        assert_eq!(readiness.check(), Err(NotReady::Waiting(vec!["cluster".into()])));
        cluster.open();
        assert!(readiness.is_ready());
        cluster.close();
        assert!(!readiness.is_ready());
    }

    #[test]
    fn shutdown_wins_over_open_gates() {
        let readiness = Readiness::new();
        readiness.gate("policy").open();
        readiness.begin_shutdown();
        assert_eq!(readiness.check(), Err(NotReady::ShuttingDown));
        assert_eq!(NotReady::ShuttingDown.to_string(), "shutting down");
    }
}
