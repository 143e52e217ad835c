//! The command line: `podmedic serve`, `podmedic fix`, `podmedic certs`, `podmedic audit`.
//!
//! Every clap type lives here, and each subcommand's arguments convert into the plain
//! configuration of the module that runs it ([`crate::webhook::ServeConfig`],
//! [`crate::commands::fix::FixConfig`], ...), so nothing below this module depends on clap.
//!
//! Every flag can also be set with an environment variable `PODMEDIC_*`, so a Deployment can
//! configure podmedic from a ConfigMap without rewriting its `args`.

mod audit;
mod certs;
mod fix;
mod serve;
mod units;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use audit::AuditArgs;
pub use certs::CertsArgs;
pub use fix::FixArgs;
pub use serve::{NativeSidecarsMode, ServeArgs};
pub use units::{parse_byte_size, parse_duration, parse_nonzero_duration, parse_validity};

/// podmedic: turns the long-running sidecars of Jobs into native sidecars and prevents common
/// causes of Pending and CrashLoopBackOff.
#[derive(Debug, Parser)]
#[command(name = "podmedic", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Logging options, accepted before or after the subcommand.
    #[command(flatten)]
    pub logging: LogArgs,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the admission webhook (HTTPS), with health and metrics on a separate plain-HTTP port.
    Serve(Box<ServeArgs>),
    /// Apply podmedic's fixes to manifests offline and print the result.
    Fix(FixArgs),
    /// Make a CA and a serving certificate for the webhook's Service.
    Certs(CertsArgs),
    /// Against a live cluster: list what podmedic would change, Jobs stuck on a sidecar, and why
    /// each Pod that is not running is not (Pending, CrashLoopBackOff, ImagePullBackOff, ...).
    Audit(AuditArgs),
}

/// How logs are written.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format: `text` for people, `json` for log collectors.
    #[arg(long, env = "PODMEDIC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Log filter, for example `info` or `podmedic=debug,info` (tracing EnvFilter syntax).
    /// When not given, RUST_LOG is used, and `info` when that is not set either.
    #[arg(long, env = "PODMEDIC_LOG_LEVEL", global = true)]
    pub log_level: Option<String>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn log_flags_go_before_or_after_the_subcommand() {
        let cli = Cli::try_parse_from(["podmedic", "serve", "--log-format", "json"]).unwrap();
        assert_eq!(cli.logging.log_format, LogFormat::Json);
        let cli = Cli::try_parse_from(["podmedic", "--log-format", "json", "serve"]).unwrap();
        assert_eq!(cli.logging.log_format, LogFormat::Json);
    }
}
