//! What the phases measured, for the tables and the summary.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::client::Outcome;
use crate::engine;
use crate::procs::Target;

/// Everything measured, for the summary.
#[derive(Default)]
pub(crate) struct Results {
    pub(crate) engine: Vec<engine::EngineRow>,
    pub(crate) startup: BTreeMap<Target, Duration>,
    pub(crate) memory: BTreeMap<Target, MemoryRow>,
    pub(crate) keepalive: Vec<Step>,
    pub(crate) highest_ok: BTreeMap<Target, f64>,
    pub(crate) max: BTreeMap<Target, f64>,
}

#[derive(Clone, Copy, Default)]
pub(crate) struct MemoryRow {
    pub(crate) idle_kib: u64,
    pub(crate) peak_kib: u64,
    pub(crate) after_kib: u64,
    pub(crate) rate: f64,
}

pub(crate) struct Step {
    pub(crate) rate: f64,
    pub(crate) target: Target,
    pub(crate) outcome: Outcome,
    pub(crate) server_cpu: Duration,
    pub(crate) peak_kib: u64,
}

impl Step {
    pub(crate) fn p(&self, q: f64) -> Option<f64> {
        self.outcome.quantile(q).map(|d| d.as_secs_f64())
    }
    pub(crate) fn cpu_per_request(&self) -> Option<f64> {
        let n = self.outcome.latencies.len();
        (n > 0).then(|| self.server_cpu.as_secs_f64() / n as f64)
    }
}
