//! `podmedic-load`: the load harness of BENCHMARKS.md.
//!
//! One command runs everything and prints the tables:
//!
//! ```text
//! cargo run --release -p podmedic-load -- --all      # about 12 minutes
//! cargo run --release -p podmedic-load -- --quick    # smoke run, seconds
//! ```
//!
//! It builds the release `podmedic` binary, starts it (`podmedic serve`) and the two floors of our
//! own stack (this binary in `--serve-floor transport|parse` mode, same rustls settings and
//! certificate) as separate processes pinned to core 0, pins itself to core 1, and drives HTTPS
//! load at them in turn, interleaved, so every figure comes with a ratio to a floor measured
//! moments apart on the same machine. Everything is bounded in time, on 127.0.0.1 only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod client;
mod defaults;
mod engine;
mod floor;
mod hostile;
mod phases;
mod plan;
mod procs;
mod reference;
mod report;
mod results;
mod run;
mod summary;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

/// Load harness for podmedic: start-up, memory, latency and throughput against floors of the same
/// stack. See BENCHMARKS.md.
#[derive(Debug, Parser)]
#[command(name = "podmedic-load")]
pub struct Args {
    /// Run every phase (the default when no phase is chosen with --only).
    #[arg(long)]
    pub all: bool,
    /// Smoke run: every phase, very short (for CI).
    #[arg(long)]
    pub quick: bool,
    /// Run only these phases.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Phase>,
    /// The podmedic binary to test (default: `cargo build --bin podmedic` in the profile this
    /// harness was built in, `--release` or `--profile dist`, then target/<profile>/podmedic).
    #[arg(long)]
    pub podmedic: Option<PathBuf>,
    /// A second podmedic binary for the `defaults` phase, measured in the same interleaved rounds
    /// as --podmedic (for example the dist build without profile-guided optimisation beside
    /// the one with it; BENCHMARKS.md).
    #[arg(long)]
    pub compare_podmedic: Option<PathBuf>,
    /// Request body for the load phases (default: the Job controller's Pod with cloud-sql-proxy,
    /// tests/fixtures/admission-reviews/pod-create-by-job-controller.json).
    #[arg(long)]
    pub body: Option<PathBuf>,
    /// Keep-alive connections for the open-loop rate steps.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Connections for the closed-loop maximum-throughput runs.
    #[arg(long, default_value_t = 64)]
    pub max_connections: usize,
    /// Rates (requests/s) of the keep-alive sweep, instead of the built-in ones.
    #[arg(long, value_delimiter = ',')]
    pub rates: Vec<f64>,
    /// Rates of the one-handshake-per-request sweep, instead of the built-in ones.
    #[arg(long, value_delimiter = ',')]
    pub handshake_rates: Vec<f64>,
    /// Seconds per rate step (default 5, 1 with --quick).
    #[arg(long)]
    pub step_secs: Option<f64>,
    /// p99 limit (ms) for "highest rate with p99 under the limit".
    #[arg(long, default_value_t = 25.0)]
    pub p99_limit_ms: f64,
    /// Start-ups measured per server (default 20, 3 with --quick).
    #[arg(long)]
    pub startups: Option<usize>,
    /// Do not pin (for machines with one core; the figures then mean less).
    #[arg(long)]
    pub no_pin: bool,
    /// An argument for `podmedic serve`, after the harness's own (repeat for several):
    /// `--podmedic-arg=--engine-inline-max-bytes=0`.
    #[arg(long, allow_hyphen_values = true)]
    pub podmedic_arg: Vec<String>,
    /// Niceness of the servers and of the load generator. The default gives them most of their
    /// cores when other work (compiling, say) shares the machine; every server gets the same. Needs
    /// root or CAP_SYS_NICE for negative values, and falls back to 0 without.
    #[arg(long, default_value_t = -10, allow_negative_numbers = true)]
    pub nice: i32,

    /// Internal: serve a floor (transport or parse) instead of running the harness.
    #[arg(long, value_enum, hide = true)]
    pub serve_floor: Option<floor::Kind>,
    /// Internal (floor): HTTPS address.
    #[arg(long, hide = true)]
    pub listen: Option<SocketAddr>,
    /// Internal (floor): certificate chain, PEM.
    #[arg(long, hide = true)]
    pub tls_cert: Option<PathBuf>,
    /// Internal (floor): private key, PEM.
    #[arg(long, hide = true)]
    pub tls_key: Option<PathBuf>,
    /// Internal (floor): the fixed AdmissionReview response.
    #[arg(long, hide = true)]
    pub response: Option<PathBuf>,

    /// Profiling aid: run `admit` on one of the engine bodies this many times and exit (for
    /// `valgrind --tool=callgrind` or `perf record`): `--admit-loop job-pod-3k --iterations 1000`.
    #[arg(long)]
    pub admit_loop: Option<String>,
    /// Iterations of --admit-loop.
    #[arg(long, default_value_t = 1000)]
    pub iterations: usize,
    /// With --admit-loop: run the parse floor (`serde_json::from_slice::<Value>`) instead of `admit`,
    /// for instruction-count ratios.
    #[arg(long)]
    pub parse_floor: bool,
}

/// The phases of a run, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Phase {
    /// `admit` against the parse floor, in process, interleaved.
    Engine,
    /// The three bodies of issue 14 (seed Pod, Job-controller Pod, a Pod with nothing to fix) at
    /// podmedic's default flags: throughput and p99 at 1,000 req/s as ratios to the floors.
    Defaults,
    /// Process start to first admission answered.
    Startup,
    /// RSS idle, with 256 connections, and after the load.
    Memory,
    /// Open-loop rate steps over keep-alive connections.
    Keepalive,
    /// Open-loop rate steps, one TLS handshake per request.
    Handshake,
    /// Closed-loop maximum throughput.
    Max,
    /// Hostile bodies: the engine against benign bodies of the same size, podmedic serving them
    /// beside a small review and /healthz, and the engine inline or on its threads.
    Hostile,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(kind) = args.serve_floor {
        return floor::main(kind, &args);
    }
    if let Some(name) = &args.admit_loop {
        return engine::admit_loop(name, args.iterations, args.parse_floor);
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cores = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    if !args.no_pin && cores <= procs::LOAD_CORE {
        eprintln!("podmedic-load: fewer than two cores; use --no-pin (the figures then mean less)");
        return ExitCode::FAILURE;
    }
    if !args.no_pin
        && let Err(e) = procs::pin_self_to_load_core()
    {
        eprintln!("podmedic-load: {e:#}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = rustix::process::setpriority_process(None, args.nice) {
        eprintln!("podmedic-load: cannot set niceness {} ({e}); the figures will be noisier", args.nice);
    }
    match run::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podmedic-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}
