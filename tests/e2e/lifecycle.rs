//! The GitOps life cycle in each mode, as a platform team runs it: every step must be accepted by
//! the API server, and what it stores must be what the mode promises: in pods mode the manifest
//! as written (the Pods get the fix), in template mode the fixed template, stable across
//! re-applies.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};

use super::cluster::{Cluster, How, NeedsKubectl};
use super::creation::{Mode, PROXY, assert_native_sidecar, cron_job, names, pod, pod_spec};
use super::{Run, typed};

/// Runs every scenario in `mode`'s namespace.
pub async fn run(run: &Run, mode: Mode) {
    let cluster = Cluster::new(run);
    let ns = run.namespace(mode);
    let ctx = Ctx { cluster: &cluster, ns: &ns, mode };
    for how in [How::ClientSide, How::ServerSide] {
        ctx.applied_three_times(how).await;
        ctx.sidecar_removed(how).await;
        ctx.diff_right_after_apply(how).await;
    }
    ctx.tag_bump().await;
    ctx.dry_run_shows_the_fix().await;
    ctx.running_job_reapplied(run).await;
    if mode == Mode::Pods {
        ctx.templates_an_earlier_podmedic_changed(run).await;
    }
}

struct Ctx<'c> {
    cluster: &'c Cluster<'c>,
    ns: &'c str,
    mode: Mode,
}

/// A CronJob manifest as a user keeps it in Git: `main` and the proxy (at `tag`, or none).
fn cronjob_manifest(name: &str, tag: Option<&str>) -> Value {
    let mut manifest = cron_job(name);
    let spec = &mut manifest["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    match tag {
        Some(tag) => {
            spec["containers"][1]["image"] = json!(format!("gcr.io/cloud-sql-connectors/cloud-sql-proxy:{tag}"))
        }
        None => {
            if let Some(containers) = spec["containers"].as_array_mut() {
                containers.truncate(1);
            }
        }
    }
    manifest
}

