//! What the harness prints: the engine table, each rate sweep, and the summary against the targets.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::procs::Target;
use crate::report::{Table, duration, maybe, mib, ratio, verdict};
use crate::results::*;
use crate::{Args, engine};

pub(crate) fn print_engine(rows: &[engine::EngineRow]) {
    let mut t = Table::new(&[
        "body",
        "bytes",
        "admit, median",
        "parse floor, median",
        "admit / parse floor",
        "admit, on-CPU",
        "parse floor, on-CPU",
        "on-CPU ratio",
    ]);
    for r in rows {
        t.row(vec![
            r.name.into(),
            r.bytes.to_string(),
            duration(r.admit),
            duration(r.parse),
            ratio(Some(r.admit.as_secs_f64()), Some(r.parse.as_secs_f64())),
            duration(r.admit_cpu),
            duration(r.parse_cpu),
            ratio(Some(r.admit_cpu.as_secs_f64()), Some(r.parse_cpu.as_secs_f64())),
        ]);
    }
    t.print(
        "Engine: decode + mutate + patch + encode (`admit`) against `serde_json::from_slice::<Value>`; medians of \
         interleaved batches, wall clock and on-CPU (thread CPU time: preemption by other processes excluded)",
    );
}

pub(crate) fn print_steps(title: &str, steps: &[Step]) {
    let mut t = Table::new(&[
        "rate",
        "server",
        "p50",
        "p99",
        "p99.9",
        "achieved/s",
        "errors",
        "server CPU/req",
        "peak RSS",
        "client core",
    ]);
    let mut by_rate: BTreeMap<u64, Vec<&Step>> = BTreeMap::new();
    for s in steps {
        by_rate.entry(s.rate as u64).or_default().push(s);
    }
    for (rate, mut group) in by_rate {
        group.sort_by_key(|s| s.target);
        for s in &group {
            t.row(vec![
                rate.to_string(),
                s.target.name().into(),
                maybe(s.outcome.quantile(0.50)),
                maybe(s.outcome.quantile(0.99)),
                maybe(s.outcome.quantile(0.999)),
                format!("{:.0}", s.outcome.achieved_rate()),
                s.outcome.errors.to_string(),
                s.cpu_per_request().map_or("-".into(), |c| duration(Duration::from_secs_f64(c))),
                mib(s.peak_kib),
                format!("{:.0}%", 100.0 * s.outcome.client_load()),
            ]);
        }
        let find = |t: Target| group.iter().find(|s| s.target == t);
        if let Some(p) = find(Target::Podmedic) {
            for floor in [Target::Transport, Target::Parse] {
                if let Some(f) = find(floor) {
                    t.row(vec![
                        rate.to_string(),
                        format!("podmedic / {}", floor.name()),
                        ratio(p.p(0.5), f.p(0.5)),
                        ratio(p.p(0.99), f.p(0.99)),
                        ratio(p.p(0.999), f.p(0.999)),
                        ratio(Some(p.outcome.achieved_rate()), Some(f.outcome.achieved_rate())),
                        String::new(),
                        ratio(p.cpu_per_request(), f.cpu_per_request()),
                        ratio(Some(p.peak_kib as f64), Some(f.peak_kib as f64)),
                        String::new(),
                    ]);
                }
            }
        }
    }
    t.print(title);
}

/// The target is on the median; when only preemption by other processes makes the median miss,
/// the on-CPU time says so.
pub(crate) fn engine_verdict(median: Duration, on_cpu: Duration, limit: Duration) -> &'static str {
    match (median <= limit, on_cpu <= limit) {
        (true, _) => "met",
        (false, true) => "MISSED on the median (load), met on-CPU",
        (false, false) => "MISSED",
    }
}

