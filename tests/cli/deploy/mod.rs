//! The manifests users apply from `deploy/`: the webhook configurations are opt-in and fail-open,
//! in pods mode by default and template mode with its component, and warn about Deployments,
//! StatefulSets and DaemonSets in both (`webhooks.rs`); the Deployment is hardened; RBAC is
//! read-only on Nodes and Namespaces; each overlay renders and adds a certificate to every
//! webhook; the components render (`warnings.rs` for the reference-checks component).
//!
//! The base is always checked by parsing its files directly. Where `kubectl` is on PATH, every
//! kustomization is also rendered with `kubectl kustomize` and the same checks run on the output;
//! without it, the overlays' patches are applied here with `json_patch` instead.

mod checks;
mod monitoring;
mod warnings;
mod webhooks;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use checks::{assert_base, assert_deployment_is_hardened, assert_valid_kubernetes_objects};
use manifests::*;
use webhooks::webhooks;

#[path = "../../support/manifests.rs"]
mod manifests;

const NAMESPACE: &str = "podmedic-system";

/// `kubectl kustomize <dir>`, or None if kubectl is not installed. A kubectl that runs but fails
/// to render fails the test.
fn kustomize(dir: &Path) -> Option<Vec<Value>> {
    let output = match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("kubectl not on PATH: `kubectl kustomize {}` skipped", dir.display());
            return None;
        }
        Err(e) => panic!("cannot run kubectl: {e}"),
    };
    assert!(
        output.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    Some(parse_docs(&String::from_utf8_lossy(&output.stdout), &format!("kubectl kustomize {}", dir.display())))
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let mut matching = objects.iter().filter(|o| o["kind"] == kind && o["metadata"]["name"] == name);
    let found = matching.next().unwrap_or_else(|| panic!("no {kind} {name}"));
    assert!(matching.next().is_none(), "two {kind}s named {name}");
    found
}

fn of_kind<'a>(objects: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    objects.iter().filter(move |o| o["kind"] == kind)
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

/// A copy of `deploy/` in a temporary directory, so that a test can add files to an overlay.
fn deploy_copy() -> (tempfile::TempDir, PathBuf) {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read_dir") {
            let entry = entry.expect("entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("file type").is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).expect("copy");
            }
        }
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let deploy = tmp.path().join("deploy");
    copy(&deploy_dir(), &deploy);
    // Certificates someone generated into the real overlay must not leak into the test.
    let _ = std::fs::remove_dir_all(deploy.join("overlays/self-managed/certs"));
    (tmp, deploy)
}

/// What `podmedic certs --out <out>` writes for the Service in podmedic-system.
fn podmedic_certs(out: &Path) {
    let config = podmedic::commands::certs::CertsConfig {
        service: "podmedic".into(),
        namespace: NAMESPACE.into(),
        out: out.to_owned(),
        validity: std::time::Duration::from_secs(86_400),
        ca_validity: std::time::Duration::from_secs(2 * 86_400),
        new_ca: false,
    };
    podmedic::commands::certs::run(&config).expect("podmedic certs");
}

/// An overlay of the base with `components`, as a user would write it, rendered by kubectl (None
/// without it).
fn render_with_components(components: &[&str]) -> Option<Vec<Value>> {
    let (_tmp, deploy) = deploy_copy();
    let overlay = deploy.join("overlays/with-components");
    std::fs::create_dir_all(&overlay).expect("mkdir");
    let list: Vec<String> = components.iter().map(|c| format!("../../components/{c}")).collect();
    let text = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../../base]\ncomponents: [{}]\n",
        list.join(", ")
    );
    std::fs::write(overlay.join("kustomization.yaml"), text).expect("write overlay");
    kustomize(&overlay)
}

fn pod_spec(objects: &[Value]) -> &Value {
    &find(objects, "Deployment", "podmedic")["spec"]["template"]["spec"]
}

fn podmedic_container(objects: &[Value]) -> &Value {
    let containers = pod_spec(objects)["containers"].as_array().expect("containers");
    containers.iter().find(|c| c["name"] == "podmedic").expect("a container named podmedic")
}

/// `--flag=value` from the container's args.
fn arg<'a>(container: &'a Value, flag: &str) -> Option<&'a str> {
    strings(&container["args"]).into_iter().find_map(|a| a.strip_prefix(flag)?.strip_prefix('='))
}

