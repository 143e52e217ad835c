//! A borrowed, partial view of the objects podmedic reads.
//!
//! Only the fields the rules look at are decoded; everything else is skipped by the parser without
//! being built, and strings are borrowed from the input where they have no escapes. The view is
//! read-only: the patch is computed against positions in the original JSON, so fields unknown to
//! these types are never lost. The same view is decoded from raw JSON text (the webhook) and from a
//! [`serde_json::Value`] (`podmedic fix`).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::MutateError;

/// Any Kubernetes object podmedic may look at.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Object<'a> {
    /// `v1`, `batch/v1`, ...
    #[serde(default, borrow)]
    pub api_version: Option<Text<'a>>,
    /// `Pod`, `Job`, `CronJob`, ...
    #[serde(default, borrow)]
    pub kind: Option<Text<'a>>,
    /// Object metadata.
    #[serde(default, borrow, deserialize_with = "object")]
    pub metadata: Option<Metadata<'a>>,
    /// The spec; a union of the fields of PodSpec, JobSpec, CronJobSpec and workload specs.
    #[serde(default, borrow, deserialize_with = "object")]
    pub spec: Option<Spec<'a>>,
}

impl<'a> Object<'a> {
    /// Decodes the view from JSON text.
    pub fn from_json(raw: &'a str) -> Result<Object<'a>, MutateError> {
        let mut de = serde_json::Deserializer::from_str(raw);
        let object: Option<Object<'a>> = serde_path_to_error::deserialize(&mut de).map_err(malformed)?;
        de.end().map_err(|e| MutateError::Malformed(e.to_string()))?;
        Ok(object.unwrap_or_default())
    }

    /// Decodes the view from a parsed value.
    pub fn from_value(value: &'a serde_json::Value) -> Result<Object<'a>, MutateError> {
        let object: Option<Object<'a>> = serde_path_to_error::deserialize(value).map_err(malformed)?;
        Ok(object.unwrap_or_default())
    }
}

fn malformed<E: fmt::Display>(e: serde_path_to_error::Error<E>) -> MutateError {
    let path = e.path().to_string();
    MutateError::Malformed(format!("at `{path}`: {}", without_value(&e.into_inner().to_string())))
}

/// A serde message without the value it quotes.
///
/// serde names the value it rejected (`invalid type: string "DB_PASSWORD=hunter2", expected a
/// sequence`), and the message goes to the logs and to the user's warnings; object values can be
/// secrets (an `env` written as a string, `args` as one string). The kind of value found and what
/// was expected are enough to fix the manifest.
fn without_value(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let found = rest.split([' ', ',']).next().unwrap_or_default();
            let expected = rest.rsplit_once(", expected ").map_or("something else", |(_, e)| e);
            return format!("{prefix}{found}, expected {expected}");
        }
    }
    message.to_owned()
}

/// Object or template metadata.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata<'a> {
    /// The object's name.
    #[serde(default, borrow)]
    pub name: Option<Text<'a>>,
    /// The name prefix of objects made by controllers (their `name` is set only after admission).
    #[serde(default, borrow)]
    pub generate_name: Option<Text<'a>>,
    /// Labels (keys and values).
    #[serde(default, borrow)]
    pub labels: Option<StrMap<'a>>,
    /// Annotations: all keys, but only the values of `podmedic.io/` annotations are kept.
    #[serde(default, borrow, deserialize_with = "podmedic_annotations")]
    pub annotations: Option<StrMap<'a>>,
}

impl<'a> Metadata<'a> {
    /// The value of a label.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.as_ref().and_then(|m| m.get(key))
    }

    /// The value of a `podmedic.io/` annotation (other values are not decoded).
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref().and_then(|m| m.get(key))
    }

    /// Whether an annotation key is present (any prefix).
    pub fn has_annotation(&self, key: &str) -> bool {
        self.annotations.as_ref().is_some_and(|m| m.contains_key(key))
    }

    /// Whether a label key is present.
    pub fn has_label(&self, key: &str) -> bool {
        self.labels.as_ref().is_some_and(|m| m.contains_key(key))
    }
}

