//! The Prometheus metrics podmedic exports on `/metrics` (text format, via prometheus-client).
//!
//! Few metrics, each answering a question an operator asks: is the webhook answering, on which
//! path (`/mutate`, `/warn`, `/converge`) and how fast (`admission_requests_total`,
//! `admission_duration_seconds`), what is it changing (`changes_total`), did the certificate
//! rotation work (`tls_reloads_total`) and when does the certificate served expire
//! (`tls_certificate_expiry_timestamp_seconds`), what goes wrong (`errors_total`), may it move sidecars
//! here and why not (`native_sidecars_available`), what is in flight (`request_bytes_in_flight`,
//! `engine_calls_in_flight`), and how the cluster watches fare (`cluster_*`). Every label value
//! comes from a fixed set: `kind` is one of the kinds podmedic knows or `other`, whatever a
//! request's body says.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use podmedic_engine::admission::{Admission, Endpoint, Outcome};

use super::budget::MemoryBudget;
use super::engine::EnginePool;
use crate::cluster::ClusterWatch;

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `kind` label values: the kinds podmedic reads, and `other` for anything a body names.
pub const KINDS: [&str; 8] = ["Pod", "Job", "CronJob", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "other"];

/// The `kind` label of a request's kind (it comes from the body: any text a client sends).
pub fn kind_label(kind: &str) -> &'static str {
    KINDS.iter().find(|k| **k == kind).copied().unwrap_or("other")
}

/// The `operation` label values (an AdmissionReview's operations).
const OPERATIONS: [&str; 4] = ["CREATE", "UPDATE", "DELETE", "CONNECT"];

/// The `result` label values, in the order of [`outcome_index`].
const OUTCOMES: usize = 5;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    path: &'static str,
    kind: &'static str,
    operation: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// Error reasons counted by the server itself (the others come from
/// [`podmedic_engine::admission::ReviewError::metric_label`] and the engine's skip reasons).
pub mod reason {
    /// The body was larger than `--max-body-bytes`.
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// The `Content-Type` was not `application/json`.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    /// A handler panicked (answered with 500).
    pub const HANDLER_PANIC: &str = "handler_panic";
    /// More than `--max-concurrency` requests at once (answered with 503).
    pub const OVERLOADED: &str = "overloaded";
    /// The body did not arrive within `--request-timeout` (answered with 408).
    pub const REQUEST_TIMEOUT: &str = "request_timeout";
    /// The connection failed while the body was read.
    pub const BODY_READ: &str = "body_read";
    /// The TLS handshake failed (bad client certificate, protocol mismatch, ...).
    pub const TLS_HANDSHAKE: &str = "tls_handshake";
    /// The TLS handshake did not finish within `--tls-handshake-timeout`.
    pub const TLS_HANDSHAKE_TIMEOUT: &str = "tls_handshake_timeout";
    /// A connection sent no complete request headers within the header read timeout.
    pub const HEADER_TIMEOUT: &str = "header_timeout";
    /// A connection was refused because `--max-connections` were open.
    pub const CONNECTION_LIMIT: &str = "connection_limit";
    /// A request was refused (503) because the memory budget for bodies was spent.
    pub const MEMORY_BUDGET: &str = "memory_budget";
    /// The engine did not answer by `--admission-deadline`: the object was allowed unchanged.
    pub const DEADLINE: &str = crate::webhook::engine::DEADLINE;
}

/// podmedic's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Histogram,
    changes: Family<ChangeLabels, Counter>,
    tls_reloads: Family<ResultLabels, Counter>,
    errors: Family<ReasonLabels, Counter>,
    /// The request counters by label set, found in `requests` once and kept: every label value
    /// comes from a fixed set, so an admission counts with an index instead of hashing four
    /// strings under the family's lock. A series appears in the output on first use, as before.
    request_counters: Vec<OnceLock<Counter>>,
    /// The change counters by [`ChangeKind`], likewise.
    change_counters: Vec<OnceLock<Counter>>,
    live: Arc<Live>,
    certificate_expiry: CertificateExpiry,
}

/// The `notAfter` of the serving certificate, exported once a certificate is served (before that
/// there is no series, so an alert on an expiry in the past cannot fire on a start-up's 0).
#[derive(Clone, Debug)]
struct CertificateExpiry(Arc<AtomicI64>);

impl CertificateExpiry {
    const UNKNOWN: i64 = i64::MIN;
}

impl Collector for CertificateExpiry {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let not_after = self.0.load(Ordering::Relaxed);
        if not_after == CertificateExpiry::UNKNOWN {
            return Ok(());
        }
        let gauge = ConstGauge::new(not_after);
        gauge.encode(encoder.encode_descriptor(
            "tls_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate in use, in seconds since the Unix epoch; follows every reload",
            None,
            gauge.metric_type(),
        )?)
    }
}

