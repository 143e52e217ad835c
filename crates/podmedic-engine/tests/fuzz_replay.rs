//! The fuzz target's oracle (`fuzz/oracle.rs`) over a deterministic corpus, in plain `cargo test`.
//!
//! CI cannot count on a fuzzer (cargo-fuzz needs an install and a nightly-capable rustc), so this
//! test replays what the coverage-guided campaign starts from and a few thousand pseudo-random
//! variants of it: the real kube-apiserver AdmissionReviews, structural edits (wrong types, nulls,
//! missing fields, other operations and kinds, deep nesting, duplicate keys, invalid UTF-8), and
//! byte-level mutations (flips, cuts, splices, dictionary tokens). The seed is fixed, so a failure
//! reproduces; `PODMEDIC_REPLAY_SEED=<n>` explores another stream.
//!
//! `cargo test --test fuzz_replay -- --ignored write_fuzz_seeds` writes `fuzz/seeds/admit/` (the
//! fuzzer's seed corpus) from the structural variants.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../fuzz/oracle.rs"]
mod oracle;

use std::path::{Path, PathBuf};

use podmedic_engine::admission::Endpoint;
use serde_json::{Value, json};

/// The repository root (fixtures, fuzz regressions and seeds live there, shared with the fuzzer).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn files_in(dir: &Path, ext: Option<&str>) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<(String, Vec<u8>)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && ext.is_none_or(|x| p.extension().is_some_and(|e| e == x)))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

/// The recorded AdmissionReviews, those of the GitOps life cycle (`gitops/`) included.
fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = root().join("tests/fixtures/admission-reviews");
    let gitops = files_in(&dir.join("gitops"), Some("json")).into_iter().map(|(name, b)| (format!("gitops-{name}"), b));
    files_in(&dir, Some("json")).into_iter().chain(gitops).collect()
}