/// A union of the spec fields of Pods, Jobs, CronJobs and pod-template workloads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec<'a> {
    /// PodSpec: `Always`, `OnFailure` or `Never`.
    #[serde(default, borrow)]
    pub restart_policy: Option<Text<'a>>,
    /// PodSpec: regular containers.
    #[serde(default, borrow, deserialize_with = "objects")]
    pub containers: Option<Vec<Container<'a>>>,
    /// PodSpec: init containers, including native sidecars.
    #[serde(default, borrow, deserialize_with = "objects")]
    pub init_containers: Option<Vec<Container<'a>>>,
    /// PodSpec: ephemeral containers (names only matter).
    #[serde(default, borrow, deserialize_with = "objects")]
    pub ephemeral_containers: Option<Vec<Container<'a>>>,
    /// JobSpec and workload specs: the pod template.
    #[serde(default, borrow, deserialize_with = "object")]
    pub template: Option<Box<Template<'a>>>,
    /// CronJobSpec: the job template.
    #[serde(default, borrow, deserialize_with = "object")]
    pub job_template: Option<Box<Template<'a>>>,
    /// PodSpec: pod-level resources (Kubernetes 1.32+).
    #[serde(default, borrow, deserialize_with = "object")]
    pub resources: Option<Resources<'a>>,
    /// JobSpec: the pod failure policy.
    #[serde(default, deserialize_with = "object")]
    pub pod_failure_policy: Option<PodFailurePolicy>,
}

/// A pod template or job template: metadata and a spec.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Template<'a> {
    /// Template metadata.
    #[serde(default, borrow, deserialize_with = "object")]
    pub metadata: Option<Metadata<'a>>,
    /// Template spec.
    #[serde(default, borrow, deserialize_with = "object")]
    pub spec: Option<Spec<'a>>,
}

/// JobSpec.podFailurePolicy, reduced to what the warning needs.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodFailurePolicy {
    /// The rules.
    #[serde(default)]
    pub rules: Vec<PodFailurePolicyRule>,
}

/// One podFailurePolicy rule.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodFailurePolicyRule {
    /// The action (`FailJob`, `Ignore`, `Count`, `FailIndex`).
    #[serde(default)]
    pub action: Option<String>,
    /// The exit-code requirement.
    #[serde(default, deserialize_with = "object")]
    pub on_exit_codes: Option<OnExitCodes>,
}

/// `onExitCodes` of a podFailurePolicy rule.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OnExitCodes {
    /// Restricts the rule to one container.
    #[serde(default)]
    pub container_name: Option<String>,
    /// `In` or `NotIn`.
    #[serde(default)]
    pub operator: Option<String>,
    /// The exit codes.
    #[serde(default)]
    pub values: Vec<i64>,
}

/// A container, reduced to the fields podmedic reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container<'a> {
    /// The container name.
    #[serde(borrow)]
    pub name: Text<'a>,
    /// The image reference.
    #[serde(default, borrow)]
    pub image: Option<Text<'a>>,
    /// The command (entrypoint).
    #[serde(default, borrow)]
    pub command: Option<Vec<Text<'a>>>,
    /// The arguments.
    #[serde(default, borrow)]
    pub args: Option<Vec<Text<'a>>>,
    /// Environment variables.
    #[serde(default, borrow, deserialize_with = "objects")]
    pub env: Option<Vec<EnvVar<'a>>>,
    /// Declared ports.
    #[serde(default, deserialize_with = "objects")]
    pub ports: Option<Vec<ContainerPort<'a>>>,
    /// Resource requests and limits.
    #[serde(default, borrow, deserialize_with = "object")]
    pub resources: Option<Resources<'a>>,
    /// Whether a startup probe is set.
    #[serde(default, deserialize_with = "present")]
    pub startup_probe: bool,
    /// Whether a readiness probe is set.
    #[serde(default, deserialize_with = "present")]
    pub readiness_probe: bool,
    /// Whether a liveness probe is set.
    #[serde(default, deserialize_with = "present")]
    pub liveness_probe: bool,
    /// The container-level restart policy (`Always` makes an init container a native sidecar).
    #[serde(default, borrow)]
    pub restart_policy: Option<Text<'a>>,
    /// Whether restart policy rules (Kubernetes 1.34+) are set.
    #[serde(default, deserialize_with = "present")]
    pub restart_policy_rules: bool,
}

