//! `podmedic fix --check --report text|json|sarif|junit` on the fixture manifests, the real
//! binary run from the repository root as CI runs it: the SARIF is valid 2.1.0 (the vendored
//! schema, tests/fixtures/sarif/) and points at the line of each container podmedic would change;
//! the JUnit XML has one test case per object.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const FILES: [&str; 4] = [
    "tests/fixtures/manifests/ci-report.yaml",
    "tests/fixtures/manifests/seed-cronjob.yaml",
    "tests/fixtures/manifests/list.json",
    "tests/fixtures/manifests/deployment.yaml",
];

fn check(report: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_podmedic"))
        .current_dir(ROOT)
        .args(["fix", "--check", "--report", report])
        .args(FILES)
        .output()
        .unwrap()
}

/// The 1-based line of `needle` in a fixture, found in its text, not hard-coded.
fn line_of(file: &str, needle: &str) -> u64 {
    let text = std::fs::read_to_string(Path::new(ROOT).join(file)).unwrap();
    let index = text.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle} in {file}"));
    index as u64 + 1
}

/// The name of the object a SARIF result is about (its logical location of kind `resource`).
fn object_of(result: &Value) -> &str {
    let logical = result["locations"][0]["logicalLocations"].as_array().unwrap();
    logical.iter().find(|l| l["kind"] == "resource").unwrap()["name"].as_str().unwrap()
}

