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
    let mut args = r.before["spec"]["containers"][1]["args"].as_array().unwrap().clone();
    args.push(json!("--exit-zero-on-sigterm"));
    assert_eq!(moved_proxy(&r)["args"], json!(args), "the user's health flags unchanged, none added");
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
        let mut args = r.before["spec"]["containers"][1]["args"].as_array().unwrap().clone();
        args.push(json!("--exit-zero-on-sigterm"));
        assert_eq!(moved_proxy(&r)["args"], json!(args), "no health flags");
    }
}

#[test]
fn existing_startup_probes_are_never_replaced() {
    let manifest = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - name: proxy\n    image: gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0\n    startupProbe: {tcpSocket: {port: 5432}, periodSeconds: 7}\n",
    );
    let r = run(&manifest);
    assert_eq!(moved_proxy(&r)["startupProbe"], json!({"tcpSocket": {"port": 5432}, "periodSeconds": 7}));
    assert_eq!(moved_proxy(&r)["args"], json!(["--exit-zero-on-sigterm"]), "no health flags");
}

#[test]
fn all_health_flags_land_when_the_sidecar_has_no_args_or_env() {
    let manifest = pod(
        "  containers:\n  - {name: main, image: 'app:1', ports: [{containerPort: 9090}]}\n  - name: proxy\n    image: gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0\n    command: [/cloud-sql-proxy, 'p:r:i']\n",
    );
    let r = run(&manifest);
    assert_eq!(
        moved_proxy(&r)["args"],
        json!(["--health-check", "--http-address=0.0.0.0", "--http-port=9091", "--exit-zero-on-sigterm"])
    );
    assert_eq!(moved_proxy(&r)["startupProbe"]["httpGet"]["port"], 9091);
    let terminated = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - {name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0', args: ['--port=5432', '--', 'p:r:i']}\n",
    );
    let r = run(&terminated);
    assert_eq!(
        moved_proxy(&r)["args"],
        json!(["--port=5432", "--health-check", "--http-address=0.0.0.0", "--exit-zero-on-sigterm", "--", "p:r:i"])
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
    assert_eq!(moved_proxy(&r)["args"], json!(["--exit-zero-on-sigterm"]), "no health flags");
}

/// The init container of the patched object with this name.
fn init<'r>(r: &'r Run, name: &str) -> &'r Value {
    let spec = if r.after["kind"] == "Pod" { &r.after["spec"] } else { &r.after["spec"]["template"]["spec"] };
    spec["initContainers"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()
}

fn probe_port(c: &Value) -> &Value {
    &c["startupProbe"]["httpGet"]["port"]
}

fn env_value<'c>(c: &'c Value, name: &str) -> Option<&'c str> {
    c["env"].as_array()?.iter().rev().find(|e| e["name"] == name)?["value"].as_str()
}

#[test]
fn two_cloud_sql_proxies_get_two_health_ports_each_probed_on_its_own() {
    // One proxy per database, as public Helm charts write them: one by flags, one by environment.
    let manifest = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: report}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: app, image: "ghcr.io/acme/report:1.4.0"}
      - name: cloud-sql-auth-proxy-orders
        image: asia.gcr.io/cloud-sql-connectors/cloud-sql-proxy:2
        args: ["--private-ip", "acme:asia-northeast1:orders?port=10001"]
      - name: cloud-sql-auth-proxy-billing
        image: gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1
        env:
        - {name: CSQL_PROXY_INSTANCE_CONNECTION_NAME, value: "acme:asia-northeast1:billing"}
        - {name: CSQL_PROXY_PORT, value: "10002"}
"#;
    let r = run(manifest);
    let orders = init(&r, "cloud-sql-auth-proxy-orders");
    let billing = init(&r, "cloud-sql-auth-proxy-billing");
    assert_eq!(
        orders["args"],
        json!(["--private-ip", "acme:asia-northeast1:orders?port=10001", "--health-check", "--http-address=0.0.0.0"])
    );
    assert_eq!(probe_port(orders), 9090);
    assert_eq!(env_value(billing, "CSQL_PROXY_HEALTH_CHECK"), Some("true"));
    assert_eq!(env_value(billing, "CSQL_PROXY_HTTP_PORT"), Some("9091"));
    assert_eq!(probe_port(billing), 9091, "each probe targets its own proxy");
}