impl<'a> Container<'a> {
    /// Command followed by args, as the kubelet runs them.
    pub fn argv(&self) -> impl Iterator<Item = &str> {
        self.command.iter().flatten().chain(self.args.iter().flatten()).map(Text::as_str)
    }

    /// The container's declared ports.
    pub fn ports(&self) -> &[ContainerPort<'a>] {
        self.ports.as_deref().unwrap_or_default()
    }

    /// The container's environment.
    pub fn env(&self) -> &[EnvVar<'a>] {
        self.env.as_deref().unwrap_or_default()
    }

    /// Whether any probe is set.
    pub fn has_any_probe(&self) -> bool {
        self.startup_probe || self.readiness_probe || self.liveness_probe
    }

    /// The script a container runs through a shell (`sh -c SCRIPT`, `bash -ec SCRIPT`, with the
    /// shell in `command` and the script in `args` or anywhere in between), if it does.
    pub fn shell_script(&self) -> Option<&str> {
        let mut argv = self.argv();
        let shell = argv.next()?;
        let base = shell.rsplit('/').next().unwrap_or(shell);
        if !matches!(base, "sh" | "bash" | "ash" | "dash" | "zsh" | "ksh") {
            return None;
        }
        // Options such as -e, -x, -ec may precede or combine with -c.
        let mut argv = argv.skip_while(|a| !(a.starts_with('-') && !a.starts_with("--") && a.contains('c')));
        argv.next()?;
        argv.next()
    }

    /// Whether this is a native sidecar (an init container with `restartPolicy: Always`).
    pub fn is_restartable(&self) -> bool {
        self.restart_policy.as_deref() == Some("Always")
    }
}

/// An environment variable. Values may be secret: they are never logged.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar<'a> {
    /// The variable name.
    #[serde(borrow)]
    pub name: Text<'a>,
    /// A literal value.
    #[serde(default, borrow)]
    pub value: Option<Text<'a>>,
    /// Whether the value comes from a reference (secret, config map, field).
    #[serde(default, deserialize_with = "present")]
    pub value_from: bool,
}

impl fmt::Debug for EnvVar<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print values: they are often secrets.
        f.debug_struct("EnvVar").field("name", &self.name).finish_non_exhaustive()
    }
}

/// A declared container port.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort<'a> {
    /// The port number.
    pub container_port: i64,
    /// The port name.
    #[serde(default, borrow)]
    pub name: Option<Text<'a>>,
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default, borrow)]
    pub protocol: Option<Text<'a>>,
}

impl ContainerPort<'_> {
    /// True for TCP ports (the default protocol).
    pub fn is_tcp(&self) -> bool {
        self.protocol.as_deref().is_none_or(|p| p == "TCP")
    }
}

/// Resource requirements.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources<'a> {
    /// Requests by resource name.
    #[serde(default, borrow)]
    pub requests: Option<StrMap<'a>>,
    /// Limits by resource name.
    #[serde(default, borrow)]
    pub limits: Option<StrMap<'a>>,
}

/// A small string map that keeps the input's order, with borrowed keys and values.
///
/// Values that are numbers (YAML `cpu: 1`) are kept as their text.
#[derive(Debug, Default)]
pub struct StrMap<'a>(pub Vec<(Text<'a>, Text<'a>)>);

impl<'a> StrMap<'a> {
    /// The value for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v.as_str())
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k.as_str() == key)
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for StrMap<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(StrMapVisitor { keep_value: |_| true }).map(|m| m as StrMap<'a>)
    }
}

fn podmedic_annotations<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<StrMap<'a>>, D::Error> {
    // Annotation values (last-applied-configuration, for one) can be large: skip all but ours.
    let keep: fn(&str) -> bool = |key| key.starts_with("podmedic.io/");
    d.deserialize_option(OptionVisitor(keep))
}

struct OptionVisitor(fn(&str) -> bool);

impl<'de> Visitor<'de> for OptionVisitor {
    type Value = Option<StrMap<'de>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of strings or null")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(StrMapVisitor { keep_value: self.0 }).map(Some)
    }
}

