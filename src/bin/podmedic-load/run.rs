//! The phases, in order, and the summary against the targets of issue 7.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use podmedic_engine::Policy;
use podmedic_engine::admission::{Environment, admit};

use crate::client::{self, Client, Mode, Outcome};
use crate::procs::{self, RssSampler, Server, Setup, Target};
use crate::report::{Table, duration, maybe, mib, ratio, verdict};
use crate::{Args, Phase, engine};

/// How long and how much of each phase.
struct Plan {
    engine_rounds: usize,
    startups: usize,
    step: Duration,
    keepalive_rates: Vec<f64>,
    handshake_rates: Vec<f64>,
    handshake_workers: usize,
    max_rounds: usize,
    memory_connections: usize,
    memory_load: Duration,
    memory_settle: Duration,
}

impl Plan {
    fn new(args: &Args) -> Plan {
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
        }
    }
}

/// Everything measured, for the summary.
#[derive(Default)]
struct Results {
    engine: Vec<engine::EngineRow>,
    startup: BTreeMap<Target, Duration>,
    memory: BTreeMap<Target, MemoryRow>,
    keepalive: Vec<Step>,
    highest_ok: BTreeMap<Target, f64>,
    max: BTreeMap<Target, f64>,
}

#[derive(Clone, Copy, Default)]
struct MemoryRow {
    idle_kib: u64,
    peak_kib: u64,
    after_kib: u64,
    rate: f64,
}

struct Step {
    rate: f64,
    target: Target,
    outcome: Outcome,
    server_cpu: Duration,
    peak_kib: u64,
}

impl Step {
    fn p(&self, q: f64) -> Option<f64> {
        self.outcome.quantile(q).map(|d| d.as_secs_f64())
    }
    fn cpu_per_request(&self) -> Option<f64> {
        let n = self.outcome.latencies.len();
        (n > 0).then(|| self.server_cpu.as_secs_f64() / n as f64)
    }
}

/// Runs the phases `args` asks for and prints the tables.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let plan = Plan::new(args);
    let phases: Vec<Phase> = if args.only.is_empty() {
        vec![Phase::Engine, Phase::Startup, Phase::Memory, Phase::Keepalive, Phase::Handshake, Phase::Max]
    } else {
        args.only.clone()
    };
    print_machine(args);
    let mut results = Results::default();
    let started = Instant::now();

    if phases.contains(&Phase::Engine) {
        eprintln!("engine: admit against the parse floor, {} interleaved rounds per body...", plan.engine_rounds);
        results.engine = engine::measure(plan.engine_rounds);
        print_engine(&results.engine);
    }
    let served: Vec<Phase> = phases.iter().copied().filter(|p| *p != Phase::Engine).collect();
    if !served.is_empty() {
        let dir = Scratch::new()?;
        let (setup, ca_pem, body) = prepare(args, &dir.0)?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            if served.contains(&Phase::Startup) {
                startup(&plan, &setup, &ca_pem, &body, &mut results).await?;
            }
            if served.contains(&Phase::Memory) {
                memory(&plan, &setup, &ca_pem, &body, &mut results).await?;
            }
            if served.iter().any(|p| matches!(p, Phase::Keepalive | Phase::Handshake | Phase::Max)) {
                let mut servers = Vec::new();
                for target in Target::ALL {
                    let server = Server::spawn(target, &setup)?;
                    client::wait_answering(&Client::new(server.addr, &ca_pem, &body)?, Duration::from_secs(20))
                        .await
                        .with_context(|| format!("{} did not start", target.name()))?;
                    servers.push(server);
                }
                if served.contains(&Phase::Keepalive) {
                    let title = format!(
                        "Keep-alive (HTTP/1.1, {} connections), open loop, {:.0?} per step; latency from the scheduled \
                         send time",
                        args.connections, plan.step
                    );
                    let mode = Mode::KeepAlive(args.connections);
                    let (steps, highest) = rate_phase(
                        args,
                        &mut servers,
                        &ca_pem,
                        &body,
                        (&plan.keepalive_rates, plan.step, mode),
                        &title,
                    )
                    .await?;
                    results.keepalive = steps;
                    results.highest_ok = highest;
                }
                if served.contains(&Phase::Handshake) {
                    let title = format!(
                        "One TLS handshake per request (TLS 1.3, ECDSA P-256, no resumption, up to {} at a time), \
                         open loop, {:.0?} per step",
                        plan.handshake_workers, plan.step
                    );
                    let mode = Mode::HandshakeEach(plan.handshake_workers);
                    let phase = (plan.handshake_rates.as_slice(), plan.step, mode);
                    rate_phase(args, &mut servers, &ca_pem, &body, phase, &title).await?;
                }
                if served.contains(&Phase::Max) {
                    max_throughput(args, &plan, &mut servers, &ca_pem, &body, &mut results).await?;
                }
            }
            anyhow::Ok(())
        })?;
    }
    print_summary(args, &results);
    eprintln!("done in {:.0?}", started.elapsed());
    Ok(())
}