fn sarif_errors(log: &Value) -> Vec<String> {
    let path = Path::new(ROOT).join("tests/fixtures/sarif/sarif-schema-2.1.0.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    validator.iter_errors(log).map(|e| format!("{}: {e}", e.instance_path())).collect()
}

#[test]
fn sarif_of_a_real_run_is_valid_and_points_at_the_containers() {
    let out = check("sarif");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let log: Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = sarif_errors(&log);
    assert!(errors.is_empty(), "{errors:#?}");

    let run = &log["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let results = run["results"].as_array().unwrap();
    for r in results {
        // Every result names a rule of the driver, at its index.
        assert_eq!(rules[r["ruleIndex"].as_u64().unwrap() as usize]["id"], r["ruleId"], "{r:#}");
        assert_eq!(r["locations"][0]["physicalLocation"]["artifactLocation"]["uriBaseId"], "%SRCROOT%");
    }
    let at = |rule: &str, object: &str| -> (&str, u64, &str) {
        let r = results
            .iter()
            .find(|r| r["ruleId"] == rule && object_of(r) == object)
            .unwrap_or_else(|| panic!("no {rule} on {object}: {results:#?}"));
        let physical = &r["locations"][0]["physicalLocation"];
        (
            physical["artifactLocation"]["uri"].as_str().unwrap(),
            physical["region"]["startLine"].as_u64().unwrap(),
            r["message"]["text"].as_str().unwrap(),
        )
    };
    let (uri, line, text) = at("sidecar-moved", "orders-export");
    assert_eq!(uri, FILES[0]);
    // The third document of the file (after an empty one), at the envoy container's own line.
    assert_eq!(line, line_of(FILES[0], "- name: envoy"));
    assert!(text.contains("container envoy") && text.contains("podmedic fix"), "{text}");
    let export = results.iter().find(|r| object_of(r) == "orders-export").unwrap();
    // Numbered as `podmedic fix` errors number documents: the empty one between `---` counts.
    assert_eq!(export["properties"]["document"], 4);
    assert_eq!(export["properties"]["object"], "shop/Job/orders-export");
    let (uri, line, _) = at("probe-added", "otameshi");
    assert_eq!((uri, line), (FILES[1], line_of(FILES[1], "- name: cloud-sql-proxy")));
    // A check's warning carries the check's id and the container's line.
    let (_, line, text) = at("probe-identical", "storefront");
    assert_eq!(line, line_of(FILES[0], "- name: storefront"));
    assert!(text.contains("livenessProbe"), "{text}");
    // podmedic's own warnings carry their own rules, not one `advice` for all.
    let (uri, _, text) = at("latest-tag", "otameshi");
    assert_eq!(uri, FILES[1]);
    assert!(text.contains("ubuntu:latest"), "{text}");
    assert!(results.iter().any(|r| r["ruleId"] == "missing-requests"), "{results:#?}");
    assert!(results.iter().all(|r| r["ruleId"] != "advice"), "{results:#?}");
    // An item of a JSON List.
    let (uri, line, _) = at("sidecar-moved", "in-a-list");
    assert_eq!((uri, line), (FILES[2], line_of(FILES[2], "{\"name\": \"datadog\"")));
    // Objects that need nothing have no results.
    assert!(results.iter().all(|r| object_of(r) != "web" && object_of(r) != "storefront-settings"));
}

#[test]
fn the_schema_refuses_what_sarif_forbids() {
    // The validation above can fail: a wrong level and version are reported where they are.
    let out = check("sarif");
    let mut log: Value = serde_json::from_slice(&out.stdout).unwrap();
    log["version"] = "2.0.0".into();
    log["runs"][0]["results"][0]["level"] = "fatal".into();
    let errors = sarif_errors(&log);
    assert!(errors.iter().any(|e| e.starts_with("/version:")), "{errors:#?}");
    assert!(errors.iter().any(|e| e.starts_with("/runs/0/results/0/level:")), "{errors:#?}");
}

#[test]
fn junit_of_a_real_run_has_one_test_case_per_object() {
    let out = check("junit");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let xml = String::from_utf8(out.stdout).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let suites = doc.root_element();
    assert_eq!(suites.tag_name().name(), "testsuites");
    let suite = suites.children().find(|n| n.has_tag_name("testsuite")).unwrap();
    let cases: Vec<_> = suite.children().filter(|n| n.has_tag_name("testcase")).collect();
    let names: Vec<&str> = cases.iter().map(|c| c.attribute("name").unwrap()).collect();
    // ci-report.yaml: 3 objects; seed-cronjob.yaml: 1; list.json: 2 items; deployment.yaml: 1.
    assert_eq!(
        names,
        [
            "shop/Deployment/storefront",
            "shop/ConfigMap/storefront-settings",
            "shop/Job/orders-export",
            "CronJob/otameshi",
            "Job/in-a-list",
            "Service/untouched",
            "Deployment/web",
        ]
    );
    let failing: Vec<&str> = cases
        .iter()
        .filter(|c| c.children().any(|n| n.has_tag_name("failure")))
        .map(|c| c.attribute("name").unwrap())
        .collect();
    assert_eq!(failing, ["shop/Job/orders-export", "CronJob/otameshi", "Job/in-a-list"]);
    for node in [suites, suite] {
        assert_eq!(node.attribute("tests"), Some("7"));
        assert_eq!(node.attribute("failures"), Some("3"));
    }
    let export = cases[2];
    assert_eq!(export.attribute("file"), Some(FILES[0]));
    let failure = export.children().find(|n| n.has_tag_name("failure")).unwrap();
    assert_eq!(failure.attribute("type"), Some("sidecar-moved"));
    let expected = format!("{}:{}: sidecar-moved", FILES[0], line_of(FILES[0], "- name: envoy"));
    assert!(failure.text().unwrap().starts_with(&expected), "{:?}", failure.text());
    // A warning does not fail the object; it is said in system-out.
    let storefront = cases[0];
    let said = storefront.children().find(|n| n.has_tag_name("system-out")).unwrap().text().unwrap();
    assert!(said.contains("probe-identical"), "{said}");
}

#[test]
fn text_and_json_reports_say_the_same_findings() {
    let text = check("text");
    assert_eq!(text.status.code(), Some(1));
    let lines = String::from_utf8(text.stdout).unwrap();
    let envoy = format!(
        "{}:{}: error: sidecar-moved: Job/orders-export: container envoy:",
        FILES[0],
        line_of(FILES[0], "- name: envoy")
    );
    assert!(lines.lines().any(|l| l.starts_with(&envoy)), "{lines}");

    let json = check("json");
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    let objects = report["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 7);
    let findings: usize = objects.iter().map(|o| o["findings"].as_array().unwrap().len()).sum();
    assert_eq!(findings, lines.lines().count());
    // Nothing to change: exit 0, and an empty report.
    let clean = Command::new(env!("CARGO_BIN_EXE_podmedic"))
        .current_dir(ROOT)
        .args(["fix", "--check", "--report", "sarif", FILES[3]])
        .output()
        .unwrap();
    assert_eq!(clean.status.code(), Some(0));
    let log: Value = serde_json::from_slice(&clean.stdout).unwrap();
    assert_eq!(log["runs"][0]["results"], serde_json::json!([]));
}

#[test]
fn report_needs_check_and_excludes_diff() {
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_podmedic")).args(args).output().unwrap();
    assert_eq!(run(&["fix", "--report", "sarif", "-"]).status.code(), Some(2));
    assert_eq!(run(&["fix", "--check", "--diff", "--report", "json", "-"]).status.code(), Some(2));
}

/// The YAML blocks of docs/ci.md, in order.
fn documented_yaml() -> Vec<Value> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("docs/ci.md")).unwrap();
    text.split("```yaml\n")
        .skip(1)
        .map(|block| yaml_serde::from_str(&block[..block.find("```").unwrap()]).unwrap())
        .collect()
}

/// The podmedic arguments of a documented shell line `podmedic fix ... deploy/ > FILE`, with the
/// fixtures for `deploy/`, and the file the output goes to.
fn documented_command(line: &str) -> (Vec<String>, String) {
    let (command, target) = line.split_once(" > ").unwrap();
    let words: Vec<&str> = command.split_whitespace().collect();
    let start = words.iter().position(|w| *w == "fix").unwrap();
    let args = words[start..]
        .iter()
        .map(|w| if *w == "deploy/" { "tests/fixtures/manifests/".to_owned() } else { (*w).to_owned() })
        .collect();
    (args, target.trim().to_owned())
}

#[test]
fn the_documented_ci_recipes_run_the_real_check() {
    let blocks = documented_yaml();
    let podmedic =
        |args: &[String]| Command::new(env!("CARGO_BIN_EXE_podmedic")).current_dir(ROOT).args(args).output().unwrap();

    // GitHub Actions: the SARIF the job writes is what it uploads, even when the check fails.
    let job = &blocks[0]["jobs"]["podmedic"];
    assert_eq!(job["permissions"]["security-events"], "write");
    let steps = job["steps"].as_array().unwrap();
    let run = steps.iter().filter_map(|s| s["run"].as_str()).find(|r| r.contains("podmedic fix --check")).unwrap();
    let (args, written) = documented_command(run);
    let upload = steps.iter().find(|s| s["uses"].as_str().is_some_and(|u| u.contains("upload-sarif"))).unwrap();
    assert_eq!(
        (upload["if"].as_str(), upload["with"]["sarif_file"].as_str()),
        (Some("always()"), Some(written.as_str()))
    );
    let out = podmedic(&args);
    assert_eq!(out.status.code(), Some(1), "the fixtures hold manifests podmedic changes");
    let errors = sarif_errors(&serde_json::from_slice(&out.stdout).unwrap());
    assert!(errors.is_empty(), "{errors:#?}");

    // GitLab: the JUnit file the script writes is the job's test report.
    let gitlab = &blocks[1]["podmedic"];
    let script = gitlab["script"].as_array().unwrap();
    let line = script.iter().filter_map(Value::as_str).find(|l| l.contains("fix --check")).unwrap();
    let (args, written) = documented_command(line);
    assert_eq!(gitlab["artifacts"]["reports"]["junit"].as_str(), Some(written.as_str()));
    assert_eq!(gitlab["artifacts"]["when"], "always");
    let out = podmedic(&args);
    roxmltree::Document::parse(std::str::from_utf8(&out.stdout).unwrap()).unwrap();

    // pre-commit: each hook's entry, given the changed files, fails on a manifest podmedic changes.
    let hooks: Value =
        yaml_serde::from_str(&std::fs::read_to_string(Path::new(ROOT).join(".pre-commit-hooks.yaml")).unwrap())
            .unwrap();
    let hooks = hooks.as_array().unwrap();
    assert_eq!(hooks.len(), 2);
    for hook in hooks {
        assert_eq!(hook["pass_filenames"], true);
        let entry: Vec<String> = hook["entry"].as_str().unwrap().split_whitespace().map(str::to_owned).collect();
        assert_eq!(entry[0], "podmedic");
        let with = |file: &str| [&entry[1..], &[file.to_owned()]].concat();
        assert_eq!(podmedic(&with(FILES[1])).status.code(), Some(1), "{}", hook["id"]);
        assert_eq!(podmedic(&with(FILES[3])).status.code(), Some(0), "{}", hook["id"]);
    }
    let config = &blocks[2]["repos"][0];
    let documented: Vec<&str> = config["hooks"].as_array().unwrap().iter().filter_map(|h| h["id"].as_str()).collect();
    assert!(documented.iter().all(|id| hooks.iter().any(|h| h["id"] == *id)), "{documented:?}");
}
