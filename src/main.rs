//! The `podmedic` binary: parse the command line, set up logging, run the subcommand.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use podmedic::cli::{Cli, Command, LogArgs, LogFormat};
use podmedic::commands;
use podmedic::webhook::{self, ServeConfig};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
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

/// Logs go to standard error, so `podmedic fix` can write manifests to standard output.
fn init_tracing(args: &LogArgs) {
    let filter = match &args.log_level {
        Some(level) => EnvFilter::try_new(level).unwrap_or_else(|e| {
            eprintln!("podmedic: ignoring --log-level {level:?}: {e}");
            EnvFilter::new("info")
        }),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
}
