//! The webhook's HTTP surface: `POST /mutate`, `/warn` and `/converge` decode nothing themselves
//! and hand the body to the engine's `admit_at` with the path that received it (the engine
//! decides what each path does), then log, count and encode; plus the plain-HTTP health and
//! metrics.
//!
//! A request's life: its body's [`cost_of`] is reserved against the [`MemoryBudget`] (503 at once
//! when spent), read within `--request-timeout` (408) and `--max-body-bytes` (413), handed to the
//! [`EnginePool`] and answered by `--admission-deadline` (allowed unchanged after it). A request
//! answered before its body was read gets its answer at once, and the rest of the body is read
//! and discarded behind it (bounded), so that the client receives the answer rather than a
//! connection reset.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use http_body_util::BodyExt;
use podmedic_engine::admission::{Endpoint, Environment};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower_http::catch_panic::{CatchPanicLayer, ResponseForPanic};

use super::admission_log::log_admission;
use super::budget::{MemoryBudget, Reservation, cost_of};
use super::engine::EnginePool;
use super::metrics::{self, Metrics, reason};
use super::readiness::Readiness;

/// The default `--admission-deadline`: below the shipped webhook's `timeoutSeconds: 3`, leaving
/// the API server a second for the connection and the answer's way back.
pub const DEFAULT_ADMISSION_DEADLINE: Duration = Duration::from_secs(2);

/// The default `--engine-inline-max-bytes`: a body this small costs the engine at most a few
/// hundred microseconds, less than the hand-over to a blocking thread saves (BENCHMARKS.md).
pub const DEFAULT_INLINE_MAX_BYTES: usize = 16 << 10;

/// Most bytes of a body read and discarded after an early answer (413, 415, 503).
const DRAIN_LIMIT: usize = 16 << 20;
/// Longest time spent reading and discarding them.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// What the webhook handlers share.
#[derive(Clone)]
pub struct WebhookState {
    /// Policy and cluster capabilities.
    pub environment: Environment,
    /// Where requests are counted.
    pub metrics: Arc<Metrics>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Time to receive the body; also the longest a request is handled.
    pub request_timeout: Duration,
    /// Requests handled at once before shedding.
    pub max_concurrency: usize,
    /// Time from the request headers to the answer; after it the object is allowed unchanged.
    pub admission_deadline: Duration,
    /// Where the engine runs.
    pub engine: EnginePool,
    /// Bytes of bodies in flight.
    pub budget: MemoryBudget,
}

impl WebhookState {
    /// State with the defaults of `podmedic serve` (7 MiB, 10 s, 512 requests at once, a 2 s
    /// deadline, an engine thread per CPU and two more), and the budget of a process without a
    /// memory limit.
    pub fn new(environment: Environment, metrics: Arc<Metrics>) -> Self {
        WebhookState {
            environment,
            metrics,
            max_body_bytes: 7 << 20,
            request_timeout: Duration::from_secs(10),
            max_concurrency: 512,
            admission_deadline: DEFAULT_ADMISSION_DEADLINE,
            engine: EnginePool::new(default_engine_threads(), DEFAULT_INLINE_MAX_BYTES),
            budget: MemoryBudget::for_memory_limit(None),
        }
    }
}

/// The default `--engine-threads`: one per CPU available (the cgroup's quota counts) and two more,
/// so that a call that outlives its deadline (it cannot be cancelled) does not leave a CPU idle.
pub fn default_engine_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get) + 2
}

/// The webhook's HTTP surface: `POST /mutate`, `/warn` and `/converge` (see
/// [`Endpoint`]), with panics caught and excess load shed. The three paths share one limit of
/// requests in flight.
pub fn router(state: WebhookState) -> Router {
    let metrics = state.metrics.clone();
    let slots = Arc::new(Semaphore::new(state.max_concurrency.min(Semaphore::MAX_PERMITS)));
    let mut router = Router::new();
    for endpoint in Endpoint::ALL {
        router = router.route(endpoint.path(), admission_route(endpoint, &state, &slots));
    }
    with_panic_guard(router.fallback(not_found), metrics)
}

/// `POST <path>` for one endpoint, holding one of the shared `slots` while it runs.
fn admission_route(endpoint: Endpoint, state: &WebhookState, slots: &Arc<Semaphore>) -> MethodRouter {
    let slots = slots.clone();
    post(move |State(state): State<WebhookState>, request: Request| {
        let slots = slots.clone();
        async move {
            // Shedding rather than queueing: a request that waits here is one the API server may
            // already have given up on, and its failurePolicy is the better answer under overload.
            // One limit for every path: they share the engine and the CPU. (A permit taken here
            // rather than tower's concurrency-limit and load-shed layers: those clone a semaphore
            // future and box the handler per request; BENCHMARKS.md.)
            let Ok(_slot) = slots.try_acquire() else {
                state.metrics.error(reason::OVERLOADED);
                return answer_early(
                    request.into_body(),
                    json_error(StatusCode::SERVICE_UNAVAILABLE, "podmedic is overloaded, try again"),
                );
            };
            review(endpoint, state, request).await
        }
    })
    .fallback(method_not_allowed)
    .with_state(state.clone())
}

