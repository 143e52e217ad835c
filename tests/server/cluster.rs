//! What podmedic assumes about the cluster, seen from outside the real binary: nothing it has not
//! learned. In a Pod without a usable configuration it changes nothing and is never ready; with no
//! cluster at all it assumes native sidecars, as documented; in a Pod it refuses to serve a
//! certificate no API server can trust.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hyper::StatusCode;

use crate::support::process::ServeProcess;
use crate::support::*;

/// The environment of a Pod whose service account token is not mounted, on a machine with no
/// kubeconfig: the kubelet sets KUBERNETES_SERVICE_HOST in every container.
const POD_WITHOUT_TOKEN: [(&str, &str); 3] = [
    ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
    ("KUBERNETES_SERVICE_PORT", "9"),
    ("KUBECONFIG", "/nonexistent/kubeconfig"),
];

async fn metrics(podmedic: &ServeProcess) -> String {
    get_plain(podmedic.metrics_addr, "/metrics").await.expect("/metrics answers").text()
}

#[tokio::test]
async fn in_a_pod_without_a_configuration_podmedic_changes_nothing_and_is_not_ready() {
    let podmedic = ServeProcess::start_with_env(&[], &POD_WITHOUT_TOKEN);
    assert_eq!(podmedic.readyz().await, Some(StatusCode::SERVICE_UNAVAILABLE));

    let request = fixture("pod-create-by-job-controller.json");
    let reply = podmedic.client().connect().await.unwrap().review(request.clone()).await;
    let response = admission_response(&request, &reply);
    assert!(response.get("patch").is_none(), "changed a Pod without knowing its namespace");
    assert_eq!(
        response["warnings"][0],
        "podmedic does not know the settings of namespace capture yet, so it changed nothing"
    );
    let text = metrics(&podmedic).await;
    assert!(text.contains(r#"podmedic_native_sidecars_available{reason="unknown"} 0"#), "{text}");
    assert!(text.contains(r#"podmedic_cluster_watch_errors_total{watch="nodes"} 0"#), "{text}");
    assert!(podmedic.logs().iter().any(|l| l.contains("has no usable Kubernetes configuration")));
}

#[tokio::test]
async fn with_no_cluster_at_all_native_sidecars_are_assumed() {
    let podmedic = ServeProcess::start_with_env(&[], &[("KUBECONFIG", "/nonexistent/kubeconfig")]);
    assert_eq!(podmedic.readyz().await, Some(StatusCode::OK));
    let request = fixture("pod-create-by-job-controller.json");
    let reply = podmedic.client().connect().await.unwrap().review(request.clone()).await;
    assert!(admission_response(&request, &reply).get("patch").is_some());
    let text = metrics(&podmedic).await;
    assert!(text.contains(r#"podmedic_native_sidecars_available{reason="no_cluster"} 1"#), "{text}");
}

#[test]
fn in_a_pod_an_ephemeral_certificate_needs_the_flag_that_allows_it() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |extra: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_podmedic"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--ephemeral-ca-file")
            .arg(dir.path().join("ca.crt"))
            .args(extra)
            .envs(POD_WITHOUT_TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    };
    let refused = serve(&[]).output().expect("run podmedic");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("no --tls-cert given, and podmedic runs in a Pod"), "{stderr}");

    let mut allowed = serve(&["--allow-ephemeral-certificate"]).spawn().expect("run podmedic");
    let started = Instant::now();
    while !dir.path().join("ca.crt").exists() {
        assert!(allowed.try_wait().unwrap().is_none(), "podmedic exited with the flag");
        assert!(started.elapsed() < PATIENCE, "the ephemeral CA was never written");
        std::thread::sleep(Duration::from_millis(20));
    }
    allowed.kill().unwrap();
    allowed.wait().unwrap();
}
