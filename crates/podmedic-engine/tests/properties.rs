//! Properties of the engine over generated Pods, Jobs, CronJobs and Deployments (proptest).
//!
//! Given any object a user could write (random container counts and names, images from the
//! catalogue and outside it, existing init containers and native sidecars, probes, resources,
//! cloud-sql-proxy flags and environment, unknown fields, podmedic annotations), podmedic returns a
//! patch that applies, is idempotent, keeps names unique and at least one regular container,
//! puts `restartPolicy: Always` only on init containers, never changes what the user set, keeps
//! unknown fields, and never requests more than a limit allows.
//!
//! The case counts add up to 11,000 per `cargo test` run. To run a longer campaign:
//! `PROPTEST_CASES=100000 cargo test --test properties` (the count then applies to each test).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use podmedic_engine::annotations::CHANGES_ANNOTATION;
use podmedic_engine::policy::{Policy, ResourceDefaults};
use podmedic_engine::{Context, NamespaceSettings, NativeSidecars, mutate_json, mutate_value};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------------------------
// Policies and cluster capabilities the properties run under.

static BUILTIN: LazyLock<Policy> = LazyLock::new(Policy::builtin);

/// Default requests (with a resource name that needs JSON Pointer escaping) and long-running probes.
static OPT_IN: LazyLock<Policy> = LazyLock::new(|| {
    Policy::builtin_with(
        "apiVersion: podmedic.io/v1alpha1\nkind: Policy\n\
         defaultRequests: {enabled: true, containers: {cpu: 100m, memory: 128Mi}, \
         sidecars: {cpu: 50m, memory: 64Mi, example.com/widget: '1'}}\n\
         longRunningPods: {readinessProbes: true, livenessProbes: true}\n",
        "properties",
    )
    .unwrap()
});

static AVAILABLE: LazyLock<NativeSidecars> = LazyLock::new(|| NativeSidecars::Available);
static UNAVAILABLE: LazyLock<NativeSidecars> = LazyLock::new(|| NativeSidecars::for_version(1, 28));

/// Namespace annotations that turn defaults and probes on over the built-in policy.
static NAMESPACE: LazyLock<NamespaceSettings> = LazyLock::new(|| NamespaceSettings {
    opted_out: false,
    default_requests: Some(ResourceDefaults::parse_annotation("cpu=250m,memory=256Mi").unwrap()),
    default_sidecar_requests: Some(ResourceDefaults::parse_annotation("cpu=10m").unwrap()),
    readiness_probes: Some(true),
    liveness_probes: Some(false),
});