pub(crate) fn print_summary(args: &Args, r: &Results) {
    let mut t = Table::new(&["target", "measured", "ratio", "verdict"]);
    let engine = |name: &str| r.engine.iter().find(|e| e.name == name);
    let engine_row = |t: &mut Table, name: &str, limit: Duration, label: &str| {
        if let Some(e) = engine(name) {
            t.row(vec![
                label.into(),
                format!("{} (on-CPU {})", duration(e.admit), duration(e.admit_cpu)),
                format!("{} of parse floor", ratio(Some(e.admit.as_secs_f64()), Some(e.parse.as_secs_f64()))),
                engine_verdict(e.admit, e.admit_cpu, limit).into(),
            ]);
        }
    };
    engine_row(&mut t, "job-pod-3k", Duration::from_micros(100), "engine, small Job Pod: median <= 100 µs");
    engine_row(&mut t, "pod-1m", Duration::from_millis(5), "engine, 1 MiB Pod: median <= 5 ms");
    if let Some(pass) = engine("pass-through") {
        t.row(vec![
            "engine, pass-through: well under the small Job Pod".into(),
            format!("{} (on-CPU {})", duration(pass.admit), duration(pass.admit_cpu)),
            format!("{} of parse floor", ratio(Some(pass.admit.as_secs_f64()), Some(pass.parse.as_secs_f64()))),
            engine_verdict(pass.admit, pass.admit_cpu, Duration::from_micros(100)).into(),
        ]);
    }
    if let (Some(p), Some(f)) = (r.max.get(&Target::Podmedic), r.max.get(&Target::Parse)) {
        t.row(vec![
            "max throughput >= 0.8x parse floor (aim 1.0x)".into(),
            format!("{p:.0} req/s"),
            format!("{:.2}x", p / f),
            verdict(p / f >= 0.8).into(),
        ]);
    }
    let at_1000 = |target: Target| r.keepalive.iter().find(|s| s.rate == 1000.0 && s.target == target);
    if let Some(p) = at_1000(Target::Podmedic) {
        let p99 = p.p(0.99);
        t.row(vec![
            "p99 at 1000 req/s <= 5 ms".into(),
            maybe(p.outcome.quantile(0.99)),
            String::new(),
            verdict(p99.is_some_and(|v| v <= 0.005)).into(),
        ]);
        if let Some(f) = at_1000(Target::Transport) {
            let ok = matches!((p99, f.p(0.99)), (Some(a), Some(b)) if a <= 1.3 * b);
            t.row(vec![
                "p99 at 1000 req/s <= 1.3x transport floor's".into(),
                format!("{} vs {}", maybe(p.outcome.quantile(0.99)), maybe(f.outcome.quantile(0.99))),
                ratio(p99, f.p(0.99)),
                verdict(ok).into(),
            ]);
        }
    }
    if !r.keepalive.is_empty() {
        let h = r.highest_ok.get(&Target::Podmedic).copied();
        t.row(vec![
            format!("highest rate with p99 < {} ms >= 5000/s", args.p99_limit_ms),
            h.map_or("none".into(), |h| format!("{h:.0}/s")),
            format!("{} of parse floor", ratio(h, r.highest_ok.get(&Target::Parse).copied())),
            verdict(h.is_some_and(|h| h >= 5000.0)).into(),
        ]);
    }
    if let Some(m) = r.memory.get(&Target::Podmedic) {
        let parse = r.memory.get(&Target::Parse);
        t.row(vec![
            "idle RSS <= 15 MiB".into(),
            mib(m.idle_kib),
            format!("{} of parse floor", ratio(Some(m.idle_kib as f64), parse.map(|p| p.idle_kib as f64))),
            verdict(m.idle_kib <= 15 * 1024).into(),
        ]);
        t.row(vec![
            "peak RSS, 256 connections <= 64 MiB".into(),
            mib(m.peak_kib),
            format!("{} of parse floor", ratio(Some(m.peak_kib as f64), parse.map(|p| p.peak_kib as f64))),
            verdict(m.peak_kib <= 64 * 1024).into(),
        ]);
        // "Near idle": within 25% or 2 MiB of the idle figure, whichever is larger.
        let near = m.after_kib <= (m.idle_kib + (m.idle_kib / 4).max(2048));
        t.row(vec![
            "RSS returns near idle after the load".into(),
            format!("{} (idle {})", mib(m.after_kib), mib(m.idle_kib)),
            format!("{:.2}x idle", m.after_kib as f64 / m.idle_kib.max(1) as f64),
            verdict(near).into(),
        ]);
    }
    if let Some(s) = r.startup.get(&Target::Podmedic) {
        t.row(vec![
            "start-up to first admission <= 100 ms".into(),
            duration(*s),
            format!(
                "{} of transport floor",
                ratio(Some(s.as_secs_f64()), r.startup.get(&Target::Transport).map(Duration::as_secs_f64))
            ),
            verdict(*s <= Duration::from_millis(100)).into(),
        ]);
    }
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let build = if cfg!(debug_assertions) { " (DEBUG BUILD: a smoke run, not figures)" } else { "" };
    t.print(&format!(
        "Targets (issue 7){build}; load average at the end: {}",
        loadavg.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    ));
}
