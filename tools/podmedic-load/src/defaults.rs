//! The headline of issue 14: podmedic at its default flags (log level `info`, text logs) against
//! the floors, on the three bodies most clusters send: the seed Pod podmedic patches (2.9 KB), the
//! Job controller's recorded Pod (12 KB, patched), and a Job's Pod with nothing to fix (2.6 KB);
//! beside them the webhook users would write themselves (`reference.rs`), on the same stack.
//!
//! For each body, every server is started afresh (the floors answer that body's very bytes), then
//! interleaved rounds: a closed loop over `--connections` keep-alive connections (what `wrk -t1
//! -c32` does) for maximum throughput, and an open-loop step at 1,000 req/s for p99. Every figure
//! is printed as a ratio to the floors of the same round, and the spread over the rounds is shown.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use podmedic_engine::Policy;
use podmedic_engine::admission::{Environment, admit};

use crate::Args;
use crate::client::{self, Client, Mode};
use crate::phases::{closed_round, step};
use crate::plan::Plan;
use crate::procs::{Server, Setup, Target};
use crate::report::{Table, duration};

/// The rate of the latency step: the "p99 at 1,000 req/s".
const LATENCY_RATE: f64 = 1000.0;

/// (name, path from the workspace root) of the three bodies.
pub(crate) const BODIES: [(&str, &str); 3] = [
    ("seed Pod (patched)", "crates/podmedic-engine/benches/fixtures/seed-pod.json"),
    ("Job-controller Pod (patched)", "tests/fixtures/admission-reviews/pod-create-by-job-controller.json"),
    ("Job Pod, nothing to fix", "crates/podmedic-engine/benches/fixtures/job-pod-unchanged.json"),
];

/// One round of one server on one body.
struct Round {
    /// Closed-loop requests per second.
    rate: f64,
    /// p99 of the open-loop step at [`LATENCY_RATE`].
    p99: Option<f64>,
    /// Server CPU per request in the closed loop.
    cpu: f64,
}

/// Runs the phase and prints its table.
pub(crate) async fn measure(args: &Args, plan: &Plan, setup: &Setup, dir: &Path, ca: &str) -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut table = Table::new(&[
        "body",
        "bytes",
        "server",
        "req/s (median)",
        "/ parse floor (rounds)",
        "/ transport floor (rounds)",
        "CPU/req",
        "p99 at 1,000/s",
        "p99 / transport floor's (rounds)",
    ]);
    for (i, (name, path)) in BODIES.iter().enumerate() {
        let body = std::fs::read(root.join(path)).with_context(|| format!("cannot read {path}"))?;
        let answer = admit(&body, &Environment::standalone(Arc::new(Policy::builtin())))?;
        let response = dir.join(format!("response-{i}.json"));
        std::fs::write(&response, &answer.body)?;
        eprintln!("defaults: {name}, {} bytes, podmedic's answer: {}", body.len(), answer.outcome.label());
        let setup = Setup { response, ..setup.clone() };
        let rounds = rounds(args, plan, &setup, ca, &body).await?;
        for target in targets(&setup) {
            let Some(own) = rounds.get(&target) else { continue };
            let per_round = |floor: Target, value: &dyn Fn(&Round) -> Option<f64>| -> String {
                let Some(floor) = rounds.get(&floor) else { return "-".into() };
                let ratios: Vec<String> = own
                    .iter()
                    .zip(floor)
                    .map(|(a, b)| match (value(a), value(b)) {
                        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                        _ => "-".into(),
                    })
                    .collect();
                ratios.join(", ")
            };
            let mut rates: Vec<f64> = own.iter().map(|r| r.rate).collect();
            rates.sort_by(f64::total_cmp);
            let mut cpus: Vec<f64> = own.iter().map(|r| r.cpu).collect();
            cpus.sort_by(f64::total_cmp);
            let mut p99s: Vec<f64> = own.iter().filter_map(|r| r.p99).collect();
            p99s.sort_by(f64::total_cmp);
            table.row(vec![
                (*name).into(),
                body.len().to_string(),
                target.name().into(),
                format!("{:.0}", rates[rates.len() / 2]),
                per_round(Target::Parse, &|r| Some(r.rate)),
                per_round(Target::Transport, &|r| Some(r.rate)),
                duration(Duration::from_secs_f64(cpus[cpus.len() / 2])),
                p99s.get(p99s.len() / 2).map_or("-".into(), |p| duration(Duration::from_secs_f64(*p))),
                per_round(Target::Transport, &|r| r.p99),
            ]);
        }
    }
    table.print(&format!(
        "Default flags, three bodies: closed loop over {} keep-alive connections for {:.0?} (throughput), open \
         loop at {LATENCY_RATE:.0}/s for {:.0?} (p99); {} interleaved rounds, each ratio against the floor's figure \
         of the same round",
        args.connections, plan.step, plan.step, plan.max_rounds
    ));
    Ok(())
}

/// The servers of the phase: podmedic, the floors, the reference webhook, and the second podmedic
/// when `--compare-podmedic` names one.
fn targets(setup: &Setup) -> Vec<Target> {
    let mut targets = Target::WITH_REFERENCE.to_vec();
    if setup.compared.is_some() {
        targets.insert(1, Target::Compared);
    }
    targets
}

/// `plan.max_rounds` rounds over every server for one body; the servers take turns within a round
/// and the first of each round rotates.
async fn rounds(
    args: &Args,
    plan: &Plan,
    setup: &Setup,
    ca: &str,
    body: &[u8],
) -> anyhow::Result<BTreeMap<Target, Vec<Round>>> {
    let mut servers = Vec::new();
    for target in targets(setup) {
        let server = Server::spawn(target, setup)?;
        client::wait_answering(&Client::new(server.addr, ca, body)?, Duration::from_secs(20))
            .await
            .with_context(|| format!("{} did not start", target.name()))?;
        servers.push(server);
    }
    let mut rounds: BTreeMap<Target, Vec<Round>> = BTreeMap::new();
    let n = servers.len();
    for round in 0..plan.max_rounds {
        for k in 0..n {
            let server = &mut servers[(round + k) % n];
            let client = Client::new(server.addr, ca, body)?;
            let (outcome, cpu) = closed_round(server, &client, args.connections, plan.step).await?;
            let rate = outcome.achieved_rate();
            let latency = step(server, &client, Mode::KeepAlive(args.connections), LATENCY_RATE, plan.step).await?;
            eprintln!(
                "  round {}: {:<16} {rate:>7.0} req/s, p99 at {LATENCY_RATE:.0}/s {}",
                round + 1,
                server.target.name(),
                latency.p(0.99).map_or("-".into(), |p| duration(Duration::from_secs_f64(p)))
            );
            rounds.entry(server.target).or_default().push(Round { rate, p99: latency.p(0.99), cpu });
        }
    }
    Ok(rounds)
}
