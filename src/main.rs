//! The `podmedic` binary: parse the command line, set up logging, run the subcommand.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use podmedic::cli::{Cli, Command, LogArgs, LogFormat};
use podmedic::commands;
use podmedic::webhook::{self, ServeConfig};
use tracing_subscriber::EnvFilter;

/// jemalloc rather than the C library's malloc: after a burst it returns the memory (glibc kept
/// 25 MiB of a 28 MiB peak), and it spends fewer instructions per allocation (BENCHMARKS.md).
/// Not on musl (the image and the release binaries), where it does not build (see Cargo.toml).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc"), not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    init_tracing(&cli.logging);
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "podmedic failed");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Fix(args) => commands::fix::run(&args.into()),
        Command::Certs(args) => commands::certs::run(&args.into()),
        Command::Audit(args) => runtime()?.block_on(commands::audit::run(&args.into())),
        Command::Serve(args) => {
            let config = ServeConfig::from(&*args);
            let runtime = runtime()?;
            runtime.block_on(webhook::serve(&config))?;
            // Connections still open after the shutdown timeout are dropped here, not waited for.
            runtime.shutdown_timeout(Duration::from_secs(1));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

/// kube's client logs every failed request at ERROR with no context (`failed with error client
/// error (Connect)`); podmedic logs each of those failures itself, with what kind of failure it is
/// (`cluster::ApiFailure`). So they are off, unless the filter names `kube_client` itself.
const KUBE_REQUEST_ERRORS_OFF: &str = "kube_client::client::builder=off";

/// Logs go to standard error, so `podmedic fix` can write manifests to standard output.
fn init_tracing(args: &LogArgs) {
    let requested = match &args.log_level {
        Some(level) => Some(level.clone()),
        None => std::env::var(EnvFilter::DEFAULT_ENV).ok().filter(|v| !v.trim().is_empty()),
    };
    let parse = |text: &str| {
        let text =
            if text.contains("kube_client") { text.to_owned() } else { format!("{text},{KUBE_REQUEST_ERRORS_OFF}") };
        EnvFilter::try_new(text)
    };
    let filter = requested.as_deref().map_or_else(|| parse("info"), parse).unwrap_or_else(|e| {
        eprintln!("podmedic: ignoring the log filter {requested:?}: {e}");
        EnvFilter::new(format!("info,{KUBE_REQUEST_ERRORS_OFF}"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
}
