//! `podmedic fix` as users run it: the real binary on the fixture files.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/manifests/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn podmedic(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_podmedic"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn fix_check_exits_1_then_0_on_its_own_output() {
    let seed = fixture("seed-cronjob.yaml");
    let check = podmedic(&["fix", "--check", &seed], None);
    assert_eq!(check.status.code(), Some(1), "{}", String::from_utf8_lossy(&check.stderr));

    let fixed = podmedic(&["fix", &seed], None);
    assert!(fixed.status.success(), "{}", String::from_utf8_lossy(&fixed.stderr));
    let text = String::from_utf8(fixed.stdout).unwrap();
    let obj: serde_json::Value = yaml_serde::from_str(&text).unwrap();
    let spec = &obj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(spec["initContainers"][0]["name"], "cloud-sql-proxy");
    assert_eq!(spec["initContainers"][0]["restartPolicy"], "Always");
    assert_eq!(spec["containers"].as_array().unwrap().len(), 1);
    assert_eq!(spec["containers"][0]["name"], "job");
    // Key order of the user's manifest is kept.
    assert!(text.find("apiVersion").unwrap() < text.find("kind").unwrap());
    assert!(text.find("schedule").unwrap() < text.find("jobTemplate").unwrap());

    let again = podmedic(&["fix", "--check", "-"], Some(&text));
    assert_eq!(again.status.code(), Some(0), "{}", String::from_utf8_lossy(&again.stderr));
}

