//! A `Case` is a model of an object (a Pod, Job, CronJob or Deployment); `render` turns it into
//! JSON, resolving the names the annotations refer to once container names are final.

use std::collections::BTreeSet;

use podmedic_engine::annotations::CHANGES_ANNOTATION;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Map, Value, json};

use crate::values::*;

/// Where a container stands in the generated pod spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum List {
    Regular,
    Init,
    Ephemeral,
}

#[derive(Clone, Debug)]
pub(crate) struct ContainerModel {
    pub(crate) name: &'static str,
    pub(crate) fields: Map<String, Value>,
}

pub(crate) fn container(list: List) -> impl Strategy<Value = ContainerModel> {
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
        (proptest::bool::weighted(0.03), proptest::bool::weighted(0.08)),
        unknown_fields(),
    )
        .prop_map(
            |(name, image, command, args, env, ports, resources, probes, restart_policy, (rules, env_from), extra)| {
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
                if env_from {
                    put("envFrom", Some(json!([{"configMapRef": {"name": "settings"}}])));
                }
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
            },
        )
}

/// A database proxy in one of the forms users run it, to put several in one Pod.
pub(crate) fn proxy() -> impl Strategy<Value = ContainerModel> {
    let image = select(
        &[
            "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1",
            "asia.gcr.io/cloud-sql-connectors/cloud-sql-proxy:2",
            "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.6.0-alpine",
            "gcr.io/alloydb-connectors/alloydb-auth-proxy:1.11.2",
            "gcr.io/cloudsql-docker/gce-proxy:1.37.0",
        ][..],
    );
    // Mostly settings that change which ports the proxy binds, so that proxies compete for them.
    let args = prop::collection::vec(
        select(
            &[
                "a:b:c",
                "a:b:d?port=9091",
                "projects/p/locations/l/clusters/c/instances/i",
                "--port=9090",
                "--quitquitquit",
                "--admin-port=9092",
                "--health-check",
                "--http-address=0.0.0.0",
                "--structured-logs",
                "--exit-zero-on-sigterm",
                "-health_check_port=8091",
            ][..],
        ),
        0..4,
    );
    (container(List::Regular), image, args).prop_map(|(mut c, image, args)| {
        c.fields.insert("image".into(), json!(image));
        c.fields.insert("args".into(), json!(args));
        c.fields.remove("restartPolicy");
        c.fields.remove("restartPolicyRules");
        c.fields.remove("command");
        // Their environment and probes are generated elsewhere; here the flags decide the ports.
        for field in ["env", "envFrom", "startupProbe"] {
            c.fields.remove(field);
        }
        c
    })
}

