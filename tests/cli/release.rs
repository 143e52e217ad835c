//! What a release is made of. The version `podmedic --version` shows is the image tag that every
//! manifest and install command names, and the engine is required at that version. The dist
//! profile strips and optimises but keeps unwinding. The release workflow cannot run here, so it
//! is parsed and checked for what it relies on: jobs, permissions, platforms, pinned actions, the
//! checksum and signing steps, and the layout the Dockerfile copies the binaries from.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const PLATFORMS: &str = "linux/amd64,linux/arm64";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every file below `dir` (relative to the root) whose name ends with one of `extensions`.
fn files_below(dir: &str, extensions: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root().join(dir)];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if extensions.iter().any(|ext| path.to_string_lossy().ends_with(ext)) {
                found.push(path);
            }
        }
    }
    found
}

/// For each `marker` in `text` that a version follows (`podmedic:0.1.0`, `podmedic-v0.1.0-x86_64`),
/// whether that version is `VERSION`, and the text it was read from.
fn versions_after<'a>(text: &'a str, marker: &str) -> Vec<(bool, &'a str)> {
    text.match_indices(marker)
        .map(|(at, _)| &text[at + marker.len()..])
        .filter(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        .map(|rest| {
            // 0.1.0 is not 0.1.00 or 0.1.0.1; whatever follows (`-x86_64`, `/`, `"`) is no part of it.
            let after = rest.strip_prefix(VERSION);
            let continues = after.is_some_and(|a| {
                a.starts_with(|c: char| c.is_ascii_digit())
                    || a.strip_prefix('.').is_some_and(|b| b.starts_with(|c: char| c.is_ascii_digit()))
            });
            (after.is_some() && !continues, &rest[..rest.len().min(VERSION.len() + 8)])
        })
        .collect()
}

#[test]
fn podmedic_version_is_the_crate_version() {
    let output = Command::new(env!("CARGO_BIN_EXE_podmedic")).arg("--version").output().expect("run podmedic");
    assert!(output.status.success());
    assert_eq!(String::from_utf8_lossy(&output.stdout), format!("podmedic {VERSION}\n"));
}

#[test]
fn the_deployment_runs_the_image_of_this_version() {
    let deployment: Value = yaml_serde::from_str(&read("deploy/base/deployment.yaml")).expect("deployment.yaml");
    let images: Vec<&str> = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter_map(|c| c["image"].as_str())
        .collect();
    assert_eq!(images, [format!("ghcr.io/podmedic/podmedic:{VERSION}")], "bump the tag with Cargo.toml's version");
}

#[test]
fn every_version_the_install_docs_and_manifests_name_is_this_one() {
    let mut files = files_below("deploy", &[".yaml", ".md"]);
    files.extend(
        ["README.md", "Dockerfile", "certs/README.md", "docs/ci.md", ".pre-commit-hooks.yaml"].map(|f| root().join(f)),
    );
    let mut checked = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        // Image tags (`ghcr.io/podmedic/podmedic:0.1.0`, `registry.example/podmedic:0.1.0`) and
        // release files and URLs (`podmedic-v0.1.0-...`, `.../download/v0.1.0/...`).
        for marker in ["podmedic:", "podmedic-v", "download/v"] {
            for (is_this_version, found) in versions_after(&text, marker) {
                assert!(is_this_version, "{} names {marker}{found}..., not {VERSION}", file.display());
                checked += 1;
            }
        }
    }
    assert!(checked >= 5, "the install instructions name the version ({checked} found)");
}

#[test]
fn the_engine_is_required_at_this_version() {
    let manifest = read("Cargo.toml");
    let line = manifest
        .lines()
        .find(|l| l.starts_with("podmedic-engine = {"))
        .expect("the engine in [workspace.dependencies]");
    assert!(line.contains("path = "), "{line}");
    let versions = versions_after(line, "version = \"");
    assert!(versions.len() == 1 && versions[0].0, "crates.io resolves the engine by version {VERSION}: {line}");
}

#[test]
fn the_dist_profile_is_stripped_and_optimised_and_keeps_unwinding() {
    let manifest = read("Cargo.toml");
    let start = manifest.find("\n[profile.dist]\n").expect("a [profile.dist]");
    let section = &manifest[start + 1..];
    let section = &section[..section[1..].find("\n[").map_or(section.len(), |end| end + 1)];
    let settings: BTreeSet<&str> = section.lines().filter(|l| !l.starts_with('#') && l.contains(" = ")).collect();
    for expected in
        ["inherits = \"release\"", "debug = false", "strip = \"symbols\"", "lto = \"fat\"", "codegen-units = 1"]
    {
        assert!(settings.contains(expected), "{expected} in {settings:?}");
    }
    // A panic in the engine is caught per request and the object let through (fail open).
    assert!(settings.contains("panic = \"unwind\""), "never panic = \"abort\": {settings:?}");
}

fn workflow() -> Value {
    yaml_serde::from_str(&read(".github/workflows/release.yml")).expect("release.yml is YAML")
}

