//! What a user or a GitOps tool does to the cluster: `kubectl apply` (client-side and
//! `--server-side`), `kubectl diff`, `--dry-run=server`, with the run's kubeconfig. Where kubectl
//! is not on PATH, the server-side operations go through kube (a server-side apply is the same
//! PATCH whoever sends it); client-side apply and `kubectl diff` have no stand-in and are skipped.

use std::process::{Command, Output};

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::Value;

/// How a manifest is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// `kubectl apply`: kubectl's three-way merge with the last-applied configuration (Argo CD's
    /// default sync does the same).
    ClientSide,
    /// `kubectl apply --server-side` (Flux; Argo CD with `ServerSideApply=true`).
    ServerSide,
}

impl How {
    pub fn label(self) -> &'static str {
        match self {
            How::ClientSide => "client-side",
            How::ServerSide => "server-side",
        }
    }
}

/// The field manager of a server-side apply, as kubectl names itself.
const FIELD_MANAGER: &str = "kubectl";

/// The result of an apply: its output, warnings included (kubectl prints them on stderr).
pub struct Applied {
    pub stderr: String,
}

/// Something the run cannot do without kubectl.
#[derive(Debug)]
pub struct NeedsKubectl;

/// The cluster, as a user reaches it.
pub struct Cluster<'r> {
    client: &'r Client,
    kubeconfig: &'r std::path::Path,
    dir: &'r std::path::Path,
    kubectl: bool,
}

impl<'r> Cluster<'r> {
    pub fn new(run: &'r super::Run) -> Cluster<'r> {
        let kubectl = Command::new("kubectl").args(["version", "--client"]).output().is_ok_and(|o| o.status.success());
        if !kubectl {
            println!("kubectl not on PATH: client-side apply and `kubectl diff` are skipped");
        }
        Cluster { client: &run.client, kubeconfig: &run.kubeconfig, dir: run.dir.path(), kubectl }
    }

    /// How a GitOps tool's default sync applies: client-side where kubectl is, else server-side.
    pub fn default_apply(&self) -> How {
        if self.kubectl { How::ClientSide } else { How::ServerSide }
    }

    /// `kubectl <args> -f <manifest>` in `ns`.
    fn kubectl(&self, ns: &str, args: &[&str], manifest: &Value) -> Output {
        let file = self.dir.join(format!("{}.json", manifest["metadata"]["name"].as_str().unwrap_or("manifest")));
        std::fs::write(&file, serde_json::to_vec_pretty(manifest).expect("manifests serialize"))
            .expect("write manifest");
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig)
            .args(["-n", ns])
            .args(args)
            .arg("-f")
            .arg(&file)
            .output()
            .expect("kubectl runs")
    }

    fn api(&self, ns: &str, manifest: &Value) -> Api<DynamicObject> {
        let resource = match manifest["kind"].as_str() {
            Some("CronJob") => ApiResource::erase::<CronJob>(&()),
            Some("Job") => ApiResource::erase::<Job>(&()),
            Some("Pod") => ApiResource::erase::<Pod>(&()),
            other => panic!("no API for {other:?}"),
        };
        Api::namespaced_with(self.client.clone(), ns, &resource)
    }

    /// Applies `manifest` in `ns`; the API server must accept it.
    pub async fn apply(&self, how: How, ns: &str, manifest: &Value) -> Result<Applied, NeedsKubectl> {
        let name = manifest["metadata"]["name"].as_str().unwrap_or_default();
        if self.kubectl {
            let args: &[&str] = match how {
                How::ClientSide => &["apply"],
                How::ServerSide => &["apply", "--server-side"],
            };
            let out = self.kubectl(ns, args, manifest);
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "{} apply of {name} refused:\n{stderr}", how.label());
            return Ok(Applied { stderr });
        }
        if how == How::ClientSide {
            return Err(NeedsKubectl);
        }
        let params = PatchParams::apply(FIELD_MANAGER);
        let applied = self.api(ns, manifest).patch(name, &params, &Patch::Apply(manifest)).await;
        applied.unwrap_or_else(|e| panic!("server-side apply of {name} refused: {e}"));
        Ok(Applied { stderr: String::new() })
    }

    /// Whether `kubectl diff` (with `--server-side` for [`How::ServerSide`]) of `manifest` shows
    /// nothing. Without kubectl, a server-side diff is a dry-run apply compared with the stored
    /// object.
    pub async fn diff_is_empty(&self, how: How, ns: &str, manifest: &Value) -> Result<bool, NeedsKubectl> {
        if self.kubectl {
            let args: &[&str] = match how {
                How::ClientSide => &["diff"],
                How::ServerSide => &["diff", "--server-side"],
            };
            let out = self.kubectl(ns, args, manifest);
            return match out.status.code() {
                Some(0) => Ok(true),
                Some(1) => {
                    println!("kubectl diff:\n{}", String::from_utf8_lossy(&out.stdout));
                    Ok(false)
                }
                _ => panic!("kubectl diff failed:\n{}", String::from_utf8_lossy(&out.stderr)),
            };
        }
        if how == How::ClientSide {
            return Err(NeedsKubectl);
        }
        let name = manifest["metadata"]["name"].as_str().unwrap_or_default();
        let api = self.api(ns, manifest);
        let params = PatchParams::apply(FIELD_MANAGER).dry_run();
        let predicted = api.patch(name, &params, &Patch::Apply(manifest)).await.expect("a server-side dry run");
        let stored = api.get(name).await.expect("read the stored object");
        Ok(super::json_of(predicted)["spec"] == super::json_of(stored)["spec"])
    }

    /// `kubectl apply --dry-run=server -o json`: the object the API server would store, and the
    /// warnings (empty without kubectl: kube does not return them).
    pub async fn dry_run_create(&self, ns: &str, manifest: &Value) -> (Value, String) {
        if self.kubectl {
            let out = self.kubectl(ns, &["apply", "--dry-run=server", "-o", "json"], manifest);
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "dry run refused:\n{stderr}");
            return (serde_json::from_slice(&out.stdout).expect("kubectl -o json prints JSON"), stderr);
        }
        let object: DynamicObject = serde_json::from_value(manifest.clone()).expect("a manifest");
        let params = PostParams { dry_run: true, field_manager: None };
        let created = self.api(ns, manifest).create(&params, &object).await.expect("a server dry run");
        (super::json_of(created), String::new())
    }

    /// The stored object of `manifest`'s kind and name, if there is one.
    pub async fn get(&self, ns: &str, manifest: &Value) -> Option<Value> {
        let name = manifest["metadata"]["name"].as_str().unwrap_or_default();
        self.api(ns, manifest).get_opt(name).await.expect("read from the API server").map(super::json_of)
    }
}
