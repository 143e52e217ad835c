//! Which restartable init containers of an UPDATE are podmedic's own work, and what became of the
//! user's container each was made from.
//!
//! podmedic placed an init container when its record (`podmedic.io/moved`) names it, when the
//! `podmedic.io/changes` text of an older podmedic says it moved it, or when the stored one
//! ([`extends`]) is the user's container plus only what podmedic adds. The user's container is
//! unchanged when its fingerprint is the recorded one or, without a fingerprint, when the stored
//! init container extends it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::record::{MovedRecord, fingerprint};

/// What podmedic knows from the object and its stored version about its earlier moves.
pub(super) struct Evidence<'v> {
    /// The record, from the object's template (or the stored one's, if the update dropped it).
    pub record: MovedRecord,
    /// Names an older podmedic said it moved (its `podmedic.io/changes` text).
    pub said_moved: BTreeSet<String>,
    /// The stored restartable init containers, by name.
    pub stored: BTreeMap<&'v str, &'v Value>,
    /// The names the user applies in the pod template, when that is known (`applied`).
    pub applied: Option<BTreeSet<String>>,
    /// The names the user applied in the stored object's pod template, when that is known. A
    /// container counts as deleted from Git only if it was applied before: one that another
    /// webhook or a `kubectl edit` added was never in the manifest, and stays.
    pub applied_before: Option<BTreeSet<String>>,
}

/// What happens to one restartable init container podmedic placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The user's container is back in `containers` and unchanged since podmedic moved it.
    Unchanged { user: usize },
    /// The user's container is back in `containers` and changed (a new tag, a new flag).
    Changed { user: usize },
    /// The user applied a container of this name before this update and no longer does; a copy
    /// left in `containers` (at `user`) goes too.
    Removed { user: Option<usize> },
}

/// One placed init container and its verdict.
#[derive(Debug)]
pub(super) struct Finding<'v> {
    pub name: &'v str,
    /// Its index in the object's `initContainers`.
    pub init: usize,
    pub verdict: Verdict,
    /// The stored version, kept byte for byte where the user's container is unchanged.
    pub stored: Option<&'v Value>,
}

/// The placed init containers of the object that this update concerns, in `initContainers` order.
pub(super) fn findings<'v>(containers: &'v [Value], init: &'v [Value], evidence: &Evidence<'v>) -> Vec<Finding<'v>> {
    let users: BTreeMap<&str, usize> =
        containers.iter().enumerate().filter_map(|(i, c)| Some((name_of(c)?, i))).rev().collect();
    let mut out = Vec::new();
    for (index, entry) in init.iter().enumerate() {
        let Some(name) = name_of(entry).filter(|_| is_restartable(entry)) else { continue };
        let user = users.get(name).map(|&i| (i, &containers[i]));
        let stored = evidence.stored.get(name).copied();
        let placed = evidence.record.contains(name)
            || evidence.said_moved.contains(name)
            || user.zip(stored).is_some_and(|((_, u), s)| extends(s, u));
        if !placed {
            continue;
        }
        // What the user applies decides first: the patch never changes it, so podmedic decides
        // the same on its own output (idempotence).
        let applied = evidence.applied.as_ref().map(|names| names.contains(name));
        let was_applied = evidence.applied_before.as_ref().is_some_and(|names| names.contains(name));
        let verdict = match (user, applied) {
            (_, Some(false)) if was_applied => Verdict::Removed { user: user.map(|(i, _)| i) },
            (Some((i, user)), _) => {
                let unchanged = match evidence.record.fingerprint(name) {
                    Some(recorded) => fingerprint(user) == recorded,
                    None => extends(stored.unwrap_or(entry), user),
                };
                if unchanged { Verdict::Unchanged { user: i } } else { Verdict::Changed { user: i } }
            }
            (None, _) => continue,
        };
        out.push(Finding { name, init: index, verdict, stored });
    }
    out
}

/// A container's name, if it has one.
pub(super) fn name_of(container: &Value) -> Option<&str> {
    container.get("name").and_then(Value::as_str)
}

/// An init container with `restartPolicy: Always` (a native sidecar).
pub(super) fn is_restartable(container: &Value) -> bool {
    container.get("restartPolicy").and_then(Value::as_str) == Some("Always")
}

/// Whether `init` is `user` plus only what podmedic adds when it moves a sidecar:
/// `restartPolicy: Always`, a startup probe where the user set none, flags among the arguments
/// (appended, or before a `--`), variables appended to `env`, and requests the user did not set.
/// Every other field must be equal. Any podmedic release's additions pass, so an object an older
/// podmedic changed is recognised too.
pub(super) fn extends(init: &Value, user: &Value) -> bool {
    let (Some(init), Some(user)) = (init.as_object(), user.as_object()) else { return false };
    if init.get("restartPolicy").and_then(Value::as_str) != Some("Always") || user.contains_key("restartPolicy") {
        return false;
    }
    let keys: BTreeSet<&String> = init.keys().chain(user.keys()).collect();
    keys.into_iter().all(|key| {
        let (added, given) = (init.get(key), user.get(key));
        match key.as_str() {
            "restartPolicy" => true,
            "startupProbe" => given.is_none() || added == given,
            "args" => args_extend(added, given),
            "env" => env_extends(added, given),
            "resources" => resources_extend(added, given),
            _ => added == given,
        }
    })
}

/// A missing list reads as empty; anything but a list is no list.
fn list(value: Option<&Value>) -> Option<&[Value]> {
    match value {
        None => Some(&[]),
        Some(Value::Array(items)) => Some(items),
        Some(_) => None,
    }
}

