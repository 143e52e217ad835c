//! The hostile phase: what any user who may create a Pod can send, at up to 3 MiB.
//!
//! - Engine, in process: `admit` on each class of `benches/admission/hostile.rs` against a benign
//!   body of the same size (the Istio-injected Job Pod grown with environment variables), rounds
//!   interleaved; the answer's size and warnings with it.
//! - Served: podmedic (one core, as the shipped 1-CPU limit gives it) takes 3 MiB bodies of each
//!   class from 4 connections back to back, while a small review (the Job controller's 12 KB Pod,
//!   40/s) and `GET /healthz` (20/s) are timed beside them; the same with benign 3 MiB bodies is
//!   the baseline.
//! - Engine placement: the small review's maximum throughput with the engine inline (the default
//!   for bodies up to 16 KiB) and with every body handed to an engine thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use podmedic_engine::Policy;
use podmedic_engine::admission::{Environment, admit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{self, Client, Mode};
use crate::engine::hostile_bodies::{self, Class};
use crate::engine::{median, time};
use crate::plan::Plan;
use crate::procs::{RssSampler, Server, Setup, Target};
use crate::report::{Table, duration, mib, ratio};

/// Connections sending hostile bodies back to back in the served phase.
const HOSTILE_CONNECTIONS: usize = 4;
/// The size of the served bodies.
const SERVED_BYTES: usize = 3 << 20;

/// The in-process table.
pub(crate) fn engine(plan: &Plan) {
    eprintln!("hostile bodies, in process: {} rounds per class and size...", plan.hostile_rounds);
    let mut classes = Table::new(&["class", "what it holds"]);
    for class in hostile_bodies::classes() {
        classes.row(vec![class.name.into(), class.about.into()]);
    }
    classes.print("Hostile body classes (crates/podmedic-engine/benches/admission/hostile.rs)");
    let env = Environment::standalone(Arc::new(Policy::builtin()));
    let mut t = Table::new(&[
        "class",
        "bytes",
        "admit, median",
        "benign body, median",
        "hostile / benign",
        "answer bytes",
        "warnings",
    ]);
    for class in hostile_bodies::classes() {
        for &size in &plan.hostile_sizes {
            let hostile = (class.build)(size);
            let benign = hostile_bodies::benign(hostile.len());
            let answer = admit(&hostile, &env).expect("a hostile body is an AdmissionReview");
            let (mut h, mut b) = (Vec::new(), Vec::new());
            for _ in 0..plan.hostile_rounds.max(1) {
                h.push(time(1, || drop(admit(&hostile, &env))).0);
                b.push(time(1, || drop(admit(&benign, &env))).0);
            }
            let (h, b) = (median(&mut h), median(&mut b));
            t.row(vec![
                class.name.into(),
                hostile.len().to_string(),
                duration(h),
                duration(b),
                ratio(Some(h.as_secs_f64()), Some(b.as_secs_f64())),
                answer.body.len().to_string(),
                answer.warnings.to_string(),
            ]);
        }
    }
    t.print(
        "Hostile bodies, in process: `admit` against a benign body of the same size (the Istio Job Pod grown \
         with env vars), medians of interleaved single calls",
    );
}

/// What one background load and the probes beside it saw.
struct Beside {
    peak_kib: u64,
    background: client::Outcome,
    review: client::Outcome,
    healthz: Vec<Duration>,
    healthz_errors: usize,
    deadline: u64,
}

/// The served table.
pub(crate) async fn served(plan: &Plan, setup: &Setup, ca: &str, small: &[u8]) -> anyhow::Result<()> {
    eprintln!("hostile bodies, served: {HOSTILE_CONNECTIONS} connections of 3 MiB bodies per class...");
    let server = Server::spawn(Target::Podmedic, setup)?;
    client::wait_answering(&Client::new(server.addr, ca, small)?, Duration::from_secs(20)).await?;
    let mut backgrounds: Vec<(&str, Vec<u8>)> = vec![("benign (baseline)", hostile_bodies::benign(SERVED_BYTES))];
    backgrounds.extend(hostile_bodies::classes().into_iter().map(|c: Class| (c.name, (c.build)(SERVED_BYTES))));
    let mut t = Table::new(&[
        "3 MiB bodies from 4 connections",
        "answered/s",
        "errors",
        "small review p50 / p99",
        "/healthz p50 / p99",
        "allowed at the deadline",
        "peak RSS",
    ]);
    let idle = server.memory().rss_kib;
    let mut baseline = None;
    for (name, body) in &backgrounds {
        let beside = beside(&server, ca, body, small, plan.hostile_load).await?;
        let p = |o: &client::Outcome, q| o.quantile(q).map_or("-".into(), duration);
        let mut healthz = beside.healthz.clone();
        healthz.sort_unstable();
        let hq = |q: f64| healthz.get(((q * healthz.len() as f64) as usize).min(healthz.len().saturating_sub(1)));
        let review_p99 = beside.review.quantile(0.99).map(|d| d.as_secs_f64());
        baseline.get_or_insert(review_p99);
        t.row(vec![
            (*name).into(),
            format!("{:.1}", beside.background.achieved_rate()),
            (beside.background.errors + beside.review.errors + beside.healthz_errors as u64).to_string(),
            format!(
                "{} / {} ({} of baseline)",
                p(&beside.review, 0.5),
                p(&beside.review, 0.99),
                ratio(review_p99, baseline.flatten())
            ),
            format!(
                "{} / {}",
                hq(0.5).map_or("-".into(), |d| duration(*d)),
                hq(0.99).map_or("-".into(), |d| duration(*d))
            ),
            beside.deadline.to_string(),
            mib(beside.peak_kib),
        ]);
    }
    t.print(&format!(
        "Hostile bodies, served (podmedic on one core, default flags): 3 MiB bodies from {HOSTILE_CONNECTIONS} \
         connections back to back for {:.0?}, with a 12 KB review at 40/s and GET /healthz at 20/s beside them \
         (RSS before the first: {})",
        plan.hostile_load,
        mib(idle)
    ));
    Ok(())
}

/// `body` from [`HOSTILE_CONNECTIONS`] connections for `length`, with the probes beside it.
async fn beside(server: &Server, ca: &str, body: &[u8], small: &[u8], length: Duration) -> anyhow::Result<Beside> {
    let metrics = server.metrics.context("podmedic has a metrics address")?;
    let deadline_before = deadline_count(metrics).await;
    let background = Client::new(server.addr, ca, body)?;
    let review = Client::new(server.addr, ca, small)?;
    let probes = async {
        let review = client::open_loop(&review, Mode::KeepAlive(2), 40.0, length, Duration::from_secs(5));
        let healthz = async {
            let (mut times, mut errors) = (Vec::new(), 0);
            let end = Instant::now() + length;
            while Instant::now() < end {
                let sent = Instant::now();
                match get(metrics, "/healthz").await {
                    Ok(text) if text.starts_with("HTTP/1.1 200") => times.push(sent.elapsed()),
                    _ => errors += 1,
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (times, errors)
        };
        tokio::join!(review, healthz)
    };
    let sampler = RssSampler::start(server.pid());
    let (background, (review, (healthz, healthz_errors))) =
        tokio::join!(client::closed_loop(&background, HOSTILE_CONNECTIONS, length), probes);
    let peak_kib = sampler.finish();
    let deadline = deadline_count(metrics).await.saturating_sub(deadline_before);
    Ok(Beside { peak_kib, background, review, healthz, healthz_errors, deadline })
}

/// The small review's maximum throughput with the engine inline and on its threads.
pub(crate) async fn engine_placement(plan: &Plan, setup: &Setup, ca: &str, small: &[u8]) -> anyhow::Result<()> {
    eprintln!("engine placement: inline against engine threads, {} rounds...", plan.max_rounds);
    let inline = Server::spawn_with(Target::Podmedic, setup, &[])?;
    let pooled = Server::spawn_with(Target::Podmedic, setup, &["--engine-inline-max-bytes", "0"])?;
    let mut servers = [inline, pooled];
    for server in &servers {
        client::wait_answering(&Client::new(server.addr, ca, small)?, Duration::from_secs(20)).await?;
    }
    let mut figures: [Vec<(f64, f64, Duration)>; 2] = [Vec::new(), Vec::new()];
    for round in 0..plan.max_rounds {
        for k in 0..2 {
            let i = (round + k) % 2;
            let server = &mut servers[i];
            let client = Client::new(server.addr, ca, small)?;
            let cpu_before = server.cpu_time();
            let outcome = client::closed_loop(&client, 64, plan.step).await;
            let cpu = server.cpu_time().saturating_sub(cpu_before).as_secs_f64();
            server.check_alive()?;
            let per_request = cpu / outcome.latencies.len().max(1) as f64;
            figures[i].push((outcome.achieved_rate(), per_request, outcome.quantile(0.99).unwrap_or_default()));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let medians: Vec<(f64, f64, Duration)> = figures
        .iter_mut()
        .map(|runs| {
            runs.sort_by(|a, b| a.0.total_cmp(&b.0));
            runs[runs.len() / 2]
        })
        .collect();
    let mut t = Table::new(&["engine", "max req/s (median)", "server CPU/req", "p99", "req/s / inline"]);
    for (name, (rate, cpu, p99)) in
        ["inline (bodies up to 16 KiB)", "engine threads for every body"].iter().zip(&medians)
    {
        t.row(vec![
            (*name).into(),
            format!("{rate:.0}"),
            duration(Duration::from_secs_f64(*cpu)),
            duration(*p99),
            ratio(Some(*rate), Some(medians[0].0)),
        ]);
    }
    t.print(&format!(
        "Engine placement: the 12 KB review, closed loop, 64 connections, {:.0?} per round, {} interleaved rounds",
        plan.step, plan.max_rounds
    ));
    Ok(())
}

/// `podmedic_errors_total{reason="deadline"}` now.
async fn deadline_count(metrics: std::net::SocketAddr) -> u64 {
    let text = get(metrics, "/metrics").await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(r#"podmedic_errors_total{reason="deadline"} "#))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// `GET path` over plain HTTP/1.1 on a new connection: the whole response as text.
async fn get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await??;
    Ok(String::from_utf8_lossy(&response).into_owned())
}
