//! What `podmedic serve --watch-references` costs in memory: N objects fed into the reflector
//! store exactly as its metadata-only watches fill it, against baselines measured in the same run.
//!
//! ```text
//! cargo run --release -p podmedic-load --bin reference-memory             # 1,000, 5,000, 20,000
//! cargo run --release -p podmedic-load --bin reference-memory -- 50000    # other counts
//! ```
//!
//! Each (variant, N) runs in a fresh child process, which reads its VmRSS, builds the store, and
//! reads VmRSS again; the growth is what the store holds (plus allocator slack). Each object is
//! decoded from the JSON the API server sends (a `PartialObjectMetadata`, or a Secret), as the
//! watch decodes it. Variants:
//! - `names`: the names alone in a `HashSet<String>`: the floor, the information itself;
//! - `podmedic`: what podmedic keeps: a `podmedic::cluster::NameSet` fed the watch's events;
//! - `store-stripped`: kube's reflector `Store<PartialObjectMeta<Secret>>` with each object
//!   stripped to name and namespace (the usual way to keep a metadata watch);
//! - `store-metadata`: the same store without stripping (labels, annotations with a
//!   last-applied-configuration, managedFields, ownerReferences, uid, resourceVersion);
//! - `store-full`: a plain (not metadata-only) watch: `Store<Secret>` with 1 KiB of data each.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::process::Command;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector;
use kube::runtime::watcher::Event;

const VARIANTS: [&str; 5] = ["names", "podmedic", "store-stripped", "store-metadata", "store-full"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        let variant = args.get(1).expect("a variant");
        let n: usize = args.get(2).and_then(|n| n.parse().ok()).expect("a count");
        child(variant, n);
        return;
    }
    let counts: Vec<usize> = if args.is_empty() {
        vec![1_000, 5_000, 20_000]
    } else {
        args.iter().map(|a| a.parse().expect("object counts")).collect()
    };
    let me = std::env::current_exe().expect("own path");
    println!("| objects | variant | RSS growth (KiB) | bytes per object | ratio to `podmedic` |");
    println!("|---:|---|---:|---:|---:|");
    for n in counts {
        let growth: Vec<(&str, u64)> = VARIANTS
            .iter()
            .map(|variant| {
                let out = Command::new(&me).args(["--child", variant, &n.to_string()]).output().expect("run the child");
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                let kib = String::from_utf8_lossy(&out.stdout).trim().parse::<u64>().expect("KiB");
                (*variant, kib)
            })
            .collect();
        let podmedic = growth.iter().find(|(v, _)| *v == "podmedic").map_or(1, |(_, k)| (*k).max(1));
        for (variant, kib) in growth {
            let per_object = kib * 1024 / n as u64;
            println!("| {n} | {variant} | {kib} | {per_object} | {:.2} |", kib as f64 / podmedic as f64);
        }
    }
}

/// Builds one variant's store of `n` objects and prints its VmRSS growth in KiB.
fn child(variant: &str, n: usize) {
    let before = rss_kib();
    let keep: Box<dyn std::any::Any> = match variant {
        "names" => Box::new((0..n).map(name).collect::<HashSet<String>>()),
        "podmedic" => {
            let names = podmedic::cluster::NameSet::default();
            names.apply(&Event::<PartialObjectMeta<Secret>>::Init);
            for i in 0..n {
                let object: PartialObjectMeta<Secret> = serde_json::from_str(&metadata_json(i)).unwrap();
                names.apply(&Event::InitApply(object));
            }
            names.apply(&Event::<PartialObjectMeta<Secret>>::InitDone);
            assert_eq!(names.len(), n);
            Box::new(names)
        }
        "store-stripped" | "store-metadata" => {
            let (reader, mut writer) = reflector::store::<PartialObjectMeta<Secret>>();
            for i in 0..n {
                let mut object: PartialObjectMeta<Secret> = serde_json::from_str(&metadata_json(i)).unwrap();
                if variant == "store-stripped" {
                    object.types = None;
                    object.metadata = ObjectMeta {
                        name: object.metadata.name.take(),
                        namespace: object.metadata.namespace.take(),
                        ..ObjectMeta::default()
                    };
                }
                writer.apply_watcher_event(&Event::Apply(object));
            }
            assert_eq!(reader.len(), n);
            Box::new((reader, writer))
        }
        "store-full" => {
            let (reader, mut writer) = reflector::store::<Secret>();
            for i in 0..n {
                let secret: Secret = serde_json::from_str(&secret_json(i)).unwrap();
                writer.apply_watcher_event(&Event::Apply(secret));
            }
            assert_eq!(reader.len(), n);
            Box::new((reader, writer))
        }
        other => panic!("unknown variant {other}"),
    };
    let after = rss_kib();
    std::hint::black_box(&keep);
    println!("{}", after.saturating_sub(before));
}

fn name(i: usize) -> String {
    format!("shop-api-credentials-{i:06}")
}

/// One object's metadata as the API server sends it for `kubectl apply`-managed Secrets.
fn metadata_value(i: usize) -> serde_json::Value {
    let name = name(i);
    let mut meta = serde_json::json!({
        "name": name, "namespace": "shop", "uid": format!("5d40727c-0fa4-4c2c-9e3a-{i:012}"),
        "resourceVersion": format!("{}", 1_000_000 + i), "creationTimestamp": "2026-11-29T05:21:50Z",
        "labels": {"app.kubernetes.io/name": "shop-api", "app.kubernetes.io/instance": "shop",
                   "app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": "shop-api-1.4.2"},
        "annotations": {
            "meta.helm.sh/release-name": "shop", "meta.helm.sh/release-namespace": "shop",
            "kubectl.kubernetes.io/last-applied-configuration": format!(
                "{{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{{\"annotations\":{{}},\"labels\":{{\"app.kubernetes.io/name\":\"shop-api\"}},\"name\":\"{name}\",\"namespace\":\"shop\"}},\"type\":\"Opaque\"}}\n"
            )
        },
        "managedFields": [{"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1",
            "time": "2026-11-29T05:21:50Z", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {".": {}, "f:password": {}, "f:username": {}},
                         "f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}},
                                        "f:labels": {".": {}, "f:app.kubernetes.io/name": {}}}, "f:type": {}}}]
    });
    if i.is_multiple_of(3) {
        meta["ownerReferences"] = serde_json::json!([{"apiVersion": "v1", "kind": "ServiceAccount",
            "name": "shop-api", "uid": "0b7e5c1d-8a5f-4c1e-9e0a-3f2d1c0b9a88"}]);
    }
    meta
}

fn metadata_json(i: usize) -> String {
    serde_json::json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": metadata_value(i)})
        .to_string()
}

fn secret_json(i: usize) -> String {
    // 1 KiB of data, base64 as the API server sends it.
    let blob = "QUFB".repeat(342);
    serde_json::json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": metadata_value(i),
                       "data": {"username": "c2hvcA==", "password": blob}})
    .to_string()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status (Linux)");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}