/// What is read at each scrape: the request pipeline's state and the cluster watch.
#[derive(Debug, Default)]
struct Live {
    pipeline: OnceLock<(MemoryBudget, EnginePool)>,
    cluster: OnceLock<Arc<ClusterWatch>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `podmedic_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("podmedic");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "AdmissionReviews answered, by path (mutate, warn, converge), object kind, operation and result \
             (patched, unchanged, warned, ignored, skipped)",
            requests.clone(),
        );
        // 100 µs doubling to about 3.3 s: the engine takes microseconds, a slow client seconds.
        let duration = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "admission_duration_seconds",
            "Time from the request headers to the response, for AdmissionReviews answered",
            duration.clone(),
        );
        let changes = Family::<ChangeLabels, Counter>::default();
        registry.register("changes", "Changes made to admitted objects, by type", changes.clone());
        let tls_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "tls_reloads",
            "Serving certificate reloads after the files changed, by result (success, error)",
            tls_reloads.clone(),
        );
        let errors = Family::<ReasonLabels, Counter>::default();
        registry.register("errors", "Requests and connections that went wrong, by reason", errors.clone());
        // Show the reload counters at zero, so an alert on `error` has a series from the start.
        for result in ["success", "error"] {
            let _ = tls_reloads.get_or_create(&ResultLabels { result: result.into() });
        }
        let certificate_expiry = CertificateExpiry(Arc::new(AtomicI64::new(CertificateExpiry::UNKNOWN)));
        registry.register_collector(Box::new(certificate_expiry.clone()));
        let live = Arc::new(Live::default());
        registry.register_collector(Box::new(live.clone()));
        let request_counters =
            (0..Endpoint::ALL.len() * KINDS.len() * OPERATIONS.len() * OUTCOMES).map(|_| OnceLock::new()).collect();
        let change_counters = (0..CHANGE_KINDS).map(|_| OnceLock::new()).collect();
        Metrics {
            registry,
            requests,
            duration,
            changes,
            tls_reloads,
            errors,
            request_counters,
            change_counters,
            live,
            certificate_expiry,
        }
    }

    /// Reports the budget's and the engine pool's state at each scrape (set once).
    pub fn watch_pipeline(&self, budget: MemoryBudget, engine: EnginePool) {
        let _ = self.live.pipeline.set((budget, engine));
    }

    /// Reports the cluster watch's capability and counters at each scrape (set once).
    pub fn watch_cluster(&self, cluster: Arc<ClusterWatch>) {
        let _ = self.live.cluster.set(cluster);
    }

    /// Counts one answered AdmissionReview: request, latency, changes, and the skip reason if any.
    pub fn observe_admission(&self, admission: &Admission, elapsed: Duration) {
        self.count_request(admission);
        self.duration.observe(elapsed.as_secs_f64());
        for change in &admission.changes {
            let labels = || ChangeLabels { r#type: change.label() };
            match self.change_counters.get(*change as usize) {
                Some(slot) => slot.get_or_init(|| self.changes.get_or_create(&labels()).clone()).inc(),
                None => self.changes.get_or_create(&labels()).inc(),
            };
        }
        if let Some((reason, _)) = &admission.skip_reason {
            self.error(reason);
        }
    }

    /// Counts `admission` in its request counter (see `request_counters`).
    fn count_request(&self, admission: &Admission) {
        let path = Endpoint::ALL.iter().position(|e| *e == admission.endpoint).unwrap_or(0);
        let kind = KINDS.iter().position(|k| *k == admission.kind).unwrap_or(KINDS.len() - 1);
        let labels = || RequestLabels {
            path: admission.endpoint.label(),
            kind: KINDS[kind],
            operation: admission.operation,
            result: admission.outcome.label(),
        };
        let slot = OPERATIONS.iter().position(|o| *o == admission.operation).and_then(|operation| {
            let set = ((path * KINDS.len() + kind) * OPERATIONS.len() + operation) * OUTCOMES;
            self.request_counters.get(set + outcome_index(admission.outcome))
        });
        match slot {
            Some(slot) => slot.get_or_init(|| self.requests.get_or_create(&labels()).clone()).inc(),
            None => self.requests.get_or_create(&labels()).inc(),
        };
    }

    /// Counts one error with the given reason.
    pub fn error(&self, reason: &str) {
        self.errors.get_or_create(&ReasonLabels { reason: reason.to_owned() }).inc();
    }

    /// Counts one certificate reload attempt.
    pub fn tls_reload(&self, succeeded: bool) {
        let result = if succeeded { "success" } else { "error" };
        self.tls_reloads.get_or_create(&ResultLabels { result: result.to_owned() }).inc();
    }

    /// Records the `notAfter` (Unix seconds) of the certificate now served: at start and after each
    /// reload. `None` (a certificate that cannot be parsed, which rustls would not serve) changes nothing.
    pub fn tls_certificate_served(&self, not_after: Option<i64>) {
        if let Some(at) = not_after {
            self.certificate_expiry.0.store(at, Ordering::Relaxed);
        }
    }

    /// The metrics in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some((budget, engine)) = self.pipeline.get() {
            gauge(&mut encoder, "request_bytes_in_flight", "Bytes of request bodies reserved now", budget.in_flight())?;
            gauge(
                &mut encoder,
                "request_bytes_budget",
                "Bytes of request bodies that may be in flight",
                budget.total(),
            )?;
            gauge(&mut encoder, "engine_calls_in_flight", "Engine calls running off the async workers", engine.busy())?;
        }
        let Some(cluster) = self.cluster.get() else { return Ok(()) };
        let reason = cluster.capability_reason();
        let mut family = encoder.encode_descriptor(
            "native_sidecars_available",
            "1 when podmedic moves sidecars; reason: available, forced_on, no_cluster, forced_off, old_apiserver, \
             old_kubelet or unknown",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(reason.is_available()))
            .encode(family.encode_family(&[("reason", reason.label())])?)?;

        let c = cluster.counters();
        let read = |counter: &std::sync::atomic::AtomicU64| counter.load(std::sync::atomic::Ordering::Relaxed);
        let mut family = encoder.encode_descriptor(
            "cluster_watch_errors",
            "Failed lists and watches of the API server, by what was read (each is retried with backoff)",
            None,
            MetricType::Counter,
        )?;
        for (watch, value) in [
            ("nodes", read(&c.node_watch_errors)),
            ("namespaces", read(&c.namespace_watch_errors)),
            ("api_server_version", read(&c.api_server_version_errors)),
        ] {
            ConstCounter::new(value).encode(family.encode_family(&[("watch", watch)])?)?;
        }
        let mut family = encoder.encode_descriptor(
            "cluster_events",
            "Node and Namespace changes received from the watches",
            None,
            MetricType::Counter,
        )?;
        for (kind, value) in [("node", read(&c.node_events)), ("namespace", read(&c.namespace_events))] {
            ConstCounter::new(value).encode(family.encode_family(&[("kind", kind)])?)?;
        }
        counter(
            &mut encoder,
            "namespace_annotation_problems",
            "Namespace annotation values podmedic ignored or corrected (the log says which)",
            read(&c.namespace_annotation_problems),
        )?;
        counter(
            &mut encoder,
            "native_sidecars_changes",
            "Times the native-sidecar capability changed after it was first decided",
            read(&c.capability_changes),
        )
    }
}

/// The position of `outcome` among the `result` label values.
fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Patched => 0,
        Outcome::Unchanged => 1,
        Outcome::Warned => 2,
        Outcome::Ignored => 3,
        Outcome::Skipped => 4,
    }
}

/// Room for every [`ChangeKind`] (eight today); a kind beyond it is counted through the family.
const CHANGE_KINDS: usize = 16;

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: usize) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use podmedic_engine::ChangeKind;
    use podmedic_engine::admission::{Endpoint, Outcome};

    #[test]
    fn an_admission_shows_in_the_text_output() {
        let metrics = Metrics::new();
        let admission = Admission {
            body: Vec::new(),
            uid: "u".into(),
            kind: "Pod".into(),
            namespace: "ns".into(),
            name: "p".into(),
            operation: "CREATE",
            endpoint: Endpoint::Mutate,
            dry_run: false,
            outcome: Outcome::Patched,
            changes: vec![ChangeKind::SidecarMoved, ChangeKind::ProbeAdded],
            warnings: 0,
            skip_reason: None,
        };
        metrics.observe_admission(&admission, Duration::from_micros(250));
        metrics.error(reason::OVERLOADED);
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"podmedic_admission_requests_total{path="mutate",kind="Pod",operation="CREATE",result="patched"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"podmedic_changes_total{type="sidecar_moved"} 1"#), "{text}");
        assert!(text.contains(r#"podmedic_admission_duration_seconds_bucket{le="0.0001"} 0"#), "{text}");
        assert!(text.contains(r#"podmedic_admission_duration_seconds_bucket{le="0.0004"} 1"#), "{text}");
        assert!(text.contains(r#"podmedic_errors_total{reason="overloaded"} 1"#), "{text}");
        assert!(text.contains(r#"podmedic_tls_reloads_total{result="error"} 0"#), "{text}");
        // No certificate served yet: no expiry series (an alert must not see a 0 as expired).
        assert!(!text.contains("tls_certificate_expiry"), "{text}");
        metrics.tls_certificate_served(Some(1_900_000_000));
        metrics.tls_certificate_served(None);
        let text = metrics.encode();
        assert!(text.contains("# TYPE podmedic_tls_certificate_expiry_timestamp_seconds gauge"), "{text}");
        assert!(text.contains("podmedic_tls_certificate_expiry_timestamp_seconds 1900000000\n"), "{text}");
    }
}
