//! Processes: pinning, the servers under test, and what /proc says about them.
//!
//! The servers are started under `taskset -c 0` (pinning a child between fork and exec would take
//! unsafe code, which the crate forbids); the harness pins itself with `sched_setaffinity`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The core the servers run on.
pub const SERVER_CORE: usize = 0;
/// The core the load generator runs on.
pub const LOAD_CORE: usize = 1;

/// Pins this process to [`LOAD_CORE`], before any thread is started (threads inherit it), so the
/// load generator stays off the servers' core.
pub fn pin_self_to_load_core() -> anyhow::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(LOAD_CORE);
    rustix::thread::sched_setaffinity(None, &set).context("cannot pin the load generator to core 1")
}

/// A free port on 127.0.0.1 (the listener is closed again; the server binds it a moment later).
pub fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Which server a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// `podmedic serve`.
    Podmedic,
    /// Reads the body, answers a fixed response.
    Transport,
    /// Parses the body into a `serde_json::Value`, answers a fixed response.
    Parse,
    /// The webhook users would write, as kube-rs's admission example does (`reference.rs`).
    Reference,
    /// A second podmedic binary, `--compare-podmedic` (the `defaults` phase only): another build
    /// of the same tree, measured in the same rounds.
    Compared,
}

impl Target {
    /// All three, in the order they take turns.
    pub const ALL: [Target; 3] = [Target::Podmedic, Target::Transport, Target::Parse];
    /// The floors, podmedic, and the reference webhook (the `defaults` phase).
    pub const WITH_REFERENCE: [Target; 4] = [Target::Podmedic, Target::Transport, Target::Parse, Target::Reference];

    /// Short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Target::Podmedic => "podmedic",
            Target::Transport => "transport floor",
            Target::Parse => "parse floor",
            Target::Reference => "kube-rs-style webhook",
            Target::Compared => "podmedic (--compare-podmedic)",
        }
    }
}

/// Files and binaries every server start needs.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The podmedic binary.
    pub podmedic: PathBuf,
    /// This binary (the floors).
    pub harness: PathBuf,
    /// Serving certificate and key (the same for all three).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// The floors' fixed response.
    pub response: PathBuf,
    /// Pin servers to [`SERVER_CORE`].
    pub pin: bool,
    /// Niceness of the servers.
    pub nice: i32,
    /// More arguments for `podmedic serve` (`--podmedic-arg`).
    pub podmedic_args: Vec<String>,
    /// The second podmedic binary (`--compare-podmedic`), served as [`Target::Compared`].
    pub compared: Option<PathBuf>,
}

/// A running server, killed when dropped.
pub struct Server {
    /// Which one.
    pub target: Target,
    /// Its HTTPS address.
    pub addr: SocketAddr,
    /// Its health and metrics address (podmedic only).
    pub metrics: Option<SocketAddr>,
    child: Child,
}

impl Server {
    /// Spawns `target` (pinned to core 0) and returns at once; see [`crate::client::wait_answering`].
    pub fn spawn(target: Target, setup: &Setup) -> anyhow::Result<Server> {
        Self::spawn_with(target, setup, &[])
    }

    /// [`Server::spawn`], with `extra` arguments for `podmedic serve` after `--podmedic-arg`s.
    pub fn spawn_with(target: Target, setup: &Setup, extra: &[&str]) -> anyhow::Result<Server> {
        let addr = free_port()?;
        let mut metrics_addr = None;
        // nice and taskset exec what follows, so the child's pid is the server's.
        let mut command = Command::new("nice");
        command.args(["-n", &setup.nice.to_string()]);
        if setup.pin {
            command.args(["taskset", "-c", &SERVER_CORE.to_string()]);
        }
        match target {
            Target::Podmedic | Target::Compared => {
                let metrics = free_port()?;
                let binary = match (target, &setup.compared) {
                    (Target::Compared, Some(compared)) => compared,
                    (Target::Compared, None) => bail!("no --compare-podmedic binary"),
                    _ => &setup.podmedic,
                };
                command.arg(binary).arg("serve").args(["--listen", &addr.to_string()]);
                command.args(["--metrics-listen", &metrics.to_string()]);
                command.arg("--tls-cert").arg(&setup.cert).arg("--tls-key").arg(&setup.key);
                // Default flags (log level info, text): what users run. Its log goes to a pipe
                // that a thread of the harness reads, as a container runtime's would.
                command.args(&setup.podmedic_args).args(extra);
                metrics_addr = Some(metrics);
            }
            Target::Transport | Target::Parse | Target::Reference => {
                let kind = match target {
                    Target::Transport => "transport",
                    Target::Parse => "parse",
                    _ => "reference",
                };
                command.arg(&setup.harness).args(["--serve-floor", kind, "--listen", &addr.to_string()]);
                command.arg("--tls-cert").arg(&setup.cert).arg("--tls-key").arg(&setup.key);
                command.arg("--response").arg(&setup.response);
            }
        }
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().with_context(|| format!("cannot start {}", target.name()))?;
        if let Some(stderr) = child.stderr.take() {
            std::thread::spawn(move || forward_problems(stderr));
        }
        Ok(Server { target, addr, metrics: metrics_addr, child })
    }