/// Seconds in a Go-style duration as the server's flags take them (`5s`, `1m30s`).
fn seconds(duration: &str) -> u64 {
    let (mut total, mut number) = (0, String::new());
    for c in duration.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().unwrap_or_else(|_| panic!("bad duration {duration:?}"));
        number.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => panic!("bad duration unit in {duration:?}"),
        };
    }
    assert!(number.is_empty(), "duration {duration:?} lacks a unit");
    total
}

/// A CPU or memory quantity as a number of millicores or bytes (the forms the manifests use).
fn quantity(q: &Value) -> f64 {
    let s = q.as_str().map(str::to_owned).unwrap_or_else(|| q.to_string());
    let units = [("m", 1e-3), ("Ki", 1024.0), ("Mi", 1024f64.powi(2)), ("Gi", 1024f64.powi(3))];
    let (number, scale) =
        units.iter().find_map(|(unit, scale)| Some((s.strip_suffix(unit)?, *scale))).unwrap_or((s.as_str(), 1.0));
    number.parse::<f64>().unwrap_or_else(|_| panic!("bad quantity {s:?}")) * scale
}

/// The container port a Service or probe port (number or name) refers to.
fn container_port(container: &Value, port: &Value) -> u64 {
    match port {
        Value::Number(n) => n.as_u64().expect("port number"),
        Value::String(name) => container["ports"]
            .as_array()
            .and_then(|ports| ports.iter().find(|p| p["name"] == *name))
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port named {name}")),
        other => panic!("bad port {other}"),
    }
}

/// Objects keyed by kind and name, to compare renderings regardless of order.
fn by_kind_and_name(objects: Vec<Value>) -> BTreeMap<(String, String), Value> {
    objects
        .into_iter()
        .map(|o| ((o["kind"].as_str().unwrap_or("").to_owned(), o["metadata"]["name"].to_string()), o))
        .collect()
}

#[test]
fn the_base_files_make_an_opt_in_fail_open_webhook_on_a_hardened_deployment() {
    assert_base(&base_objects());
}

#[test]
fn kubectl_kustomize_renders_deploy_to_exactly_the_base_files() {
    let Some(rendered) = kustomize(&deploy_dir()) else { return };
    assert_base(&rendered);
    // The direct parse used without kubectl sees what kustomize renders: no hidden transformation,
    // and no value that YAML 1.1 (kubectl, the API server) and YAML 1.2 read differently.
    let (rendered, parsed) = (by_kind_and_name(rendered), by_kind_and_name(base_objects()));
    assert_eq!(rendered.keys().collect::<Vec<_>>(), parsed.keys().collect::<Vec<_>>());
    for (key, object) in rendered {
        assert_eq!(object, parsed[&key], "{key:?} renders differently from its file");
    }
}

