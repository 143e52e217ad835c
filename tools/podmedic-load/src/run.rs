//! The phases, in order, and the summary against the targets of issue 7.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use podmedic_engine::Policy;
use podmedic_engine::admission::{Environment, admit};

use crate::client::{self, Client, Mode, Outcome};
use crate::phases::*;
use crate::procs::{self, Server, Setup, Target};
use crate::summary::*;
use crate::{Args, Phase, engine};

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
pub(crate) struct Scratch(PathBuf);

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
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/admission-reviews/pod-create-by-job-controller.json")
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