/// The user's arguments, in order, with only flags (`-x`, `--x=y`, never `--` itself) between.
fn args_extend(added: Option<&Value>, given: Option<&Value>) -> bool {
    let (Some(added), Some(given)) = (list(added), list(given)) else { return false };
    let is_flag = |v: &Value| v.as_str().is_some_and(|s| s.starts_with('-') && s != "--");
    let mut next = given.iter().peekable();
    for arg in added {
        if next.peek() == Some(&arg) {
            next.next();
        } else if !is_flag(arg) {
            return false;
        }
    }
    next.peek().is_none()
}

/// The user's variables, in order, with only variables of other names between or after.
fn env_extends(added: Option<&Value>, given: Option<&Value>) -> bool {
    let (Some(added), Some(given)) = (list(added), list(given)) else { return false };
    let names: BTreeSet<&str> = given.iter().filter_map(name_of).collect();
    let mut next = given.iter().peekable();
    for var in added {
        if next.peek() == Some(&var) {
            next.next();
        } else if name_of(var).is_none_or(|n| names.contains(n)) {
            return false;
        }
    }
    next.peek().is_none()
}

/// The user's resources with, at most, requests added for resources the user did not request.
fn resources_extend(added: Option<&Value>, given: Option<&Value>) -> bool {
    let empty = Map::new();
    fn as_map<'m>(v: Option<&'m Value>, empty: &'m Map<String, Value>) -> Option<&'m Map<String, Value>> {
        match v {
            None => Some(empty),
            Some(Value::Object(m)) => Some(m),
            Some(_) => None,
        }
    }
    let (Some(added), Some(given)) = (as_map(added, &empty), as_map(given, &empty)) else { return false };
    let keys: BTreeSet<&String> = added.keys().chain(given.keys()).collect();
    keys.into_iter().all(|key| {
        if key != "requests" {
            return added.get(key) == given.get(key);
        }
        let (Some(more), Some(fewer)) = (as_map(added.get(key), &empty), as_map(given.get(key), &empty)) else {
            return false;
        };
        fewer.iter().all(|(resource, value)| more.get(resource) == Some(value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Value {
        json!({"name": "proxy", "image": "gcr.io/p:2.14.1", "args": ["--port=5432", "db"],
               "env": [{"name": "A", "value": "1"}], "resources": {"limits": {"cpu": "1"}}})
    }

    /// A named edit of the placed init container.
    type Edit = (&'static str, Box<dyn Fn(&mut Value)>);

    fn placed(edit: impl Fn(&mut Value)) -> Value {
        let mut init = user();
        init["restartPolicy"] = json!("Always");
        edit(&mut init);
        init
    }

    #[test]
    fn what_podmedic_adds_is_recognised_whichever_release_added_it() {
        let cases: [Edit; 6] = [
            ("restartPolicy only", Box::new(|_| {})),
            (
                "today's additions",
                Box::new(|c| {
                    c["args"] = json!(["--port=5432", "db", "--health-check", "--http-address=0.0.0.0"]);
                    c["startupProbe"] = json!({"httpGet": {"path": "/startup", "port": 9090}});
                }),
            ),
            (
                "another port, another probe",
                Box::new(|c| {
                    c["args"] = json!(["--port=5432", "db", "--health-check", "--http-port=9801"]);
                    c["startupProbe"] = json!({"tcpSocket": {"port": 9801}, "periodSeconds": 2});
                }),
            ),
            ("flags inserted", Box::new(|c| c["args"] = json!(["--health-check", "--port=5432", "db"]))),
            (
                "env appended",
                Box::new(|c| {
                    c["env"] =
                        json!([{"name": "A", "value": "1"}, {"name": "CSQL_PROXY_HEALTH_CHECK", "value": "true"}]);
                }),
            ),
            ("requests added", Box::new(|c| c["resources"]["requests"] = json!({"cpu": "10m", "memory": "32Mi"}))),
        ];
        for (what, edit) in cases {
            assert!(extends(&placed(edit), &user()), "{what}");
        }
    }

    #[test]
    fn anything_else_is_the_users_change() {
        let cases: [Edit; 9] = [
            ("no restartPolicy", Box::new(|c| drop(c.as_object_mut().unwrap().remove("restartPolicy")))),
            ("another tag", Box::new(|c| c["image"] = json!("gcr.io/p:2.14.2"))),
            ("an argument removed", Box::new(|c| c["args"] = json!(["--port=5432"]))),
            ("a positional argument added", Box::new(|c| c["args"] = json!(["--port=5432", "db", "db2"]))),
            ("arguments reordered", Box::new(|c| c["args"] = json!(["db", "--port=5432"]))),
            ("a variable changed", Box::new(|c| c["env"] = json!([{"name": "A", "value": "2"}]))),
            (
                "a variable of the user's name added",
                Box::new(|c| {
                    c["env"] = json!([{"name": "A", "value": "1"}, {"name": "A", "value": "3"}]);
                }),
            ),
            ("a limit changed", Box::new(|c| c["resources"]["limits"]["cpu"] = json!("2"))),
            ("a field added", Box::new(|c| c["workingDir"] = json!("/tmp"))),
        ];
        for (what, edit) in cases {
            assert!(!extends(&placed(edit), &user()), "{what}");
        }
        let mut probed = user();
        probed["startupProbe"] = json!({"exec": {"command": ["true"]}});
        assert!(!extends(&placed(|c| c["startupProbe"] = json!({"httpGet": {"port": 1}})), &probed), "user's probe");
        assert!(extends(&placed(|c| c["startupProbe"] = probed["startupProbe"].clone()), &probed), "same probe");
        assert!(!extends(&json!("x"), &user()) && !extends(&placed(|_| {}), &json!([])), "not containers");
    }
}
