//! VerticalPodAutoscalers and moved sidecars: released VPA versions (up to at least 1.6) ignore
//! init containers, so a sidecar a VPA sized stops being sized once it is a native sidecar. Native
//! sidecar support is an alpha `NativeSidecar` feature gate of a later VPA (kubernetes/autoscaler
//! AEP 8905), off by default, and podmedic cannot see VPA feature gates.

use serde_json::Value;

/// Notes for one object the engine would change: for each VPA in `vpas` that targets it
/// (`namespace`, `kind`, `name`) and sizes some of the `moved` containers.
pub(super) fn vpa_notes(vpas: &[Value], namespace: &str, kind: &str, name: &str, moved: &[&str]) -> Vec<String> {
    let text = |v: &Value, pointer: &str| v.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
    vpas.iter()
        .filter(|vpa| {
            text(vpa, "/metadata/namespace").as_deref() == Some(namespace)
                && text(vpa, "/spec/targetRef/kind").as_deref() == Some(kind)
                && text(vpa, "/spec/targetRef/name").as_deref() == Some(name)
        })
        .filter_map(|vpa| {
            let sized: Vec<&str> = moved.iter().copied().filter(|c| sizes(vpa, c)).collect();
            if sized.is_empty() {
                return None;
            }
            Some(format!(
                "VerticalPodAutoscaler {} sizes {}: VPA (up to at least 1.6) ignores init containers, so it stops \
                 sizing them once they are native sidecars, and their containerPolicies stop applying",
                text(vpa, "/metadata/name").unwrap_or_default(),
                sized.join(", ")
            ))
        })
        .collect()
}

/// Whether the VPA sizes this container: its own container policy, else the `*` one, is not `Off`.
fn sizes(vpa: &Value, container: &str) -> bool {
    let policies = vpa.pointer("/spec/resourcePolicy/containerPolicies").and_then(Value::as_array);
    let policy_for = |name: &str| policies.into_iter().flatten().find(|p| p["containerName"] == name);
    let policy = policy_for(container).or_else(|| policy_for("*"));
    policy.and_then(|p| p["mode"].as_str()) != Some("Off")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn vpa(name: &str, kind: &str, target: &str, policies: Value) -> Value {
        json!({
            "apiVersion": "autoscaling.k8s.io/v1", "kind": "VerticalPodAutoscaler",
            "metadata": {"name": name, "namespace": "analytics"},
            "spec": {"targetRef": {"apiVersion": "batch/v1", "kind": kind, "name": target},
                     "updatePolicy": {"updateMode": "Initial"},
                     "resourcePolicy": {"containerPolicies": policies}}
        })
    }

    #[test]
    fn a_vpa_targeting_the_object_is_named_with_the_sidecars_it_sizes() {
        let vpas = [
            vpa("report-vpa", "CronJob", "report", json!([{"containerName": "*", "minAllowed": {"cpu": "50m"}}])),
            vpa("other", "CronJob", "other-report", json!([])),
            vpa("job-vpa", "Job", "report", json!([])),
        ];
        let notes = vpa_notes(&vpas, "analytics", "CronJob", "report", &["cloud-sql-proxy"]);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].starts_with("VerticalPodAutoscaler report-vpa sizes cloud-sql-proxy: VPA (up to at least 1.6)")
        );
        assert!(vpa_notes(&vpas, "elsewhere", "CronJob", "report", &["cloud-sql-proxy"]).is_empty());
    }

    #[test]
    fn containers_the_vpa_leaves_off_are_not_named() {
        let vpas = [vpa(
            "report-vpa",
            "CronJob",
            "report",
            json!([{"containerName": "*", "mode": "Off"}, {"containerName": "fluent-bit", "mode": "Auto"}]),
        )];
        let notes = vpa_notes(&vpas, "analytics", "CronJob", "report", &["cloud-sql-proxy", "fluent-bit"]);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("sizes fluent-bit:"), "{notes:?}");
        assert!(vpa_notes(&vpas, "analytics", "CronJob", "report", &["cloud-sql-proxy"]).is_empty());
    }
}
