//! Decoding the view: what it reads, what it borrows, and which shapes it refuses.

use std::borrow::Cow;

use super::*;
#[test]
fn reads_only_what_it_needs_and_borrows() {
    let raw = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"x-","annotations":{
        "kubectl.kubernetes.io/last-applied-configuration":"{\"huge\":\"value\"}",
        "podmedic.io/sidecars":"proxy"},"labels":{"app":"x"}},
        "spec":{"restartPolicy":"Never","unknownField":{"deep":[1,2,3]},
        "containers":[{"name":"main","image":"busybox:1.36","futureField":true,
          "resources":{"requests":{"cpu":1}},"startupProbe":null,"readinessProbe":{"tcpSocket":{"port":80}}}]}}"#;
    let o = Object::from_json(raw).unwrap();
    let meta = o.metadata.as_ref().unwrap();
    assert_eq!(meta.annotation("podmedic.io/sidecars"), Some("proxy"));
    assert!(meta.has_annotation("kubectl.kubernetes.io/last-applied-configuration"));
    assert_eq!(meta.annotation("kubectl.kubernetes.io/last-applied-configuration"), Some(""));
    assert_eq!(meta.label("app"), Some("x"));
    let spec = o.spec.unwrap();
    let c = &spec.containers.as_ref().unwrap()[0];
    assert!(matches!(c.name.0, Cow::Borrowed(_)));
    assert!(matches!(meta.labels.as_ref().unwrap().0[0].0.0, Cow::Borrowed(_)));
    assert_eq!(c.resources.as_ref().unwrap().requests.as_ref().unwrap().get("cpu"), Some("1"));
    assert!(c.startup_probe.is_none());
    assert!(c.readiness_probe.is_some());
}

