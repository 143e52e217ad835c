//! Starting `podmedic serve`: the health port is the first thing it opens, so the kubelet's first
//! probe is answered (503 with the reason, then 200), never refused; and an API server it cannot
//! reach is logged as that, not as missing RBAC.

use std::path::Path;
use std::process::Command;

use hyper::StatusCode;

use crate::support::process::ServeProcess;
use crate::support::*;

/// A named pipe: whoever opens it for reading waits until someone writes.
fn fifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

#[tokio::test]
async fn the_health_port_answers_while_podmedic_is_still_starting() {
    // The policy file is a pipe, so podmedic's start-up stops at reading it until the test writes
    // the policy: it stands for any slow step (a slow volume, the cluster client, the certificates).
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.yaml");
    fifo(&policy);
    let mut podmedic = ServeProcess::spawn(&["--policy", policy.to_str().expect("path")], &[]);
    podmedic.wait_for_health();

    // What the kubelet's first probes get while podmedic starts: liveness passes, readiness says
    // what it waits for, and the webhook's port is not open yet.
    let healthz = podmedic.get_health("/healthz").await.expect("the health port answers at once");
    assert_eq!(healthz.status, StatusCode::OK);
    let readyz = podmedic.get_health("/readyz").await.expect("the health port answers at once");
    assert_eq!(readyz.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(readyz.text().contains("waiting for"), "{}", readyz.text());
    // The first probe may come before the policy step has registered its gate (the answer is then
    // `waiting for start-up`); while the policy cannot be read, readiness comes to name it.
    eventually("/readyz names the policy it waits for", || async {
        let readyz = podmedic.get_health("/readyz").await.expect("the health port answers");
        readyz.status == StatusCode::SERVICE_UNAVAILABLE && readyz.text().contains("policy")
    })
    .await;
    assert_eq!(podmedic.addr.port(), 0, "the webhook listens only once its policy is loaded");
    assert!(!podmedic.logs().iter().any(|l| l.contains("serving the webhook")), "{:?}", podmedic.logs());

    // The policy arrives: podmedic finishes starting, serves the webhook and turns ready.
    let yaml = "apiVersion: podmedic.io/v1alpha1\nkind: Policy\nwarnings:\n  latestTag: false\n";
    tokio::task::spawn_blocking(move || std::fs::write(&policy, yaml)).await.expect("join").expect("write the policy");
    podmedic.wait_for_webhook();
    eventually("ready", || async { podmedic.readyz().await == Some(StatusCode::OK) }).await;
    let request = fixture("pod-create-by-job-controller.json");
    let mut client = podmedic.client().connect().await.expect("connect to the webhook");
    let response = admission_response(&request, &client.review(request.clone()).await);
    assert!(patch_of(&response).is_some(), "the started webhook moves the sidecar");
}

#[tokio::test]
async fn an_unreachable_api_server_is_logged_as_a_network_failure_not_as_rbac() {
    // A kubeconfig whose API server refuses connections: a port bound and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{port}'}}}}]\n\
             users: [{{name: u, user: {{token: t}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\n\
             current-context: x\n"
        ),
    )
    .expect("write the kubeconfig");
    let podmedic = ServeProcess::start(&["--kubeconfig", kubeconfig.to_str().expect("path")]);
    let watch_failures = || {
        podmedic
            .logs()
            .into_iter()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(&line).ok())
            .filter(|event| event["message"].as_str().is_some_and(|m| m.starts_with("watching ")))
            .collect::<Vec<_>>()
    };
    eventually("both watches log a failure", || async { watch_failures().len() >= 2 }).await;
    for event in watch_failures() {
        assert_eq!(event["failure"], "network", "{event}");
        let message = event["message"].as_str().expect("message");
        assert!(message.contains("cannot reach the API server") && message.contains("refused"), "{message}");
        assert!(!message.contains("RBAC") && !message.contains("needs list"), "not a permission problem: {message}");
    }
    assert_eq!(podmedic.readyz().await, Some(StatusCode::SERVICE_UNAVAILABLE), "not ready without the cluster");
    // kube's own per-request error lines ("failed with error client error (Connect)") stay out.
    let kube_lines: Vec<String> =
        podmedic.logs().into_iter().filter(|l| l.contains("\"target\":\"kube_client")).collect();
    assert!(kube_lines.is_empty(), "{kube_lines:?}");
}
