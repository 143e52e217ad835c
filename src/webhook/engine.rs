//! The engine off the async workers: a bounded set of engine calls runs on blocking threads, and
//! every request is answered by its deadline whether or not its engine call has finished.
//!
//! The engine is linear in its input, but a 3 MiB body still costs milliseconds of CPU, and the
//! tokio workers also serve every other request, TLS handshake and probe (with the shipped 1-CPU
//! limit there is one worker). So a body larger than `inline_max_bytes` is handed to a blocking
//! thread once one of `threads` slots is free. A running call cannot be cancelled: when the
//! deadline passes, the request is answered (allowed unchanged, with a warning) while the call
//! keeps its slot, and the request's memory reservation, until it returns. Small bodies cost
//! microseconds and run where they are, which spares the hand-over (BENCHMARKS.md measures both).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use axum::body::Bytes;
use podmedic_engine::admission::{Admission, Endpoint, Environment, ReviewError, admit_at, allow_unchanged};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::budget::Reservation;

/// Why a request was answered without the engine's answer, as the skip reason's metric label.
pub const DEADLINE: &str = "deadline";

/// Where engine calls run.
#[derive(Clone, Debug)]
pub struct EnginePool {
    slots: Arc<Semaphore>,
    threads: usize,
    inline_max_bytes: usize,
}

impl EnginePool {
    /// `threads` engine calls at once off the async workers (at least one); bodies of at most
    /// `inline_max_bytes` run on the worker that read them.
    pub fn new(threads: usize, inline_max_bytes: usize) -> EnginePool {
        let threads = threads.max(1);
        EnginePool { slots: Arc::new(Semaphore::new(threads)), threads, inline_max_bytes }
    }

    /// Engine calls running off the async workers now.
    pub fn busy(&self) -> usize {
        self.threads - self.slots.available_permits()
    }

    /// The slots.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs the engine's `admit_at` on `body` sent to `endpoint`. When its answer is not there by `deadline` (or no slot
    /// frees up by then), the object is allowed unchanged with a warning that names `limit` (the
    /// configured deadline). `reservation` is held until the call returns.
    pub async fn admit(
        &self,
        endpoint: Endpoint,
        body: Bytes,
        environment: &Environment,
        reservation: Reservation,
        deadline: Instant,
        limit: std::time::Duration,
    ) -> Result<Admission, ReviewError> {
        if body.len() <= self.inline_max_bytes {
            return guarded_admit(endpoint, &body, environment);
        }
        let late = |body: &Bytes| {
            let message = format!("podmedic did not finish within its {limit:?} deadline (the webhook is busy)");
            allow_unchanged(endpoint, body, DEADLINE, &message)
        };
        let Ok(Ok(slot)) = tokio::time::timeout_at(deadline, self.slots.clone().acquire_owned()).await else {
            return late(&body);
        };
        let (call_body, environment) = (body.clone(), environment.clone());
        let call = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let _reservation = reservation;
            guarded_admit(endpoint, &call_body, &environment)
        });
        match tokio::time::timeout_at(deadline, call).await {
            Ok(Ok(answer)) => answer,
            // The runtime is shutting down; say so rather than answer nothing.
            Ok(Err(_)) => allow_unchanged(endpoint, &body, "engine_stopped", "podmedic is shutting down"),
            Err(_) => late(&body),
        }
    }
}

/// `admit_at`, with a panic anywhere in it (the envelope's decoding included) turned into the
/// object allowed unchanged: a bug must not deny or drop Pods.
fn guarded_admit(endpoint: Endpoint, body: &[u8], environment: &Environment) -> Result<Admission, ReviewError> {
    catch_unwind(AssertUnwindSafe(|| admit_at(endpoint, body, environment)))
        .unwrap_or_else(|_| allow_unchanged(endpoint, body, "engine_panic", "internal error (panic in the engine)"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use podmedic_engine::Policy;
    use podmedic_engine::admission::Outcome;

    use super::*;
    use crate::webhook::budget::MemoryBudget;

    fn review() -> Bytes {
        Bytes::from(
            serde_json::to_vec(&serde_json::json!({
                "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {"uid": "u1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                            "resource": {"group": "", "version": "v1", "resource": "pods"},
                            "namespace": "batch", "operation": "CREATE",
                            "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                                       "spec": {"restartPolicy": "Never", "containers": [
                                           {"name": "main", "image": "app:1"},
                                           {"name": "proxy", "image": "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0"}]}}}
            }))
            .unwrap(),
        )
    }

    fn environment() -> Environment {
        Environment::standalone(Arc::new(Policy::builtin()))
    }

    #[tokio::test]
    async fn inline_and_pooled_calls_give_the_same_answer() {
        let budget = MemoryBudget::new(1 << 20);
        let later = Instant::now() + Duration::from_secs(20);
        let inline = EnginePool::new(1, usize::MAX);
        let pooled = EnginePool::new(1, 0);
        let a = inline
            .admit(Endpoint::Mutate, review(), &environment(), budget.reservation(), later, Duration::ZERO)
            .await
            .unwrap();
        let b = pooled
            .admit(Endpoint::Mutate, review(), &environment(), budget.reservation(), later, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(a.outcome, Outcome::Patched);
        assert_eq!(a.body, b.body);
    }

    #[tokio::test]
    async fn with_every_slot_taken_the_request_is_allowed_unchanged_at_its_deadline() {
        let pool = EnginePool::new(1, 0);
        let _taken = pool.slots.clone().acquire_owned().await.unwrap();
        let budget = MemoryBudget::new(1 << 20);
        let deadline = Instant::now() + Duration::from_millis(50);
        let answer = pool
            .admit(
                Endpoint::Mutate,
                review(),
                &environment(),
                budget.reservation(),
                deadline,
                Duration::from_millis(50),
            )
            .await;
        let answer = answer.unwrap();
        assert_eq!(answer.outcome, Outcome::Skipped);
        assert_eq!(answer.skip_reason.as_ref().map(|(label, _)| *label), Some(DEADLINE));
        assert_eq!(pool.busy(), 1);
    }
}