#[test]
fn wrong_types_are_errors_that_name_the_field() {
    let err = Object::from_json(r#"{"kind":"Pod","spec":{"containers":{"name":"x"}}}"#).unwrap_err();
    assert!(err.to_string().contains("spec.containers"), "{err}");
    let err =
        Object::from_json(r#"{"kind":"Pod","spec":{"containers":[{"name":"x","ports":[{"containerPort":"80"}]}]}}"#)
            .unwrap_err();
    assert!(err.to_string().contains("containerPort"), "{err}");
}

#[test]
fn arrays_where_objects_belong_are_type_errors() {
    // serde's derive would read these as structs with positional fields (found by fuzzing:
    // `"metadata": []` gave a patch adding /metadata/annotations to an array).
    for (raw, field) in [
        (r#"{"kind":"Pod","metadata":[],"spec":{"containers":[{"name":"x"}]}}"#, "metadata"),
        (r#"{"kind":"Job","spec":{"template":[{"x":1}]}}"#, "spec.template"),
        (r#"{"kind":"Pod","spec":{"containers":[["x","busybox"]]}}"#, "spec.containers"),
        (r#"{"kind":"Pod","spec":{"containers":[{"name":"x","resources":[]}]}}"#, "resources"),
        (r#"{"kind":"Pod","spec":{"containers":[{"name":"x","ports":[[80]]}]}}"#, "ports"),
    ] {
        let err = Object::from_json(raw).unwrap_err().to_string();
        assert!(err.contains(field) && err.contains("expected an object"), "{raw}: {err}");
    }
    // Null still means absent.
    assert!(Object::from_json(r#"{"kind":"Pod","metadata":null,"spec":{"containers":null}}"#).is_ok());
}

#[test]
fn finds_shell_scripts_in_command_and_args() {
    let script = |json: &str| {
        let o = Object::from_json(json).unwrap();
        o.spec.unwrap().containers.unwrap()[0].shell_script().map(str::to_owned)
    };
    let c = |fields: &str| format!(r#"{{"spec":{{"containers":[{{"name":"x",{fields}}}]}}}}"#);
    assert_eq!(script(&c(r#""command":["sh","-c","a &"]"#)).as_deref(), Some("a &"));
    assert_eq!(script(&c(r#""command":["/bin/sh","-ec"],"args":["vault agent"]"#)).as_deref(), Some("vault agent"));
    assert_eq!(script(&c(r#""command":["bash","-x","-c","run"]"#)).as_deref(), Some("run"));
    assert_eq!(script(&c(r#""command":["python","-c","print()"]"#)), None);
    assert_eq!(script(&c(r#""command":["sh","/startup.sh"]"#)), None);
    assert_eq!(script(&c(r#""command":["sh","-c"]"#)), None);
}

#[test]
fn type_errors_name_the_field_but_never_quote_the_value() {
    // Found by the hostile-input tests (tests/server/hostile/): these messages reached the error log and the warning.
    for (raw, field, found) in [
        (r#"{"spec":{"containers":[{"name":"x","env":"DB_PASSWORD=hunter2"}]}}"#, "env", "string"),
        (r#"{"spec":{"containers":[{"name":"x","args":"--password=hunter2"}]}}"#, "args", "string"),
        (r#"{"spec":{"containers":[{"name":"x","ports":[{"containerPort":"hunter2"}]}]}}"#, "containerPort", "string"),
        (r#"{"spec":{"containers":[{"name":"x","env":[{"name":"P","value":7}]}]}}"#, "value", "integer"),
    ] {
        let err = Object::from_json(raw).unwrap_err().to_string();
        assert!(err.contains(field) && err.contains(&format!("invalid type: {found}, expected")), "{err}");
        assert!(!err.contains("hunter2") && !err.contains("`7`"), "{err}");
    }
}

#[test]
fn env_values_never_appear_in_debug_output() {
    let o =
        Object::from_json(r#"{"spec":{"containers":[{"name":"x","env":[{"name":"PASSWORD","value":"hunter2"}]}]}}"#)
            .unwrap();
    let dbg = format!("{o:?}");
    assert!(dbg.contains("PASSWORD") && !dbg.contains("hunter2"));
}

#[test]
fn the_view_holds_a_bounded_number_of_items() {
    let containers = |n: usize| {
        let list: Vec<String> = (0..n).map(|i| format!(r#"{{"name":"c{i}"}}"#)).collect();
        format!(r#"{{"spec":{{"containers":[{}]}}}}"#, list.join(","))
    };
    assert_eq!(Object::from_json(&containers(MAX_CONTAINERS)).unwrap().spec.unwrap().containers.unwrap().len(), 1000);
    let err = Object::from_json(&containers(MAX_CONTAINERS + 1)).unwrap_err().to_string();
    assert!(err.contains("spec.containers") && err.contains("more than 1000 items"), "{err}");

    // Items are counted across the whole object: arguments of many containers, and map entries.
    let args = vec![r#""""#; MAX_ITEMS / 4].join(",");
    let many: Vec<String> = (0..4).map(|i| format!(r#"{{"name":"c{i}","args":[{args}]}}"#)).collect();
    let at_limit = format!(r#"{{"spec":{{"containers":[{}]}}}}"#, many.join(","));
    let err = Object::from_json(&at_limit).unwrap_err().to_string();
    assert!(err.contains(&format!("more than {MAX_ITEMS} list items")), "the 4 containers count too: {err}");
    let labels: Vec<String> = (0..MAX_ITEMS + 1).map(|i| format!(r#""l{i}":"""#)).collect();
    let err = Object::from_json(&format!(r#"{{"metadata":{{"labels":{{{}}}}}}}"#, labels.join(","))).unwrap_err();
    assert!(err.to_string().contains("list items and map entries"), "{err}");

    // The count starts again with each object.
    let half: Vec<String> = (0..MAX_ITEMS / 2).map(|i| format!(r#""l{i}":"""#)).collect();
    let half = format!(r#"{{"metadata":{{"labels":{{{}}}}}}}"#, half.join(","));
    for _ in 0..3 {
        Object::from_json(&half).unwrap();
    }
}