#[test]
fn the_cert_manager_overlay_issues_the_serving_certificate_from_a_ca_and_injects_it() {
    let overlay = deploy_dir().join("overlays/cert-manager");
    let check = |objects: &[Value]| {
        let serving = find(objects, "Certificate", "podmedic-serving");
        assert_eq!(serving["metadata"]["namespace"], NAMESPACE);
        assert_eq!(serving["spec"]["secretName"], "podmedic-tls", "the Secret the Deployment mounts");
        let names: BTreeSet<_> = strings(&serving["spec"]["dnsNames"]).into_iter().collect();
        let expected: BTreeSet<_> =
            podmedic::commands::certs::service_dns_names("podmedic", NAMESPACE).into_iter().collect();
        assert_eq!(names, expected.iter().map(String::as_str).collect());
        assert!(strings(&serving["spec"]["usages"]).contains(&"server auth"));
        assert_ne!(serving["spec"]["isCA"], true);

        // Serving certificate <- CA Issuer <- CA Certificate <- self-signed Issuer.
        let ca_issuer = find(objects, "Issuer", serving["spec"]["issuerRef"]["name"].as_str().expect("issuerRef"));
        let ca_secret = ca_issuer["spec"]["ca"]["secretName"].as_str().expect("a CA Issuer");
        let ca = objects
            .iter()
            .find(|o| o["kind"] == "Certificate" && o["spec"]["secretName"] == ca_secret)
            .expect("the CA Certificate");
        assert_eq!(ca["spec"]["isCA"], true);
        let root = find(objects, "Issuer", ca["spec"]["issuerRef"]["name"].as_str().expect("issuerRef"));
        assert_eq!(root["spec"]["selfSigned"], json!({}));
        for issuer in of_kind(objects, "Issuer").chain(of_kind(objects, "Certificate")) {
            assert_eq!(issuer["metadata"]["namespace"], NAMESPACE);
        }

        // Renewals need no caBundle change the Pods are not ready for: the serving certificate is
        // renewed more often than the CA's renewal window, and the CA keeps its key.
        let hours = |v: &Value| seconds(v.as_str().expect("a duration")) / 3600;
        let serving_renewal_interval = hours(&serving["spec"]["duration"]) - hours(&serving["spec"]["renewBefore"]);
        assert!(hours(&ca["spec"]["renewBefore"]) > serving_renewal_interval, "the CA renews too late");
        assert_eq!(ca["spec"]["privateKey"]["rotationPolicy"], "Never", "a renewed CA verifies older certificates");

        let inject = format!("{NAMESPACE}/podmedic-serving");
        for kind in ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"] {
            let config = find(objects, kind, "podmedic");
            assert_eq!(config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"], inject.as_str(), "{kind}");
        }
    };

    // Without kubectl: the overlay's files and its annotation patch.
    let kustomization = read_yaml(&overlay.join("kustomization.yaml")).remove(0);
    assert!(strings(&kustomization["resources"]).contains(&"../../base"));
    let mut objects = base_objects();
    for resource in strings(&kustomization["resources"]).into_iter().filter(|r| !r.starts_with("..")) {
        objects.extend(read_yaml(&overlay.join(resource)));
    }
    apply_inline_patches(&mut objects, &kustomization);
    check(&objects);
    assert_base(&objects);

    if let Some(rendered) = kustomize(&overlay) {
        check(&rendered);
        assert_base(&rendered);
    }
}

#[test]
fn the_self_managed_overlay_uses_the_files_podmedic_certs_writes() {
    let (_tmp, deploy) = deploy_copy();
    let overlay = deploy.join("overlays/self-managed");
    let certs = overlay.join("certs");
    podmedic_certs(&certs);
    let ca_bundle = std::fs::read_to_string(certs.join("caBundle.b64")).expect("caBundle.b64");
    let ca_bundle = ca_bundle.trim();

    let check = |objects: &[Value]| {
        assert_base(objects);
        for (_, hook) in webhooks(objects) {
            assert_eq!(hook["clientConfig"]["caBundle"], ca_bundle, "{} trusts the generated CA", hook["name"]);
            assert!(hook["clientConfig"]["service"]["path"].is_string(), "the patch added, it did not replace");
        }
        let secret = find(objects, "Secret", "podmedic-tls");
        assert_eq!(secret["metadata"]["namespace"], NAMESPACE);
        assert_eq!(secret["type"], "kubernetes.io/tls");
        let keys: BTreeSet<_> = secret["data"].as_object().expect("data").keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["ca.crt", "tls.crt", "tls.key"]));
    };

    // Without kubectl: the files the kustomization names, and its JSON patch applied here.
    let kustomization = read_yaml(&overlay.join("kustomization.yaml")).remove(0);
    let mut objects = base_objects();
    for resource in strings(&kustomization["resources"]).into_iter().filter(|r| !r.starts_with("..")) {
        objects.extend(read_yaml(&overlay.join(resource)));
    }
    let patches = kustomization["patches"].as_array().expect("patches");
    let targets: Vec<&Value> = patches.iter().map(|p| &p["target"]["kind"]).collect();
    assert_eq!(targets, ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]);
    for patch in patches {
        let kind = patch["target"]["kind"].as_str().expect("target kind");
        let body = read_yaml(&overlay.join(patch["path"].as_str().expect("patch path"))).remove(0);
        let config = objects.iter_mut().find(|o| o["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"));
        apply_json_patch(config, &body);
    }
    check(&objects);

    if let Some(rendered) = kustomize(&overlay) {
        check(&rendered);
    }

    // Template mode over this overlay, as deploy/README.md shows it: the component removes
    // webhooks after the overlay set their caBundles; those that stay trust the CA.
    let mine = deploy.join("overlays/self-managed-template-mode");
    std::fs::create_dir_all(&mine).expect("mkdir");
    std::fs::write(
        mine.join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../self-managed]\n\
         components: [../../components/template-mode]\n",
    )
    .expect("write overlay");
    if let Some(rendered) = kustomize(&mine) {
        webhooks::assert_webhooks(&rendered, webhooks::Mode::Template);
        for (_, hook) in webhooks(&rendered) {
            assert_eq!(hook["clientConfig"]["caBundle"], ca_bundle, "{} trusts the generated CA", hook["name"]);
        }
    }
}

