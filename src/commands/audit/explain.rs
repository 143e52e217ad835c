//! Why a Pod is not running, in one line: the cause and the fix, in the words of `kubectl
//! describe pod` (FailedScheduling, Last State, Exit Code, OOMKilled, ImagePullBackOff,
//! CreateContainerConfigError, probe failures), read from the Pod's status and its Events.
//!
//! Pure: a Pod (raw JSON, as the API server sent it), its Events, and the Nodes' facts in; a
//! [`NotRunning`] out. A Pending Pod the scheduler cannot place is also run through the engine's
//! node checks, so the audit names the same limit the admission warning did ("no node can fit
//! cpu 64 (largest allocatable: 2)").

use std::sync::Arc;

use podmedic_engine::cluster::{ClusterView, NodeFacts};
use podmedic_engine::{Context, ImageRef, NativeSidecars, Policy, diagnose_value, shorten_to};
use serde::Serialize;
use serde_json::Value;

use super::events::PodEvent;

/// Longest cause or fix printed; the rest of a runtime's message is in `kubectl describe pod`.
const MAX_TEXT: usize = 240;

/// A Pod that is not running as it should: one line of the report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NotRunning {
    /// The namespace.
    pub namespace: String,
    /// The Pod.
    pub pod: String,
    /// What `kubectl get pod` shows as STATUS: `Pending`, `CrashLoopBackOff`, `Init:ErrImagePull`...
    pub status: String,
    /// The container concerned, when one is.
    pub container: Option<String>,
    /// Why.
    pub cause: String,
    /// What to do.
    pub fix: String,
}

/// What an explanation may use besides the Pod and its Events.
#[derive(Clone, Copy)]
pub struct Explaining<'a> {
    /// The policy (the engine's checks read it).
    pub policy: &'a Policy,
    /// Every Node's facts, when Nodes could be listed.
    pub nodes: Option<&'a [Arc<NodeFacts>]>,
}

/// The cause and fix of one container's trouble, with the STATUS word it shows.
struct Trouble {
    status: String,
    cause: String,
    fix: String,
}

/// Explains a Pod that is Pending, crash-looping, failing to pull or configure, OOMKilled or stuck
/// in Init; `None` for a Pod that runs (or ran) as it should.
pub fn explain_pod(pod: &Value, events: &[&PodEvent], with: Explaining<'_>) -> Option<NotRunning> {
    let text = |pointer: &str| pod.pointer(pointer).and_then(Value::as_str).unwrap_or_default();
    if text("/status/phase") == "Succeeded" {
        return None;
    }
    let line = |container: Option<&str>, t: Trouble| NotRunning {
        namespace: text("/metadata/namespace").to_owned(),
        pod: text("/metadata/name").to_owned(),
        status: t.status,
        container: container.map(str::to_owned),
        cause: clip(t.cause),
        fix: clip(t.fix),
    };
    if let Some(trouble) = unschedulable(pod, events, with) {
        return Some(line(None, trouble));
    }
    // Init containers first: while one is stuck, the others wait in PodInitializing.
    for (status, init) in [("/status/initContainerStatuses", true), ("/status/containerStatuses", false)] {
        for container_status in list(pod, status) {
            let name = container_status["name"].as_str().unwrap_or_default();
            let section = if init { "/spec/initContainers" } else { "/spec/containers" };
            let spec = list(pod, section).find(|c| c["name"] == name);
            if let Some(mut trouble) = container_trouble(pod, container_status, spec, events) {
                if init {
                    trouble.status = format!("Init:{}", trouble.status);
                }
                return Some(line(Some(name), trouble));
            }
        }
    }
    None
}

/// A quick look before a Pod is kept for [`explain_pod`]: Pending, a container waiting or restarted,
/// or killed for memory. Pods that pass are explained; the others are dropped as they are read.
pub fn looks_troubled(pod: &Value) -> bool {
    if pod.pointer("/status/phase").and_then(Value::as_str) == Some("Pending") {
        return true;
    }
    list(pod, "/status/initContainerStatuses").chain(list(pod, "/status/containerStatuses")).any(|s| {
        s["restartCount"].as_u64().unwrap_or(0) > 0
            || s["state"]["waiting"].is_object()
            || s["state"]["terminated"]["reason"] == "OOMKilled"
            || (s["started"] == false && s["state"]["running"].is_object())
    })
}