#[test]
fn deployment_and_argo_pod_are_unchanged_and_backgrounding_is_warned() {
    for file in ["deployment.yaml", "argo-workflow-pod.yaml"] {
        let check = podmedic(&["fix", "--check", &fixture(file)], None);
        assert_eq!(check.status.code(), Some(0), "{file}: {}", String::from_utf8_lossy(&check.stderr));
    }
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers:\n      - {name: web, image: 'node:20', command: [sh, -c, 'nohup node server.js &']}\n";
    let out = podmedic(&["fix", "-"], Some(deployment));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("backgrounded"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn diff_json_output_older_clusters_and_errors() {
    let seed = fixture("seed-cronjob.yaml");
    let diff = podmedic(&["fix", "--diff", &seed], None);
    let text = String::from_utf8(diff.stdout).unwrap();
    let added = |line: &str| text.lines().any(|l| l.starts_with('+') && l[1..].trim() == line);
    assert!(added("restartPolicy: Always"), "{text}");
    assert!(added("- --health-check"), "{text}");
    assert!(text.starts_with("---"));

    let json = podmedic(&["fix", "-o", "json", &seed, &fixture("deployment.yaml")], None);
    let list: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);

    let old = podmedic(&["fix", "--check", "--kubernetes-version", "1.28", &seed], None);
    assert_eq!(old.status.code(), Some(0), "nothing moves on 1.28");
    // `--check` says its warnings in its report (text by default, on stdout), at the object's line.
    let report = String::from_utf8_lossy(&old.stdout);
    assert!(
        report.lines().any(|l| l.contains("seed-cronjob.yaml:") && l.contains("native sidecars are not available")),
        "{report}"
    );

    let bad = podmedic(&["fix", "-"], Some("kind: Pod\n---\nkind: [broken\n"));
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("<stdin>: document 2"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn directories_are_read_recursively_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("jobs")).unwrap();
    std::fs::copy(fixture("seed-cronjob.yaml"), dir.path().join("jobs/b-seed.yaml")).unwrap();
    std::fs::copy(fixture("deployment.yaml"), dir.path().join("a-deployment.yml")).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
    let out = podmedic(&["fix", "-o", "json", dir.path().to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = list["items"].as_array().unwrap().iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Deployment", "CronJob"]);
    let check = podmedic(&["fix", "--check", dir.path().to_str().unwrap()], None);
    assert_eq!(check.status.code(), Some(1));
}

/// `podmedic fix` on one fixture; the fixed object.
fn fixed(args: &[&str]) -> serde_json::Value {
    let out = podmedic(&[&["fix", "-o", "json"], args].concat(), None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn by_name<'v>(list: &'v serde_json::Value, name: &str) -> &'v serde_json::Value {
    list.as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()
}

#[test]
fn two_proxies_in_one_pod_get_two_health_ports() {
    let pod = fixed(&[&fixture("two-cloud-sql-proxies-pod.yaml")]);
    let inits = &pod["spec"]["initContainers"];
    let orders = by_name(inits, "cloud-sql-auth-proxy-orders");
    let billing = by_name(inits, "cloud-sql-auth-proxy-billing");
    assert_eq!(orders["restartPolicy"], "Always");
    assert_eq!(orders["startupProbe"]["httpGet"]["port"], 9090);
    assert_eq!(billing["startupProbe"]["httpGet"]["port"], 9091, "each proxy is probed on its own port");
    let billing_env = billing["env"].as_array().unwrap();
    assert!(billing_env.iter().any(|e| e["name"] == "CSQL_PROXY_HTTP_PORT" && e["value"] == "9091"));
    // The floating :2 tag may not have the exit-code flag; 2.14.1 has it.
    assert!(!orders["args"].as_array().unwrap().iter().any(|a| a == "--exit-zero-on-sigterm"));
    assert!(billing_env.iter().any(|e| e["name"] == "CSQL_PROXY_EXIT_ZERO_ON_SIGTERM" && e["value"] == "true"));
    assert_eq!(pod["spec"]["containers"].as_array().unwrap().len(), 1);
}

#[test]
fn a_host_network_job_gets_no_health_flags_and_no_probe() {
    let job = fixed(&[&fixture("host-network-job.yaml")]);
    let spec = &job["spec"]["template"]["spec"];
    let proxy = by_name(&spec["initContainers"], "cloud-sql-proxy");
    assert_eq!(proxy["restartPolicy"], "Always");
    assert!(proxy.get("startupProbe").is_none());
    assert_eq!(
        proxy["args"],
        serde_json::json!([
            "--structured-logs",
            "--port=15432",
            "acme:europe-west1:inventory",
            "--exit-zero-on-sigterm"
        ])
    );
    let record = job["metadata"]["annotations"]["podmedic.io/changes"].as_str().unwrap();
    assert!(record.contains("no health flags and no startup probe on cloud-sql-proxy: hostNetwork is on"), "{record}");
}

#[test]
fn a_limits_only_job_keeps_its_limits_as_its_requests() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: podmedic.io/v1alpha1\nkind: Policy\ndefaultRequests: {enabled: true, containers: {cpu: 100m, memory: 128Mi}, sidecars: {cpu: 50m, memory: 64Mi}}\n",
    )
    .unwrap();
    let job = fixed(&["--policy", policy.to_str().unwrap(), &fixture("limits-only-job.yaml")]);
    let spec = &job["spec"]["template"]["spec"];
    assert_eq!(
        by_name(&spec["containers"], "export")["resources"],
        serde_json::json!({"limits": {"cpu": "2", "memory": "4Gi"}})
    );
    assert_eq!(
        by_name(&spec["initContainers"], "cloud-sql-proxy")["resources"],
        serde_json::json!({"limits": {"cpu": "500m", "memory": "256Mi"}})
    );
    // The defaults are on: a container with neither requests nor limits gets them.
    assert_eq!(
        by_name(&spec["containers"], "uploader")["resources"],
        serde_json::json!({"requests": {"cpu": "100m", "memory": "128Mi"}})
    );
}

/// A symlink back up the tree (as kustomize layouts sometimes have) is followed once, not forever.
#[cfg(unix)]
#[test]
fn symlink_cycles_in_a_directory_are_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs");
    std::fs::create_dir(&jobs).unwrap();
    std::fs::copy(fixture("seed-cronjob.yaml"), jobs.join("seed.yaml")).unwrap();
    std::os::unix::fs::symlink("..", jobs.join("up")).unwrap();
    std::os::unix::fs::symlink(".", jobs.join("here")).unwrap();
    std::os::unix::fs::symlink(&jobs, dir.path().join("jobs-again")).unwrap();
    let out = podmedic(&["fix", "-o", "json", dir.path().to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let fixed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fixed["kind"], "CronJob", "one document, read once: {fixed}");
}