fn steps(job: &Value) -> &Vec<Value> {
    job["steps"].as_array().expect("steps")
}

/// The one `run:` script of `job` that contains every one of `parts`.
fn run_with<'a>(job: &'a Value, parts: &[&str]) -> &'a str {
    let mut matching =
        steps(job).iter().filter_map(|s| s["run"].as_str()).filter(|r| parts.iter().all(|p| r.contains(p)));
    let run = matching.next().unwrap_or_else(|| panic!("no step runs {parts:?}"));
    assert!(matching.next().is_none(), "two steps run {parts:?}");
    run
}

fn uses<'a>(job: &'a Value, action: &str) -> &'a Value {
    steps(job)
        .iter()
        .find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with(&format!("{action}@"))))
        .unwrap_or_else(|| panic!("no step uses {action}"))
}

fn needs(job: &Value) -> Vec<&str> {
    match &job["needs"] {
        Value::String(one) => vec![one.as_str()],
        many => many.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default(),
    }
}

#[test]
fn the_release_workflow_builds_signs_and_publishes_binaries_and_the_image() {
    let workflow = workflow();
    assert_eq!(workflow["on"]["push"]["tags"], serde_json::json!(["v*"]), "a version tag starts it");
    assert_eq!(workflow["permissions"], serde_json::json!({"contents": "read"}), "least privilege by default");
    let jobs = &workflow["jobs"];

    // Static binaries for both architectures, with the dist profile, and the tag checked first.
    let binaries = &jobs["binaries"];
    let matrix = binaries["strategy"]["matrix"]["include"].as_array().expect("matrix");
    let targets: BTreeSet<&str> = matrix.iter().filter_map(|m| m["target"].as_str()).collect();
    assert_eq!(targets, BTreeSet::from(["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"]));
    // Profile-guided and laid out by BOLT, each on a runner of its own architecture (an instrumented
    // build must run where it was built); the script builds the dist profile of that target.
    run_with(binaries, &["tools/pgo/build.sh", "TARGET=\"${{ matrix.target }}\"", "CARGO_BUILD_COMMAND=zigbuild"]);
    run_with(binaries, &["--component llvm-tools"]);
    let runners: BTreeSet<(&str, &str)> =
        matrix.iter().filter_map(|m| Some((m["target"].as_str()?, m["runner"].as_str()?))).collect();
    assert_eq!(
        runners,
        BTreeSet::from([
            ("aarch64-unknown-linux-musl", "ubuntu-24.04-arm"),
            ("x86_64-unknown-linux-musl", "ubuntu-24.04")
        ])
    );
    assert_eq!(binaries["runs-on"], "${{ matrix.runner }}");
    let script = read("tools/pgo/build.sh");
    for part in ["--locked --profile dist --target \"$target\" --bin podmedic", "-Cprofile-generate=", "-Cprofile-use="]
    {
        assert!(script.contains(part), "tools/pgo/build.sh: {part}");
    }
    run_with(binaries, &["GITHUB_REF_NAME", "cargo metadata", "exit 1"]);
    run_with(binaries, &["tar -czf", "LICENSE", "target/pgo/podmedic"]);

    // The image: both platforms from the Dockerfile, with those binaries, an SBOM, pushed, signed.
    let image = &jobs["image"];
    assert_eq!(needs(image), ["binaries"]);
    assert_eq!(image["permissions"]["id-token"], "write", "keyless signing needs the OIDC token");
    assert_eq!(image["permissions"]["packages"], "write", "pushing to ghcr.io");
    run_with(image, &["docker buildx build", &format!("--platform {PLATFORMS}"), "--sbom=true", "--push"]);
    run_with(image, &["cosign sign --yes", "@${DIGEST}"]);
    uses(image, "sigstore/cosign-installer");

    // The release: checksums, their signature, an SBOM, and the binaries attached.
    let release = &jobs["release"];
    assert_eq!(needs(release).into_iter().collect::<BTreeSet<_>>(), BTreeSet::from(["binaries", "image"]));
    assert_eq!(release["permissions"]["contents"], "write");
    assert_eq!(release["permissions"]["id-token"], "write");
    run_with(release, &["sha256sum podmedic-*.tar.gz > SHA256SUMS"]);
    run_with(release, &["cosign sign-blob --yes", "SHA256SUMS"]);
    assert_eq!(uses(release, "anchore/sbom-action")["with"]["format"], "spdx-json");
    let publish = run_with(release, &["gh release create"]);
    for file in ["podmedic-*.tar.gz", "SHA256SUMS", "SHA256SUMS.sigstore.json", ".spdx.json"] {
        assert!(publish.contains(file), "{file} is attached: {publish}");
    }
}