#[test]
fn assigned_ports_avoid_admin_servers_listeners_and_every_declared_port() {
    // The first proxy opens its admin server on 9091 (--quitquitquit), the app declares 9090 and a
    // UDP 9092, an already-native proxy from an earlier run listens on 9093: the new one gets 9094.
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  restartPolicy: Never
  initContainers:
  - name: earlier
    image: gcr.io/alloydb-connectors/alloydb-auth-proxy:1.11.2
    restartPolicy: Always
    args: ["--health-check", "--http-address=0.0.0.0", "--http-port=9093", "projects/p/locations/l/clusters/c/instances/i"]
  containers:
  - {name: app, image: "app:1", ports: [{containerPort: 9090}, {containerPort: 9092, protocol: UDP}]}
  - name: proxy-a
    image: gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1
    args: ["--quitquitquit", "a:b:c?port=5432"]
  - name: proxy-b
    image: gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1
    args: ["--port=9095", "a:b:d"]
"#;
    let r = run(manifest);
    assert_eq!(probe_port(init(&r, "proxy-a")), 9094);
    assert!(init(&r, "proxy-a")["args"].as_array().unwrap().contains(&json!("--http-port=9094")));
    // 9095 is proxy-b's own listener (--port counts up from it), so it gets 9096.
    assert_eq!(probe_port(init(&r, "proxy-b")), 9096);
    assert!(init(&r, "earlier").get("startupProbe").is_none(), "an existing native sidecar is left alone");
}

#[test]
fn a_proxy_with_the_health_check_on_keeps_9090_unless_another_container_has_it() {
    let own = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - {name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0', args: ['--health-check', '--http-address=0.0.0.0', 'p:r:i']}\n",
    );
    let r = run(&own);
    assert_eq!(
        moved_proxy(&r)["args"],
        json!(["--health-check", "--http-address=0.0.0.0", "p:r:i", "--exit-zero-on-sigterm"]),
        "nothing to add for the health check"
    );
    assert_eq!(probe_port(moved_proxy(&r)), 9090);
    // Two proxies with the health check on both bind 9090 today: one of them moves off it.
    let both = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - {name: a, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0', args: ['--health-check', '--http-address=0.0.0.0', 'p:r:i']}\n  - {name: b, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0', args: ['--health-check', '--http-address=0.0.0.0', 'p:r:j']}\n",
    );
    let r = run(&both);
    let (a, b) = (probe_port(init(&r, "a")).as_u64().unwrap(), probe_port(init(&r, "b")).as_u64().unwrap());
    assert_ne!(a, b);
    assert!([a, b].contains(&9090));
}

#[test]
fn port_zero_is_never_probed() {
    let random = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - {name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0', args: ['--http-port=0', 'p:r:i']}\n",
    );
    let r = run(&random);
    assert!(moved_proxy(&r).get("startupProbe").is_none());
    assert!(r.mutation.notes.iter().any(|n| n.contains("--http-port=0 is not a port")), "{:?}", r.mutation.notes);
    let shipper = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - {name: shipper, image: 'fluent/fluent-bit:3.1', ports: [{containerPort: 0}, {containerPort: 2020}]}\n",
    );
    assert_eq!(moved_proxy(&run(&shipper))["startupProbe"]["tcpSocket"]["port"], 2020);
}

#[test]
fn host_network_pods_get_no_health_flags_and_no_probe_and_say_why() {
    let manifest = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: node-report}
spec:
  template:
    spec:
      hostNetwork: true
      dnsPolicy: ClusterFirstWithHostNet
      restartPolicy: Never
      containers:
      - {name: report, image: "ghcr.io/acme/node-report:2.0.0"}
      - {name: cloud-sql-proxy, image: "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1", args: ["acme:eu:db?port=15432"]}
      - {name: fluent-bit, image: "fluent/fluent-bit:3.1", ports: [{containerPort: 2020}]}
"#;
    let r = run(manifest);
    let spec = &r.after["spec"]["template"]["spec"];
    assert_eq!(names(&spec["initContainers"]), ["cloud-sql-proxy", "fluent-bit"], "they still move");
    assert_eq!(
        init(&r, "cloud-sql-proxy")["args"],
        json!(["acme:eu:db?port=15432", "--exit-zero-on-sigterm"]),
        "no health flags"
    );
    assert!(spec["initContainers"].as_array().unwrap().iter().all(|c| c.get("startupProbe").is_none()));
    let changes = r.after["metadata"]["annotations"][CHANGES_ANNOTATION].as_str().unwrap();
    assert!(
        changes.contains("no health flags and no startup probe on cloud-sql-proxy, fluent-bit: hostNetwork is on"),
        "{changes}"
    );
}

#[test]
fn a_proxy_with_env_from_gets_nothing_that_could_override_it_and_says_why() {
    // The ConfigMap may set CSQL_PROXY_HEALTH_CHECK=false or CSQL_PROXY_HTTP_ADDRESS=localhost:
    // flags would silently win over it.
    let manifest = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: migrate, image: "ghcr.io/acme/migrate:7"}
      - name: cloud-sql-proxy
        image: gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1
        envFrom: [{configMapRef: {name: cloud-sql-proxy-settings}}]
      - name: alloydb-proxy
        image: gcr.io/alloydb-connectors/alloydb-auth-proxy:1.13.3
        args: ["--config-file=/etc/alloydb/proxy.yaml"]
