//! Malformed and hostile bodies: each gets the right status (or a safe pass-through) quickly,
//! and the server keeps serving.

use std::time::{Duration, Instant};

use super::*;
use crate::support::*;

#[tokio::test]
async fn malformed_bodies_get_the_right_answer_quickly_and_the_server_keeps_serving() {
    let server = TestServer::start().await;
    let mut client = server.client().connect().await.unwrap();
    let mut times = Vec::new();
    for (what, body, expect) in body_cases() {
        let started = Instant::now();
        send_case(&mut client, || async { server.client().connect().await.unwrap() }, what, &body, &expect).await;
        times.push((what, body.len(), started.elapsed()));
        a_normal_review_works(server.addr, &server.ca.cert_pem).await;
    }
    for (what, len, elapsed) in &times {
        println!("{:>9.1} ms  {len:>9} B  {what}", elapsed.as_secs_f64() * 1e3);
        // Generous: a debug build on a shared machine. The release figures are in the report.
        assert!(*elapsed < Duration::from_secs(5), "{what} took {elapsed:?}");
    }
}
