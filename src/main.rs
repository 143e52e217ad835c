//! The `podmedic` binary: parse the command line, set up logging, run the subcommand.

use std::process::ExitCode;
use std::time::Duration;

use podmedic::cli::{Cli, Command, LogArgs, LogFormat};
use podmedic::webhook::{self, ServeConfig};
use podmedic::{commands, logging};

/// jemalloc rather than the C library's malloc: after a burst it returns the memory (glibc kept
/// 25 MiB of a 28 MiB peak), and it spends fewer instructions per allocation (BENCHMARKS.md).
/// Not on musl (the image and the release binaries), where it does not build (see Cargo.toml).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc"), not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    let _flush_logs_at_exit = init_tracing(&cli.logging, &cli.command);
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

/// Logs go to standard error; `serve` writes INFO lines in batches (`podmedic::logging`).
fn init_tracing(args: &LogArgs, command: &Command) -> Option<logging::FlushOnDrop> {
    let serving = matches!(command, Command::Serve(_));
    logging::init(args.log_level.as_deref(), args.log_format == LogFormat::Json, serving)
}