fn context(opt_in: bool, native: bool) -> Context<'static> {
    Context {
        policy: if opt_in { &OPT_IN } else { &BUILTIN },
        native_sidecars: if native { &AVAILABLE } else { &UNAVAILABLE },
        namespace: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Generators. A `Case` is a model of an object; `render` turns it into JSON, resolving the names
// the annotations refer to once container names are final.

const NAMES: &[&str] = &[
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

const CATALOGUE_REPOS: &[&str] = &[
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
];

const OTHER_REPOS: &[&str] = &[
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

fn image() -> impl Strategy<Value = Option<String>> {
    let repo = prop_oneof![3 => select(CATALOGUE_REPOS), 2 => select(OTHER_REPOS)];
    let prefix = select(&["", "", "mirror.corp.example/", "harbor.corp.example:5000/dockerhub/", "GCR.IO/"][..]);
    let suffix = select(&["", ":1.2.3", ":2.8.0", ":latest", "@sha256:abc", ":2.8.0@sha256:def", ":"][..]);
    proptest::option::weighted(0.95, (prefix, repo, suffix).prop_map(|(p, r, s)| format!("{p}{r}{s}")))
}

const ARGS: &[&str] = &[
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
    "-use_http_health_check",
    "-use_http_health_check=false",
    "-health_check_port=8091",
    "-health_check_port",
    "-instances=p:r:i=tcp:5432",
    "agent",
    "-exit-after-auth",
    "server",
    "-c",
    "sleep 3600 &",
    "run; curl -X POST localhost:15020/quitquitquit",
    "kill 1",
    "",
];

fn args() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        4 => Just(None),
        1 => Just(Some(Value::Null)),
        6 => prop::collection::vec(select(ARGS), 0..6).prop_map(|a| Some(json!(a))),
    ]
}

fn command() -> impl Strategy<Value = Option<Value>> {
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
fn unknown_value() -> impl Strategy<Value = Value> {
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
fn unknown_fields() -> impl Strategy<Value = Vec<(String, Value)>> {
    let key = select(&["x-future", "x-a/b", "x-c~d", "x-name", "x-restartPolicy", "x-"][..]).prop_map(String::from);
    prop_oneof![3 => Just(Vec::new()), 1 => prop::collection::vec((key, unknown_value()), 1..3)]
}

fn with_unknown(mut object: Map<String, Value>, fields: Vec<(String, Value)>) -> Map<String, Value> {
    for (k, v) in fields {
        object.entry(k).or_insert(v);
    }
    object
}

fn env() -> impl Strategy<Value = Option<Value>> {
    let name = select(
        &[
            "CSQL_PROXY_HEALTH_CHECK",
            "CSQL_PROXY_HTTP_PORT",
            "CSQL_PROXY_HTTP_ADDRESS",
            "CSQL_PROXY_INSTANCE_CONNECTION_NAME",
            "ALLOYDB_PROXY_HEALTH_CHECK",
            "ALLOYDB_PROXY_HTTP_PORT",
            "KUBEXIT_NAME",
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

fn ports() -> impl Strategy<Value = Option<Value>> {
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

fn quantity_map() -> impl Strategy<Value = Value> {
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

fn resources() -> impl Strategy<Value = Option<Value>> {
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

fn probe() -> impl Strategy<Value = Option<Value>> {
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

/// Where a container stands in the generated pod spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum List {
    Regular,
    Init,
    Ephemeral,
}

#[derive(Clone, Debug)]
struct ContainerModel {
    name: &'static str,
    fields: Map<String, Value>,
}

fn container(list: List) -> impl Strategy<Value = ContainerModel> {
    let restart_policy = match list {
        // An init container with `restartPolicy: Always` is an existing native sidecar.
        List::Init => prop_oneof![2 => Just(None), 1 => Just(Some("Always")), 1 => Just(Some("OnFailure"))].boxed(),
        // Regular containers may set one (Kubernetes 1.34+ rules); podmedic must leave them in place.
        _ => prop_oneof![20 => Just(None), 1 => Just(Some("Never")), 1 => Just(Some("Always"))].boxed(),
    };
    (
        select(NAMES),
        image(),
        command(),
        args(),
        env(),
        ports(),
        resources(),
        (probe(), probe(), probe()),
        restart_policy,
        proptest::bool::weighted(0.03),
        unknown_fields(),
    )
        .prop_map(|(name, image, command, args, env, ports, resources, probes, restart_policy, rules, extra)| {
            let mut m = Map::new();
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    m.insert(k.to_owned(), v);
                }
            };
            put("image", image.map(Value::String));
            put("command", command);
            put("args", args);
            put("env", env);
            put("ports", ports);
            put("resources", resources);
            put("startupProbe", probes.0);
            put("readinessProbe", probes.1);
            put("livenessProbe", probes.2);
            put("restartPolicy", restart_policy.map(Value::from));
            if rules {
                put(
                    "restartPolicyRules",
                    Some(json!([{"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}])),
                );
            }
            ContainerModel { name, fields: with_unknown(m, extra) }
        })
}

/// One annotation or label on a metadata block.
#[derive(Clone, Debug)]
enum Note {
    /// `podmedic.io/sidecars` naming some containers (by index into the final names) and some
    /// names that do not exist.
    Sidecars(Vec<Index>, Vec<&'static str>),
    Skip(&'static str),
    Position(&'static str),
    Changes(&'static str),
    SelfManagedLabel(&'static str),
    SelfManagedAnnotation(&'static str),
    Plain(&'static str, &'static str),
}

fn note() -> impl Strategy<Value = Note> {
    prop_oneof![
        6 => (prop::collection::vec(any::<Index>(), 0..4), prop::collection::vec(select(&["nope", "", " ", "ghost"][..]), 0..2))
            .prop_map(|(i, m)| Note::Sidecars(i, m)),
        1 => select(&["true", "TRUE", " true ", "false", "yes"][..]).prop_map(Note::Skip),
        3 => select(&["first", "last", "", "middle"][..]).prop_map(Note::Position),
        1 => select(&["", "earlier change"][..]).prop_map(Note::Changes),
        1 => select(&["workflows.argoproj.io/workflow", "tekton.dev/taskRun", "spark-role", "jenkins/label"][..])
            .prop_map(Note::SelfManagedLabel),
        1 => select(&["kubernetes.io/config.mirror", "job.runner.gitlab.com/id", "workflows.argoproj.io/node-name"][..])
            .prop_map(Note::SelfManagedAnnotation),
        4 => select(&[("team/owner", "x"), ("app", "web"), ("a~b/c", "tilde")][..]).prop_map(|(k, v)| Note::Plain(k, v)),
    ]
}

#[derive(Clone, Debug)]
struct MetaModel {
    present: bool,
    /// `annotations: null` / `labels: null` when there are none.
    nulls: bool,
    notes: Vec<Note>,
    extra: Vec<(String, Value)>,
}

fn meta() -> impl Strategy<Value = MetaModel> {
    (
        proptest::bool::weighted(0.9),
        proptest::bool::weighted(0.1),
        prop::collection::vec(note(), 0..3),
        unknown_fields(),
    )
        .prop_map(|(present, nulls, notes, extra)| MetaModel { present, nulls, notes, extra })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Pod(Option<&'static str>),
    Job,
    CronJob,
    Deployment,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        6 => select(&[Some("Never"), Some("OnFailure"), Some("Always"), None][..]).prop_map(Kind::Pod),
        3 => Just(Kind::Job),
        3 => Just(Kind::CronJob),
        1 => Just(Kind::Deployment),
    ]
}

#[derive(Clone, Debug)]
struct Case {
    kind: Kind,
    /// Job and CronJob templates: `Never` or `OnFailure`.
    template_restart: &'static str,
    object_meta: MetaModel,
    pod_meta: MetaModel,
    regular: Vec<ContainerModel>,
    init: Vec<ContainerModel>,
    ephemeral: Vec<ContainerModel>,
    /// `initContainers: null` instead of leaving it out when there are none.
    null_init: bool,
    pod_requests: bool,
    extra: [Vec<(String, Value)>; 3],
}

fn case() -> impl Strategy<Value = Case> {
    (
        kind(),
        select(&["Never", "OnFailure"][..]),
        (meta(), meta()),
        prop::collection::vec(container(List::Regular), 0..=8),
        prop::collection::vec(container(List::Init), 0..=3),
        prop::collection::vec(container(List::Ephemeral), 0..=1),
        (any::<bool>(), proptest::bool::weighted(0.05)),
        [unknown_fields(), unknown_fields(), unknown_fields()],
    )
        .prop_map(
            |(
                kind,
                template_restart,
                (object_meta, pod_meta),
                regular,
                init,
                ephemeral,
                (null_init, pod_requests),
                extra,
            )| {
                Case {
                    kind,
                    template_restart,
                    object_meta,
                    pod_meta,
                    regular,
                    init,
                    ephemeral,
                    null_init,
                    pod_requests,
                    extra,
                }
            },
        )
}

/// Container names made unique across the three lists ("proxy", "proxy-1", "proxy-1-2", ...).
fn unique_names(case: &Case) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let all = case.regular.iter().chain(&case.init).chain(&case.ephemeral);
    all.enumerate()
        .map(|(i, c)| {
            let mut name = c.name.to_owned();
            let mut n = i;
            while !seen.insert(name.clone()) {
                name = format!("{}-{n}", c.name);
                n += 1;
            }
            name
        })
        .collect()
}

fn render_meta(m: &MetaModel, names: &[String]) -> Option<Value> {
    if !m.present {
        return None;
    }
    let mut labels = Map::new();
    let mut annotations = Map::new();
    for n in &m.notes {
        let mut put = |k: &str, v: String| {
            annotations.entry(k.to_owned()).or_insert(Value::String(v));
        };
        match n {
            Note::Sidecars(picks, missing) => {
                let mut list: Vec<String> =
                    picks.iter().filter(|_| !names.is_empty()).map(|i| i.get(names).clone()).collect();
                list.extend(missing.iter().map(|s| (*s).to_owned()));
                put("podmedic.io/sidecars", list.join(","));
            }
            Note::Skip(v) => put("podmedic.io/skip", (*v).to_owned()),
            Note::Position(v) => put("podmedic.io/sidecar-position", (*v).to_owned()),
            Note::Changes(v) => put(CHANGES_ANNOTATION, (*v).to_owned()),
            Note::SelfManagedAnnotation(k) => put(k, "x".into()),
            Note::Plain(k, v) => put(k, (*v).to_owned()),
            Note::SelfManagedLabel(k) => {
                labels.insert((*k).to_owned(), json!("x"));
            }
        }
    }
    let mut out = Map::new();
    out.insert("name".into(), json!("generated"));
    for (key, map) in [("labels", labels), ("annotations", annotations)] {
        if !map.is_empty() {
            out.insert(key.into(), Value::Object(map));
        } else if m.nulls {
            out.insert(key.into(), Value::Null);
        }
    }
    Some(Value::Object(with_unknown(out, m.extra.clone())))
}

fn render(case: &Case) -> Value {
    let names = unique_names(case);
    let mut names_iter = names.iter();
    let mut list = |models: &[ContainerModel]| -> Vec<Value> {
        models
            .iter()
            .map(|c| {
                let mut m = Map::new();
                m.insert("name".into(), json!(names_iter.next().unwrap()));
                m.extend(c.fields.clone());
                Value::Object(m)
            })
            .collect()
    };
    let regular = list(&case.regular);
    let init = list(&case.init);
    let ephemeral = list(&case.ephemeral);

    let restart = match case.kind {
        Kind::Pod(r) => r,
        Kind::Job | Kind::CronJob => Some(case.template_restart),
        Kind::Deployment => Some("Always"),
    };
    let mut spec = Map::new();
    if let Some(r) = restart {
        spec.insert("restartPolicy".into(), json!(r));
    }
    spec.insert("containers".into(), Value::Array(regular));
    if !init.is_empty() {
        spec.insert("initContainers".into(), Value::Array(init));
    } else if case.null_init {
        spec.insert("initContainers".into(), Value::Null);
    }
    if !ephemeral.is_empty() {
        spec.insert("ephemeralContainers".into(), Value::Array(ephemeral));
    }
    if case.pod_requests {
        spec.insert("resources".into(), json!({"requests": {"cpu": "1"}}));
    }
    let pod_spec = Value::Object(with_unknown(spec, case.extra[0].clone()));

    let object_meta = render_meta(&case.object_meta, &names);
    let template = |spec: Value| {
        let mut t = Map::new();
        if let Some(m) = render_meta(&case.pod_meta, &names) {
            t.insert("metadata".into(), m);
        }
        t.insert("spec".into(), spec);
        Value::Object(with_unknown(t, case.extra[1].clone()))
    };
    let (api_version, kind, spec) = match case.kind {
        Kind::Pod(_) => ("v1", "Pod", pod_spec),
        Kind::Job => ("batch/v1", "Job", json!({ "backoffLimit": 0, "template": template(pod_spec) })),
        Kind::CronJob => (
            "batch/v1",
            "CronJob",
            json!({ "schedule": "* * * * *", "jobTemplate": { "spec": { "template": template(pod_spec) } } }),
        ),
        Kind::Deployment => ("apps/v1", "Deployment", json!({ "replicas": 1, "template": template(pod_spec) })),
    };
    let mut object = Map::new();
    object.insert("apiVersion".into(), json!(api_version));
    object.insert("kind".into(), json!(kind));
    if let Some(m) = object_meta {
        object.insert("metadata".into(), m);
    }
    object.insert("spec".into(), spec);
    Value::Object(with_unknown(object, case.extra[2].clone()))
}

// ---------------------------------------------------------------------------------------------
// Reading objects back.

fn pod_spec_pointer(object: &Value) -> &'static str {
    match object["kind"].as_str() {
        Some("Pod") => "/spec",
        Some("CronJob") => "/spec/jobTemplate/spec/template/spec",
        _ => "/spec/template/spec",
    }
}

fn list_of<'v>(spec: &'v Value, key: &str) -> Vec<&'v Map<String, Value>> {
    spec.get(key).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_object).collect()).unwrap_or_default()
}

fn name_of(c: &Map<String, Value>) -> &str {
    c.get("name").and_then(Value::as_str).unwrap_or_default()
}

/// A field a user set: present and not null.
fn set<'v>(c: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    c.get(key).filter(|v| !v.is_null())
}

/// Every `x-` field anywhere in the document, with its value, as a multiset.
fn unknown_multiset(v: &Value, out: &mut BTreeMap<String, usize>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k.starts_with("x-") {
                    *out.entry(format!("{k}={v}")).or_default() += 1;
                }
                unknown_multiset(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| unknown_multiset(v, out)),
        _ => {}
    }
}

/// A quantity's value, parsed independently of the engine (the forms the generator writes).
fn quantity(v: &Value) -> Option<f64> {
    if let Some(n) = v.as_f64() {
        return Some(n);
    }
    let s = v.as_str()?;
    let (number, factor) =
        [("Ki", 1024f64), ("Mi", 1024f64.powi(2)), ("Gi", 1024f64.powi(3)), ("m", 1e-3), ("k", 1e3), ("M", 1e6)]
            .iter()
            .find_map(|(suffix, f)| s.strip_suffix(suffix).map(|n| (n, *f)))
            .unwrap_or((s, 1.0));
    let (mantissa, exponent) = number.split_once('e').unwrap_or((number, "0"));
    Some(mantissa.parse::<f64>().ok()? * 10f64.powi(exponent.parse().ok()?) * factor)
}

/// Strips what podmedic may legitimately change so the rest of the object can be compared.
fn outside_containers(object: &Value) -> Value {
    let mut v = object.clone();
    let spec_ptr = pod_spec_pointer(object);
    if let Some(spec) = v.pointer_mut(spec_ptr).and_then(Value::as_object_mut) {
        spec.remove("containers");
        spec.remove("initContainers");
    }
    let template_meta = spec_ptr.strip_suffix("/spec").map(|t| format!("{t}/metadata")).unwrap_or_default();
    for meta_ptr in ["/metadata", template_meta.as_str()] {
        let Some(meta) = v.pointer_mut(meta_ptr).and_then(Value::as_object_mut) else { continue };
        if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.remove(CHANGES_ANNOTATION);
        }
        // A missing or null annotations map may become one holding only the changes annotation.
        if meta.get("annotations").is_some_and(|a| a.is_null() || a.as_object().is_some_and(Map::is_empty)) {
            meta.remove("annotations");
        }
    }
    for meta_ptr in [template_meta.as_str(), "/metadata"] {
        let (parent, key) = meta_ptr.rsplit_once('/').unwrap_or_default();
        let Some(parent) = v.pointer_mut(parent).and_then(Value::as_object_mut) else { continue };
        if parent.get(key).is_some_and(|m| m.is_null() || m.as_object().is_some_and(Map::is_empty)) {
            parent.remove(key);
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------
// The properties.

fn check(before: &Value, ctx: &Context<'_>) -> Result<(), TestCaseError> {
    let mutation = mutate_value(before, ctx).map_err(|e| TestCaseError::fail(format!("engine error: {e}")))?;

    // The raw-JSON path (the webhook's) decides exactly as the parsed-value path (`podmedic fix`).
    let text = serde_json::to_string(before).unwrap();
    let from_text = mutate_json(&text, ctx).map_err(|e| TestCaseError::fail(format!("mutate_json: {e}")))?;
    prop_assert_eq!(&from_text.patch, &mutation.patch, "mutate_json and mutate_value disagree");

    // 1. The patch applies.
    let mut after = before.clone();
    json_patch::patch(&mut after, &mutation.patch)
        .map_err(|e| TestCaseError::fail(format!("patch does not apply: {e}\npatch: {:?}", mutation.patch)))?;

    // 2. Idempotence.
    let again = mutate_value(&after, ctx).map_err(|e| TestCaseError::fail(format!("second run: {e}")))?;
    prop_assert!(again.patch.0.is_empty(), "second run not empty: {:?}\nafter: {}", again.patch, after);

    // Nothing outside the container lists and the changes annotation moves.
    prop_assert_eq!(outside_containers(before), outside_containers(&after), "object changed outside containers");

    // Unknown fields survive, wherever they were.
    let (mut u_before, mut u_after) = (BTreeMap::new(), BTreeMap::new());
    unknown_multiset(before, &mut u_before);
    unknown_multiset(&after, &mut u_after);
    prop_assert_eq!(u_before, u_after, "unknown fields changed");

    let spec_ptr = pod_spec_pointer(before);
    let (spec_b, spec_a) = (before.pointer(spec_ptr).unwrap(), after.pointer(spec_ptr).unwrap());
    let (reg_b, init_b, eph_b) =
        (list_of(spec_b, "containers"), list_of(spec_b, "initContainers"), list_of(spec_b, "ephemeralContainers"));
    let (reg_a, init_a, eph_a) =
        (list_of(spec_a, "containers"), list_of(spec_a, "initContainers"), list_of(spec_a, "ephemeralContainers"));

    // 3. Names stay unique, and a regular container remains when there was one.
    let names_after: Vec<&str> = reg_a.iter().chain(&init_a).chain(&eph_a).map(|c| name_of(c)).collect();
    let unique: BTreeSet<&str> = names_after.iter().copied().collect();
    prop_assert_eq!(unique.len(), names_after.len(), "duplicate names: {:?}", names_after);
    let names_before: BTreeSet<&str> = reg_b.iter().chain(&init_b).chain(&eph_b).map(|c| name_of(c)).collect();
    prop_assert_eq!(&unique, &names_before, "containers appeared or vanished");
    prop_assert!(reg_b.is_empty() || !reg_a.is_empty(), "no regular container left");

    // Init containers keep their order; sidecars only move from containers to initContainers.
    let old_inits: Vec<&str> = init_b.iter().map(|c| name_of(c)).collect();
    let kept_inits: Vec<&str> = init_a.iter().map(|c| name_of(c)).filter(|n| old_inits.contains(n)).collect();
    prop_assert_eq!(&kept_inits, &old_inits, "existing init containers reordered");
    let regular_names: Vec<&str> = reg_a.iter().map(|c| name_of(c)).collect();
    let kept_regular: Vec<&str> = reg_b.iter().map(|c| name_of(c)).filter(|n| regular_names.contains(n)).collect();
    prop_assert_eq!(&kept_regular, &regular_names, "regular containers reordered or added");
    prop_assert_eq!(eph_b, eph_a, "ephemeral containers changed");

    let original = |name: &str| reg_b.iter().chain(&init_b).find(|c| name_of(c) == name).copied().unwrap();
    let moved = |name: &str| reg_b.iter().any(|c| name_of(c) == name) && init_a.iter().any(|c| name_of(c) == name);

    for (c, in_init) in reg_a.iter().map(|c| (c, false)).chain(init_a.iter().map(|c| (c, true))) {
        let name = name_of(c);
        let old = original(name);
        let was_moved = moved(name);

        // 4. `restartPolicy: Always` is only ever added to init containers (the moved sidecars).
        if set(old, "restartPolicy") != set(c, "restartPolicy") {
            prop_assert!(in_init && was_moved, "{name}: restartPolicy changed outside a move");
            prop_assert_eq!(set(old, "restartPolicy"), None, "{}: restartPolicy replaced", name);
            prop_assert_eq!(set(c, "restartPolicy"), Some(&json!("Always")));
        }

        // 5. Values the user set are never changed or removed.
        for (key, value) in old.iter().filter(|(_, v)| !v.is_null()) {
            let now = c.get(key);
            match key.as_str() {
                "args" if value.is_array() => {
                    let (old_args, new_args) = (value.as_array().unwrap(), now.and_then(Value::as_array).unwrap());
                    check_args_grow(name, old_args, new_args)?;
                }
                "env" if value.is_array() => {
                    let (old_env, new_env) = (value.as_array().unwrap(), now.and_then(Value::as_array).unwrap());
                    prop_assert!(new_env.starts_with(old_env), "{name}: env changed, not appended to");
                }
                "resources" => check_resources(name, value, now.unwrap())?,
                _ => prop_assert_eq!(Some(value), now, "{}: field {} changed", name, key),
            }
        }
        // What podmedic may add where the user set nothing.
        for key in c.keys().filter(|k| set(old, k).is_none() && set(c, k).is_some()) {
            let allowed = match key.as_str() {
                "restartPolicy" | "startupProbe" | "args" | "env" => was_moved,
                "readinessProbe" | "livenessProbe" => !in_init,
                "resources" => true,
                _ => false,
            };
            prop_assert!(allowed, "{name}: podmedic added {key}");
        }

        // 6. An added request never exceeds the limit.
        let requests_b = set(old, "resources").and_then(|r| set(r.as_object()?, "requests")).and_then(Value::as_object);
        let resources_a = set(c, "resources").and_then(Value::as_object);
        let requests_a = resources_a.and_then(|r| set(r, "requests")).and_then(Value::as_object);
        let limits = resources_a.and_then(|r| set(r, "limits")).and_then(Value::as_object);
        for (resource, request) in requests_a.into_iter().flatten() {
            if requests_b.is_some_and(|r| r.contains_key(resource)) {
                continue;
            }
            let limit = limits.and_then(|l| l.get(resource)).and_then(quantity);
            if let (Some(limit), Some(request)) = (limit, quantity(request)) {
                prop_assert!(request <= limit * (1.0 + 1e-12), "{name}: added request {resource} above its limit");
            }
        }
    }
    Ok(())
}

/// New args are only ever inserted (flags, before a `--` terminator) or appended: removing them
/// gives back the user's args in order, and what follows `--` is untouched.
fn check_args_grow(name: &str, old: &[Value], new: &[Value]) -> Result<(), TestCaseError> {
    // Greedy matching finds the user's args as a subsequence if they are one.
    let mut rest = old.iter().peekable();
    let mut added = Vec::new();
    for n in new {
        if rest.peek() == Some(&n) {
            rest.next();
        } else {
            added.push(n);
        }
    }
    prop_assert!(rest.peek().is_none(), "{name}: args {old:?} are not a subsequence of {new:?}");
    prop_assert!(added.iter().all(|a| a.as_str().is_some_and(|s| s.starts_with('-'))), "{name}: non-flag added");
    if let Some(i) = old.iter().position(|a| a == "--") {
        prop_assert!(new.ends_with(&old[i..]), "{name}: args after -- changed");
    } else {
        prop_assert!(new.starts_with(old), "{name}: args not appended at the end");
    }
    Ok(())
}

fn check_resources(name: &str, old: &Value, new: &Value) -> Result<(), TestCaseError> {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
        prop_assert_eq!(old, new, "{}: resources changed", name);
        return Ok(());
    };
    for (key, value) in old {
        match (key.as_str(), value) {
            ("requests", Value::Object(requests)) => {
                let now = new.get("requests").and_then(Value::as_object);
                for (resource, quantity) in requests {
                    prop_assert_eq!(
                        now.and_then(|n| n.get(resource)),
                        Some(quantity),
                        "{}: request {} changed",
                        name,
                        resource
                    );
                }
            }
            ("requests", Value::Null) => {}
            _ => prop_assert_eq!(new.get(key), Some(value), "{}: resources.{} changed", name, key),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Test entry points. 5,000 + 5,000 + 1,000 = 11,000 generated objects per run.

proptest! {
    #![proptest_config(ProptestConfig { cases: 5_000, ..ProptestConfig::default() })]

    /// The built-in policy, alone or with namespace annotations that opt in to defaults and probes.
    #[test]
    fn builtin_policy_properties_hold(case in case(), native in any::<bool>(), namespace in any::<bool>()) {
        let ctx = Context { namespace: namespace.then_some(&*NAMESPACE), ..context(false, native) };
        check(&render(&case), &ctx)?;
    }

    /// A policy with default requests (one resource name needs pointer escaping) and probes on.
    #[test]
    fn opt_in_defaults_and_probes_properties_hold(case in case(), native in any::<bool>()) {
        check(&render(&case), &context(true, native))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    /// Duplicate container names are invalid (validation rejects them after admission), but they
    /// reach the webhook: podmedic must still return a patch that applies, and never panic.
    #[test]
    fn duplicate_names_never_break_the_patch(case in case(), opt_in in any::<bool>(), native in any::<bool>()) {
        let mut object = render(&case);
        let spec_ptr = pod_spec_pointer(&object);
        if let Some(containers) = object.pointer_mut(&format!("{spec_ptr}/containers")).and_then(Value::as_array_mut) {
            for c in containers.iter_mut() {
                c["name"] = json!("dup");
            }
        }
        let ctx = context(opt_in, native);
        let mutation = mutate_value(&object, &ctx).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut after = object.clone();
        json_patch::patch(&mut after, &mutation.patch).map_err(|e| TestCaseError::fail(e.to_string()))?;
        mutate_value(&after, &ctx).map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
}

#[test]
fn the_generator_reaches_the_interesting_cases() {
    // Guard against a generator that silently stops producing moves, defaults or probes.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = case();
    let (mut moved, mut requests, mut probes, mut unchanged) = (0, 0, 0, 0);
    for _ in 0..500 {
        let object = render(&strategy.new_tree(&mut runner).unwrap().current());
        let m = mutate_value(&object, &context(true, true)).unwrap();
        let kinds: BTreeSet<_> = m.changes.iter().map(|c| c.kind.label()).collect();
        moved += usize::from(kinds.contains("sidecar_moved"));
        requests += usize::from(kinds.contains("requests_added"));
        probes += usize::from(kinds.contains("probe_added"));
        unchanged += usize::from(m.is_unchanged());
    }
    assert!(moved > 100 && requests > 100 && probes > 50 && unchanged > 20, "{moved} {requests} {probes} {unchanged}");
}
