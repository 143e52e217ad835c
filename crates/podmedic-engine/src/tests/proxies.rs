//! Database proxies: health-check flags, health ports, startup probes.

use serde_json::json;

use super::*;

#[test]
fn cloud_sql_v2_env_form_gets_env_settings() {
    let manifest = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - name: proxy\n    image: gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1\n    env:\n    - {name: CSQL_PROXY_INSTANCE_CONNECTION_NAME, value: 'p:r:i'}\n",
    );
    let r = run(&manifest);
    let env = moved_proxy(&r)["env"].as_array().unwrap();
    let get = |n: &str| env.iter().find(|e| e["name"] == n).map(|e| e["value"].clone());
    assert_eq!(get("CSQL_PROXY_HEALTH_CHECK"), Some(json!("true")));
    assert_eq!(get("CSQL_PROXY_HTTP_ADDRESS"), Some(json!("0.0.0.0")));
    assert!(moved_proxy(&r).get("args").is_none(), "env form adds no args");
    assert_eq!(moved_proxy(&r)["startupProbe"]["httpGet"]["port"], 9090);
}

#[test]
fn health_port_moves_off_9090_when_another_container_uses_it() {
    let manifest = pod(
        "  containers:\n  - {name: main, image: 'app:1', ports: [{containerPort: 9090}]}\n  - {name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0', args: ['p:r:i']}\n",
    );
    let r = run(&manifest);
    let args = &moved_proxy(&r)["args"];
    assert!(args.as_array().unwrap().contains(&json!("--http-port=9091")), "{args}");
    assert_eq!(moved_proxy(&r)["startupProbe"]["httpGet"]["port"], 9091);
}

#[test]
fn user_health_settings_are_kept_and_used() {
    let manifest = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - {name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0', args: ['--health-check', '--http-address', '0.0.0.0', '--http-port=8181', 'p:r:i']}\n",
    );
    let r = run(&manifest);
    assert_eq!(moved_proxy(&r)["args"], r.before["spec"]["containers"][1]["args"], "args unchanged");
    assert_eq!(moved_proxy(&r)["startupProbe"]["httpGet"]["port"], 8181);
}

#[test]
fn unreachable_or_disabled_health_endpoints_get_no_probe() {
    for args in ["['--http-address=127.0.0.1', 'p:r:i']", "['--health-check=false', 'p:r:i']"] {
        let manifest = pod(&format!(
            "  containers:\n  - {{name: main, image: 'app:1'}}\n  - {{name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0', args: {args}}}\n"
        ));
        let r = run(&manifest);
        assert_eq!(moved_proxy(&r)["restartPolicy"], "Always", "still moves");
        assert!(moved_proxy(&r).get("startupProbe").is_none(), "{args}");
        assert_eq!(moved_proxy(&r)["args"], r.before["spec"]["containers"][1]["args"]);
    }
}

#[test]
fn existing_startup_probes_are_never_replaced() {
    let manifest = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - name: proxy\n    image: gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0\n    startupProbe: {tcpSocket: {port: 5432}, periodSeconds: 7}\n",
    );
    let r = run(&manifest);
    assert_eq!(moved_proxy(&r)["startupProbe"], json!({"tcpSocket": {"port": 5432}, "periodSeconds": 7}));
    assert!(moved_proxy(&r).get("args").is_none());
}

#[test]
fn all_health_flags_land_when_the_sidecar_has_no_args_or_env() {
    let manifest = pod(
        "  containers:\n  - {name: main, image: 'app:1', ports: [{containerPort: 9090}]}\n  - name: proxy\n    image: gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0\n    command: [/cloud-sql-proxy, 'p:r:i']\n",
    );
    let r = run(&manifest);
    assert_eq!(moved_proxy(&r)["args"], json!(["--health-check", "--http-address=0.0.0.0", "--http-port=9091"]));
    assert_eq!(moved_proxy(&r)["startupProbe"]["httpGet"]["port"], 9091);
    let terminated = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - {name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0', args: ['--port=5432', '--', 'p:r:i']}\n",
    );
    let r = run(&terminated);
    assert_eq!(
        moved_proxy(&r)["args"],
        json!(["--port=5432", "--health-check", "--http-address=0.0.0.0", "--", "p:r:i"])
    );
}

#[test]
fn cloud_sql_v1_uses_its_own_flags() {
    let manifest = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - name: proxy\n    image: gcr.io/cloudsql-docker/gce-proxy:1.33.2\n    command: [/cloud_sql_proxy, '-instances=p:r:i=tcp:5432']\n",
    );
    let r = run(&manifest);
    assert_eq!(moved_proxy(&r)["args"], json!(["-use_http_health_check"]));
    assert_eq!(moved_proxy(&r)["startupProbe"]["httpGet"], json!({"path": "/startup", "port": 8090}));
}

#[test]
fn no_startup_probes_while_a_mesh_proxy_stays_regular() {
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata:
  name: p
  annotations: {podmedic.io/not-sidecars: istio-proxy}
spec:
  restartPolicy: Never
  containers:
  - {name: main, image: "app:1"}
  - {name: istio-proxy, image: "docker.io/istio/proxyv2:1.22.0"}
  - {name: proxy, image: "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0"}
"#;
    let r = run(manifest);
    assert_eq!(names(&r.after["spec"]["containers"]), ["main", "istio-proxy"]);
    assert!(moved_proxy(&r).get("startupProbe").is_none());
    assert!(moved_proxy(&r).get("args").is_none());
}
