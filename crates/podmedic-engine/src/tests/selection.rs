//! Which containers are sidecars, and where they go.

use super::*;

#[test]
fn catalogue_matches_images_from_any_registry() {
    let cases = [
        ("gcr.io/cloudsql-docker/gce-proxy:1.33.2", true),
        ("us-central1-docker.pkg.dev/cloud-sql-connectors/gcr.io/cloud-sql-proxy:2.11.0", true),
        ("gcr.io/alloydb-connectors/alloydb-auth-proxy:1.10.0", true),
        ("docker.io/istio/proxyv2:1.22.0", true),
        ("cr.l5d.io/linkerd/proxy:stable-2.14.10", true),
        ("envoyproxy/envoy:v1.31.0", true),
        ("cr.fluentbit.io/fluent/fluent-bit:3.1", true),
        ("fluent/fluentd:v1.17", true),
        ("timberio/vector:0.40.0-distroless-libc", true),
        ("grafana/promtail:3.0.0", true),
        ("grafana/alloy:v1.3.0", true),
        ("otel/opentelemetry-collector-contrib:0.108.0", true),
        ("gcr.io/datadoghq/agent:7", true),
        ("gcr.io/datadoghq/dogstatsd:7.64.0", true),
        ("datadog/dogstatsd:7", true),
        ("registry.datadoghq.com/agent:7.64.0", true),
        ("public.ecr.aws/cloudwatch-agent/cloudwatch-agent:1.300030.2b309", true),
        ("amazon/cloudwatch-agent:latest", true),
        ("public.ecr.aws/aws-observability/aws-otel-collector:v0.40.0", true),
        ("ghcr.io/buoyantio/proxy:enterprise-2.16.0", true),
        ("registry.redhat.io/openshift-service-mesh/proxyv2-rhel9:2.6.3", true),
        ("quay.io/prometheus/statsd-exporter:v0.26.0", true),
        ("registry.k8s.io/git-sync/git-sync:v4.2.1", true),
        ("mcr.microsoft.com/oss/azure/workload-identity/proxy:v1.3.0", true),
        ("harbor.corp/agent:7", false),
        ("hashicorp/vault-k8s:1.4.2", false),
        ("busybox:1.36", false),
        ("alpine:3.20", false),
        ("redis:7.4", false),
        ("python:3.12", false),
        ("bitnami/pgbouncer:1.23.1", true),
        ("mirror.corp.example:5000/dockerhub/edoburu/pgbouncer@sha256:abcd", true),
        ("registry.example.com/acme/report:1.8.0", false),
        ("postgres:16", false),
        ("nginx:1.27", false),
    ];
    for (image, sidecar) in cases {
        let manifest = pod(&format!(
            "  containers:\n  - {{name: main, image: 'app:1'}}\n  - {{name: side, image: '{image}', ports: [{{containerPort: 9000}}]}}\n"
        ));
        let r = run(&manifest);
        let moved = names(&r.after["spec"]["initContainers"]) == ["side"];
        assert_eq!(moved, sidecar, "{image}");
    }
}

#[test]
fn vault_is_a_sidecar_only_when_it_runs_agent() {
    let agent = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - name: vault-agent\n    image: hashicorp/vault:1.17\n    args: ['agent', '-config=/vault/config.hcl']\n",
    );
    assert_eq!(names(&run(&agent).after["spec"]["initContainers"]), ["vault-agent"]);
    let injected = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - name: vault-agent\n    image: hashicorp/vault:1.17\n    command: [/bin/sh, -ec]\n    args: ['echo ${VAULT_CONFIG?} | base64 -d > /home/vault/config.json && vault agent -config=/home/vault/config.json']\n",
    );
    assert_eq!(names(&run(&injected).after["spec"]["initContainers"]), ["vault-agent"]);
    let server = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - {name: vault, image: 'hashicorp/vault:1.17', args: [server]}\n",
    );
    assert!(run(&server).mutation.patch.0.is_empty());
    let one_shot = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - {name: vault, image: 'hashicorp/vault:1.17', args: [agent, -exit-after-auth]}\n",
    );
    assert!(run(&one_shot).mutation.changes.iter().all(|c| c.kind != ChangeKind::SidecarMoved));
}

