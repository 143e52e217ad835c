//! `kubectl podmedic`: the same binary under the name `kubectl-podmedic` (a symbolic link, as
//! `make install` or krew lays it out), run directly and, where kubectl is installed, through
//! kubectl's plugin lookup on `PATH`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SEED: &str = "tests/fixtures/manifests/seed-cronjob.yaml";

/// A directory holding `kubectl-podmedic`, a symbolic link to the built binary.
fn plugin_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("kubectl-podmedic");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_podmedic"), &link).unwrap();
    (dir, link)
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn the_binary_linked_as_kubectl_podmedic_speaks_as_the_plugin() {
    let (_dir, link) = plugin_dir();
    let help = Command::new(&link).arg("--help").output().unwrap();
    assert!(help.status.success(), "{}", text(&help));
    let help = text(&help);
    assert!(help.contains("Usage: kubectl podmedic [OPTIONS] <COMMAND>"), "{help}");
    assert!(help.contains("  fix ") && help.contains("  audit ") && !help.contains("  serve "), "{help}");
    let fix_help = text(&Command::new(&link).args(["fix", "--help"]).output().unwrap());
    assert!(fix_help.contains("Usage: kubectl podmedic fix"), "{fix_help}");

    // The plugin does the same work as podmedic: the seed CronJob would change.
    let check =
        Command::new(&link).current_dir(ROOT).args(["fix", "--check", "--report", "json", SEED]).output().unwrap();
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    let report: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(report["objects"][0]["findings"][0]["rule"], "sidecar-moved");
}

#[test]
fn kubectl_finds_the_plugin_on_path() {
    let Some(kubectl) = on_path("kubectl") else {
        eprintln!("skipped: kubectl is not on PATH");
        return;
    };
    let (dir, _link) = plugin_dir();
    let path = std::env::join_paths(
        std::iter::once(dir.path().to_path_buf()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(&kubectl)
            .current_dir(ROOT)
            .env("PATH", &path)
            // No cluster is needed for `fix`; make sure none is used.
            .env("KUBECONFIG", dir.path().join("no-kubeconfig"))
            .args(args)
            .output()
            .unwrap()
    };
    let help = run(&["podmedic", "--help"]);
    assert!(text(&help).contains("Usage: kubectl podmedic"), "{}", text(&help));
    let check = run(&["podmedic", "fix", "--check", SEED]);
    assert_eq!(check.status.code(), Some(1), "{}", text(&check));
    assert!(text(&check).contains("sidecar-moved"), "{}", text(&check));
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
