//! `podmedic audit`: its flags, converted into [`AuditConfig`].

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::commands::audit::{self, AuditConfig};

/// Arguments of `podmedic audit`.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Namespace to audit (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// Audit every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Policy file merged over the built-in policy (the same file `podmedic serve` uses).
    #[arg(long, env = "PODMEDIC_POLICY")]
    pub policy: Option<PathBuf>,
    /// Kubeconfig to use (default: `KUBECONFIG`, `~/.kube/config`, or the in-cluster account).
    #[arg(long, env = "PODMEDIC_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}

/// How `podmedic audit` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// One JSON document for scripts.
    Json,
    /// SARIF 2.1.0 (results with logical locations: namespace, kind, name).
    Sarif,
    /// JUnit XML: one test case per object the audit names.
    Junit,
}

impl From<OutputFormat> for audit::OutputFormat {
    fn from(format: OutputFormat) -> Self {
        match format {
            OutputFormat::Table => audit::OutputFormat::Table,
            OutputFormat::Json => audit::OutputFormat::Json,
            OutputFormat::Sarif => audit::OutputFormat::Sarif,
            OutputFormat::Junit => audit::OutputFormat::Junit,
        }
    }
}

impl From<AuditArgs> for AuditConfig {
    fn from(args: AuditArgs) -> Self {
        AuditConfig {
            namespace: args.namespace,
            all_namespaces: args.all_namespaces,
            output: args.output.into(),
            policy: args.policy,
            kubeconfig: args.kubeconfig,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_like_kubectl() {
        use clap::Parser as _;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            audit: AuditArgs,
        }
        let all = Cli::try_parse_from(["audit", "-A", "-o", "json"]).unwrap().audit;
        assert!(all.all_namespaces && all.namespace.is_none());
        assert_eq!(all.output, OutputFormat::Json);
        let one = Cli::try_parse_from(["audit", "-n", "payments", "--kubeconfig", "/tmp/k"]).unwrap().audit;
        assert_eq!(one.namespace.as_deref(), Some("payments"));
        assert_eq!(one.output, OutputFormat::Table);
        assert_eq!(one.kubeconfig.as_deref(), Some(std::path::Path::new("/tmp/k")));
        assert!(Cli::try_parse_from(["audit", "-n", "a", "-A"]).is_err());
        assert!(Cli::try_parse_from(["audit", "-o", "yaml"]).is_err());
        let sarif = Cli::try_parse_from(["audit", "-A", "-o", "sarif"]).unwrap().audit;
        assert_eq!(AuditConfig::from(sarif).output, audit::OutputFormat::Sarif);
        assert_eq!(Cli::try_parse_from(["audit", "-o", "junit"]).unwrap().audit.output, OutputFormat::Junit);
        let config = AuditConfig::from(all);
        assert!(config.all_namespaces && config.output == audit::OutputFormat::Json);
    }
}
