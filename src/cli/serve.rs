//! `podmedic serve`: the webhook's flags, converted into [`ServeConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::units::{parse_byte_size, parse_duration, parse_nonzero_duration};
use crate::cluster;
use crate::webhook::tls::CertFiles;
use crate::webhook::{CertificateSource, ServeConfig, ServerConfig, default_engine_threads, default_ephemeral_ca_file};

/// `--native-sidecars`: whether podmedic may move sidecars into `initContainers`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum NativeSidecarsMode {
    /// Decide from the API server's and every kubelet's version (assume available when there is
    /// no cluster to ask).
    #[default]
    Auto,
    /// Always move sidecars (you know every node runs Kubernetes 1.29 or newer).
    On,
    /// Never move sidecars.
    Off,
}

impl From<NativeSidecarsMode> for cluster::NativeSidecarsMode {
    fn from(mode: NativeSidecarsMode) -> Self {
        match mode {
            NativeSidecarsMode::Auto => cluster::NativeSidecarsMode::Auto,
            NativeSidecarsMode::On => cluster::NativeSidecarsMode::On,
            NativeSidecarsMode::Off => cluster::NativeSidecarsMode::Off,
        }
    }
}

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

    /// Serve an ephemeral certificate even in a Pod. Without --tls-cert podmedic refuses to start
    /// in a cluster (KUBERNETES_SERVICE_HOST set): no API server trusts a CA made at start-up.
    #[arg(long, env = "PODMEDIC_ALLOW_EPHEMERAL_CERTIFICATE")]
    pub allow_ephemeral_certificate: bool,

    /// How often --tls-cert and --tls-key are re-read (e.g. `500ms`, `2s`, `1m`).
    #[arg(long, env = "PODMEDIC_TLS_RELOAD_INTERVAL", default_value = "2s", value_parser = parse_nonzero_duration)]
    pub tls_reload_interval: Duration,

    /// PEM CA bundle: when set, clients (the API server) must present a certificate signed by it.
    /// Re-read every --tls-reload-interval; new connections use the new bundle.
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

    /// Watch the names (metadata only, never data) of the ConfigMaps, Secrets,
    /// PersistentVolumeClaims and ServiceAccounts of the namespaces labelled
    /// podmedic.io/enabled=true, so that workloads referring to one not seen yet are warned about.
    /// Needs list/watch on those kinds there: deploy/components/reference-checks.
    #[arg(long, env = "PODMEDIC_WATCH_REFERENCES")]
    pub watch_references: bool,

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

    /// How long a keep-alive connection may wait for its next request (and, on HTTP/1.1, take to
    /// send its headers) before podmedic closes it (HTTP/2: GOAWAY; it is also pinged every quarter
    /// of this, at most every 30 s). Keep it above the API server's own idle timeout (Go's 90 s),
    /// so that the API server closes idle connections first: a POST sent on a connection the
    /// server is closing at that moment is not retried by Go, and the object would pass without
    /// podmedic.
    #[arg(long, env = "PODMEDIC_IDLE_TIMEOUT", default_value = "120s", value_parser = parse_nonzero_duration)]
    pub idle_timeout: Duration,

    /// Most connections open at once; further connections are closed at once (a client that
    /// opens and abandons connections cannot exhaust memory or file descriptors).
    #[arg(long, env = "PODMEDIC_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: u32,

    /// Time a client has to send the request body (408 after it). No request is handled for
    /// longer: its answer comes by --admission-deadline or by this, whichever is first.
    #[arg(long, env = "PODMEDIC_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_nonzero_duration)]
    pub request_timeout: Duration,

    /// Time from a request's headers to its answer. An object whose answer is not ready by then
    /// (every engine thread busy, a body that arrived late) is allowed unchanged, with a warning,
    /// an error log and `podmedic_errors_total{reason="deadline"}`. Keep it below the webhook's
    /// timeoutSeconds (3 in deploy/), so that the API server gets this answer, not a timeout.
    #[arg(long, env = "PODMEDIC_ADMISSION_DEADLINE", default_value = "2s", value_parser = parse_nonzero_duration)]
    pub admission_deadline: Duration,

    /// Engine calls that run at once, each on a thread of its own off the async workers (default:
    /// one per available CPU, plus two). A call past its deadline keeps its thread until it returns.
    #[arg(long, env = "PODMEDIC_ENGINE_THREADS", value_parser = clap::value_parser!(u32).range(1..1025))]
    pub engine_threads: Option<u32>,

    /// Bodies up to this size run the engine on the async worker that read them (a few hundred
    /// microseconds at most), larger ones on an engine thread; 0 sends every body to the threads.
    #[arg(long, env = "PODMEDIC_ENGINE_INLINE_MAX_BYTES", default_value = "16Ki", value_parser = parse_inline_size)]
    pub engine_inline_max_bytes: usize,

    /// Memory that requests in flight may hold at once, across all requests: each body and up to
    /// 16 times it (at most 8Mi more) for the engine's view of it (suffixes Ki, Mi, Gi). A
    /// request that would exceed it gets 503 at once (the API server then applies the webhook's
    /// failurePolicy). Default: half of the container's memory limit (cgroup v2 memory.max or
    /// v1 memory.limit_in_bytes), or 512Mi without one.
    #[arg(long, env = "PODMEDIC_MEMORY_BUDGET", value_parser = parse_byte_size)]
    pub memory_budget: Option<usize>,

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