/// A temporary directory for the certificate and the floors' response, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("podmedic-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Builds podmedic, makes the certificate, the body and the floors' fixed response.
fn prepare(args: &Args, dir: &Path) -> anyhow::Result<(Setup, String, Vec<u8>)> {
    let podmedic = procs::build_podmedic(args.podmedic.as_deref())?;
    let body_path = args.body.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission-reviews/pod-create-by-job-controller.json")
    });
    let body = std::fs::read(&body_path).with_context(|| format!("cannot read {}", body_path.display()))?;
    let bundle = podmedic::pki::generate_ca_and_leaf(
        "podmedic-load",
        &["127.0.0.1".into(), "localhost".into()],
        Duration::from_secs(24 * 3600),
    )?;
    let (cert, key, response) = (dir.join("tls.crt"), dir.join("tls.key"), dir.join("response.json"));
    std::fs::write(&cert, &bundle.cert_pem)?;
    std::fs::write(&key, &bundle.key_pem)?;
    // The floors answer exactly what podmedic answers for this body, so the bytes on the wire match.
    let answer = admit(&body, &Environment::standalone(Arc::new(Policy::builtin())))?;
    std::fs::write(&response, &answer.body)?;
    eprintln!(
        "body: {} ({} bytes), podmedic's answer: {} ({} bytes)",
        body_path.display(),
        body.len(),
        answer.outcome.label(),
        answer.body.len()
    );
    let harness = std::env::current_exe()?;
    let setup = Setup { podmedic, harness, cert, key, response, pin: !args.no_pin, nice: args.nice };
    Ok((setup, bundle.ca_cert_pem, body))
}

fn print_machine(args: &Args) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model =
        cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|m| m.trim_start_matches([' ', '\t', ':']));
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("## podmedic-load");
    println!();
    println!(
        "- machine: {} cores, {}; load average at start: {}",
        cpuinfo.lines().filter(|l| l.starts_with("processor")).count(),
        model.unwrap_or("unknown CPU"),
        loadavg.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!("- servers pinned to core {}, load generator to core {}", procs::SERVER_CORE, procs::LOAD_CORE);
    println!("- niceness of servers and load generator: {}", args.nice);
}

