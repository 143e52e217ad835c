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

use std::ffi::OsString;
use std::path::Path;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

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

/// The name kubectl plugins go by: kubectl runs an executable `kubectl-podmedic` on `PATH` for
/// `kubectl podmedic ...`, passing the words after `podmedic`.
pub const KUBECTL_PLUGIN: &str = "kubectl-podmedic";

impl Cli {
    /// Parses the process's arguments, exiting with clap's message on an error or `--help`.
    pub fn parse_args() -> Cli {
        let args: Vec<OsString> = std::env::args_os().collect();
        let invoked_as = args.first().cloned().unwrap_or_default();
        let matches = command_for(Path::new(&invoked_as)).get_matches_from(args);
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }
}

/// The command line as the binary was invoked: when its file name is `kubectl-podmedic` (a link
/// or a copy, as krew installs plugins), help and usage say `kubectl podmedic`, and `serve`, which
/// runs in the cluster and not beside kubectl, is hidden (it still works).
pub fn command_for(invoked_as: &Path) -> clap::Command {
    let name = invoked_as.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let command = Cli::command();
    if name.strip_suffix(".exe").unwrap_or(name) == KUBECTL_PLUGIN {
        command.bin_name("kubectl podmedic").display_name("kubectl podmedic").mut_subcommand("serve", |s| s.hide(true))
    } else {
        command
    }
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
    fn as_a_kubectl_plugin_help_says_kubectl_podmedic() {
        let help = |argv0: &str, args: &[&str]| {
            let mut command = command_for(Path::new(argv0));
            let err = command.try_get_matches_from_mut([argv0].iter().chain(args)).unwrap_err();
            err.render().to_string()
        };
        let plugin = help("/home/me/.krew/bin/kubectl-podmedic", &["--help"]);
        assert!(plugin.contains("Usage: kubectl podmedic [OPTIONS] <COMMAND>"), "{plugin}");
        assert!(!plugin.contains("  serve "), "serve is hidden from kubectl users: {plugin}");
        let fix = help("kubectl-podmedic", &["fix", "--help"]);
        assert!(fix.contains("Usage: kubectl podmedic fix [OPTIONS]"), "{fix}");
        let plain = help("/usr/local/bin/podmedic", &["--help"]);
        assert!(plain.contains("Usage: podmedic [OPTIONS] <COMMAND>") && plain.contains("  serve "), "{plain}");
        // The hidden subcommand still parses.
        let matches = command_for(Path::new("kubectl-podmedic")).try_get_matches_from(["kubectl-podmedic", "serve"]);
        assert!(matches.is_ok());
    }

    #[test]
    fn log_flags_go_before_or_after_the_subcommand() {
        let cli = Cli::try_parse_from(["podmedic", "serve", "--log-format", "json"]).unwrap();
        assert_eq!(cli.logging.log_format, LogFormat::Json);
        let cli = Cli::try_parse_from(["podmedic", "--log-format", "json", "serve"]).unwrap();
        assert_eq!(cli.logging.log_format, LogFormat::Json);
    }
}
