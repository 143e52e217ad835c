//! The Prometheus metrics podmedic exports on `/metrics` (text format, via prometheus-client).
//!
//! Few metrics, each answering a question an operator asks: is the webhook answering, on which
//! path (`/mutate`, `/warn`, `/converge`) and how fast (`admission_requests_total`,
//! `admission_duration_seconds`), what is it changing
//! (`changes_total`), did the certificate rotation work (`tls_reloads_total`), and what goes wrong
//! (`errors_total`). Label values come from fixed sets, except `kind`, which is bounded by the
//! webhook's rules.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use podmedic_engine::admission::Admission;

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    path: String,
    kind: String,
    operation: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    r#type: String,
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
        Metrics { registry, requests, duration, changes, tls_reloads, errors }
    }

    /// Counts one answered AdmissionReview: request, latency, changes, and the skip reason if any.
    pub fn observe_admission(&self, admission: &Admission, elapsed: Duration) {
        let labels = RequestLabels {
            path: admission.endpoint.label().to_owned(),
            kind: admission.kind.clone(),
            operation: admission.operation.to_owned(),
            result: admission.outcome.label().to_owned(),
        };
        self.requests.get_or_create(&labels).inc();
        self.duration.observe(elapsed.as_secs_f64());
        for change in &admission.changes {
            self.changes.get_or_create(&ChangeLabels { r#type: change.label().to_owned() }).inc();
        }
        if let Some((reason, _)) = &admission.skip_reason {
            self.error(reason);
        }
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

    /// The metrics in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
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
    }
}
