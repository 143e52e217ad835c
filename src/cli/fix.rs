//! `podmedic fix`: its flags, converted into [`FixConfig`].

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::commands::fix::{self, FixConfig};
use crate::commands::report;

/// Output format of `podmedic fix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// YAML documents separated by `---`.
    Yaml,
    /// JSON: the object, or a `v1` `List` when there are several.
    Json,
}

impl From<OutputFormat> for fix::OutputFormat {
    fn from(format: OutputFormat) -> Self {
        match format {
            OutputFormat::Yaml => fix::OutputFormat::Yaml,
            OutputFormat::Json => fix::OutputFormat::Json,
        }
    }
}

/// How `podmedic fix --check` reports what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// `file:line: level: rule: Kind/name: message`, one line per finding.
    Text,
    /// One JSON document: every object with its findings.
    Json,
    /// SARIF 2.1.0 for GitHub code scanning (results at the container's line).
    Sarif,
    /// JUnit XML: one test case per object, failing when podmedic would change it.
    Junit,
}

impl From<ReportFormat> for report::ReportFormat {
    fn from(format: ReportFormat) -> Self {
        match format {
            ReportFormat::Text => report::ReportFormat::Text,
            ReportFormat::Json => report::ReportFormat::Json,
            ReportFormat::Sarif => report::ReportFormat::Sarif,
            ReportFormat::Junit => report::ReportFormat::Junit,
        }
    }
}

/// Arguments of `podmedic fix`.
#[derive(Debug, Clone, Args)]
pub struct FixArgs {
    /// Files or directories to read (YAML or JSON, several documents each, `kind: List` too;
    /// directories are searched recursively for .yaml, .yml and .json files, in name order);
    /// `-` or nothing reads standard input.
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "yaml", env = "PODMEDIC_FIX_OUTPUT")]
    pub output: OutputFormat,
    /// Print a unified diff of what would change instead of the objects.
    #[arg(long)]
    pub diff: bool,
    /// Write nothing; exit 1 when anything would change, 0 otherwise (for CI pipelines).
    #[arg(long)]
    pub check: bool,
    /// With `--check`: how to report what would change and the warnings, on standard output.
    #[arg(long, value_enum, default_value = "text", requires = "check", conflicts_with = "diff")]
    pub report: ReportFormat,
    /// The Kubernetes version of the target cluster (`1.28` shows what an older cluster gets).
    /// Native sidecars need 1.29 or newer on the API server and every kubelet.
    #[arg(long, value_name = "MAJOR.MINOR", env = "PODMEDIC_KUBERNETES_VERSION")]
    pub kubernetes_version: Option<String>,
    /// A policy file merged over the built-in policy.
    #[arg(long, value_name = "FILE", env = "PODMEDIC_POLICY")]
    pub policy: Option<PathBuf>,
    /// Also print notes: what podmedic saw and deliberately left alone.
    #[arg(short, long)]
    pub verbose: bool,
}

impl From<FixArgs> for FixConfig {
    fn from(args: FixArgs) -> Self {
        FixConfig {
            files: args.files,
            output: args.output.into(),
            diff: args.diff,
            check: args.check,
            report: args.report.into(),
            kubernetes_version: args.kubernetes_version,
            policy: args.policy,
            verbose: args.verbose,
        }
    }
}
