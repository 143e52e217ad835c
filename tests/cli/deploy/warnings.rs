//! The `reference-checks` component: the flag that turns the watches on and the RBAC they need,
//! bound per namespace or, with `cluster-wide`, everywhere; the base keeps its narrow RBAC.

use serde_json::{Value, json};

use super::checks::{assert_deployment_is_hardened, assert_rbac_is_read_only_on_nodes_and_namespaces};
use super::*;

fn reference_role(objects: &[Value]) -> &Value {
    find(objects, "ClusterRole", "podmedic-reference-names")
}

fn check_reference_checks(objects: &[Value]) {
    assert_deployment_is_hardened(objects);
    let args = strings(&podmedic_container(objects)["args"]);
    assert_eq!(args.iter().filter(|a| **a == "--watch-references").count(), 1, "{args:?}");
    assert_eq!(
        reference_role(objects)["rules"],
        json!([{"apiGroups": [""], "resources": ["configmaps", "secrets", "persistentvolumeclaims", "serviceaccounts"],
                "verbs": ["list", "watch"]}]),
        "list and watch only: no get, no write"
    );
    // The base's own role and binding are untouched.
    let base: Vec<Value> = objects.iter().filter(|o| o["metadata"]["name"] == "podmedic").cloned().collect();
    assert_rbac_is_read_only_on_nodes_and_namespaces(&base);
}

#[test]
fn the_base_does_not_watch_references() {
    let objects = base_objects();
    assert!(!strings(&podmedic_container(&objects)["args"]).contains(&"--watch-references"));
    assert_eq!(of_kind(&objects, "ClusterRole").count(), 1, "only the Node and Namespace reader");
}

#[test]
fn the_reference_checks_component_adds_the_flag_and_an_unbound_role() {
    // Without kubectl: the component's resources and its JSON patch applied here.
    let component = deploy_dir().join("components/reference-checks");
    let kustomization = read_yaml(&component.join("kustomization.yaml")).remove(0);
    assert_eq!(kustomization["kind"], "Component");
    let mut objects = base_objects();
    for resource in strings(&kustomization["resources"]) {
        objects.extend(read_yaml(&component.join(resource)));
    }
    apply_inline_patches(&mut objects, &kustomization);
    check_reference_checks(&objects);
    assert_eq!(of_kind(&objects, "RoleBinding").count() + of_kind(&objects, "ClusterRoleBinding").count(), 1);
    checks::assert_valid_kubernetes_objects(&objects);

    // With kubectl: as a user's overlay renders it.
    if let Some(rendered) = render_with_components(&["reference-checks"]) {
        check_reference_checks(&rendered);
        assert_eq!(
            of_kind(&rendered, "ClusterRoleBinding").count(),
            1,
            "bound nowhere: the user binds it per namespace"
        );
        checks::assert_valid_kubernetes_objects(&rendered);
    }
}

#[test]
fn the_cluster_wide_component_binds_the_role_to_podmedic() {
    let binding =
        read_yaml(&deploy_dir().join("components/reference-checks/cluster-wide/clusterrolebinding.yaml")).remove(0);
    let check = |binding: &Value| {
        assert_eq!(
            binding["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "podmedic-reference-names"})
        );
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": "podmedic", "namespace": NAMESPACE}])
        );
    };
    check(&binding);
    if let Some(rendered) = render_with_components(&["reference-checks", "reference-checks/cluster-wide"]) {
        check_reference_checks(&rendered);
        check(find(&rendered, "ClusterRoleBinding", "podmedic-reference-names"));
    }
}