impl From<&ServeArgs> for ServeConfig {
    fn from(args: &ServeArgs) -> Self {
        let certificates = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => CertificateSource::Files {
                files: CertFiles { cert: cert.clone(), key: key.clone() },
                reload_interval: args.tls_reload_interval,
            },
            // clap makes the two flags require each other.
            _ => CertificateSource::Ephemeral {
                ca_file: args.ephemeral_ca_file.clone().unwrap_or_else(default_ephemeral_ca_file),
            },
        };
        let server = ServerConfig {
            listen: args.listen,
            metrics_listen: args.metrics_listen,
            certificates,
            client_ca: args.client_ca.clone(),
            max_body_bytes: args.max_body_bytes,
            max_concurrency: usize::try_from(args.max_concurrency).unwrap_or(usize::MAX),
            header_read_timeout: args.header_read_timeout,
            idle_timeout: args.idle_timeout,
            max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
            request_timeout: args.request_timeout,
            admission_deadline: args.admission_deadline,
            engine_threads: args.engine_threads.map_or_else(default_engine_threads, |n| n as usize),
            engine_inline_max_bytes: args.engine_inline_max_bytes,
            memory_budget: args.memory_budget,
            tls_handshake_timeout: args.tls_handshake_timeout,
            shutdown_timeout: args.shutdown_timeout,
            shutdown_delay: args.shutdown_delay,
        };
        ServeConfig {
            server,
            allow_ephemeral_certificate: args.allow_ephemeral_certificate,
            policy: args.policy.clone(),
            native_sidecars: args.native_sidecars.into(),
            kubeconfig: args.kubeconfig.clone(),
            references: if args.watch_references {
                cluster::ReferenceWatching::LabelledNamespaces
            } else {
                cluster::ReferenceWatching::Off
            },
        }
    }
}

/// A byte size for --engine-inline-max-bytes, where 0 is allowed (every body to the threads).
fn parse_inline_size(text: &str) -> Result<usize, String> {
    if text.trim() == "0" { Ok(0) } else { parse_byte_size(text) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command, LogFormat};
    use clap::Parser as _;

    #[test]
    fn the_mode_flag_takes_auto_on_off() {
        for (text, mode) in
            [("auto", NativeSidecarsMode::Auto), ("on", NativeSidecarsMode::On), ("off", NativeSidecarsMode::Off)]
        {
            assert_eq!(NativeSidecarsMode::from_str(text, false), Ok(mode));
        }
        assert_eq!(NativeSidecarsMode::default(), NativeSidecarsMode::Auto);
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
        assert_eq!(args.admission_deadline, Duration::from_secs(2));
        assert_eq!(args.engine_inline_max_bytes, crate::webhook::DEFAULT_INLINE_MAX_BYTES);
        assert!(!args.allow_ephemeral_certificate);
        let config = ServeConfig::from(&*args);
        assert_eq!(config.server.engine_threads, default_engine_threads());
        assert_eq!(config.server.memory_budget, None, "from the memory limit");
        assert_eq!(cli.logging.log_format, LogFormat::Text);
    }

    #[test]
    fn a_certificate_needs_its_key() {
        assert!(Cli::try_parse_from(["podmedic", "serve", "--tls-cert", "c.pem"]).is_err());
        assert!(Cli::try_parse_from(["podmedic", "serve", "--tls-key", "k.pem"]).is_err());
        assert!(Cli::try_parse_from(["podmedic", "serve", "--tls-cert", "c.pem", "--tls-key", "k.pem"]).is_ok());
    }

    #[test]
    fn the_flags_become_the_server_configuration() {
        let cli = Cli::try_parse_from([
            "podmedic",
            "serve",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--native-sidecars",
            "off",
            "--max-concurrency",
            "8",
            "--policy",
            "p.yaml",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else { panic!("not serve") };
        let config = ServeConfig::from(&*args);
        assert_eq!(
            config.server.certificates,
            CertificateSource::Files {
                files: CertFiles { cert: "c.pem".into(), key: "k.pem".into() },
                reload_interval: Duration::from_secs(2)
            }
        );
        assert_eq!(config.server.max_concurrency, 8);
        assert_eq!(config.native_sidecars, cluster::NativeSidecarsMode::Off);
        assert_eq!(config.policy.as_deref(), Some(std::path::Path::new("p.yaml")));
        assert_eq!(config.references, cluster::ReferenceWatching::Off, "off unless asked for");
        let cli = Cli::try_parse_from(["podmedic", "serve", "--watch-references"]).unwrap();
        let Command::Serve(watching) = cli.command else { panic!("not serve") };
        assert_eq!(ServeConfig::from(&*watching).references, cluster::ReferenceWatching::LabelledNamespaces);
        let ephemeral = ServeConfig::from(&ServeArgs { ephemeral_ca_file: None, tls_cert: None, ..*args });
        assert_eq!(
            ephemeral.server.certificates,
            CertificateSource::Ephemeral { ca_file: default_ephemeral_ca_file() }
        );
    }
}
