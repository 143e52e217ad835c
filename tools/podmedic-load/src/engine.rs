//! The engine in process: `admit` against the parse floor on the criterion benchmark's bodies,
//! interleaved batch by batch so that both see the same machine (criterion runs one benchmark
//! after the other, which on a shared machine can put a noisy neighbour under only one of them).

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use podmedic_engine::Policy;
use podmedic_engine::admission::{Environment, admit};

#[path = "../../../crates/podmedic-engine/benches/admission/bodies.rs"]
mod bodies;
#[path = "../../../crates/podmedic-engine/benches/admission/hostile.rs"]
pub(crate) mod hostile_bodies;

/// One body's figures.
#[derive(Debug, Clone)]
pub struct EngineRow {
    /// Benchmark name.
    pub name: &'static str,
    /// Body size.
    pub bytes: usize,
    /// Median time of one `admit` (wall clock).
    pub admit: Duration,
    /// Median time of one `serde_json::from_slice::<Value>` (wall clock).
    pub parse: Duration,
    /// Median on-CPU time of one `admit`: time the thread was preempted does not count.
    pub admit_cpu: Duration,
    /// Median on-CPU time of one parse.
    pub parse_cpu: Duration,
}

/// Measures every body: `rounds` rounds of (a batch of `admit`, a batch of parses), each batch
/// about 2 ms long; per-call medians over the rounds.
pub fn measure(rounds: usize) -> Vec<EngineRow> {
    let env = Environment::standalone(Arc::new(Policy::builtin()));
    let mut rows = Vec::new();
    for (name, body, _) in bodies::all() {
        let started = Instant::now();
        let run_admit = || {
            black_box(admit(black_box(&body), &env).ok());
        };
        let run_parse = || {
            black_box(serde_json::from_slice::<serde_json::Value>(black_box(&body)).ok());
        };
        // Warm up and size the batches.
        let once = time(1, run_admit).0.max(time(1, run_parse).0);
        let batch = (Duration::from_millis(2).as_secs_f64() / once.as_secs_f64().max(1e-9)).clamp(1.0, 10_000.0) as u32;
        let (mut admits, mut parses, mut admits_cpu, mut parses_cpu) = (vec![], vec![], vec![], vec![]);
        for _ in 0..rounds {
            let (wall, cpu) = time(batch, run_admit);
            admits.push(wall / batch);
            admits_cpu.push(cpu / batch);
            let (wall, cpu) = time(batch, run_parse);
            parses.push(wall / batch);
            parses_cpu.push(cpu / batch);
        }
        rows.push(EngineRow {
            name,
            bytes: body.len(),
            admit: median(&mut admits),
            parse: median(&mut parses),
            admit_cpu: median(&mut admits_cpu),
            parse_cpu: median(&mut parses_cpu),
        });
        eprintln!("  {name}: {:.1?}", started.elapsed());
    }
    rows
}

/// Wall-clock and on-CPU time of `n` calls of `f`.
pub(crate) fn time(n: u32, f: impl Fn()) -> (Duration, Duration) {
    let cpu = || {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Duration::new(t.tv_sec.unsigned_abs(), u32::try_from(t.tv_nsec).unwrap_or(0))
    };
    let (start, start_cpu) = (Instant::now(), cpu());
    for _ in 0..n {
        f();
    }
    (start.elapsed(), cpu().saturating_sub(start_cpu))
}

pub(crate) fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

/// `--admit-loop NAME --iterations N [--parse-floor]`: a fixed amount of work for callgrind or perf.
pub fn admit_loop(name: &str, iterations: usize, parse_floor: bool) -> ExitCode {
    let Some((_, body, _)) = bodies::all().into_iter().find(|(n, _, _)| *n == name) else {
        let names: Vec<_> = bodies::all().into_iter().map(|(n, _, _)| n).collect();
        eprintln!("unknown body {name:?}; one of {names:?}");
        return ExitCode::FAILURE;
    };
    let env = Environment::standalone(Arc::new(Policy::builtin()));
    if parse_floor {
        parse_floor_loop(&body, iterations);
    } else {
        for _ in 0..iterations {
            black_box(admit(black_box(&body), &env).ok());
        }
    }
    ExitCode::SUCCESS
}

/// Separate and never inlined, so that callgrind can count it alone
/// (`--toggle-collect='*parse_floor_loop'`).
#[inline(never)]
fn parse_floor_loop(body: &[u8], iterations: usize) {
    for _ in 0..iterations {
        black_box(serde_json::from_slice::<serde_json::Value>(black_box(body)).ok());
    }
}