/// A Pod the scheduler has not placed: its message, and the engine's node check for the fix.
fn unschedulable(pod: &Value, events: &[&PodEvent], with: Explaining<'_>) -> Option<Trouble> {
    let condition = list(pod, "/status/conditions").find(|c| c["type"] == "PodScheduled" && c["status"] == "False")?;
    if condition["reason"] == "SchedulingGated" {
        let gates: Vec<&str> = list(pod, "/spec/schedulingGates").filter_map(|g| g["name"].as_str()).collect();
        return Some(Trouble {
            status: "SchedulingGated".into(),
            cause: format!("spec.schedulingGates holds it back: {}", gates.join(", ")),
            fix: "the controller that added the gate removes it; check that controller".into(),
        });
    }
    let message = condition["message"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| events.iter().find(|e| e.reason == "FailedScheduling").map(|e| e.message.clone()))
        .unwrap_or_default();
    // "0/3 nodes are available: 3 Insufficient cpu. preemption: ..." keeps its first sentence.
    let first = message.split(". ").next().unwrap_or_default().trim_end_matches('.').to_owned();
    let ctx = Context {
        cluster: ClusterView { nodes: with.nodes, objects: None },
        ..Context::new(with.policy, &NativeSidecars::Available)
    };
    let finding = diagnose_value(pod, &ctx)
        .ok()
        .and_then(|d| d.findings.into_iter().find(|f| f.check.name().starts_with("node-")).map(|f| f.message));
    let fix = finding.unwrap_or_else(|| scheduling_fix(&first).to_owned());
    Some(Trouble { status: "Pending".into(), cause: format!("FailedScheduling: {first}"), fix })
}

/// The fix for a scheduler reason, when podmedic's own check has nothing to add.
fn scheduling_fix(message: &str) -> &'static str {
    if message.contains("Insufficient") {
        "lower the Pod's requests or add nodes with more of that resource (kubectl top nodes)"
    } else if message.contains("node affinity/selector") {
        "fix the nodeSelector or node affinity, or label a node to match it"
    } else if message.contains("untolerated taint") {
        "add a toleration for the taint, or run it on other nodes"
    } else if message.contains("unbound immediate PersistentVolumeClaims") {
        "check the PVC and its StorageClass: kubectl get pvc; kubectl describe pvc"
    } else if message.contains("were unschedulable") {
        "the nodes are cordoned: kubectl uncordon, or add nodes"
    } else {
        "kubectl describe pod shows the scheduler's reasons per node"
    }
}

/// What is wrong with one container, from its status, its spec and the Pod's Events.
fn container_trouble(pod: &Value, status: &Value, spec: Option<&Value>, events: &[&PodEvent]) -> Option<Trouble> {
    let name = status["name"].as_str().unwrap_or_default();
    let own: Vec<&PodEvent> = events.iter().copied().filter(|e| e.container.as_deref() == Some(name)).collect();
    let restarts = status["restartCount"].as_u64().unwrap_or(0);
    if let Some(waiting) = status["state"]["waiting"].as_object() {
        let reason = waiting.get("reason").and_then(Value::as_str).unwrap_or_default();
        let message = waiting.get("message").and_then(Value::as_str).unwrap_or_default();
        let trouble = |cause: String, fix: String| Some(Trouble { status: reason.to_owned(), cause, fix });
        return match reason {
            "CrashLoopBackOff" => {
                let last = &status["lastState"]["terminated"];
                let (cause, fix) = crash(pod, name, last, spec, &own, restarts);
                trouble(cause, fix)
            }
            "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => {
                let image = status["image"].as_str().or_else(|| spec?["image"].as_str()).unwrap_or_default();
                let pull_error = own.iter().find(|e| e.message.starts_with("Failed to pull image")).map(|e| &e.message);
                let (cause, fix) = image_pull(reason, image, pull_error.map_or(message, String::as_str));
                trouble(cause, fix)
            }
            "CreateContainerConfigError" => {
                let (cause, fix) = config_error(pod, name, message);
                trouble(cause, fix)
            }
            "CreateContainerError" | "RunContainerError" | "StartError" => trouble(
                format!("the runtime cannot start it: {message}"),
                "fix command/args or the image's entrypoint (kubectl describe pod shows the error)".into(),
            ),
            "ContainerCreating" | "PodInitializing" => {
                let mount = events.iter().find(|e| {
                    matches!(e.reason.as_str(), "FailedMount" | "FailedAttachVolume" | "FailedCreatePodSandBox")
                })?;
                let fix = if mount.reason == "FailedCreatePodSandBox" {
                    "the node's network plugin (CNI) failed: check its Pods on that node"
                } else {
                    "create the ConfigMap, Secret or PVC the volume names, or check the PVC: kubectl get pvc"
                };
                trouble(format!("{}: {}", mount.reason, mount.message), fix.into())
            }
            _ => None,
        };
    }
    let terminated = &status["state"]["terminated"];
    if terminated.is_object() {
        let restart_policy = pod.pointer("/spec/restartPolicy").and_then(Value::as_str).unwrap_or("Always");
        let exit_code = terminated["exitCode"].as_i64().unwrap_or(0);
        let oom = terminated["reason"] == "OOMKilled";
        // Restarted after it ends (a Pod's container that exits, even with 0), or killed for memory.
        let restarting =
            restarts > 0 && (restart_policy == "Always" || (restart_policy == "OnFailure" && exit_code != 0));
        if oom || restarting {
            let (cause, fix) = crash(pod, name, terminated, spec, &own, restarts);
            let status = terminated["reason"].as_str().unwrap_or("Terminated").to_owned();
            return Some(Trouble { status, cause, fix });
        }
        return None;
    }
    // Running: killed for memory before, or a native sidecar that never started (its startup
    // probe fails, so the containers after it wait).
    let last = &status["lastState"]["terminated"];
    if restarts > 0 && last["reason"] == "OOMKilled" && status["ready"] != true {
        let (cause, fix) = crash(pod, name, last, spec, &own, restarts);
        return Some(Trouble { status: "OOMKilled".into(), cause, fix });
    }
    let sidecar = spec.is_some_and(|c| c["restartPolicy"] == "Always");
    if sidecar && status["started"] == false {
        let probe = own.iter().find(|e| e.reason == "Unhealthy")?;
        return Some(Trouble {
            status: "NotStarted".into(),
            cause: format!("native sidecar {name} has not started, so the containers after it wait: {}", probe.message),
            fix: "fix its startupProbe (port, path, timing) or what the sidecar needs to start".into(),
        });
    }
    None
}

