//! Generators of the values inside containers: names, images from the catalogue and outside it,
//! args, commands, environment, ports, resources, probes, and fields podmedic does not know.

use std::sync::LazyLock;

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};

pub(crate) const NAMES: &[&str] = &[
    "main",
    "app",
    "job",
    "proxy",
    "proxy-1",
    "proxy-2",
    "cloud-sql-proxy",
    "cloudsql-proxy",
    "istio-proxy",
    "linkerd-proxy",
    "daprd",
    "kuma-sidecar",
    "consul-dataplane",
    "shipper",
    "otel",
    "vector",
    "vault-agent",
    "sidecar",
    "a",
    "a-b",
    "istio-init",
    "linkerd-init",
    "airflow-xcom-sidecar",
    "q\"uote\\d",
    "sl/ash~tilde",
];

pub(crate) const CATALOGUE_REPOS: &[&str] = &[
    "gcr.io/cloud-sql-connectors/cloud-sql-proxy",
    "us-central1-docker.pkg.dev/cloud-sql-connectors/gcr.io/cloud-sql-proxy",
    "cloud-sql-proxy",
    "gcr.io/cloudsql-docker/gce-proxy",
    "gcr.io/alloydb-connectors/alloydb-auth-proxy",
    "docker.io/istio/proxyv2",
    "cr.l5d.io/linkerd/proxy",
    "kumahq/kuma-dp",
    "hashicorp/consul-dataplane",
    "bitnami/pgbouncer",
    "envoyproxy/envoy",
    "daprio/daprd",
    "quay.io/oauth2-proxy/oauth2-proxy",
    "cr.fluentbit.io/fluent/fluent-bit",
    "fluent/fluentd",
    "timberio/vector",
    "grafana/promtail",
    "grafana/alloy",
    "otel/opentelemetry-collector-contrib",
    "gcr.io/datadoghq/agent",
    "docker.elastic.co/beats/filebeat",
    "jaegertracing/jaeger-agent",
    "amazon/aws-xray-daemon",
    "hashicorp/vault",
    "public.ecr.aws/cloudwatch-agent/cloudwatch-agent",
    "registry.datadoghq.com/dogstatsd",
    "prom/statsd-exporter",
    "registry.k8s.io/git-sync/git-sync",
    "mcr.microsoft.com/oss/azure/workload-identity/proxy",
];

pub(crate) const OTHER_REPOS: &[&str] = &[
    "busybox",
    "ubuntu",
    "app",
    "registry.example.com/acme/report",
    "postgres",
    "nginx",
    "acme/myproxy",
    "cloud-sql-proxy-exporter",
    "localhost:5000/team/app",
    "",
    "::",
    "a//b",
    "ünïcode/ïmage",
];

pub(crate) fn image() -> impl Strategy<Value = Option<String>> {
    let repo = prop_oneof![3 => select(CATALOGUE_REPOS), 2 => select(OTHER_REPOS)];
    let prefix = select(&["", "", "mirror.corp.example/", "harbor.corp.example:5000/dockerhub/", "GCR.IO/"][..]);
    let suffix = select(
        &[
            "",
            ":1.2.3",
            ":2.8.0",
            ":2.14.1-alpine",
            ":1.11.2",
            ":2",
            ":latest",
            "@sha256:abc",
            ":2.8.0@sha256:def",
            ":",
        ][..],
    );
    proptest::option::weighted(0.95, (prefix, repo, suffix).prop_map(|(p, r, s)| format!("{p}{r}{s}")))
}

