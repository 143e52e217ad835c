//! `podmedic fix`: the engine offline, on YAML or JSON files.

use std::path::PathBuf;

/// Arguments of `podmedic fix`.
#[derive(Debug, Clone, clap::Args)]
pub struct FixArgs {
    /// Files to read (YAML or JSON, several documents each); `-` or nothing reads standard input.
    pub files: Vec<PathBuf>,
}

/// Runs `podmedic fix`.
pub fn run(args: &FixArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("podmedic fix is not wired yet ({} files)", args.files.len())
}