#[test]
fn the_sidecars_annotation_adds_to_what_the_catalogue_finds() {
    // A busybox log shipper the catalogue cannot know, beside a Cloud SQL proxy it does know.
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata:
  name: p
  annotations: {podmedic.io/sidecars: "shipper, nope"}
spec:
  restartPolicy: OnFailure
  containers:
  - {name: main, image: "app:1"}
  - {name: shipper, image: "busybox:1.36", command: [sh, -c, "tail -F /logs/app.log"], ports: [{containerPort: 24224}]}
  - {name: proxy, image: "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0"}
"#;
    let r = run(manifest);
    assert_eq!(names(&r.after["spec"]["containers"]), ["main"], "the named and the catalogued sidecar both move");
    assert_eq!(names(&r.after["spec"]["initContainers"]), ["shipper", "proxy"]);
    assert_eq!(r.after["spec"]["initContainers"][0]["startupProbe"]["tcpSocket"]["port"], 24224);
    assert_eq!(r.after["spec"]["initContainers"][1]["startupProbe"]["httpGet"]["path"], "/startup");
    assert!(r.mutation.warnings.iter().any(|w| w.contains("\"nope\"")), "{:?}", r.mutation.warnings);
}

#[test]
fn the_not_sidecars_annotation_keeps_catalogued_containers_regular() {
    // A Job that runs fluent-bit as its main work (a one-shot log replay), with a proxy beside it.
    let manifest = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: replay}
spec:
  template:
    metadata:
      annotations: {podmedic.io/not-sidecars: "replay, ghost", podmedic.io/sidecars: "audit"}
    spec:
      restartPolicy: Never
      containers:
      - {name: replay, image: "cr.fluentbit.io/fluent/fluent-bit:3.1.4", args: [-c, /config/replay.conf]}
      - {name: audit, image: "ghcr.io/acme/audit-tail:2"}
      - {name: cloud-sql-proxy, image: "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1", args: ["acme:eu:db"]}
"#;
    let r = run(manifest);
    let spec = &r.after["spec"]["template"]["spec"];
    assert_eq!(names(&spec["containers"]), ["replay"]);
    assert_eq!(names(&spec["initContainers"]), ["audit", "cloud-sql-proxy"]);
    assert!(
        r.mutation.warnings.iter().any(|w| w.contains("not-sidecars names \"ghost\"")),
        "{:?}",
        r.mutation.warnings
    );
    assert!(r.mutation.notes.iter().any(|n| n == "replay: kept a regular container (podmedic.io/not-sidecars)"));

    // Named in both: the safe side wins, and the user hears about it.
    let both = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - {name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0'}\n",
    )
    .replace("metadata: {name: p}", "metadata: {name: p, annotations: {podmedic.io/sidecars: proxy, podmedic.io/not-sidecars: proxy}}");
    let r = run(&both);
    assert!(r.mutation.patch.0.is_empty());
    assert!(r.mutation.warnings.iter().any(|w| w.contains("stays a regular container")), "{:?}", r.mutation.warnings);
}

#[test]
fn gkes_gcsfuse_sidecar_is_never_moved_even_when_named() {
    // Before every node ran 1.29, GKE's webhook injected the FUSE sidecar as a regular container.
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata:
  name: p
  annotations: {gke-gcsfuse/volumes: "true", podmedic.io/sidecars: gke-gcsfuse-sidecar}
spec:
  restartPolicy: Never
  containers:
  - {name: gke-gcsfuse-sidecar, image: "gke.gcr.io/gcs-fuse-csi-driver-sidecar-mounter:v1.4.2-gke.0"}
  - {name: trainer, image: "us-docker.pkg.dev/acme/ml/trainer:3"}
  - {name: fluent-bit, image: "fluent/fluent-bit:3.1"}
"#;
    let r = run(manifest);
    assert_eq!(names(&r.after["spec"]["containers"]), ["gke-gcsfuse-sidecar", "trainer"]);
    assert_eq!(names(&r.after["spec"]["initContainers"]), ["fluent-bit"]);
    assert!(r.mutation.warnings.iter().any(|w| w.contains("never moves it")), "{:?}", r.mutation.warnings);
}

#[test]
fn mesh_proxy_moves_first_and_position_first_respects_mesh_init_containers() {
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata:
  name: p
  annotations: {podmedic.io/sidecar-position: first}
spec:
  restartPolicy: Never
  initContainers:
  - {name: istio-init, image: "docker.io/istio/proxyv2:1.22.0"}
  - {name: migrate, image: "acme/migrate:3"}
  containers:
  - {name: main, image: "app:1"}
  - {name: cloud-sql-proxy, image: "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0"}
  - {name: istio-proxy, image: "docker.io/istio/proxyv2:1.22.0", ports: [{containerPort: 15090}]}
"#;
    let r = run(manifest);
    assert_eq!(names(&r.after["spec"]["initContainers"]), ["istio-init", "istio-proxy", "cloud-sql-proxy", "migrate"]);
    assert_eq!(names(&r.after["spec"]["containers"]), ["main"]);
    for i in [1, 2] {
        assert_eq!(r.after["spec"]["initContainers"][i]["restartPolicy"], "Always");
    }
    assert!(r.after["spec"]["initContainers"][0].get("restartPolicy").is_none());
    assert!(r.after["spec"]["initContainers"][3].get("restartPolicy").is_none());
}