/// Turns a panic in any handler of `router` into a 500 and a metric instead of a dropped
/// connection.
fn with_panic_guard(router: Router, metrics: Arc<Metrics>) -> Router {
    router.layer(CatchPanicLayer::custom(PanicResponse { metrics }))
}

#[derive(Clone)]
struct PanicResponse {
    metrics: Arc<Metrics>,
}

impl ResponseForPanic for PanicResponse {
    type ResponseBody = Body;

    fn response_for_panic(&mut self, err: Box<dyn std::any::Any + Send + 'static>) -> Response {
        let detail = err
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| err.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        tracing::error!(panic = %detail, "a request handler panicked");
        self.metrics.error(reason::HANDLER_PANIC);
        json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error in podmedic")
    }
}

/// `POST /mutate`, `/warn` or `/converge`: an AdmissionReview in, an AdmissionReview out.
async fn review(endpoint: Endpoint, state: WebhookState, request: Request) -> Response {
    let started = Instant::now();
    let metrics = &state.metrics;
    let (parts, mut body) = request.into_parts();
    if !is_json(&parts.headers) {
        metrics.error(reason::UNSUPPORTED_MEDIA_TYPE);
        return answer_early(
            body,
            json_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "the Content-Type must be application/json"),
        );
    }
    let too_large = || {
        metrics.error(reason::PAYLOAD_TOO_LARGE);
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is larger than the limit of {} bytes", state.max_body_bytes),
        )
    };
    let over_budget = || {
        metrics.error(reason::MEMORY_BUDGET);
        tracing::warn!(budget = state.budget.total(), "refused a request: the memory budget for bodies is spent");
        json_error(StatusCode::SERVICE_UNAVAILABLE, "podmedic is over its memory budget for request bodies, try again")
    };
    let declared = content_length(&parts.headers);
    let mut reservation = state.budget.reservation();
    match declared {
        Some(len) if len > state.max_body_bytes as u64 => {
            return answer_early(body, too_large());
        }
        Some(len) if !reservation.grow(cost_of(usize::try_from(len).unwrap_or(usize::MAX))) => {
            return answer_early(body, over_budget());
        }
        _ => {}
    }
    let declared = declared.and_then(|len| usize::try_from(len).ok());
    let read = read_body(&mut body, &mut reservation, state.max_body_bytes, declared);
    let body = match tokio::time::timeout_at(started + state.request_timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(BodyError::TooLarge)) => {
            return answer_early(body, too_large());
        }
        Ok(Err(BodyError::OverBudget)) => {
            return answer_early(body, over_budget());
        }
        Ok(Err(BodyError::Read(e))) => {
            metrics.error(reason::BODY_READ);
            return json_error(StatusCode::BAD_REQUEST, &format!("cannot read the request body: {e}"));
        }
        Err(_) => {
            metrics.error(reason::REQUEST_TIMEOUT);
            return json_error(StatusCode::REQUEST_TIMEOUT, "the request body did not arrive in time");
        }
    };

    let answer_by = started + state.admission_deadline.min(state.request_timeout);
    let limit = state.admission_deadline.min(state.request_timeout);
    match state.engine.admit(endpoint, body, &state.environment, reservation, answer_by, limit).await {
        Ok(admission) => {
            let elapsed = started.elapsed();
            log_admission(&admission, elapsed);
            metrics.observe_admission(&admission, elapsed);
            ([(header::CONTENT_TYPE, "application/json")], admission.body).into_response()
        }
        Err(e) => {
            metrics.error(e.metric_label());
            tracing::warn!(path = endpoint.path(), error = %e, "refused a body that is not an AdmissionReview");
            json_error(StatusCode::BAD_REQUEST, &e.to_string())
        }
    }
}

/// Why a body could not be read.
enum BodyError {
    /// Longer than `--max-body-bytes`.
    TooLarge,
    /// The memory budget could not hold it (bodies without a `Content-Length`).
    OverBudget,
    /// The connection failed.
    Read(axum::Error),
}

/// Reads the whole body, at most `max` bytes. Without a `declared` length (already reserved), the
/// cost of what has arrived is reserved against the budget chunk by chunk.
async fn read_body(
    body: &mut Body,
    reservation: &mut Reservation,
    max: usize,
    declared: Option<usize>,
) -> Result<Bytes, BodyError> {
    let mut collected = Vec::with_capacity(declared.unwrap_or(0).min(max));
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(BodyError::Read)?.into_data() else { continue };
        if collected.len() + data.len() > max {
            return Err(BodyError::TooLarge);
        }
        let more = cost_of(collected.len() + data.len()).saturating_sub(reservation.bytes());
        if declared.is_none() && !reservation.grow(more) {
            return Err(BodyError::OverBudget);
        }
        collected.extend_from_slice(&data);
    }
    Ok(Bytes::from(collected))
}

