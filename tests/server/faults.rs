//! Faults under load, against the real binary: a certificate rotated the kubelet's way, SIGTERM,
//! and a bounded soak. Each runs a short version in `cargo test`; the full-size runs recorded in
//! the README's Reliability section take the sizes from the environment and a release build:
//!
//! ```sh
//! FAULTS_RATE=1000 FAULTS_SECS=20 cargo test --release --test server faults:: -- --nocapture
//! FAULTS_SOAK_RATE=500 FAULTS_SOAK_SECS=600 cargo test --release --test server faults::soak -- --nocapture
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::support::process::ServeProcess;
use crate::support::*;

fn env_or(name: &str, default: f64) -> f64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    first_failure: std::sync::Mutex<Option<String>>,
}

impl Tally {
    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.first_failure.lock().unwrap().get_or_insert(why);
    }

    fn summary(&self) -> String {
        format!(
            "sent {}, ok {}, failed {} (first: {:?})",
            self.sent.load(Ordering::Relaxed),
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.first_failure.lock().unwrap()
        )
    }
}

/// Open-loop load: `connections` keep-alive connections, each sending on a fixed timetable so that
/// together they offer `rate` requests per second, until `stop` is set. Every request must get a
/// 200 with the uid echoed; anything else is a failure.
async fn load(podmedic: &ServeProcess, rate: f64, connections: usize, stop: Arc<AtomicBool>) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let body = fixture("pod-create-by-job-controller.json");
    let period = Duration::from_secs_f64(connections as f64 / rate);
    for c in 0..connections {
        let mut client = podmedic.client().connect().await.unwrap();
        let (tally, stop, body) = (tally.clone(), stop.clone(), body.clone());
        tokio::spawn(async move {
            // Stagger the connections over one period.
            tokio::time::sleep(period.mul_f64(c as f64 / connections as f64)).await;
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                tally.sent.fetch_add(1, Ordering::Relaxed);
                match client.send(post_request("/mutate", "application/json", full(body.clone()))).await {
                    Ok(reply)
                        if reply.status == hyper::StatusCode::OK && reply.json()["response"]["allowed"] == true =>
                    {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(reply) => tally.fail(format!("status {}: {}", reply.status, reply.text())),
                    Err(e) => tally.fail(e),
                }
            }
        });
    }
    tally
}

/// Waits until every request sent has been answered (or `limit` passes).
async fn drained(tally: &Tally, limit: Duration) {
    let deadline = Instant::now() + limit;
    while tally.ok.load(Ordering::Relaxed) + tally.failed.load(Ordering::Relaxed) < tally.sent.load(Ordering::Relaxed)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_under_load_fails_no_request() {
    let rate = env_or("FAULTS_RATE", 150.0);
    let secs = env_or("FAULTS_SECS", 4.0);
    let mut podmedic = ServeProcess::start(&["--tls-reload-interval", "1s"]);
    let old = podmedic.client().connect().await.unwrap().peer_certificate;
    let stop = Arc::new(AtomicBool::new(false));
    let tally = load(&podmedic, rate, 8, stop.clone()).await;

    tokio::time::sleep(Duration::from_secs_f64(secs / 2.0)).await;
    let new_pair = podmedic.ca.server_pair("podmedic-rotated");
    let rotated_at = Instant::now();
    podmedic.mount.update(&new_pair);
    // New handshakes get the new certificate within a few seconds.
    let new = leaf_der(&new_pair.cert_pem);
    let seen_after = loop {
        if podmedic.client().connect().await.unwrap().peer_certificate == new {
            break rotated_at.elapsed();
        }
        assert!(rotated_at.elapsed() < Duration::from_secs(10), "the new certificate was not served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(old, new);
    tokio::time::sleep(Duration::from_secs_f64(secs / 2.0)).await;
    stop.store(true, Ordering::Relaxed);
    drained(&tally, PATIENCE).await;

    println!("rotation at {rate}/s for {secs}s: {}; new certificate served after {seen_after:?}", tally.summary());
    assert_eq!(tally.failed.load(Ordering::Relaxed), 0, "{}", tally.summary());
    assert!(tally.ok.load(Ordering::Relaxed) as f64 >= rate * secs * 0.5, "{}", tally.summary());
    assert!(podmedic.logs().iter().any(|l| l.contains("serving the new TLS certificate")), "no reload logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_fails_no_request_in_flight() {
    let rate = env_or("FAULTS_RATE", 150.0);
    let secs = env_or("FAULTS_SECS", 4.0);
    // As in a cluster: readiness turns false at the signal; during the delay the endpoints update
    // and the API server stops sending; then the listener closes and in-flight requests finish.
    let mut podmedic = ServeProcess::start(&["--shutdown-delay", "2s", "--shutdown-timeout", "10s"]);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = load(&podmedic, rate, 8, stop.clone()).await;
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;

    let signalled = Instant::now();
    podmedic.sigterm();
    // The load goes on for half the delay (the API server has not seen the endpoint change yet),
    // then stops sending new requests; those already sent must all be answered.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    drained(&tally, PATIENCE).await;
    let status = podmedic.exited(Duration::from_secs(15)).await;
    let exited_after = signalled.elapsed();

    println!("SIGTERM under {rate}/s: {}; exited {status} after {exited_after:?}", tally.summary());
    assert!(status.success(), "exit status {status}");
    assert!(exited_after < Duration::from_secs(2 + 10), "exited after {exited_after:?}");
    assert_eq!(tally.failed.load(Ordering::Relaxed), 0, "{}", tally.summary());
    assert!(tally.ok.load(Ordering::Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_keeps_memory_and_file_descriptors_flat() {
    let rate = env_or("FAULTS_SOAK_RATE", 150.0);
    let secs = env_or("FAULTS_SOAK_SECS", 8.0);
    let podmedic = ServeProcess::start(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = load(&podmedic, rate, 8, stop.clone()).await;

    // Warm up for a tenth of the run (allocator pools, connection buffers), then sample.
    tokio::time::sleep(Duration::from_secs_f64(secs / 10.0)).await;
    let (rss_start, fds_start) = (podmedic.status_kib("VmRSS"), podmedic.open_fds());
    let mut samples = vec![rss_start];
    let deadline = Instant::now() + Duration::from_secs_f64(secs * 0.9);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs_f64((secs / 10.0).min(30.0))).await;
        samples.push(podmedic.status_kib("VmRSS"));
    }
    let (rss_end, fds_end) = (podmedic.status_kib("VmRSS"), podmedic.open_fds());
    stop.store(true, Ordering::Relaxed);
    drained(&tally, PATIENCE).await;

    let drift = (rss_end as f64 - rss_start as f64) / rss_start as f64 * 100.0;
    println!(
        "soak at {rate}/s for {secs}s: {}; RSS {rss_start} -> {rss_end} KiB ({drift:+.1}%), samples {samples:?}; fds {fds_start} -> {fds_end}",
        tally.summary()
    );
    assert_eq!(tally.failed.load(Ordering::Relaxed), 0, "{}", tally.summary());
    assert!(fds_end <= fds_start + 2, "open files grew: {fds_start} -> {fds_end}");
    // Short runs only guard against gross leaks; the full run is held to the 5% target.
    let limit = if secs >= 300.0 { 5.0 } else { 20.0 };
    assert!(drift <= limit, "RSS drift {drift:+.1}% over {secs}s (limit {limit}%)");
}