#[test]
fn sidecars_append_after_existing_init_containers_in_their_relative_order() {
    let manifest = pod(
        "  initContainers:\n  - {name: setup, image: 'busybox:1.36'}\n  - {name: existing-native, image: 'acme/x:1', restartPolicy: Always}\n  containers:\n  - {name: shipper, image: 'fluent/fluent-bit:3.1'}\n  - {name: main, image: 'app:1'}\n  - {name: otel, image: 'otel/opentelemetry-collector:0.108.0'}\n",
    );
    let r = run(&manifest);
    assert_eq!(names(&r.after["spec"]["initContainers"]), ["setup", "existing-native", "shipper", "otel"]);
    assert_eq!(names(&r.after["spec"]["containers"]), ["main"]);
    let notes = r.after["metadata"]["annotations"][CHANGES_ANNOTATION].as_str().unwrap();
    assert!(notes.contains("no startup probe (no TCP containerPort declared)"), "{notes}");
}

#[test]
fn at_least_one_regular_container_remains() {
    let manifest = pod(
        "  containers:\n  - {name: a, image: 'fluent/fluent-bit:3.1'}\n  - {name: b, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0'}\n",
    );
    let r = run(&manifest);
    assert!(r.mutation.patch.0.is_empty());
    assert!(r.mutation.warnings.iter().any(|w| w.contains("every container looks like a sidecar")));
}

#[test]
fn containers_that_set_a_restart_policy_stay_put() {
    let manifest = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - {name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0', restartPolicy: Never}\n",
    );
    let r = run(&manifest);
    assert!(r.mutation.patch.0.is_empty());
    assert!(r.mutation.warnings.iter().any(|w| w.contains("sets restartPolicy")));
}

#[test]
fn a_name_already_used_by_an_init_container_is_never_duplicated() {
    let manifest = pod(
        "  initContainers:\n  - {name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0', restartPolicy: Always}\n  containers:\n  - {name: main, image: 'app:1'}\n  - {name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0'}\n",
    );
    let r = run(&manifest);
    assert!(r.mutation.patch.0.is_empty());
    assert!(r.mutation.warnings.iter().any(|w| w.contains("same name")), "{:?}", r.mutation.warnings);
}

#[test]
fn older_clusters_get_a_warning_and_no_move() {
    let r = run_with(SEED_CRONJOB, &Policy::builtin(), NativeSidecars::for_version(1, 28), None);
    assert!(r.mutation.patch.0.is_empty());
    assert!(r.mutation.warnings.iter().any(|w| w.contains("native sidecars are not available") && w.contains("1.28")));
}

#[test]
fn existing_native_sidecars_are_warned_about_where_nodes_cannot_run_them() {
    // Istio 1.27 injected its proxy as a native sidecar; then a 1.28 node pool joined.
    let manifest = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  initContainers:\n  - {name: istio-init, image: 'docker.io/istio/proxyv2:1.27.0'}\n  - {name: istio-proxy, image: 'docker.io/istio/proxyv2:1.27.0', restartPolicy: Always}\n  containers:\n  - {name: web, image: 'nginx:1.27', resources: {requests: {cpu: 100m}}}\n";
    let old = NativeSidecars::Unavailable("node pool-b-1 runs kubelet v1.28.9".into());
    let r = run_with(manifest, &Policy::builtin(), old, None);
    assert!(r.mutation.patch.0.is_empty());
    let warning =
        "native sidecars istio-proxy hang in Init on kubelets older than 1.29 (node pool-b-1 runs kubelet v1.28.9)";
    assert!(r.mutation.warnings.iter().any(|w| w == warning), "{:?}", r.mutation.warnings);
    let r = run_with(manifest, &Policy::builtin(), NativeSidecars::Available, None);
    assert!(r.mutation.warnings.iter().all(|w| !w.contains("hang in Init")), "{:?}", r.mutation.warnings);
}

/// Two regular containers of one name (the API server refuses such a Pod after admission): which
/// one a user means is unknown, and a request on podmedic's own output would read the other. Both
/// stay in place, with a warning.
#[test]
fn a_container_whose_name_another_shares_stays_in_place() {
    let manifest = pod(
        "  containers:\n  - {name: main, image: 'app:1'}\n  - {name: proxy, image: 'gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1', args: ['db']}\n  - {name: proxy, image: 'fluent/fluent-bit:3.1'}\n  - {name: log, image: 'fluent/fluent-bit:3.1'}\n",
    );
    let r = run(&manifest);
    assert_eq!(names(&r.after["spec"]["initContainers"]), ["log"]);
    assert_eq!(names(&r.after["spec"]["containers"]), ["main", "proxy", "proxy"]);
    let said = r.mutation.warnings.iter().filter(|w| w.contains("another container has the same name")).count();
    assert_eq!(said, 1, "{:?}", r.mutation.warnings);
}