/// xorshift64*: tiny, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Structural variants of one AdmissionReview: each is a case from issue 6 or a close relative.
fn structural_variants(review: &Value) -> Vec<(&'static str, Vec<u8>)> {
    let object_path = "/request/object";
    let spec_path = match review.pointer("/request/object/kind").and_then(Value::as_str) {
        Some("Pod") => "/request/object/spec",
        Some("CronJob") => "/request/object/spec/jobTemplate/spec/template/spec",
        _ => "/request/object/spec/template/spec",
    };
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v = review.clone();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    let set = |ptr: String, value: Value| {
        edit(&move |v: &mut Value| {
            if let Some(slot) = v.pointer_mut(&ptr) {
                *slot = value.clone();
            }
        })
    };
    let remove = |parent: &'static str, key: &'static str| {
        edit(&move |v: &mut Value| {
            if let Some(m) = v.pointer_mut(parent).and_then(Value::as_object_mut) {
                m.remove(key);
            }
        })
    };
    let containers = format!("{spec_path}/containers");
    let first = review.pointer(&format!("{containers}/0")).cloned().unwrap_or(json!({"name": "c"}));
    let many: Vec<Value> = (0..1000)
        .map(|i| {
            let mut c = first.clone();
            c["name"] = json!(format!("c{i}"));
            c
        })
        .collect();
    let mut deep = json!("bottom");
    for _ in 0..200 {
        deep = json!([deep]);
    }
    let text = String::from_utf8(serde_json::to_vec(review).unwrap()).unwrap();
    vec![
        ("as-is", text.clone().into_bytes()),
        ("object-null", set(object_path.into(), Value::Null)),
        ("object-array", set(object_path.into(), json!([]))),
        ("object-string", set(object_path.into(), json!("Pod"))),
        ("containers-object", set(containers.clone(), json!({"name": "x", "image": "y"}))),
        ("containers-null", set(containers.clone(), Value::Null)),
        ("containers-empty", set(containers.clone(), json!([]))),
        ("container-no-name", set(format!("{containers}/0"), json!({"image": "busybox"}))),
        ("ports-as-strings", set(format!("{containers}/0/ports"), json!([{"containerPort": "80"}]))),
        ("ports-huge", set(format!("{containers}/0/ports"), json!([{"containerPort": 1e300}]))),
        ("resources-numbers", set(format!("{containers}/0/resources"), json!({"limits": {"cpu": 0.001}}))),
        ("thousand-containers", set(containers.clone(), Value::Array(many))),
        ("uid-missing", remove("/request", "uid")),
        ("uid-number", set("/request/uid".into(), json!(42))),
        ("request-missing", remove("", "request")),
        ("request-null", set("/request".into(), Value::Null)),
        ("api-version-wrong", set("/apiVersion".into(), json!("admission.k8s.io/v1beta1"))),
        ("kind-wrong", set("/kind".into(), json!("AdmissionResponse"))),
        ("operation-delete", set("/request/operation".into(), json!("DELETE"))),
        ("operation-update", set("/request/operation".into(), json!("UPDATE"))),
        ("operation-connect", set("/request/operation".into(), json!("CONNECT"))),
        ("operation-bogus", set("/request/operation".into(), json!("PATCH"))),
        ("gvk-secret", set("/request/kind".into(), json!({"group": "", "version": "v1", "kind": "Secret"}))),
        ("subresource", set("/request/subResource".into(), json!("ephemeralcontainers"))),
        ("dry-run", set("/request/dryRun".into(), json!(true))),
        ("dry-run-string", set("/request/dryRun".into(), json!("true"))),
        ("deep-nesting", set(format!("{object_path}/metadata/x-deep"), deep)),
        (
            "podmedic-annotations",
            set(
                format!("{object_path}/metadata/annotations"),
                json!({"podmedic.io/sidecars": "a,,b,~/x", "podmedic.io/sidecar-position": "first",
                       "podmedic.io/skip": "false", "podmedic.io/changes": "x"}),
            ),
        ),
        ("annotations-numbers", set(format!("{object_path}/metadata/annotations"), json!({"a": 1, "b": true}))),
        ("labels-null-values", set(format!("{object_path}/metadata/labels"), json!({"a": null}))),
        ("duplicate-keys", text.replacen('{', "{\"kind\":\"Nope\",", 1).into_bytes()),
        ("duplicate-object", text.replacen("\"object\":", "\"object\":null,\"object\":", 1).into_bytes()),
        ("invalid-utf8", {
            let mut b = text.clone().into_bytes();
            if let Some(i) = text.find("\"name\":\"") {
                b.insert(i + 8, 0xff);
            }
            b
        }),
        // UPDATEs: what podmedic reads to converge them, missing, odd or contradicting.
        ("old-object-null", set("/request/oldObject".into(), Value::Null)),
        ("old-object-string", set("/request/oldObject".into(), json!("CronJob"))),
        (
            "old-object-is-object",
            set("/request/oldObject".into(), review.pointer(object_path).cloned().unwrap_or_default()),
        ),
        (
            "podmedic-records-odd",
            set(
                format!("{object_path}/metadata/annotations"),
                json!({"podmedic.io/moved": "{\"cloud-sql-proxy\": 1, \"x\": {\"fingerprint\": []}}",
                       "podmedic.io/changes": "cloud-sql-proxy: moved to initContainers; ; x: moved to initContainers",
                       "kubectl.kubernetes.io/last-applied-configuration": "[1,"}),
            ),
        ),
        (
            "managed-fields-odd",
            set(
                format!("{object_path}/metadata/managedFields"),
                json!([{"operation": "Apply", "fieldsV1": {"f:spec": 1}}, {"operation": "Apply", "fieldsV1": null},
                       {"operation": "Apply", "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{": {}}}}}}}]),
            ),
        ),
        (
            "init-duplicates-a-container",
            set(format!("{spec_path}/initContainers"), {
                let mut sidecar = first.clone();
                sidecar["restartPolicy"] = json!("Always");
                json!([sidecar.clone(), sidecar])
            }),
        ),
        ("trailing-garbage", format!("{text} {{}}").into_bytes()),
        ("bom", [b"\xEF\xBB\xBF".as_slice(), text.as_bytes()].concat()),
    ]
}

/// Bytes and tokens a mutation may insert.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\"",
    b"\\",
    b"null",
    b"true",
    b"-0",
    b"1e400",
    b"\"\\ud800\"",
    b"\"\\u0000\"",
    b"\"containers\"",
    b"\"initContainers\"",
    b"\"restartPolicy\":\"Always\"",
    b"\"podmedic.io/sidecars\"",
    b"\"image\":\"gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0\"",
    b"\"name\":\"cloud-sql-proxy\"",
    b"\"containerPort\":70000",
    b"\"resources\":{\"limits\":{\"cpu\":\"1m\"}}",
    b"\xff",
    b"\xf0\x9f\x98\x80",
];

fn byte_mutation(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(b.len() + 1);
        match rng.below(6) {
            0 if !b.is_empty() => {
                let i = at.min(b.len() - 1);
                b[i] ^= 1 << rng.below(8);
            }
            1 => {
                let end = (at + rng.below(64)).min(b.len());
                b.drain(at..end);
            }
            2 => {
                let end = (at + rng.below(256)).min(b.len());
                let chunk = b[at..end].to_vec();
                b.splice(at..at, chunk);
            }
            3 => {
                let token = rng.pick(TOKENS).to_vec();
                b.splice(at..at, token);
            }
            4 => b.truncate(at),
            _ => {
                // Splice: this input's head, another's tail.
                let from = rng.below(other.len() + 1);
                b.truncate(at);
                b.extend_from_slice(&other[from..]);
            }
        }
    }
    b
}

