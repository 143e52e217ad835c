//! The phases, in order, and the summary against the targets of issue 7.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use podmedic_engine::Policy;
use podmedic_engine::admission::{Environment, admit};

use crate::client::{self, Client, Mode};
use crate::phases::*;
use crate::plan::Plan;
use crate::procs::{self, Server, Setup, Target};
use crate::results::Results;
use crate::summary::*;
use crate::{Args, Phase, defaults, engine, hostile};

/// Runs the phases `args` asks for and prints the tables.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let plan = Plan::new(args);
    let phases: Vec<Phase> = if args.only.is_empty() {
        vec![
            Phase::Engine,
            Phase::Defaults,
            Phase::Startup,
            Phase::Memory,
            Phase::Keepalive,
            Phase::Handshake,
            Phase::Max,
            Phase::Hostile,
        ]
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
    if phases.contains(&Phase::Hostile) {
        hostile::engine(&plan);
    }
    let served: Vec<Phase> = phases.iter().copied().filter(|p| *p != Phase::Engine).collect();
    if !served.is_empty() {
        let dir = Scratch::new()?;
        let (setup, ca_pem, body) = prepare(args, &dir.0)?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            if served.contains(&Phase::Defaults) {
                defaults::measure(args, &plan, &setup, &dir.0, &ca_pem).await?;
            }
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
            if served.contains(&Phase::Hostile) {
                hostile::served(&plan, &setup, &ca_pem, &body).await?;
                hostile::engine_placement(&plan, &setup, &ca_pem, &body).await?;
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
    let setup = Setup {
        podmedic,
        harness,
        cert,
        key,
        response,
        pin: !args.no_pin,
        nice: args.nice,
        podmedic_args: args.podmedic_arg.clone(),
        compared: args.compare_podmedic.clone(),
    };
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
