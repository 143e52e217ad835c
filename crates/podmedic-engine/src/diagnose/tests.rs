//! The checks, told as stories: given this workload and these nodes (or objects), podmedic warns
//! this, and says nothing where it cannot be sure.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::annotations::NamespaceSettings;
use crate::checks::CheckId;
use crate::cluster::{ClusterView, NamespaceObjects, NodeFacts, ReferenceKind};
use crate::kubernetes::NativeSidecars;
use crate::mutation::Context;
use crate::policy::Policy;

/// The real node of `tests/fixtures/cluster-objects/node.json`: 2 CPUs, about 23.4 GiB, no taints.
fn real_node() -> NodeFacts {
    let path = format!("{}/../../tests/fixtures/cluster-objects/node.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    NodeFacts::from_node_json(&serde_json::from_str(&text).unwrap()).unwrap()
}

/// The real node renamed, with extra labels, taints, readiness or cordon.
fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str, &str)]) -> NodeFacts {
    let mut n = real_node();
    n.name = name.into();
    n.labels.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    n.taints = taints
        .iter()
        .map(|(k, v, e)| crate::cluster::Taint { key: k.to_string(), value: v.to_string(), effect: e.to_string() })
        .collect();
    n
}

fn yaml(text: &str) -> Value {
    yaml_serde::from_str(text).unwrap()
}

