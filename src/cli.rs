//! The command line: `podmedic serve`, `podmedic fix`, `podmedic certs`.
//!
//! Every flag can also be set with an environment variable `PODMEDIC_*`, so a Deployment can
//! configure podmedic from a ConfigMap without rewriting its `args`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::audit::AuditArgs;
use crate::certs::CertsArgs;
use crate::fix::FixArgs;

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
    /// Against a live cluster: list what podmedic would change, and Jobs stuck on a sidecar.
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

pub use crate::cluster::NativeSidecarsMode;

/// Arguments of `podmedic serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address of the HTTPS webhook endpoint (`POST /mutate`).
    #[arg(long, env = "PODMEDIC_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,

    /// Address of the plain-HTTP endpoint serving /healthz, /readyz and /metrics.
    #[arg(long, env = "PODMEDIC_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    pub metrics_listen: SocketAddr,

    /// PEM certificate chain to serve (leaf first). Re-read every --tls-reload-interval, so a
    /// rotated Secret is picked up without a restart. Without --tls-cert and --tls-key podmedic
    /// makes an ephemeral CA and a certificate for localhost (see --ephemeral-ca-file).
    #[arg(long, env = "PODMEDIC_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 RSA or SEC1 EC).
    #[arg(long, env = "PODMEDIC_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// How often --tls-cert and --tls-key are re-read (e.g. `500ms`, `2s`, `1m`).
    #[arg(long, env = "PODMEDIC_TLS_RELOAD_INTERVAL", default_value = "2s", value_parser = parse_nonzero_duration)]
    pub tls_reload_interval: Duration,

    /// PEM CA bundle: when set, clients (the API server) must present a certificate signed by it.
    #[arg(long, env = "PODMEDIC_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,

    /// Policy file merged over the built-in policy (sidecar catalogue, defaults).
    #[arg(long, env = "PODMEDIC_POLICY")]
    pub policy: Option<PathBuf>,

    /// Whether sidecars may be moved to native sidecars: `auto` asks the cluster, `on` always,
    /// `off` never.
    #[arg(long, env = "PODMEDIC_NATIVE_SIDECARS", value_enum, default_value_t = NativeSidecarsMode::Auto)]
    pub native_sidecars: NativeSidecarsMode,

    /// Kubeconfig to reach the API server (Node and Namespace watches). Without it podmedic uses
    /// KUBECONFIG, ~/.kube/config or the in-cluster service account, and runs without a cluster
    /// when there is none.
    #[arg(long, env = "PODMEDIC_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Largest request body accepted, in bytes (suffixes Ki, Mi allowed). Larger bodies get 413.
    /// The default is above the API server's 3 MiB object limit since a review can carry both
    /// object and oldObject.
    #[arg(long, env = "PODMEDIC_MAX_BODY_BYTES", default_value = "7Mi", value_parser = parse_byte_size)]
    pub max_body_bytes: usize,

    /// Requests handled at once; excess requests get 503 immediately (the API server then applies
    /// the webhook's failurePolicy) instead of waiting in a queue.
    #[arg(long, env = "PODMEDIC_MAX_CONCURRENCY", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrency: u32,

    /// Time a new connection has, after its TLS handshake, to send the headers of its first
    /// request (HTTP/1.1 and HTTP/2); the connection is closed after it. Guards against clients
    /// that connect and send nothing, or drip their headers.
    #[arg(long, env = "PODMEDIC_HEADER_READ_TIMEOUT", default_value = "5s", value_parser = parse_nonzero_duration)]
    pub header_read_timeout: Duration,

    /// How long an HTTP/1.1 keep-alive connection may wait for its next request (and take to send
    /// its headers) before podmedic closes it. Keep it above the API server's own idle timeout
    /// (Go's 90 s), so that the API server closes idle connections first: a POST sent on a
    /// connection the server is closing at that moment is not retried by Go, and the object would
    /// pass without podmedic.
    #[arg(long, env = "PODMEDIC_IDLE_TIMEOUT", default_value = "120s", value_parser = parse_nonzero_duration)]
    pub idle_timeout: Duration,

    /// Most connections open at once; further connections are closed at once (a client that
    /// opens and abandons connections cannot exhaust memory or file descriptors).
    #[arg(long, env = "PODMEDIC_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: u32,

    /// Time a client has to send the request body, including handling; 408 after it.
    #[arg(long, env = "PODMEDIC_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_nonzero_duration)]
    pub request_timeout: Duration,

    /// Time a client has to complete the TLS handshake.
    #[arg(long, env = "PODMEDIC_TLS_HANDSHAKE_TIMEOUT", default_value = "5s", value_parser = parse_nonzero_duration)]
    pub tls_handshake_timeout: Duration,

    /// Longest time from SIGTERM/SIGINT to exit: in-flight requests that take longer are dropped.
    /// Keep it below the Pod's terminationGracePeriodSeconds.
    #[arg(long, env = "PODMEDIC_SHUTDOWN_TIMEOUT", default_value = "25s", value_parser = parse_nonzero_duration)]
    pub shutdown_timeout: Duration,

    /// Time between readiness turning false and the listener closing, so that the Service's
    /// endpoints stop sending traffic before podmedic stops accepting it. Counts against
    /// --shutdown-timeout.
    #[arg(long, env = "PODMEDIC_SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// Where the ephemeral CA certificate is written when no --tls-cert is given (default:
    /// `podmedic-ca.crt` in the temporary directory). Pass it to `curl --cacert`.
    #[arg(long, env = "PODMEDIC_EPHEMERAL_CA_FILE")]
    pub ephemeral_ca_file: Option<PathBuf>,
}