pub(crate) const ARGS: &[&str] = &[
    "--structured-logs",
    "--port=3306",
    "proj:region:inst",
    "--health-check",
    "--health-check=false",
    "--health-check=true",
    "--http-address=0.0.0.0",
    "--http-address=127.0.0.1",
    "--http-address",
    "0.0.0.0",
    "::",
    "--http-port=8181",
    "--http-port",
    "9091",
    "notaport",
    "--",
    "--exit-zero-on-sigterm",
    "--exit-zero-sigterm=false",
    "--quitquitquit",
    "--admin-port=9092",
    "--port=9090",
    "a:b:c?port=9091",
    "--http-port=0",
    "--config-file=/etc/proxy.yaml",
    "-use_http_health_check",
    "-use_http_health_check=false",
    "-health_check_port=8091",
    "-health_check_port",
    "-instances=p:r:i=tcp:5432",
    "agent",
    "-exit-after-auth",
    "--one-time",
    "server",
    "-c",
    "sleep 3600 &",
    "run; curl -X POST localhost:15020/quitquitquit",
    "kill 1",
    "",
];

pub(crate) fn args() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        4 => Just(None),
        1 => Just(Some(Value::Null)),
        6 => prop::collection::vec(select(ARGS), 0..6).prop_map(|a| Some(json!(a))),
    ]
}

pub(crate) fn command() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        6 => Just(None),
        1 => select(&["sleep 3600 &", "run-job; kill 1", "exec cloud-sql-proxy p:r:i", "vault agent -config=/c"][..])
            .prop_map(|s| Some(json!(["sh", "-c", s]))),
        1 => Just(Some(json!(["/cloud_sql_proxy"]))),
        1 => Just(Some(json!(["vault"]))),
        1 => Just(Some(json!(["/bin/bash", "-ec"]))),
    ]
}

/// Values for unknown fields: scalars, and nested arrays and objects whose keys need escaping.
/// (A fixed list: recursive and regex strategies cost milliseconds per value in a debug build.)
pub(crate) fn unknown_value() -> impl Strategy<Value = Value> {
    static VALUES: LazyLock<Vec<Value>> = LazyLock::new(|| {
        vec![
            Value::Null,
            json!(true),
            json!(-7),
            json!(1.5),
            json!(""),
            json!("a~/b ü"),
            json!([]),
            json!([1, {"a": null}, ["x"]]),
            json!({}),
            json!({"b/c": {"~1": [true]}, "spec": {"containers": "not a list"}}),
        ]
    });
    select(VALUES.as_slice())
}

/// Unknown fields, most often none: keys start with `x-` (podmedic never writes such keys), some
/// need escaping.
pub(crate) fn unknown_fields() -> impl Strategy<Value = Vec<(String, Value)>> {
    let key = select(&["x-future", "x-a/b", "x-c~d", "x-name", "x-restartPolicy", "x-"][..]).prop_map(String::from);
    prop_oneof![3 => Just(Vec::new()), 1 => prop::collection::vec((key, unknown_value()), 1..3)]
}

pub(crate) fn with_unknown(mut object: Map<String, Value>, fields: Vec<(String, Value)>) -> Map<String, Value> {
    for (k, v) in fields {
        object.entry(k).or_insert(v);
    }
    object
}