/// Why a container ended (its `lastState.terminated` or `state.terminated`) and keeps restarting.
fn crash(
    pod: &Value,
    name: &str,
    terminated: &Value,
    spec: Option<&Value>,
    events: &[&PodEvent],
    restarts: u64,
) -> (String, String) {
    let namespace = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
    let pod_name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let exit_code = terminated["exitCode"].as_i64();
    let restarted = match restarts {
        0 => String::new(),
        1 => "; 1 restart".to_owned(),
        n => format!("; {n} restarts"),
    };
    if terminated["reason"] == "OOMKilled" {
        let limit = spec.and_then(|c| c.pointer("/resources/limits/memory")).and_then(Value::as_str);
        return match limit {
            Some(limit) => (
                format!("Last State: OOMKilled (Exit Code 137): it used more than its memory limit {limit}{restarted}"),
                format!("raise resources.limits.memory above {limit}, or make it use less (kubectl top pod)"),
            ),
            None => (
                format!(
                    "Last State: OOMKilled (Exit Code 137) with no memory limit: the node ran out of memory{restarted}"
                ),
                "set memory requests that match its use, so the scheduler leaves room for it".to_owned(),
            ),
        };
    }
    let liveness = events.iter().find(|e| {
        (e.reason == "Unhealthy" && e.message.starts_with("Liveness probe"))
            || (e.reason == "Killing" && e.message.contains("failed liveness probe"))
    });
    if let Some(event) = liveness {
        return (
            format!("the liveness probe fails and the kubelet restarts it: {}{restarted}", event.message),
            "fix the livenessProbe (path, port, timing), or add a startupProbe if it starts slowly".to_owned(),
        );
    }
    match exit_code {
        Some(0) => {
            let background = spec.and_then(backgrounded_command);
            let cause = match &background {
                Some(command) => format!(
                    "Exit Code 0 (Completed), then restarted: its script starts `{command}` in the background and \
                     ends{restarted}"
                ),
                None => format!("Exit Code 0 (Completed), then restarted: its main process ends{restarted}"),
            };
            let fix = if background.is_some() {
                "run the long-lived process in the foreground as the script's last command; background only helpers"
            } else {
                "a Deployment's container must keep running; for one-off work use a Job"
            };
            (cause, fix.to_owned())
        }
        Some(code) => (
            format!("Last State: Terminated, Exit Code {code}{}{restarted}", exit_meaning(code)),
            format!("read why in its last log: kubectl logs {pod_name} -c {name} -p -n {namespace}"),
        ),
        None => (
            format!("it keeps stopping{restarted}"),
            format!("kubectl describe pod {pod_name} -n {namespace}; kubectl logs {pod_name} -c {name} -p"),
        ),
    }
}

fn exit_meaning(code: i64) -> &'static str {
    match code {
        1 => " (an application error)",
        2 => " (a usage error: check command and args)",
        126 => " (the command is not executable)",
        127 => " (command not found)",
        137 => " (SIGKILL)",
        139 => " (SIGSEGV: a crash)",
        143 => " (SIGTERM)",
        _ => "",
    }
}