#[test]
fn the_image_runs_serve_as_the_user_the_deployment_expects() {
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).expect("Dockerfile");
    let instructions: Vec<&str> = dockerfile.lines().filter(|l| !l.trim_start().starts_with('#')).collect();
    let last_from = instructions.iter().rposition(|l| l.starts_with("FROM ")).expect("FROM");
    let (build, final_stage) = instructions.split_at(last_from);
    assert!(build.iter().any(|l| l.starts_with("FROM ")), "multi-stage: the toolchain stays out of the image");
    assert!(
        final_stage[0].contains("distroless/static") || final_stage[0].trim() == "FROM scratch",
        "a minimal final image: {}",
        final_stage[0]
    );
    let objects = base_objects();
    let uid = pod_spec(&objects)["securityContext"]["runAsUser"].as_u64().expect("runAsUser");
    let user = final_stage.iter().find_map(|l| l.strip_prefix("USER ")).expect("a USER in the final stage");
    assert_eq!(user.split(':').next(), Some(uid.to_string().as_str()), "the image's user is the Deployment's");
    assert!(final_stage.contains(&r#"ENTRYPOINT ["/usr/local/bin/podmedic"]"#));
    assert!(final_stage.contains(&r#"CMD ["serve"]"#));
}

#[test]
fn the_self_managed_overlay_is_git_ignored_where_podmedic_certs_writes() {
    let gitignore =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".gitignore")).expect("gitignore");
    assert!(
        gitignore.lines().any(|l| l.trim() == "/deploy/overlays/self-managed/certs/"),
        "keys must not be committed"
    );
    for file in [
        "/certs/*.key",
        "/certs/secret.yaml",
        "/certs/caBundle*",
        "/certs/webhook-ca-bundle-patch.yaml",
        "/certs/validating-webhook-ca-bundle-patch.yaml",
    ] {
        assert!(gitignore.lines().any(|l| l.trim() == file), "{file} is not git-ignored");
    }
}

#[test]
fn the_readmes_own_registry_overlay_runs_the_image_from_that_registry() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("README");
    let start = readme.find("```yaml\n# my-podmedic/kustomization.yaml").expect("the README's own-registry overlay");
    let block = &readme[start + "```yaml\n".len()..];
    let block = &block[..block.find("```").expect("the block ends")];
    let kustomization = parse_docs(block, "README overlay").remove(0);
    let image = &kustomization["images"][0];
    let deployed = podmedic_container(&base_objects())["image"].as_str().expect("image").to_owned();
    assert_eq!(deployed.split_once(':').map(|(name, _)| name), image["name"].as_str(), "the override names the image");

    // Laid out as the README says: the overlay beside a podmedic checkout.
    let (tmp, deploy) = deploy_copy();
    let checkout = tmp.path().join("podmedic");
    std::fs::create_dir_all(&checkout).expect("mkdir");
    std::fs::rename(&deploy, checkout.join("deploy")).expect("move deploy/");
    podmedic_certs(&checkout.join("deploy/overlays/self-managed/certs"));
    let mine = tmp.path().join("my-podmedic");
    std::fs::create_dir_all(&mine).expect("mkdir");
    std::fs::write(mine.join("kustomization.yaml"), block).expect("write the overlay");
    if let Some(rendered) = kustomize(&mine) {
        let expected =
            format!("{}:{}", image["newName"].as_str().expect("newName"), image["newTag"].as_str().expect("newTag"));
        assert_eq!(podmedic_container(&rendered)["image"], expected.as_str());
        assert_base(&rendered);
    }
}