/// Parses `500ms`, `2s`, `1m`, `1h` (one number and one unit; a bare number means seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration such as 500ms, 2s or 1m"))?;
    let millis = match unit.trim() {
        "ms" => Some(number),
        "" | "s" => number.checked_mul(1_000),
        "m" => number.checked_mul(60_000),
        "h" => number.checked_mul(3_600_000),
        other => return Err(format!("unknown duration unit {other:?} in {text:?} (use ms, s, m or h)")),
    };
    millis.map(Duration::from_millis).ok_or_else(|| format!("{text:?} is too long"))
}

/// [`parse_duration`], refusing zero (a zero interval or timeout is never what was meant).
pub fn parse_nonzero_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err("the duration must be longer than zero".into()),
        d => Ok(d),
    }
}

/// Parses a byte count: `7340032`, `512Ki`, `7Mi`, `1Gi`.
pub fn parse_byte_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number.parse().map_err(|_| format!("{text:?} is not a size such as 7340032 or 7Mi"))?;
    let factor: usize = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} in {text:?} (use Ki, Mi or Gi)")),
    };
    match number.checked_mul(factor) {
        Some(0) => Err("the size must be at least 1 byte".into()),
        Some(n) => Ok(n),
        None => Err(format!("{text:?} is too large")),
    }
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
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("2 weeks").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_nonzero_duration("0s").is_err());
    }

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_byte_size("7Mi"), Ok(7 * 1024 * 1024));
        assert_eq!(parse_byte_size("512Ki"), Ok(512 * 1024));
        assert_eq!(parse_byte_size("1000"), Ok(1000));
        assert!(parse_byte_size("0").is_err());
        assert!(parse_byte_size("7MB").is_err());
    }

    #[test]
    fn serve_defaults_match_the_documented_ones() {
        let cli = Cli::try_parse_from(["podmedic", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else { panic!("not serve") };
        assert_eq!(args.listen.to_string(), "0.0.0.0:8443");
        assert_eq!(args.metrics_listen.to_string(), "0.0.0.0:8080");
        assert_eq!(args.max_body_bytes, 7 * 1024 * 1024);
        assert_eq!(args.native_sidecars, NativeSidecarsMode::Auto);
        assert_eq!(args.shutdown_timeout, Duration::from_secs(25));
        assert_eq!(cli.logging.log_format, LogFormat::Text);
    }

    #[test]
    fn a_certificate_needs_its_key() {
        assert!(Cli::try_parse_from(["podmedic", "serve", "--tls-cert", "c.pem"]).is_err());
        assert!(Cli::try_parse_from(["podmedic", "serve", "--tls-key", "k.pem"]).is_err());
        assert!(Cli::try_parse_from(["podmedic", "serve", "--tls-cert", "c.pem", "--tls-key", "k.pem"]).is_ok());
    }

    #[test]
    fn log_flags_go_before_or_after_the_subcommand() {
        let cli = Cli::try_parse_from(["podmedic", "serve", "--log-format", "json"]).unwrap();
        assert_eq!(cli.logging.log_format, LogFormat::Json);
        let cli = Cli::try_parse_from(["podmedic", "--log-format", "json", "serve"]).unwrap();
        assert_eq!(cli.logging.log_format, LogFormat::Json);
    }
}