fn template_spec(object: &Value) -> &Value {
    match object["kind"].as_str() {
        Some("CronJob") => &object["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => &object["spec"]["template"]["spec"],
    }
}

fn template(object: &Value) -> &Value {
    match object["kind"].as_str() {
        Some("CronJob") => &object["spec"]["jobTemplate"]["spec"]["template"],
        _ => &object["spec"]["template"],
    }
}

impl Ctx<'_> {
    fn what(&self, step: &str) -> String {
        format!("{} mode, {step}", self.mode.label())
    }

    fn skipped(&self, step: &str, _: NeedsKubectl) {
        println!("skipped ({}): {step} needs kubectl", self.what(step));
    }

    async fn stored(&self, manifest: &Value) -> Value {
        self.cluster
            .get(self.ns, manifest)
            .await
            .unwrap_or_else(|| panic!("{} is not stored", manifest["metadata"]["name"]))
    }

    /// What the mode promises for a stored Job or CronJob applied with the proxy.
    fn assert_as_the_mode_stores_it(&self, step: &str, object: &Value) {
        let spec = template_spec(object);
        match self.mode {
            Mode::Template => assert_native_sidecar(&self.what(step), object, spec),
            Mode::Pods => {
                assert_eq!(names(&spec["containers"]), ["main", PROXY], "{}: {spec:#}", self.what(step));
                assert!(spec.get("initContainers").is_none_or(Value::is_null), "{}: {spec:#}", self.what(step));
            }
        }
    }

    /// Applying the same CronJob three times: every apply is accepted (no `Duplicate value`), the
    /// stored template is what the mode promises and does not change after the first apply. In
    /// pods mode, kubectl shows podmedic's warning about the CronJob's Pods each time.
    async fn applied_three_times(&self, how: How) {
        let step = format!("{} apply three times", how.label());
        let manifest = cronjob_manifest(&format!("thrice-{}", how.label()), Some("2.14.1"));
        let mut first: Option<Value> = None;
        for round in 1..=3 {
            let applied = match self.cluster.apply(how, self.ns, &manifest).await {
                Ok(applied) => applied,
                Err(e) => return self.skipped(&step, e),
            };
            if self.mode == Mode::Pods && !applied.stderr.is_empty() {
                assert!(
                    applied.stderr.contains("podmedic will fix this CronJob's Pods"),
                    "{}: {}",
                    self.what(&step),
                    applied.stderr
                );
            }
            let stored = self.stored(&manifest).await;
            self.assert_as_the_mode_stores_it(&format!("{step}, apply {round}"), &stored);
            let first = first.get_or_insert_with(|| template(&stored).clone());
            assert_eq!(template(&stored), first, "{}: the template changed on apply {round}", self.what(&step));
        }
    }

    /// A sidecar deleted from the manifest leaves the stored object too, in both lists.
    async fn sidecar_removed(&self, how: How) {
        let step = format!("sidecar removed, {}", how.label());
        let name = format!("removed-{}", how.label());
        for manifest in [cronjob_manifest(&name, Some("2.14.1")), cronjob_manifest(&name, None)] {
            if let Err(e) = self.cluster.apply(how, self.ns, &manifest).await {
                return self.skipped(&step, e);
            }
        }
        let stored = self.stored(&cronjob_manifest(&name, None)).await;
        let spec = template_spec(&stored);
        assert_eq!(names(&spec["containers"]), ["main"], "{}: {spec:#}", self.what(&step));
        assert!(!names(&spec["initContainers"]).contains(&PROXY), "{}: {spec:#}", self.what(&step));
    }

    /// `kubectl diff` (server-side after a server-side apply) right after an apply shows nothing:
    /// the dry run podmedic answers like the real request ends where the apply ended.
    async fn diff_right_after_apply(&self, how: How) {
        let step = format!("kubectl diff right after a {} apply", how.label());
        let manifest = cronjob_manifest(&format!("diff-{}", how.label()), Some("2.14.1"));
        if let Err(e) = self.cluster.apply(how, self.ns, &manifest).await {
            return self.skipped(&step, e);
        }
        match self.cluster.diff_is_empty(how, self.ns, &manifest).await {
            Ok(empty) => assert!(empty, "{}: the diff is not empty", self.what(&step)),
            Err(e) => self.skipped(&step, e),
        }
    }

    /// A new proxy tag in the manifest: accepted, and the new tag is stored (template mode: in
    /// the native sidecar, with podmedic's startup probe again).
    async fn tag_bump(&self) {
        let step = "a new proxy tag";
        let how = self.cluster.default_apply();
        for tag in ["2.14.1", "2.14.2"] {
            let manifest = cronjob_manifest("tag-bump", Some(tag));
            if let Err(e) = self.cluster.apply(how, self.ns, &manifest).await {
                return self.skipped(step, e);
            }
        }
        let stored = self.stored(&cronjob_manifest("tag-bump", None)).await;
        self.assert_as_the_mode_stores_it(step, &stored);
        let spec = template_spec(&stored);
        let list = if self.mode == Mode::Template { "initContainers" } else { "containers" };
        let proxy = spec[list].as_array().and_then(|l| l.iter().find(|c| c["name"] == PROXY)).expect("the proxy");
        assert_eq!(proxy["image"], "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.2", "{}", self.what(step));
        if self.mode == Mode::Template {
            assert!(proxy["startupProbe"].is_object(), "{}: podmedic's additions again: {proxy:#}", self.what(step));
        }
    }

    /// `kubectl apply --dry-run=server` of new objects shows what will be stored: a Pod's fix in
    /// both modes, a CronJob's fixed template in template mode, and in pods mode the CronJob as
    /// written with podmedic's warning. Nothing is created.
    async fn dry_run_shows_the_fix(&self) {
        let step = "--dry-run=server";
        let (pod_object, _) = self.cluster.dry_run_create(self.ns, &pod("dry-run-pod")).await;
        assert_eq!(names(&pod_object["spec"]["initContainers"]), [PROXY], "{}: {pod_object:#}", self.what(step));
        let manifest = cronjob_manifest("dry-run", Some("2.14.1"));
        let (object, warnings) = self.cluster.dry_run_create(self.ns, &manifest).await;
        self.assert_as_the_mode_stores_it(step, &object);
        if self.mode == Mode::Pods && !warnings.is_empty() {
            assert!(warnings.contains("podmedic will fix this CronJob's Pods"), "{}: {warnings}", self.what(step));
        }
        assert!(self.cluster.get(self.ns, &manifest).await.is_none(), "{}: a dry run created it", self.what(step));
    }

    /// A Job that is running (not suspended) is re-applied, client-side and server-side: a Job's
    /// template is immutable, so each re-apply is accepted only if its template ends up as stored.
    /// In pods mode, the Pod the Job controller creates gets the native sidecar.
    async fn running_job_reapplied(&self, run: &Run) {
        let step = "re-apply of a running Job";
        let manifest = json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "running"},
            "spec": {"backoffLimit": 0, "activeDeadlineSeconds": 600, "template": {"spec": pod_spec("Never")}}
        });
        let first = self.cluster.default_apply();
        self.cluster.apply(first, self.ns, &manifest).await.expect("the default apply needs nothing missing");
        let stored = self.stored(&manifest).await;
        self.assert_as_the_mode_stores_it(step, &stored);
        for how in [first, How::ClientSide, How::ServerSide] {
            match self.cluster.apply(how, self.ns, &manifest).await {
                Ok(_) => assert_eq!(template(&self.stored(&manifest).await), template(&stored), "{}", self.what(step)),
                Err(e) => self.skipped(&format!("{step}, {}", how.label()), e),
            }
        }
        if self.mode == Mode::Pods {
            let pod = job_pod(run, self.ns, "running").await;
            assert_native_sidecar(&self.what("the running Job's Pod"), &pod, &pod["spec"]);
        }
    }

    /// Pods mode after an upgrade from a podmedic that fixed templates: a CronJob and a Job stored
    /// with the proxy moved (its old `podmedic.io/changes`, no `podmedic.io/moved`), re-applied
    /// twice. Every re-apply is accepted; the CronJob goes back to what the user applies, the Job
    /// keeps its stored template.
    async fn templates_an_earlier_podmedic_changed(&self, run: &Run) {
        let step = "templates an earlier podmedic changed";
        let cronjob = cronjob_manifest("legacy-cronjob", Some("2.14.1"));
        let job = super::creation::job("legacy-job", false);
        for manifest in [&cronjob, &job] {
            let created = self.cluster.get(self.ns, manifest).await;
            assert!(created.is_none(), "{}: {} exists already", self.what(step), manifest["metadata"]["name"]);
            create_as_an_earlier_podmedic_stored_it(run, self.ns, manifest).await;
            let stored = self.stored(manifest).await;
            for round in 1..=2 {
                let how = self.cluster.default_apply();
                self.cluster.apply(how, self.ns, manifest).await.expect("the default apply needs nothing missing");
                let now = self.stored(manifest).await;
                let what = self.what(&format!("{step}, {} re-apply {round} of {}", how.label(), manifest["kind"]));
                if manifest["kind"] == "Job" {
                    assert_eq!(template(&now), template(&stored), "{what}");
                } else {
                    self.assert_as_the_mode_stores_it(&what, &now);
                }
            }
        }
    }
}