#[test]
fn the_workflow_gives_the_dockerfile_the_binaries_where_it_copies_them_from() {
    let workflow = workflow();
    let dockerfile = read("Dockerfile");
    for line in ["ARG BINARY=build", "FROM ${BINARY} AS binary", "COPY prebuilt/${TARGETARCH}/podmedic /podmedic"] {
        assert!(dockerfile.lines().any(|l| l == line), "Dockerfile: {line}");
    }
    assert!(dockerfile.contains("cargo build --profile dist --locked") && dockerfile.contains("target/dist/podmedic"));
    // Docker's TARGETARCH of each platform is the `arch` the binaries job files the binary under.
    let archs: BTreeSet<&str> = workflow["jobs"]["binaries"]["strategy"]["matrix"]["include"]
        .as_array()
        .expect("matrix")
        .iter()
        .filter_map(|m| m["arch"].as_str())
        .collect();
    let platforms: BTreeSet<&str> = PLATFORMS.split(',').filter_map(|p| p.strip_prefix("linux/")).collect();
    assert_eq!(archs, platforms);
    run_with(&workflow["jobs"]["binaries"], &["image/${{ matrix.arch }}/podmedic"]);
    run_with(&workflow["jobs"]["image"], &["mv image prebuilt"]);
    run_with(&workflow["jobs"]["image"], &["--build-arg BINARY=prebuilt"]);
}

#[test]
fn every_action_is_pinned_to_a_commit_with_its_tag_in_a_comment() {
    let text = read(".github/workflows/release.yml");
    let mut pinned = 0;
    for line in text.lines().filter(|l| l.trim_start().trim_start_matches("- ").starts_with("uses:")) {
        let reference = line.split_once('@').map_or("", |(_, r)| r);
        let (sha, comment) = reference.split_once(' ').unwrap_or((reference, ""));
        assert!(sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()), "not pinned to a commit: {line}");
        assert!(comment.trim_start().starts_with("# v"), "no tag comment: {line}");
        pinned += 1;
    }
    assert!(pinned >= 5, "{pinned} actions found");
}

#[test]
fn every_run_script_of_the_release_workflow_is_valid_bash() {
    let workflow = workflow();
    for (name, job) in workflow["jobs"].as_object().expect("jobs") {
        for run in steps(job).iter().filter_map(|s| s["run"].as_str()) {
            // GitHub substitutes ${{ ... }} before the shell sees the script.
            let mut script = String::new();
            let mut rest = run;
            while let Some(start) = rest.find("${{") {
                let end = rest[start..].find("}}").map(|e| start + e + 2).expect("closed expression");
                script.push_str(&rest[..start]);
                script.push_str("expr");
                rest = &rest[end..];
            }
            script.push_str(rest);
            let mut bash =
                Command::new("bash").arg("-n").stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("bash");
            std::io::Write::write_all(&mut bash.stdin.take().expect("stdin"), script.as_bytes()).expect("write");
            let output = bash.wait_with_output().expect("bash -n");
            assert!(output.status.success(), "job {name}: {}\n{run}", String::from_utf8_lossy(&output.stderr));
        }
    }
}

/// The krew manifest installs, for each platform the workflow builds, the archive the workflow
/// makes (`podmedic-v<version>-<target>.tar.gz` holding `podmedic-v<version>-<target>/podmedic`),
/// under the name `kubectl-podmedic` that makes podmedic speak as the plugin.
#[test]
fn the_krew_manifest_installs_the_release_archives_as_kubectl_podmedic() {
    let manifest: Value = yaml_serde::from_str(&read("deploy/krew/podmedic.yaml")).expect("krew manifest");
    assert_eq!(manifest["apiVersion"], "krew.googlecontainertools.github.com/v1alpha2");
    assert_eq!((manifest["kind"].as_str(), manifest["metadata"]["name"].as_str()), (Some("Plugin"), Some("podmedic")));
    assert_eq!(manifest["spec"]["version"], format!("v{VERSION}"));
    let workflow = workflow();
    let matrix = workflow["jobs"]["binaries"]["strategy"]["matrix"]["include"].as_array().expect("matrix");
    let platforms = manifest["spec"]["platforms"].as_array().expect("platforms");
    assert_eq!(platforms.len(), matrix.len());
    for build in matrix {
        let (target, arch) = (build["target"].as_str().expect("target"), build["arch"].as_str().expect("arch"));
        let platform = platforms
            .iter()
            .find(|p| p["selector"]["matchLabels"]["arch"] == arch)
            .unwrap_or_else(|| panic!("no krew platform for {arch}"));
        assert_eq!(platform["selector"]["matchLabels"]["os"], "linux");
        let archive = format!("podmedic-v{VERSION}-{target}");
        assert!(platform["uri"].as_str().expect("uri").ends_with(&format!("/download/v{VERSION}/{archive}.tar.gz")));
        assert_eq!(platform["bin"], "kubectl-podmedic");
        let files = platform["files"].as_array().expect("files");
        assert!(files.iter().any(|f| f["from"] == format!("{archive}/podmedic") && f["to"] == "kubectl-podmedic"));
        assert_eq!(platform["sha256"].as_str().map(str::len), Some(64), "a sha256 per archive");
    }
}