struct StrMapVisitor {
    keep_value: fn(&str) -> bool,
}

impl<'de> Visitor<'de> for StrMapVisitor {
    type Value = StrMap<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of strings")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(4).min(64));
        while let Some(key) = map.next_key::<Text<'de>>()? {
            let value = if (self.keep_value)(&key) {
                Text(map.next_value::<Scalar<'de>>()?.0)
            } else {
                map.next_value::<IgnoredAny>()?;
                Text(Cow::Borrowed(""))
            };
            out.push((key, value));
        }
        Ok(StrMap(out))
    }
}

/// A string borrowed from the input where it has no escapes (serde's own `Cow<str>` borrows only
/// as a direct field, never inside `Vec`, `Option` or map keys).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Text<'a>(pub Cow<'a, str>);

impl Text<'_> {
    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V).map(|t| t as Text<'a>)
    }
}

/// A string, or a number or boolean kept as its text (YAML writes `cpu: 1` and `enabled: true`).
struct Scalar<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar(Cow::Owned(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar(Cow::Owned(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar(Cow::Owned(v.to_string())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar(Cow::Borrowed(if v { "true" } else { "false" })))
            }
        }
        d.deserialize_any(V)
    }
}

/// A struct of the view read from a JSON object only.
///
/// serde's derived `Deserialize` also accepts an array as the fields in order, so `"metadata": []`
/// would read as empty metadata and the patch would then add `/metadata/annotations` to an array,
/// which fails to apply. Through this wrapper an array is a type error, like any other wrong type.
struct MapOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<T, M::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData)).map(MapOnly)
    }
}

/// An optional struct field that must be a JSON object (or null).
fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Ok(Option::<MapOnly<T>>::deserialize(d)?.map(|m| m.0))
}

/// An optional list whose items must be JSON objects.
fn objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Vec<T>>, D::Error> {
    Ok(Option::<Vec<MapOnly<T>>>::deserialize(d)?.map(|v| v.into_iter().map(|m| m.0).collect()))
}

/// Deserializes any value (skipping it) and records whether it was present and not null.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Option::<IgnoredAny>::deserialize(d).map(|o| o.is_some())
}

#[cfg(test)]
mod tests {
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
        assert!(!c.startup_probe);
        assert!(c.readiness_probe);
    }

    #[test]
    fn wrong_types_are_errors_that_name_the_field() {
        let err = Object::from_json(r#"{"kind":"Pod","spec":{"containers":{"name":"x"}}}"#).unwrap_err();
        assert!(err.to_string().contains("spec.containers"), "{err}");
        let err = Object::from_json(
            r#"{"kind":"Pod","spec":{"containers":[{"name":"x","ports":[{"containerPort":"80"}]}]}}"#,
        )
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
        // Found by tests/hostile.rs: these messages reached the error log and the warning.
        for (raw, field, found) in [
            (r#"{"spec":{"containers":[{"name":"x","env":"DB_PASSWORD=hunter2"}]}}"#, "env", "string"),
            (r#"{"spec":{"containers":[{"name":"x","args":"--password=hunter2"}]}}"#, "args", "string"),
            (
                r#"{"spec":{"containers":[{"name":"x","ports":[{"containerPort":"hunter2"}]}]}}"#,
                "containerPort",
                "string",
            ),
            (r#"{"spec":{"containers":[{"name":"x","env":[{"name":"P","value":7}]}]}}"#, "value", "integer"),
        ] {
            let err = Object::from_json(raw).unwrap_err().to_string();
            assert!(err.contains(field) && err.contains(&format!("invalid type: {found}, expected")), "{err}");
            assert!(!err.contains("hunter2") && !err.contains("`7`"), "{err}");
        }
    }

    #[test]
    fn env_values_never_appear_in_debug_output() {
        let o = Object::from_json(
            r#"{"spec":{"containers":[{"name":"x","env":[{"name":"PASSWORD","value":"hunter2"}]}]}}"#,
        )
        .unwrap();
        let dbg = format!("{o:?}");
        assert!(dbg.contains("PASSWORD") && !dbg.contains("hunter2"));
    }
}