/// The backgrounded command (`nohup node server.js &`) of a container's shell script, if any.
fn backgrounded_command(container: &Value) -> Option<String> {
    let argv: Vec<&str> = ["command", "args"]
        .iter()
        .flat_map(|k| container[*k].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    let shell = argv.first()?.rsplit('/').next()?;
    if !matches!(shell, "sh" | "bash" | "ash" | "dash" | "zsh" | "ksh") {
        return None;
    }
    let script = argv.iter().skip(1).find(|a| !a.starts_with('-'))?;
    script
        .split(['\n', ';'])
        .map(str::trim)
        .find(|s| s.ends_with('&') && !s.ends_with("&&"))
        .map(|s| s.trim_end_matches('&').trim().split(['>', '<']).next().unwrap_or_default().trim().to_owned())
}

/// Why an image cannot be pulled, from the runtime's message.
fn image_pull(reason: &str, image: &str, message: &str) -> (String, String) {
    let lower = message.to_ascii_lowercase();
    let host = registry_host(image);
    let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    if reason == "InvalidImageName" {
        return (format!("the image name {image} is not valid"), "correct the image reference".into());
    }
    if has(&["no such host", "i/o timeout", "connection refused", "network is unreachable", "dial tcp"]) {
        let what = ["no such host", "i/o timeout", "connection refused", "network is unreachable"]
            .into_iter()
            .find(|w| lower.contains(w))
            .unwrap_or("cannot connect");
        return (
            format!("cannot pull {image}: the node cannot reach the registry {host} ({what})"),
            format!("check the registry in the image name; if it is right, the nodes' DNS and network to {host}"),
        );
    }
    if has(&["unauthorized", "denied", "authentication required", "forbidden", "401", "403"]) {
        return (
            format!("the registry {host} refused to pull {image} (a private image, or no access)"),
            "create a docker-registry Secret (kubectl create secret docker-registry) and add it to imagePullSecrets"
                .into(),
        );
    }
    if has(&["not found", "manifest unknown", "404"]) {
        return (
            format!("{image} does not exist in {host} (wrong name or tag)"),
            "correct the image name or tag".into(),
        );
    }
    (format!("cannot pull {image}: {message}"), "check the image name, the tag and imagePullSecrets".into())
}

/// The registry host of an image reference (`docker.io` when it names none).
fn registry_host(image: &str) -> String {
    let repository = ImageRef::parse(image).repository;
    match repository.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first.to_owned(),
        _ => "docker.io".to_owned(),
    }
}

/// A missing ConfigMap or Secret (or key), named with where the container uses it.
fn config_error(pod: &Value, container: &str, message: &str) -> (String, String) {
    let namespace = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
    let quoted = |prefix: &str| {
        let rest = message.strip_prefix(prefix)?;
        let (name, rest) = rest.strip_prefix('"')?.split_once('"')?;
        rest.trim().eq("not found").then(|| name.to_owned())
    };
    let missing = quoted("configmap ")
        .map(|n| ("ConfigMap", "configmap", n))
        .or_else(|| quoted("secret ").map(|n| ("Secret", "secret generic", n)));
    let Some((kind, create, name)) = missing else {
        return (
            format!("the container's configuration cannot be built: {message}"),
            "check the keys and names of its ConfigMap and Secret references".into(),
        );
    };
    let place = reference_place(pod, container, kind, &name);
    (
        format!("{kind} {name} does not exist{place}"),
        format!("create it (kubectl create {create} {name} -n {namespace} ...), or mark the reference optional: true"),
    )
}

/// Where a container refers to a ConfigMap or Secret: ` (env DB_URL of container app)`.
fn reference_place(pod: &Value, container: &str, kind: &str, name: &str) -> String {
    let (key_ref, from_ref) =
        if kind == "ConfigMap" { ("configMapKeyRef", "configMapRef") } else { ("secretKeyRef", "secretRef") };
    let spec =
        ["/spec/containers", "/spec/initContainers"].iter().flat_map(|p| list(pod, p)).find(|c| c["name"] == container);
    let Some(spec) = spec else { return String::new() };
    if let Some(env) = spec["env"].as_array().into_iter().flatten().find(|e| e["valueFrom"][key_ref]["name"] == name) {
        return format!(" (env {} of container {container})", env["name"].as_str().unwrap_or_default());
    }
    if spec["envFrom"].as_array().into_iter().flatten().any(|e| e[from_ref]["name"] == name) {
        return format!(" (envFrom of container {container})");
    }
    String::new()
}

fn list<'v>(object: &'v Value, pointer: &str) -> impl Iterator<Item = &'v Value> {
    object.pointer(pointer).and_then(Value::as_array).into_iter().flatten()
}

fn clip(text: String) -> String {
    shorten_to(text, MAX_TEXT)
}