"#;
    let r = run(manifest);
    for name in ["cloud-sql-proxy", "alloydb-proxy"] {
        let proxy = init(&r, name);
        assert_eq!(proxy["restartPolicy"], "Always");
        assert!(proxy.get("startupProbe").is_none() && proxy.get("env").is_none(), "{name}");
    }
    assert_eq!(init(&r, "alloydb-proxy")["args"], json!(["--config-file=/etc/alloydb/proxy.yaml"]));
    let changes = r.after["metadata"]["annotations"][CHANGES_ANNOTATION].as_str().unwrap();
    assert!(
        changes.contains("cloud-sql-proxy: no startup probe (it has envFrom, which podmedic cannot read"),
        "{changes}"
    );
    assert!(changes.contains("alloydb-proxy: no startup probe (it reads a config file"), "{changes}");
}

/// The moved proxy of a Pod with one main container and this proxy container (YAML flow map).
fn proxy_after(proxy: &str) -> Run {
    run(&pod(&format!("  containers:\n  - {{name: main, image: 'app:1'}}\n  - {proxy}\n")))
}

fn has_arg(c: &Value, arg: &str) -> bool {
    c["args"].as_array().is_some_and(|a| a.iter().any(|x| x == arg))
}

#[test]
fn proxies_known_to_be_new_enough_exit_zero_when_stopped() {
    let cases = [
        ("gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1", Some("--exit-zero-on-sigterm")),
        ("gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.6.0-alpine", Some("--exit-zero-on-sigterm")),
        ("gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.6", Some("--exit-zero-on-sigterm")),
        ("gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.11.0@sha256:4a5b", Some("--exit-zero-on-sigterm")),
        ("gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.5.0", None),
        ("gcr.io/cloud-sql-connectors/cloud-sql-proxy:2", None),
        ("gcr.io/cloud-sql-connectors/cloud-sql-proxy:latest", None),
        ("gcr.io/cloud-sql-connectors/cloud-sql-proxy", None),
        ("gcr.io/cloud-sql-connectors/cloud-sql-proxy@sha256:4a5b", None),
        ("gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.0.0-preview.3", None),
        // AlloyDB spells it without "on"; the Cloud SQL spelling would stop it from starting.
        ("gcr.io/alloydb-connectors/alloydb-auth-proxy:1.11.2-bullseye", Some("--exit-zero-sigterm")),
        ("gcr.io/alloydb-connectors/alloydb-auth-proxy:1.10.1", None),
        ("gcr.io/alloydb-connectors/alloydb-auth-proxy:1", None),
        ("gcr.io/cloudsql-docker/gce-proxy:1.37.0", None),
    ];
    for (image, flag) in cases {
        let r = proxy_after(&format!("{{name: proxy, image: '{image}'}}"));
        let proxy = moved_proxy(&r);
        let exit_flags = ["--exit-zero-on-sigterm", "--exit-zero-sigterm"];
        let added: Vec<&str> = exit_flags.iter().copied().filter(|f| has_arg(proxy, f)).collect();
        assert_eq!(added, flag.into_iter().collect::<Vec<_>>(), "{image}");
        let record = r.after["metadata"]["annotations"][CHANGES_ANNOTATION].as_str().unwrap();
        match flag {
            Some(flag) => {
                assert!(record.contains(&format!("proxy: exits 0 instead of 143 when stopped ({flag})")), "{record}")
            }
            None if !image.contains("gce-proxy") => {
                assert!(record.contains("proxy: exits with code 143 when stopped"), "{record}")
            }
            None => {}
        }
    }
}

#[test]
fn an_exit_code_setting_of_the_user_is_never_overridden() {
    for proxy in [
        "{name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1', args: ['--exit-zero-on-sigterm=false', 'a:b:c']}",
        "{name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1', env: [{name: CSQL_PROXY_EXIT_ZERO_ON_SIGTERM, value: 'false'}]}",
        "{name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1', envFrom: [{secretRef: {name: proxy}}]}",
        "{name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1', command: [sh, -c, 'exec /cloud-sql-proxy a:b:c']}",
    ] {
        let r = proxy_after(proxy);
        assert!(r.mutation.changes.iter().all(|c| c.kind != ChangeKind::ExitZeroOnSigterm), "{proxy}");
        let proxy_after = moved_proxy(&r);
        let set_by_env = proxy_after["env"].as_array().into_iter().flatten();
        assert!(set_by_env.filter(|e| e["name"] == "CSQL_PROXY_EXIT_ZERO_ON_SIGTERM").count() <= 1, "{proxy}");
        assert!(!has_arg(proxy_after, "--exit-zero-on-sigterm"), "{proxy}");
    }
    // The environment form gets the variable, not a flag.
    let r = proxy_after(
        "{name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1', env: [{name: CSQL_PROXY_INSTANCE_CONNECTION_NAME, value: 'a:b:c'}]}",
    );
    assert_eq!(env_value(moved_proxy(&r), "CSQL_PROXY_EXIT_ZERO_ON_SIGTERM"), Some("true"));
    assert!(moved_proxy(&r).get("args").is_none());
}
