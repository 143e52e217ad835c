//! How long and how much of each phase: full runs, `--quick` smoke runs, `--rates`.

use std::time::Duration;

use crate::Args;

/// How long and how much of each phase.
pub(crate) struct Plan {
    pub(crate) engine_rounds: usize,
    pub(crate) startups: usize,
    pub(crate) step: Duration,
    pub(crate) keepalive_rates: Vec<f64>,
    pub(crate) handshake_rates: Vec<f64>,
    pub(crate) handshake_workers: usize,
    pub(crate) max_rounds: usize,
    pub(crate) memory_connections: usize,
    pub(crate) memory_load: Duration,
    pub(crate) memory_settle: Duration,
    pub(crate) hostile_rounds: usize,
    pub(crate) hostile_sizes: Vec<usize>,
    pub(crate) hostile_load: Duration,
}

impl Plan {
    pub(crate) fn new(args: &Args) -> Plan {
        let mut plan = Plan::built_in(args);
        if !args.rates.is_empty() {
            plan.keepalive_rates.clone_from(&args.rates);
        }
        if !args.handshake_rates.is_empty() {
            plan.handshake_rates.clone_from(&args.handshake_rates);
        }
        plan
    }

    fn built_in(args: &Args) -> Plan {
        let quick = args.quick;
        let step = Duration::from_secs_f64(args.step_secs.unwrap_or(if quick { 0.5 } else { 5.0 }));
        Plan {
            engine_rounds: if quick { 3 } else { 60 },
            startups: args.startups.unwrap_or(if quick { 2 } else { 20 }),
            step,
            keepalive_rates: if quick {
                vec![1000.0, 5000.0]
            } else {
                vec![
                    500.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 6000.0, 7000.0, 8000.0, 10000.0, 12000.0, 15000.0,
                    20000.0,
                ]
            },
            handshake_rates: if quick {
                vec![200.0]
            } else {
                vec![100.0, 250.0, 500.0, 1000.0, 1500.0, 2000.0, 3000.0, 4000.0]
            },
            handshake_workers: 64,
            max_rounds: if quick { 1 } else { 3 },
            memory_connections: 256,
            memory_load: if quick { Duration::from_millis(500) } else { Duration::from_secs(5) },
            memory_settle: if quick { Duration::from_millis(500) } else { Duration::from_secs(2) },
            hostile_rounds: if quick { 1 } else { 7 },
            hostile_sizes: if quick { vec![256 << 10] } else { vec![256 << 10, 1 << 20, 3 << 20] },
            hostile_load: if quick { Duration::from_millis(500) } else { Duration::from_secs(4) },
        }
    }
}