/// Replaces a random node of the review with a value of another type.
fn value_mutation(rng: &mut Rng, review: &Value) -> Vec<u8> {
    let replacements = [
        Value::Null,
        json!(true),
        json!(0),
        json!(-1),
        json!(1e300),
        json!(""),
        json!("Always"),
        json!("80"),
        json!(65536),
        json!([]),
        json!({}),
        json!([{}]),
        json!({"name": "x"}),
        json!([{"name": "cloud-sql-proxy", "image": "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.8.0"}]),
    ];
    // Walk down a random path, stopping at a random depth, and note it as a JSON Pointer.
    let mut node = review;
    let mut pointer = String::new();
    for _ in 0..rng.below(12) {
        let next = match node {
            Value::Object(m) if !m.is_empty() => {
                let (k, n) = m.iter().nth(rng.below(m.len())).unwrap();
                pointer.push_str(&format!("/{}", k.replace('~', "~0").replace('/', "~1")));
                n
            }
            Value::Array(a) if !a.is_empty() => {
                let i = rng.below(a.len());
                pointer.push_str(&format!("/{i}"));
                &a[i]
            }
            _ => break,
        };
        node = next;
    }
    let mut v = review.clone();
    *v.pointer_mut(&pointer).unwrap() = rng.pick(&replacements).clone();
    serde_json::to_vec(&v).unwrap()
}

/// Each review as it is through every path (`/mutate`, `/warn`, `/converge`); its variants
/// through one path each, turn about, so that every kind of variant meets every path across the
/// reviews at a third of the cost.
#[test]
fn real_reviews_and_their_structural_variants_satisfy_the_oracle() {
    for (i, (name, bytes)) in fixtures().into_iter().enumerate() {
        let review: Value = serde_json::from_slice(&bytes).unwrap();
        for (j, (variant, body)) in structural_variants(&review).into_iter().enumerate() {
            let endpoint = Endpoint::ALL[(i + j) % Endpoint::ALL.len()];
            let result = std::panic::catch_unwind(|| match variant {
                "as-is" => oracle::check(&body),
                _ => oracle::check_at(endpoint, &body),
            });
            assert!(result.is_ok(), "{name} / {variant} ({})", endpoint.path());
        }
    }
}

#[test]
fn pseudo_random_variants_satisfy_the_oracle() {
    let seed = std::env::var("PODMEDIC_REPLAY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_f022_u64);
    let mut rng = Rng(seed | 1);
    let inputs = fixtures();
    let reviews: Vec<Value> = inputs.iter().map(|(_, b)| serde_json::from_slice(b).unwrap()).collect();
    for i in 0..4000 {
        let k = rng.below(inputs.len());
        let body = if i % 2 == 0 {
            let other = &rng.pick(&inputs).1.clone();
            byte_mutation(&mut rng, &inputs[k].1, other)
        } else {
            value_mutation(&mut rng, &reviews[k])
        };
        let result = std::panic::catch_unwind(|| oracle::check_one_path(&body));
        assert!(result.is_ok(), "seed {seed:#x}, input {i}: {}", String::from_utf8_lossy(&body));
    }
}

#[test]
fn crash_regressions_satisfy_the_oracle() {
    for dir in ["fuzz/regressions/admit"] {
        for (name, body) in files_in(&root().join(dir), None) {
            let result = std::panic::catch_unwind(|| oracle::check(&body));
            assert!(result.is_ok(), "{dir}/{name}");
        }
    }
}

/// Writes the structural variants as the fuzzer's seed corpus (kept under 64 KiB each, the
/// campaign's `-max_len`). Derived data, so not committed: `fuzz/smoke.sh` and the campaign
/// commands in `fuzz/README.md` write it first.
#[test]
#[ignore = "writes fuzz/seeds/admit; run by hand"]
fn write_fuzz_seeds() {
    let dir = root().join("fuzz/seeds/admit");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in fixtures() {
        let review: Value = serde_json::from_slice(&bytes).unwrap();
        let stem = name.trim_end_matches(".json");
        for (variant, body) in structural_variants(&review) {
            if body.len() <= 64 * 1024 {
                std::fs::write(dir.join(format!("{stem}--{variant}.json")), body).unwrap();
            }
        }
    }
}
