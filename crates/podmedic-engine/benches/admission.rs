//! `cargo bench --bench admission`: decode + mutate + patch + encode through [`admit`], next to the
//! parse floor (`serde_json::from_slice::<Value>` of the same body) so that every figure has a ratio.
//!
//! Bodies:
//! - `job-pod-3k`: the Job controller's Pod with cloud-sql-proxy, as the API server sends it
//!   (compact), without managedFields (`benches/fixtures/job-pod-small.json`);
//! - `job-pod-12k`: the captured review itself (pretty-printed, managedFields), the load test's body;
//! - `seed-cronjob`: `tests/fixtures/manifests/seed-cronjob.yaml` in a CREATE review;
//! - `mesh-pod-64k`: an istio-injected Job Pod with many containers and env vars, made in code;
//! - `pod-1m`: the same shape grown to 1 MiB;
//! - `pass-through`: the Deployment's Pod (`restartPolicy: Always`, nothing to do);
//! - `cronjob-reapply`: a CronJob's client-side re-apply over what podmedic stored, as a v1.36 API
//!   server sent it (`tests/fixtures/admission-reviews/gitops/`), converged on `/mutate` (template
//!   mode) and on `/converge` (pods mode).
//!
//! Smoke run (CI): `cargo bench --bench admission -- --test` runs every benchmark once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use podmedic_engine::Policy;
use podmedic_engine::admission::{Endpoint, Environment, Outcome, admit, admit_at};
use serde_json::Value;

#[path = "admission/bodies.rs"]
mod bodies;

fn admission(c: &mut Criterion) {
    let env = Environment::standalone(Arc::new(Policy::builtin()));
    for (name, body, expected) in bodies::all() {
        // The benchmark must measure the real work: check what podmedic does with each body.
        let outcome = admit(&body, &env).unwrap().outcome;
        assert_eq!(outcome, expected, "{name}");
        serde_json::from_slice::<Value>(&body).unwrap();
        eprintln!("{name}: {} bytes", body.len());

        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(body.len() as u64));
        if body.len() > 256 * 1024 {
            group.sample_size(30).measurement_time(Duration::from_secs(8));
        }
        group.bench_function("admit", |b| b.iter(|| admit(black_box(&body), &env).unwrap()));
        group.bench_function("parse_floor", |b| b.iter(|| serde_json::from_slice::<Value>(black_box(&body)).unwrap()));
        group.finish();
    }

    let fixture = "../../tests/fixtures/admission-reviews/gitops/cronjob-update-reapply-client-side.json";
    let reapply = std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(fixture)).unwrap();
    let mut group = c.benchmark_group("cronjob-reapply");
    group.throughput(Throughput::Bytes(reapply.len() as u64));
    for endpoint in [Endpoint::Mutate, Endpoint::Converge] {
        assert_eq!(admit_at(endpoint, &reapply, &env).unwrap().outcome, Outcome::Patched, "{}", endpoint.path());
        group.bench_function(endpoint.label(), |b| b.iter(|| admit_at(endpoint, black_box(&reapply), &env).unwrap()));
    }
    group.bench_function("parse_floor", |b| b.iter(|| serde_json::from_slice::<Value>(black_box(&reapply)).unwrap()));
    group.finish();
}

criterion_group!(benches, admission);
criterion_main!(benches);