/// The names of the objects that exist in the namespace.
struct Seen(BTreeSet<(ReferenceKind, &'static str)>);

impl NamespaceObjects for Seen {
    fn contains(&self, kind: ReferenceKind, name: &str) -> bool {
        self.0.iter().any(|(k, n)| *k == kind && *n == name)
    }
}

struct Cluster {
    nodes: Option<Vec<Arc<NodeFacts>>>,
    seen: Option<Seen>,
    policy: Policy,
    namespace: Option<NamespaceSettings>,
}

impl Cluster {
    fn with_nodes(nodes: Vec<NodeFacts>) -> Cluster {
        Cluster {
            nodes: Some(nodes.into_iter().map(Arc::new).collect()),
            seen: None,
            policy: Policy::builtin(),
            namespace: None,
        }
    }

    fn unknown() -> Cluster {
        Cluster { nodes: None, seen: None, policy: Policy::builtin(), namespace: None }
    }

    fn seeing(mut self, objects: &[(ReferenceKind, &'static str)]) -> Cluster {
        self.seen = Some(Seen(objects.iter().copied().collect()));
        self
    }

    fn policy(mut self, yaml: &str) -> Cluster {
        self.policy = Policy::builtin_with(yaml, "test").unwrap();
        self
    }

    /// Runs `f` with the context this cluster gives a request.
    fn with_context<R>(&self, f: impl FnOnce(&Context<'_>) -> R) -> R {
        let cluster = ClusterView {
            nodes: self.nodes.as_deref(),
            objects: self.seen.as_ref().map(|s| s as &dyn NamespaceObjects),
        };
        f(&Context {
            namespace: self.namespace.as_ref(),
            cluster,
            ..Context::new(&self.policy, &NativeSidecars::Available)
        })
    }

    /// The warnings `/mutate` and `/warn` would give for the manifest (the engine's own warnings
    /// included).
    fn warnings(&self, manifest: &Value) -> Vec<String> {
        self.with_context(|ctx| crate::mutate_value(manifest, ctx).unwrap().warnings)
    }

    /// Only the findings of the checks, with their ids.
    fn findings(&self, manifest: &Value) -> Vec<(CheckId, String)> {
        let diagnosis = self.with_context(|ctx| crate::diagnose_value(manifest, ctx).unwrap());
        for f in &diagnosis.findings {
            assert!(f.message.len() < 120, "too long for a warning: {}", f.message);
        }
        diagnosis.findings.into_iter().map(|f| (f.check, f.message)).collect()
    }
}

/// A workload of `kind` with this pod spec (YAML, indented for the template's `spec:`).
fn workload(kind: &str, pod_spec: &str) -> Value {
    let (api, body) = match kind {
        "Job" => ("batch/v1", format!("  template:\n    spec:\n      restartPolicy: Never\n{pod_spec}")),
        "CronJob" => (
            "batch/v1",
            format!(
                "  schedule: '0 * * * *'\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n{}",
                pod_spec.lines().map(|l| format!("    {l}\n")).collect::<String>()
            ),
        ),
        "Pod" => ("v1", pod_spec.lines().map(|l| format!("{}\n", &l[4.min(l.len())..])).collect()),
        _ => (
            "apps/v1",
            format!(
                "  selector: {{matchLabels: {{app: x}}}}\n  template:\n    metadata: {{labels: {{app: x}}}}\n    spec:\n{pod_spec}"
            ),
        ),
    };
    yaml(&format!("apiVersion: {api}\nkind: {kind}\nmetadata: {{name: x, namespace: shop}}\nspec:\n{body}"))
}

fn messages(findings: &[(CheckId, String)], check: CheckId) -> Vec<&str> {
    findings.iter().filter(|(c, _)| *c == check).map(|(_, m)| m.as_str()).collect()
}

const BIG_POSTGRES: &str = "      nodeSelector: {disktype: nvme}
      containers:
      - name: postgres
        image: postgres:16.4
        resources: {requests: {cpu: '8', memory: 32Gi}}
";

#[test]
fn the_statefulset_asking_8_cpus_on_a_2_cpu_node_fits_nowhere_and_its_selector_matches_nothing() {
    let findings = Cluster::with_nodes(vec![real_node()]).findings(&workload("StatefulSet", BIG_POSTGRES));
    assert_eq!(
        messages(&findings, CheckId::NodeSelector),
        ["nodeSelector disktype=nvme matches no node: Pods stay Pending; fix it or label a node"]
    );
    assert_eq!(
        messages(&findings, CheckId::NodeFit),
        [
            "no node can fit cpu 8 (largest allocatable: 2): container postgres requests 8; lower it or add nodes",
            "no node can fit memory 32Gi (largest allocatable: 23.4Gi): container postgres requests 32Gi; lower it or \
             add nodes",
        ]
    );
}

#[test]
fn a_node_with_the_label_takes_the_selector_finding_away_but_not_the_fit() {
    let nodes = vec![real_node(), node("nvme-1", &[("disktype", "nvme")], &[])];
    let findings = Cluster::with_nodes(nodes).findings(&workload("StatefulSet", BIG_POSTGRES));
    assert!(messages(&findings, CheckId::NodeSelector).is_empty(), "{findings:?}");
    assert_eq!(messages(&findings, CheckId::NodeFit).len(), 2, "{findings:?}");
    // A node big enough, with the label: nothing to say.
    let mut big = node("nvme-big", &[("disktype", "nvme")], &[]);
    big.allocatable = crate::cluster::Amounts::from_list([("cpu", "15800m"), ("memory", "60Gi")]);
    let findings = Cluster::with_nodes(vec![real_node(), big]).findings(&workload("StatefulSet", BIG_POSTGRES));
    assert_eq!(findings, []);
}

#[test]
fn the_clean_deployment_of_the_real_cluster_gets_no_finding() {
    let review: Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/../../tests/fixtures/cluster-objects/review-deployment-create-catalog-api.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let deployment = &review["request"]["object"];
    assert_eq!(Cluster::with_nodes(vec![real_node()]).findings(deployment), []);
}

#[test]
fn the_effective_request_counts_sidecars_and_init_containers_like_the_scheduler() {
    // Regular 1 + sidecar 0.5 = 1.5 running; the init container after the sidecar needs 1.8 + 0.5 = 2.3.
    let spec = "      initContainers:
      - {name: proxy, image: envoy:1, restartPolicy: Always, resources: {requests: {cpu: 500m}}}
      - {name: migrate, image: m:1, resources: {requests: {cpu: 1800m}}}
      containers:
      - {name: app, image: a:1, resources: {requests: {cpu: '1'}}}
";
    let findings = Cluster::with_nodes(vec![real_node()]).findings(&workload("Deployment", spec));
    assert_eq!(
        messages(&findings, CheckId::NodeFit),
        ["no node can fit cpu 2.3 (largest allocatable: 2): largest: container migrate; lower requests or add nodes"]
    );
    // The same init container before the sidecar needs only its own 1.8: fits.
    let before = "      initContainers:
      - {name: migrate, image: m:1, resources: {requests: {cpu: 1800m}}}
      - {name: proxy, image: envoy:1, restartPolicy: Always, resources: {requests: {cpu: 500m}}}
      containers:
      - {name: app, image: a:1, resources: {requests: {cpu: '1'}}}
";
    assert_eq!(Cluster::with_nodes(vec![real_node()]).findings(&workload("Deployment", before)), []);
}

#[test]
fn limits_stand_in_for_requests_pod_level_requests_win_and_overhead_adds() {
    let nodes = || Cluster::with_nodes(vec![real_node()]);
    let limits_only = "      containers:\n      - {name: app, image: a:1, resources: {limits: {cpu: '3'}}}\n";
    assert_eq!(messages(&nodes().findings(&workload("Deployment", limits_only)), CheckId::NodeFit).len(), 1);
    let pod_level = "      resources: {requests: {cpu: '1'}}
      containers:
      - {name: app, image: a:1, resources: {limits: {cpu: '3'}}}
";
    assert_eq!(nodes().findings(&workload("Deployment", pod_level)), [], "the pod-level request replaces the sum");
    let pod_level_too_big =
        "      resources: {requests: {cpu: '4'}}\n      containers:\n      - {name: app, image: a:1}\n";
    assert_eq!(
        messages(&nodes().findings(&workload("Deployment", pod_level_too_big)), CheckId::NodeFit),
        ["no node can fit cpu 4 (largest allocatable: 2): lower spec.resources.requests or add nodes"]
    );
    let overhead = "      overhead: {cpu: 500m}
      containers:
      - {name: app, image: a:1, resources: {requests: {cpu: 1800m}}}
";
    assert_eq!(messages(&nodes().findings(&workload("Deployment", overhead)), CheckId::NodeFit).len(), 1);
    let unreadable = "      containers:\n      - {name: app, image: a:1, resources: {requests: {cpu: lots}}}\n";
    assert_eq!(nodes().findings(&workload("Deployment", unreadable)), [], "a quantity it cannot read: silence");
}

#[test]
fn requests_that_fit_one_by_one_but_not_together_are_found() {
    let mut cpu_node = node("cpu-heavy", &[], &[]);
    cpu_node.allocatable = crate::cluster::Amounts::from_list([("cpu", "16"), ("memory", "8Gi")]);
    let mut memory_node = node("memory-heavy", &[], &[]);
    memory_node.allocatable = crate::cluster::Amounts::from_list([("cpu", "2"), ("memory", "64Gi")]);
    let spec = "      containers:\n      - {name: app, image: a:1, resources: {requests: {cpu: '8', memory: 32Gi}}}\n";
    let findings = Cluster::with_nodes(vec![cpu_node, memory_node]).findings(&workload("Deployment", spec));
    assert_eq!(
        messages(&findings, CheckId::NodeFit),
        ["no node can fit cpu 8 and memory 32Gi at once: Pods stay Pending; lower the requests or add nodes"]
    );
}

#[test]
fn with_an_autoscaler_it_says_no_current_node() {
    let cluster = Cluster::with_nodes(vec![real_node()])
        .policy("apiVersion: podmedic.io/v1alpha1\nkind: Policy\nwarnings: {nodeAutoscaling: true}\n");
    let findings = cluster.findings(&workload("StatefulSet", BIG_POSTGRES));
    assert!(findings.iter().all(|(_, m)| m.contains("no current node")), "{findings:?}");
    assert_eq!(findings.len(), 3);
}

#[test]
fn a_daemonset_with_a_selector_no_node_matches_runs_nowhere() {
    let spec = "      nodeSelector: {pm-capture: none}
      containers:
      - {name: fluent-bit, image: 'cr.fluentbit.io/fluent/fluent-bit:3.1.9', resources: {requests: {cpu: 50m}}}
";
    let findings = Cluster::with_nodes(vec![real_node()]).findings(&workload("DaemonSet", spec));
    assert_eq!(
        findings,
        [(
            CheckId::NodeSelector,
            "nodeSelector pm-capture=none matches no node: the DaemonSet runs nowhere; fix it or label a node".into()
        )]
    );
}

#[test]
fn a_daemonset_is_not_flagged_for_the_taints_its_controller_tolerates() {
    // A cordoned node under disk pressure: the DaemonSet controller's tolerations cover both.
    let mut pressured = node("pressured", &[], &[("node.kubernetes.io/disk-pressure", "", "NoSchedule")]);
    pressured.unschedulable = true;
    let spec = "      containers:\n      - {name: agent, image: 'agent:1.0'}\n";
    let cluster = Cluster::with_nodes(vec![pressured]);
    assert_eq!(cluster.findings(&workload("DaemonSet", spec)), []);
    // The same template as a Deployment cannot go there.
    let findings = cluster.findings(&workload("Deployment", spec));
    assert_eq!(
        messages(&findings, CheckId::NodeTaints),
        ["every node it may use has taint node.kubernetes.io/disk-pressure:NoSchedule: Pods stay Pending; tolerate it"]
    );
}

#[test]
fn taints_count_only_on_the_nodes_the_selector_allows_and_tolerations_lift_them() {
    let nodes = vec![
        node("gpu-1", &[("pool", "gpu")], &[("nvidia.com/gpu", "present", "NoSchedule")]),
        node("general-1", &[("pool", "general")], &[]),
    ];
    let gpu = "      nodeSelector: {pool: gpu}\n      containers:\n      - {name: train, image: 't:1'}\n";
    let findings = Cluster::with_nodes(nodes.clone()).findings(&workload("Job", gpu));
    assert_eq!(messages(&findings, CheckId::NodeTaints).len(), 1, "{findings:?}");
    assert_eq!(
        findings[0].1,
        "every node it may use has taint nvidia.com/gpu=present:NoSchedule: Pods stay Pending; tolerate it"
    );
    let tolerating =
        format!("{gpu}      tolerations: [{{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}}]\n");
    assert_eq!(Cluster::with_nodes(nodes.clone()).findings(&workload("Job", &tolerating)), []);
    let anywhere = "      containers:\n      - {name: train, image: 't:1'}\n";
    assert_eq!(Cluster::with_nodes(nodes).findings(&workload("Job", anywhere)), [], "general-1 takes it");
}

#[test]
fn while_a_matching_node_is_not_ready_taints_and_fit_are_left_alone() {
    let mut down = node("down", &[], &[("node.kubernetes.io/not-ready", "", "NoSchedule")]);
    down.ready = false;
    let spec = "      containers:\n      - {name: app, image: a:1, resources: {requests: {cpu: '64'}}}\n";
    assert_eq!(Cluster::with_nodes(vec![down, real_node()]).findings(&workload("Deployment", spec)), []);
}

#[test]
fn hand_placed_pods_other_schedulers_and_an_unknown_cluster_get_no_node_finding() {
    let big = "      containers:\n      - {name: app, image: a:1, resources: {requests: {cpu: '64'}}}\n";
    let nodes = || Cluster::with_nodes(vec![real_node()]);
    assert_eq!(nodes().findings(&workload("Deployment", big)).len(), 1);
    assert_eq!(nodes().findings(&workload("Deployment", &format!("      nodeName: pm-node\n{big}"))), []);
    assert_eq!(nodes().findings(&workload("Deployment", &format!("      schedulerName: volcano\n{big}"))), []);
    assert_eq!(Cluster::unknown().findings(&workload("Deployment", big)), []);
    assert_eq!(Cluster::with_nodes(vec![]).findings(&workload("Deployment", big)), [], "no node listed yet");
}

#[test]
fn warnings_come_for_templates_people_apply_not_for_the_pods_controllers_make() {
    let big = "      containers:\n      - {name: app, image: 'a:1', resources: {requests: {cpu: '64'}}}\n";
    let cluster = Cluster::with_nodes(vec![real_node()]);
    for kind in ["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"] {
        let warnings = cluster.warnings(&workload(kind, big));
        assert!(
            warnings.iter().any(|w| w.starts_with("no node can fit cpu 64 (largest allocatable: 2)")),
            "{kind}: {warnings:?}"
        );
    }
    for kind in ["Pod", "ReplicaSet"] {
        let warnings = cluster.warnings(&workload(kind, big));
        assert!(!warnings.iter().any(|w| w.contains("no node can fit")), "{kind}: {warnings:?}");
    }
}

#[test]
fn each_check_can_be_turned_off_in_the_policy_the_namespace_or_the_object() {
    let cluster = || Cluster::with_nodes(vec![real_node()]);
    let manifest = workload("StatefulSet", BIG_POSTGRES);
    let checks = |c: &Cluster, m: &Value| c.findings(m).into_iter().map(|(c, _)| c).collect::<BTreeSet<_>>();
    assert_eq!(checks(&cluster(), &manifest), [CheckId::NodeFit, CheckId::NodeSelector].into());

    let policy = cluster().policy("apiVersion: podmedic.io/v1alpha1\nkind: Policy\nwarnings: {nodeFit: false}\n");
    assert_eq!(checks(&policy, &manifest), [CheckId::NodeSelector].into());

    let mut namespace = cluster();
    namespace.namespace = Some(NamespaceSettings {
        disabled_checks: [CheckId::NodeSelector].into_iter().collect(),
        ..Default::default()
    });
    assert_eq!(checks(&namespace, &manifest), [CheckId::NodeFit].into());

    let mut annotated = manifest.clone();
    annotated["metadata"]["annotations"] = json!({"podmedic.io/disabled-checks": "node-fit, node-selector"});
    assert_eq!(checks(&cluster(), &annotated), BTreeSet::new());
    let mut all_off = manifest.clone();
    all_off["spec"]["template"]["metadata"]["annotations"] = json!({"podmedic.io/disabled-checks": "all"});
    assert_eq!(checks(&cluster(), &all_off), BTreeSet::new());
    let mut skipped = manifest;
    skipped["metadata"]["annotations"] = json!({"podmedic.io/skip": "true"});
    assert!(cluster().warnings(&skipped).is_empty(), "podmedic.io/skip turns everything off");
}

const APP_WITH_REFERENCES: &str = "      serviceAccountName: builder
      containers:
      - name: app
        image: 'app:1'
        env:
        - {name: DB_URL, valueFrom: {configMapKeyRef: {name: app-config, key: db-url}}}
        - {name: TOKEN, valueFrom: {secretKeyRef: {name: api-token, key: token, optional: true}}}
        - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        envFrom:
        - secretRef: {name: app-secrets}
        - configMapRef: {name: app-config}
      volumes:
      - {name: tls, secret: {secretName: app-tls}}
      - {name: extra, configMap: {name: extra-config, optional: true}}
      - name: bundle
        projected: {sources: [{configMap: {name: ca-bundle}}, {serviceAccountToken: {path: token}}]}
      - {name: data, persistentVolumeClaim: {claimName: app-data}}
";

#[test]
fn references_not_seen_are_reported_once_as_not_seen_yet() {
    let cluster = Cluster::unknown().seeing(&[(ReferenceKind::Secret, "app-tls")]);
    let findings = cluster.findings(&workload("Deployment", APP_WITH_REFERENCES));
    assert_eq!(
        messages(&findings, CheckId::References),
        [
            "ServiceAccount builder (serviceAccountName) not seen yet: create it; no Pod can be created without it",
            "ConfigMap app-config (env DB_URL of app) not seen yet: create it or mark it optional",
            "Secret app-secrets (envFrom of app) not seen yet: create it or mark it optional",
            "ConfigMap ca-bundle (volume bundle) not seen yet: create it or mark it optional",
            "PersistentVolumeClaim app-data (volume data) not seen yet: create it; the Pod will not be scheduled \
             without it",
        ]
    );
    let all_there = Cluster::unknown().seeing(&[
        (ReferenceKind::ServiceAccount, "builder"),
        (ReferenceKind::ConfigMap, "app-config"),
        (ReferenceKind::Secret, "app-secrets"),
        (ReferenceKind::Secret, "app-tls"),
        (ReferenceKind::ConfigMap, "ca-bundle"),
        (ReferenceKind::PersistentVolumeClaim, "app-data"),
    ]);
    assert_eq!(all_there.findings(&workload("Deployment", APP_WITH_REFERENCES)), []);
    assert_eq!(Cluster::unknown().findings(&workload("Deployment", APP_WITH_REFERENCES)), [], "namespace not watched");
}

#[test]
fn the_default_service_account_is_never_reported() {
    let spec = "      serviceAccountName: default\n      containers:\n      - {name: app, image: 'app:1'}\n";
    assert_eq!(Cluster::unknown().seeing(&[]).findings(&workload("Job", spec)), []);
}

#[test]
fn probes_that_cause_restart_loops() {
    let spec = "      containers:
      - name: api
        image: 'api:1'
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /ready, port: http}}
        livenessProbe: {httpGet: {path: /ready, port: 8080}, periodSeconds: 5}
      - name: worker
        image: 'worker:1'
        livenessProbe: {tcpSocket: {port: metrics}, initialDelaySeconds: 5}
        readinessProbe: {exec: {command: [cat, /tmp/ready]}}
      - name: slow
        image: 'slow:1'
        startupProbe: {httpGet: {path: /healthz, port: 9000}, failureThreshold: 30}
        livenessProbe: {httpGet: {path: /healthz, port: 9000}, periodSeconds: 1, failureThreshold: 1}
      - name: defaults
        image: 'defaults:1'
        livenessProbe: {grpc: {port: 9090}}
";
    let findings = Cluster::unknown().findings(&workload("Deployment", spec));
    assert_eq!(
        findings.iter().map(|(c, m)| (c.name(), m.as_str())).collect::<Vec<_>>(),
        [
            (
                "probe-identical",
                "container api: livenessProbe is the same check as readinessProbe: unready means restarted; use a \
                 simpler one"
            ),
            (
                "probe-window",
                "container api: livenessProbe restarts it unless healthy 15s after start; add a startupProbe"
            ),
            (
                "probe-port",
                "container worker: livenessProbe port `metrics` is not declared in its ports; declare it or use a number"
            ),
        ]
    );
    // Timing differences do not make two probes different checks; another path does.
    let tuned = "      containers:
      - name: api
        image: 'api:1'
        readinessProbe: {httpGet: {path: /ready, port: 8080}}
        livenessProbe: {httpGet: {path: /ready, port: 8080}, failureThreshold: 10}
";
    assert_eq!(
        messages(&Cluster::unknown().findings(&workload("Deployment", tuned)), CheckId::ProbeIdentical).len(),
        1
    );
    let separate = tuned.replace("livenessProbe: {httpGet: {path: /ready", "livenessProbe: {httpGet: {path: /livez");
    assert_eq!(Cluster::unknown().findings(&workload("Deployment", &separate)), []);
    // The window threshold comes from the policy.
    let strict = Cluster::unknown()
        .policy("apiVersion: podmedic.io/v1alpha1\nkind: Policy\nwarnings: {minLivenessWindowSeconds: 40}\n");
    let findings = strict.findings(&workload("Deployment", spec));
    assert!(
        messages(&findings, CheckId::ProbeWindow).iter().any(|m| m.contains("worker") && m.contains("35s")),
        "{findings:?}"
    );
}