    /// The process id (nice and taskset exec the server, so it is the server's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited: {status}", self.target.name());
        }
        Ok(())
    }

    /// Memory as /proc says now.
    pub fn memory(&self) -> Memory {
        Memory::of(self.pid())
    }

    /// CPU time used so far (user + system, all threads).
    pub fn cpu_time(&self) -> Duration {
        cpu_time(&format!("/proc/{}/stat", self.pid()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a server's log to its end, as a container runtime would, and passes on the lines that
/// are not INFO or DEBUG (warnings, errors, a floor's failure) to the harness's standard error.
fn forward_problems(stderr: std::process::ChildStderr) {
    use std::io::BufRead as _;
    for line in std::io::BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if !line.contains(" INFO ") && !line.contains(" DEBUG ") {
            eprintln!("{line}");
        }
    }
}

/// Resident memory of a process, KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// VmRSS: resident now.
    pub rss_kib: u64,
    /// VmHWM: the most resident since the process started.
    pub hwm_kib: u64,
}

impl Memory {
    /// Reads `/proc/<pid>/status` (zeros when the process is gone).
    pub fn of(pid: u32) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Memory { rss_kib: field("VmRSS:"), hwm_kib: field("VmHWM:") }
    }
}

/// User + system CPU time from a /proc/.../stat file.
pub fn cpu_time(path: &str) -> Duration {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // The command name (field 2) may contain spaces; fields are counted after its closing ')'.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state field (index 0 here).
    let total = ticks(11) + ticks(12);
    Duration::from_secs_f64(total as f64 / clock_ticks_per_second())
}

/// This process's CPU time.
pub fn own_cpu_time() -> Duration {
    cpu_time("/proc/self/stat")
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Samples a process's VmRSS every 10 ms on a thread until stopped; returns the peak.
pub struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<u64>,
}

impl RssSampler {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> RssSampler {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(Memory::of(pid).rss_kib);
                std::thread::sleep(Duration::from_millis(10));
            }
            peak.max(Memory::of(pid).rss_kib)
        });
        RssSampler { stop, handle }
    }

    /// Stops and returns the highest VmRSS seen, KiB.
    pub fn finish(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().unwrap_or(0)
    }
}

/// Builds the `podmedic` binary with cargo, in the profile this harness was built in (`release`,
/// or `dist` for what the image ships; a debug harness, as in the CI smoke run, tests a debug
/// podmedic), and returns its path. The profile is read off the directory this harness runs from
/// (`target/<profile>/podmedic-load`), so `cargo run --profile dist -p podmedic-load` measures
/// the dist podmedic against floors built the same way.
pub fn build_podmedic(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    let profile = own_profile();
    // The workspace root, two levels above this package (tools/podmedic-load).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.as_path();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut args = vec!["build", "--bin", "podmedic"];
    match profile.as_str() {
        "debug" => eprintln!("podmedic-load is a debug build: this is a smoke run, its figures mean nothing"),
        "release" => args.push("--release"),
        other => args.extend(["--profile", other]),
    }
    let started = Instant::now();
    eprintln!("building podmedic (cargo {})...", args.join(" "));
    let status =
        Command::new(cargo).current_dir(root).args(&args).status().context("cannot run cargo; pass --podmedic PATH")?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    eprintln!("built in {:.0?}", started.elapsed());
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(target_dir.join(&profile).join("podmedic"))
}

/// The cargo profile this harness was built in: the name of the directory it runs from, `release`
/// when that cannot be read from a build with optimisations, `debug` from one without.
fn own_profile() -> String {
    let fallback = if cfg!(debug_assertions) { "debug" } else { "release" };
    let dir = std::env::current_exe().ok().and_then(|exe| exe.parent()?.file_name()?.to_str().map(str::to_owned));
    match dir {
        Some(name) if name == "debug" || name == "release" || name == "dist" => name,
        _ => fallback.to_owned(),
    }
}
