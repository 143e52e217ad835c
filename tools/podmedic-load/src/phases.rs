//! The measured phases: start-up, memory, the open-loop rate sweeps and the maximum throughput.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::Args;
use crate::client::{self, Client, Mode};
use crate::plan::Plan;
use crate::procs::{RssSampler, Server, Setup, Target};
use crate::report::{Table, duration, mib, ratio};
use crate::results::*;
use crate::summary::print_steps;

pub(crate) async fn startup(
    plan: &Plan,
    setup: &Setup,
    ca: &str,
    body: &[u8],
    results: &mut Results,
) -> anyhow::Result<()> {
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

pub(crate) async fn memory(
    plan: &Plan,
    setup: &Setup,
    ca: &str,
    body: &[u8],
    results: &mut Results,
) -> anyhow::Result<()> {
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
pub(crate) async fn step(
    server: &mut Server,
    client: &Client,
    mode: Mode,
    rate: f64,
    length: Duration,
) -> anyhow::Result<Step> {
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
pub(crate) async fn sweep(
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

/// A sweep of open-loop rate steps, its table and its highest rate under the p99 limit.
pub(crate) async fn rate_phase(
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

/// One closed-loop run against one server: its outcome and the server's CPU time per request
/// answered; then a pause that lets the server's queues drain before the next one's turn.
pub(crate) async fn closed_round(
    server: &mut Server,
    client: &Client,
    connections: usize,
    length: Duration,
) -> anyhow::Result<(client::Outcome, f64)> {
    let cpu_before = server.cpu_time();
    let outcome = client::closed_loop(client, connections, length).await;
    let cpu = server.cpu_time().saturating_sub(cpu_before).as_secs_f64();
    server.check_alive()?;
    if let Some(e) = &outcome.first_error {
        eprintln!("    {}: {} errors, the first: {e}", server.target.name(), outcome.errors);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let per_request = cpu / (outcome.latencies.len().max(1) as f64);
    Ok((outcome, per_request))
}

pub(crate) async fn max_throughput(
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
            let (outcome, cpu_per_req) = closed_round(server, &client, args.max_connections, plan.step).await?;
            rates.entry(server.target).or_default().push((outcome.achieved_rate(), cpu_per_req, outcome.client_load()));
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