/// Answers a request before its body was read: the answer goes out at once, and what is left of
/// the body is read and discarded behind it (see [`drain`]), so that the client has the answer
/// before the connection closes.
fn answer_early(body: Body, response: Response) -> Response {
    tokio::spawn(drain(body));
    response
}

/// Reads and discards what is left of a body answered early (at most [`DRAIN_LIMIT`] bytes, for
/// at most [`DRAIN_TIME`]). Closing a connection with unread data makes the kernel send a reset,
/// which can reach the client before it has read the answer; Go's net/http drains for the same
/// reason. A body larger than that is cut off as before.
async fn drain(mut body: Body) {
    let discard = async {
        let mut read = 0usize;
        while read < DRAIN_LIMIT {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}

/// `application/json`, with or without parameters such as `charset=utf-8`.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case("application/json"))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

async fn method_not_allowed() -> Response {
    let mut response = json_error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
    response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("POST"));
    response
}

async fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "not found; the webhook's paths are POST /mutate, /warn and /converge")
}

/// `{"error": message}` with `status`.
fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// The plain-HTTP surface: `/healthz`, `/readyz`, `/metrics`.
pub fn health_router(readiness: Readiness, metrics: Arc<Metrics>) -> Router {
    Router::new()
        // Liveness: the process answers. Nothing podmedic can recover from by restarting is checked.
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move {
                    match readiness.check() {
                        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
                        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], metrics.encode()) }
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;
    use podmedic_engine::Policy;
    use tower::ServiceExt;

    fn state() -> WebhookState {
        WebhookState::new(Environment::standalone(Arc::new(Policy::builtin())), Arc::new(Metrics::new()))
    }

    fn request(method: Method, content_type: Option<&str>, body: &'static str) -> Request {
        let mut builder = Request::builder().method(method).uri("/mutate");
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        builder.body(Body::from(body)).unwrap()
    }

    async fn error_of(response: Response) -> String {
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        json["error"].as_str().unwrap().to_owned()
    }

    #[test]
    fn json_content_types() {
        let with = |ct: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            is_json(&headers)
        };
        assert!(with("application/json"));
        assert!(with("application/json; charset=utf-8"));
        assert!(with("Application/JSON"));
        assert!(!with("application/yaml"));
        assert!(!with("application/jsonx"));
        assert!(!with("text/plain; application/json"));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn other_methods_get_405_with_allow() {
        let response = router(state()).oneshot(request(Method::GET, None, "")).await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "POST");
        assert_eq!(error_of(response).await, "use POST");
    }

    #[tokio::test]
    async fn a_wrong_content_type_gets_415() {
        let response = router(state()).oneshot(request(Method::POST, Some("text/plain"), "{}")).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[tokio::test]
    async fn not_an_admission_review_gets_400() {
        let response =
            router(state()).oneshot(request(Method::POST, Some("application/json"), "{not json")).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(error_of(response).await.contains("not a valid AdmissionReview"));
    }

    #[tokio::test]
    async fn each_endpoint_answers_on_its_path_and_only_to_post() {
        let review = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1",
            "kind":{"group":"","version":"v1","kind":"Secret"},"resource":{"group":"","version":"v1","resource":"secrets"},
            "operation":"CREATE","object":{"kind":"Secret"}}}"#;
        for endpoint in Endpoint::ALL {
            let post = Request::builder()
                .method(Method::POST)
                .uri(endpoint.path())
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(review))
                .unwrap();
            let response = router(state()).oneshot(post).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{}", endpoint.path());
            let get = Request::builder().uri(endpoint.path()).body(Body::empty()).unwrap();
            let response = router(state()).oneshot(get).await.unwrap();
            assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{}", endpoint.path());
        }
    }

    #[tokio::test]
    async fn unknown_paths_get_404() {
        let response =
            router(state()).oneshot(Request::builder().uri("/validate").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }

    async fn boom() -> &'static str {
        panic!("boom")
    }

    #[tokio::test]
    async fn a_panicking_handler_gets_500_and_is_counted() {
        let metrics = Arc::new(Metrics::new());
        let app = with_panic_guard(Router::new().route("/boom", get(boom)), metrics.clone());
        let response = app.oneshot(Request::builder().uri("/boom").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(metrics.encode().contains(r#"podmedic_errors_total{reason="handler_panic"} 1"#));
    }

    #[tokio::test]
    async fn readyz_reports_closed_gates_and_shutdown() {
        let readiness = Readiness::new();
        let gate = readiness.gate("certificates");
        let app = health_router(readiness.clone(), Arc::new(Metrics::new()));
        let get_readyz = || Request::builder().uri("/readyz").body(Body::empty()).unwrap();
        let response = app.clone().oneshot(get_readyz()).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        gate.open();
        assert_eq!(app.clone().oneshot(get_readyz()).await.unwrap().status(), StatusCode::OK);
        readiness.begin_shutdown();
        assert_eq!(app.clone().oneshot(get_readyz()).await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