/// One annotation or label on a metadata block.
#[derive(Clone, Debug)]
pub(crate) enum Note {
    /// `podmedic.io/sidecars` naming some containers (by index into the final names) and some
    /// names that do not exist.
    Sidecars(Vec<Index>, Vec<&'static str>),
    /// `podmedic.io/not-sidecars` naming some containers (by index into the final names).
    NotSidecars(Vec<Index>),
    Skip(&'static str),
    Position(&'static str),
    Changes(&'static str),
    SelfManagedLabel(&'static str),
    SelfManagedAnnotation(&'static str),
    Plain(&'static str, &'static str),
}

pub(crate) fn note() -> impl Strategy<Value = Note> {
    prop_oneof![
        6 => (prop::collection::vec(any::<Index>(), 0..4), prop::collection::vec(select(&["nope", "", " ", "ghost"][..]), 0..2))
            .prop_map(|(i, m)| Note::Sidecars(i, m)),
        3 => prop::collection::vec(any::<Index>(), 0..3).prop_map(Note::NotSidecars),
        1 => select(&["true", "TRUE", " true ", "false", "yes"][..]).prop_map(Note::Skip),
        3 => select(&["first", "last", "", "middle"][..]).prop_map(Note::Position),
        1 => select(&["", "earlier change"][..]).prop_map(Note::Changes),
        1 => select(&["workflows.argoproj.io/workflow", "tekton.dev/taskRun", "spark-role", "jenkins/label"][..])
            .prop_map(Note::SelfManagedLabel),
        1 => select(&["kubernetes.io/config.mirror", "job.runner.gitlab.com/id", "workflows.argoproj.io/node-name"][..])
            .prop_map(Note::SelfManagedAnnotation),
        4 => select(&[("team/owner", "x"), ("app", "web"), ("a~b/c", "tilde")][..]).prop_map(|(k, v)| Note::Plain(k, v)),
        2 => select(&[
            ("kuma.io/application-probe-proxy-port", "9001"),
            ("kuma.io/application-probe-proxy-port", "0"),
            ("config.linkerd.io/default-inbound-policy", "deny"),
            ("consul.hashicorp.com/transparent-proxy", "false"),
        ][..]).prop_map(|(k, v)| Note::Plain(k, v)),
    ]
}

#[derive(Clone, Debug)]
pub(crate) struct MetaModel {
    pub(crate) present: bool,
    /// `annotations: null` / `labels: null` when there are none.
    pub(crate) nulls: bool,
    pub(crate) notes: Vec<Note>,
    pub(crate) extra: Vec<(String, Value)>,
}

pub(crate) fn meta() -> impl Strategy<Value = MetaModel> {
    (
        proptest::bool::weighted(0.9),
        proptest::bool::weighted(0.1),
        prop::collection::vec(note(), 0..3),
        unknown_fields(),
    )
        .prop_map(|(present, nulls, notes, extra)| MetaModel { present, nulls, notes, extra })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Pod(Option<&'static str>),
    Job,
    CronJob,
    Deployment,
}

pub(crate) fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        6 => select(&[Some("Never"), Some("OnFailure"), Some("Always"), None][..]).prop_map(Kind::Pod),
        3 => Just(Kind::Job),
        3 => Just(Kind::CronJob),
        1 => Just(Kind::Deployment),
    ]
}

#[derive(Clone, Debug)]
pub(crate) struct Case {
    pub(crate) kind: Kind,
    /// Job and CronJob templates: `Never` or `OnFailure`.
    pub(crate) template_restart: &'static str,
    pub(crate) object_meta: MetaModel,
    pub(crate) pod_meta: MetaModel,
    pub(crate) regular: Vec<ContainerModel>,
    pub(crate) init: Vec<ContainerModel>,
    pub(crate) ephemeral: Vec<ContainerModel>,
    /// `initContainers: null` instead of leaving it out when there are none.
    pub(crate) null_init: bool,
    /// Pod-level `spec.resources` (requests, limits only, or an empty object).
    pub(crate) pod_resources: Option<&'static str>,
    /// `spec.hostNetwork`.
    pub(crate) host_network: Option<bool>,
    pub(crate) extra: [Vec<(String, Value)>; 3],
}

pub(crate) fn case() -> impl Strategy<Value = Case> {
    (
        kind(),
        select(&["Never", "OnFailure"][..]),
        (meta(), meta()),
        (
            prop::collection::vec(container(List::Regular), 0..=8),
            prop_oneof![4 => Just(Vec::new()), 1 => prop::collection::vec(proxy(), 2..=3)],
        ),
        prop::collection::vec(container(List::Init), 0..=3),
        prop::collection::vec(container(List::Ephemeral), 0..=1),
        (
            any::<bool>(),
            proptest::option::weighted(0.08, select(&["requests", "limits", "empty"][..])),
            proptest::option::weighted(0.1, any::<bool>()),
        ),
        [unknown_fields(), unknown_fields(), unknown_fields()],
    )
        .prop_map(
            |(
                kind,
                template_restart,
                (object_meta, pod_meta),
                (mut regular, proxies),
                init,
                ephemeral,
                (null_init, pod_resources, host_network),
                extra,
            )| {
                regular.extend(proxies);
                Case {
                    kind,
                    template_restart,
                    object_meta,
                    pod_meta,
                    regular,
                    init,
                    ephemeral,
                    null_init,
                    pod_resources,
                    host_network,
                    extra,
                }
            },
        )
}

/// Container names made unique across the three lists ("proxy", "proxy-1", "proxy-1-2", ...).
pub(crate) fn unique_names(case: &Case) -> Vec<String> {
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

pub(crate) fn render_meta(m: &MetaModel, names: &[String]) -> Option<Value> {
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
            Note::NotSidecars(picks) => {
                let list: Vec<String> =
                    picks.iter().filter(|_| !names.is_empty()).map(|i| i.get(names).clone()).collect();
                put("podmedic.io/not-sidecars", list.join(","));
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

pub(crate) fn render(case: &Case) -> Value {
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
    match case.pod_resources {
        Some("requests") => spec.insert("resources".into(), json!({"requests": {"cpu": "1"}})),
        Some("limits") => spec.insert("resources".into(), json!({"limits": {"cpu": "4", "memory": "8Gi"}})),
        Some(_) => spec.insert("resources".into(), json!({})),
        None => None,
    };
    if let Some(host_network) = case.host_network {
        spec.insert("hostNetwork".into(), json!(host_network));
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