pub(crate) fn env() -> impl Strategy<Value = Option<Value>> {
    let name = select(
        &[
            "CSQL_PROXY_HEALTH_CHECK",
            "CSQL_PROXY_HTTP_PORT",
            "CSQL_PROXY_HTTP_ADDRESS",
            "CSQL_PROXY_INSTANCE_CONNECTION_NAME",
            "ALLOYDB_PROXY_HEALTH_CHECK",
            "ALLOYDB_PROXY_HTTP_PORT",
            "CSQL_PROXY_PORT",
            "CSQL_PROXY_EXIT_ZERO_ON_SIGTERM",
            "CSQL_PROXY_QUITQUITQUIT",
            "KUBEXIT_NAME",
            "GITSYNC_ONE_TIME",
            "FOO",
            "PASSWORD",
        ][..],
    );
    let value = prop_oneof![
        3 => select(&["true", "false", "9091", "0.0.0.0", "127.0.0.1", "x", "hunter2"][..])
            .prop_map(|v| json!({ "value": v })),
        1 => Just(json!({"valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}})),
        1 => Just(json!({})),
    ];
    let var = (name, value, unknown_fields()).prop_map(|(n, v, extra)| {
        let mut m = v.as_object().cloned().unwrap_or_default();
        m.insert("name".into(), json!(n));
        Value::Object(with_unknown(m, extra))
    });
    prop_oneof![5 => Just(None), 1 => Just(Some(Value::Null)), 4 => prop::collection::vec(var, 0..4).prop_map(|v| Some(Value::Array(v)))]
}

pub(crate) fn ports() -> impl Strategy<Value = Option<Value>> {
    let port = (
        select(&[80, 443, 9090, 9091, 8090, 8181, 15021, 2020, 24224, 0, 65535, 65536, 70000, -1][..]),
        select(&[None, Some("TCP"), Some("UDP"), Some("SCTP")][..]),
        proptest::option::of(select(&["http", "metrics", "health"][..])),
        unknown_fields(),
    )
        .prop_map(|(p, proto, name, extra)| {
            let mut m = Map::new();
            m.insert("containerPort".into(), json!(p));
            if let Some(proto) = proto {
                m.insert("protocol".into(), json!(proto));
            }
            if let Some(name) = name {
                m.insert("name".into(), json!(name));
            }
            Value::Object(with_unknown(m, extra))
        });
    prop_oneof![4 => Just(None), 4 => prop::collection::vec(port, 0..3).prop_map(|v| Some(Value::Array(v)))]
}

pub(crate) fn quantity_map() -> impl Strategy<Value = Value> {
    let cpu =
        select(&["100m", "50m", "20m", "1", "2", "0", "0.5", "1e3", "250m", "1k", "abc"][..]).prop_map(Value::from);
    let cpu = prop_oneof![8 => cpu, 1 => Just(json!(1))];
    let memory =
        select(&["64Mi", "128Mi", "10Mi", "100Mi", "1Gi", "0", "100M", "1e6", "32Ki"][..]).prop_map(Value::from);
    let memory = prop_oneof![8 => memory, 1 => Just(json!(1_048_576))];
    (
        proptest::option::of(cpu),
        proptest::option::of(memory),
        proptest::option::weighted(0.2, select(&["1", "0", "3"][..])),
    )
        .prop_map(|(cpu, memory, widget)| {
            let mut m = Map::new();
            if let Some(v) = cpu {
                m.insert("cpu".into(), v);
            }
            if let Some(v) = memory {
                m.insert("memory".into(), v);
            }
            if let Some(v) = widget {
                m.insert("example.com/widget".into(), json!(v));
            }
            Value::Object(m)
        })
}

pub(crate) fn resources() -> impl Strategy<Value = Option<Value>> {
    let full = (
        prop_oneof![2 => Just(None), 1 => Just(Some(Value::Null)), 4 => quantity_map().prop_map(Some)],
        prop_oneof![2 => Just(None), 4 => quantity_map().prop_map(Some)],
        unknown_fields(),
    )
        .prop_map(|(requests, limits, extra)| {
            let mut m = Map::new();
            if let Some(r) = requests {
                m.insert("requests".into(), r);
            }
            if let Some(l) = limits {
                m.insert("limits".into(), l);
            }
            Some(Value::Object(with_unknown(m, extra)))
        });
    prop_oneof![3 => Just(None), 1 => Just(Some(Value::Null)), 6 => full]
}

pub(crate) fn probe() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        6 => Just(None),
        1 => Just(Some(Value::Null)),
        2 => (1u16..9000, unknown_fields()).prop_map(|(port, extra)| {
            let mut m = Map::new();
            m.insert("tcpSocket".into(), json!({ "port": port }));
            m.insert("periodSeconds".into(), json!(7));
            Some(Value::Object(with_unknown(m, extra)))
        }),
    ]
}