/// Creates `manifest` the way an earlier podmedic stored it on `kubectl apply`: the proxy moved
/// into initContainers with its additions, its `podmedic.io/changes`, and the user's manifest as
/// the last-applied configuration. Pods mode does not mutate a CREATE of a Job or CronJob, so it
/// is stored as sent.
async fn create_as_an_earlier_podmedic_stored_it(run: &Run, ns: &str, manifest: &Value) {
    let mut object = manifest.clone();
    let changes = "cloud-sql-proxy: moved to initContainers as a native sidecar (restartPolicy: Always); \
                   cloud-sql-proxy: startupProbe tcpSocket on port 9801";
    object["metadata"]["annotations"] = json!({
        "kubectl.kubernetes.io/last-applied-configuration": format!("{manifest}\n"),
        "podmedic.io/changes": changes,
    });
    let pod_template = match object["kind"].as_str() {
        Some("CronJob") => &mut object["spec"]["jobTemplate"]["spec"]["template"],
        _ => &mut object["spec"]["template"],
    };
    pod_template["metadata"] = json!({"annotations": {"podmedic.io/changes": changes}});
    let containers = pod_template["spec"]["containers"].as_array_mut().expect("containers");
    let mut proxy = containers.remove(1);
    proxy["restartPolicy"] = json!("Always");
    proxy["args"].as_array_mut().expect("args").extend([
        json!("--health-check"),
        json!("--http-port=9801"),
        json!("--http-address=0.0.0.0"),
    ]);
    proxy["startupProbe"] = json!({"tcpSocket": {"port": 9801}, "periodSeconds": 2, "failureThreshold": 30});
    pod_template["spec"]["initContainers"] = json!([proxy]);
    let params = PostParams::default();
    let created = match object["kind"].as_str() {
        Some("CronJob") => {
            let api: Api<k8s_openapi::api::batch::v1::CronJob> = Api::namespaced(run.client.clone(), ns);
            api.create(&params, &typed(object)).await.map(drop)
        }
        _ => {
            let api: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(run.client.clone(), ns);
            api.create(&params, &typed(object)).await.map(drop)
        }
    };
    created.expect("create the object as an earlier podmedic stored it");
}

/// The first Pod of the Job `job`, once the Job controller has created it.
async fn job_pod(run: &Run, ns: &str, job: &str) -> Value {
    let pods: Api<Pod> = Api::namespaced(run.client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"))).await;
        if let Some(pod) = list.expect("list the Job's Pods").items.into_iter().next() {
            return super::json_of(pod);
        }
        assert!(Instant::now() < deadline, "the Job controller created no Pod for {job} within a minute");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