fn print_engine(rows: &[engine::EngineRow]) {
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

async fn startup(plan: &Plan, setup: &Setup, ca: &str, body: &[u8], results: &mut Results) -> anyhow::Result<()> {
    eprintln!("start-up: {} starts per server, interleaved...", plan.startups);
    let mut times: BTreeMap<Target, Vec<Duration>> = BTreeMap::new();
    for _ in 0..plan.startups {
        for target in Target::ALL {
            let spawned = Instant::now();
            let server = Server::spawn(target, setup)?;
            let client = Client::new(server.addr, ca, body)?;
            let answered = client::wait_answering(&client, Duration::from_secs(10)).await?;
            times.entry(target).or_default().push(answered - spawned);
            drop(server);
        }
    }
    let mut t = Table::new(&["server", "median", "min", "max", "median / transport floor"]);
    let medians: BTreeMap<Target, Duration> = times
        .iter_mut()
        .map(|(k, v)| {
            v.sort_unstable();
            (*k, v[v.len() / 2])
        })
        .collect();
    for (target, v) in &times {
        t.row(vec![
            target.name().into(),
            duration(medians[target]),
            duration(v[0]),
            duration(v[v.len() - 1]),
            ratio(Some(medians[target].as_secs_f64()), medians.get(&Target::Transport).map(Duration::as_secs_f64)),
        ]);
    }
    t.print(&format!("Start-up: process spawn to first admission answered ({} starts each)", plan.startups));
    results.startup = medians;
    Ok(())
}

async fn memory(plan: &Plan, setup: &Setup, ca: &str, body: &[u8], results: &mut Results) -> anyhow::Result<()> {
    eprintln!("memory: {} connections per server...", plan.memory_connections);
    for target in Target::ALL {
        let mut server = Server::spawn(target, setup)?;
        let client = Client::new(server.addr, ca, body)?;
        client::wait_answering(&client, Duration::from_secs(10)).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle = server.memory().rss_kib;
        let sampler = RssSampler::start(server.pid());
        let outcome = client::closed_loop(&client, plan.memory_connections, plan.memory_load).await;
        let sampled = sampler.finish();
        let peak = sampled.max(server.memory().hwm_kib);
        // closed_loop has closed every connection by now.
        tokio::time::sleep(plan.memory_settle).await;
        let after = server.memory().rss_kib;
        server.check_alive()?;
        results.memory.insert(
            target,
            MemoryRow { idle_kib: idle, peak_kib: peak, after_kib: after, rate: outcome.achieved_rate() },
        );
        if let Some(e) = &outcome.first_error {
            eprintln!(
                "  {}: {} errors with {} connections, the first: {e}",
                target.name(),
                outcome.errors,
                plan.memory_connections
            );
        }
    }
    let mut t = Table::new(&[
        "server",
        "idle RSS",
        &format!("peak RSS, {} connections", plan.memory_connections),
        &format!("RSS {:.0?} after", plan.memory_settle),
        "req/s during",
        "peak / parse floor",
    ]);
    let parse_peak = results.memory.get(&Target::Parse).map(|m| m.peak_kib as f64);
    for (target, m) in &results.memory {
        t.row(vec![
            target.name().into(),
            mib(m.idle_kib),
            mib(m.peak_kib),
            mib(m.after_kib),
            format!("{:.0}", m.rate),
            ratio(Some(m.peak_kib as f64), parse_peak),
        ]);
    }
    t.print("Memory (VmRSS; peak is the higher of 10 ms samples and VmHWM)");
    Ok(())
}

/// Runs one open-loop step against one server and measures it.
async fn step(server: &mut Server, client: &Client, mode: Mode, rate: f64, length: Duration) -> anyhow::Result<Step> {
    let sampler = RssSampler::start(server.pid());
    let cpu_before = server.cpu_time();
    let outcome = client::open_loop(client, mode, rate, length, Duration::from_secs(3)).await;
    let server_cpu = server.cpu_time().saturating_sub(cpu_before);
    let peak_kib = sampler.finish();
    server.check_alive()?;
    if let Some(e) = &outcome.first_error {
        eprintln!("    {} errors, the first: {e}", outcome.errors);
    }
    // Let the server's queues drain before the next server's turn.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(Step { rate, target: server.target, outcome, server_cpu, peak_kib })
}

/// Round-robin over the servers still under the p99 limit, one rate after the other; a server
/// leaves after two rates in a row over the limit (or with more than 1% errors).
async fn sweep(
    args: &Args,
    servers: &mut [Server],
    ca: &str,
    body: &[u8],
    rates: &[f64],
    length: Duration,
    mode: Mode,
) -> anyhow::Result<(Vec<Step>, BTreeMap<Target, f64>)> {
    let limit = args.p99_limit_ms / 1000.0;
    let mut failures: BTreeMap<Target, usize> = BTreeMap::new();
    let mut highest: BTreeMap<Target, f64> = BTreeMap::new();
    let mut steps = Vec::new();
    for (i, &rate) in rates.iter().enumerate() {
        let n = servers.len();
        let mut ran = false;
        // Rotate who goes first, so no server always follows the same one.
        for k in 0..n {
            let server = &mut servers[(i + k) % n];
            if failures.get(&server.target).copied().unwrap_or(0) >= 2 {
                continue;
            }
            ran = true;
            eprintln!("  {:>6.0} req/s  {}", rate, server.target.name());
            let client = Client::new(server.addr, ca, body)?;
            let s = step(server, &client, mode, rate, length).await?;
            let ok = s.p(0.99).is_some_and(|p| p < limit) && (s.outcome.errors as f64) <= 0.01 * s.outcome.sent as f64;
            if ok {
                failures.insert(s.target, 0);
                let h = highest.entry(s.target).or_insert(0.0);
                *h = h.max(rate);
            } else {
                *failures.entry(s.target).or_insert(0) += 1;
            }
            steps.push(s);
        }
        if !ran {
            break;
        }
    }
    Ok((steps, highest))
}

fn print_steps(title: &str, steps: &[Step]) {
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

/// A sweep of open-loop rate steps, its table and its highest rate under the p99 limit.
async fn rate_phase(
    args: &Args,
    servers: &mut [Server],
    ca: &str,
    body: &[u8],
    (rates, length, mode): (&[f64], Duration, Mode),
    title: &str,
) -> anyhow::Result<(Vec<Step>, BTreeMap<Target, f64>)> {
    eprintln!("{title}...");
    let (steps, highest) = sweep(args, servers, ca, body, rates, length, mode).await?;
    print_steps(title, &steps);
    let mut t = Table::new(&["server", &format!("highest rate with p99 < {} ms", args.p99_limit_ms), "/ parse floor"]);
    for target in Target::ALL {
        let h = highest.get(&target).copied();
        t.row(vec![
            target.name().into(),
            h.map_or("none".into(), |h| format!("{h:.0}/s")),
            ratio(h, highest.get(&Target::Parse).copied()),
        ]);
    }
    t.print("Highest rate under the p99 limit (a lower bound: the next step up failed)");
    Ok((steps, highest))
}

async fn max_throughput(
    args: &Args,
    plan: &Plan,
    servers: &mut [Server],
    ca: &str,
    body: &[u8],
    results: &mut Results,
) -> anyhow::Result<()> {
    eprintln!("maximum throughput: closed loop, {} connections, {} rounds...", args.max_connections, plan.max_rounds);
    let mut rates: BTreeMap<Target, Vec<(f64, f64, f64)>> = BTreeMap::new();
    let n = servers.len();
    for round in 0..plan.max_rounds {
        for k in 0..n {
            let server = &mut servers[(round + k) % n];
            let client = Client::new(server.addr, ca, body)?;
            let cpu_before = server.cpu_time();
            let outcome = client::closed_loop(&client, args.max_connections, plan.step).await;
            let cpu = server.cpu_time().saturating_sub(cpu_before).as_secs_f64();
            server.check_alive()?;
            let rate = outcome.achieved_rate();
            let cpu_per_req = cpu / (outcome.latencies.len().max(1) as f64);
            rates.entry(server.target).or_default().push((rate, cpu_per_req, outcome.client_load()));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let medians: BTreeMap<Target, (f64, f64)> = rates
        .iter()
        .map(|(t, v)| {
            let mut r: Vec<f64> = v.iter().map(|x| x.0).collect();
            let mut c: Vec<f64> = v.iter().map(|x| x.1).collect();
            r.sort_by(f64::total_cmp);
            c.sort_by(f64::total_cmp);
            (*t, (r[r.len() / 2], c[c.len() / 2]))
        })
        .collect();
    let mut t = Table::new(&[
        "server",
        "req/s per round",
        "median req/s",
        "/ parse floor",
        "/ transport floor",
        "server CPU/req",
        "client core",
    ]);
    for (target, v) in &rates {
        let (rate, cpu) = medians[target];
        t.row(vec![
            target.name().into(),
            v.iter().map(|x| format!("{:.0}", x.0)).collect::<Vec<_>>().join(", "),
            format!("{rate:.0}"),
            ratio(Some(rate), medians.get(&Target::Parse).map(|m| m.0)),
            ratio(Some(rate), medians.get(&Target::Transport).map(|m| m.0)),
            duration(Duration::from_secs_f64(cpu)),
            v.iter().map(|x| format!("{:.0}%", 100.0 * x.2)).collect::<Vec<_>>().join(", "),
        ]);
    }
    t.print(&format!(
        "Maximum throughput: closed loop, {} keep-alive connections, {:.0?} per round, rounds interleaved",
        args.max_connections, plan.step
    ));
    results.max = medians.into_iter().map(|(t, (r, _))| (t, r)).collect();
    Ok(())
}

/// The target is on the median; when only preemption by other processes makes the median miss,
/// the on-CPU time says so.
fn engine_verdict(median: Duration, on_cpu: Duration, limit: Duration) -> &'static str {
    match (median <= limit, on_cpu <= limit) {
        (true, _) => "met",
        (false, true) => "MISSED on the median (load), met on-CPU",
        (false, false) => "MISSED",
    }
}

fn print_summary(args: &Args, r: &Results) {
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
