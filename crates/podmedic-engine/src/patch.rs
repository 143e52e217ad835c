//! Building RFC 6902 patches: JSON Pointer paths from unescaped tokens, and parents created first.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, MoveOperation, Patch, PatchOperation};
use serde_json::Value;

/// Escapes one JSON Pointer reference token (RFC 6901): `~` becomes `~0`, `/` becomes `~1`.
pub fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// A JSON Pointer location as unescaped tokens, e.g. `["spec", "template", "spec"]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location(Vec<String>);

impl Location {
    /// A location from unescaped tokens.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(tokens: I) -> Self {
        Location(tokens.into_iter().map(Into::into).collect())
    }

    /// This location extended by one more token.
    pub fn child(&self, token: impl Into<String>) -> Location {
        let mut tokens = self.0.clone();
        tokens.push(token.into());
        Location(tokens)
    }

    /// This location extended by an array index.
    pub fn index(&self, i: usize) -> Location {
        self.child(i.to_string())
    }

    /// The unescaped tokens.
    pub fn tokens(&self) -> &[String] {
        &self.0
    }

    fn pointer(&self) -> PointerBuf {
        PointerBuf::from_tokens(self.0.iter().map(String::as_str))
    }
}

/// Accumulates patch operations in order.
#[derive(Debug, Default)]
pub struct PatchBuilder {
    ops: Vec<PatchOperation>,
}

impl PatchBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// `add` a value at a location (its parent must exist).
    pub fn add(&mut self, at: &Location, value: Value) {
        self.ops.push(PatchOperation::Add(AddOperation { path: at.pointer(), value }));
    }

    /// Appends a value to the array at `array` (`/-`).
    pub fn append(&mut self, array: &Location, value: Value) {
        self.add(&array.child("-"), value);
    }

    /// `move` a value.
    pub fn move_value(&mut self, from: &Location, to: &Location) {
        self.ops.push(PatchOperation::Move(MoveOperation { from: from.pointer(), path: to.pointer() }));
    }

    /// Sets `key` in the string map at `map`, creating the map when `map_exists` is false.
    pub fn set_map_entry(&mut self, map: &Location, map_exists: bool, key: &str, value: Value) {
        if map_exists {
            self.add(&map.child(key), value);
        } else {
            let mut m = serde_json::Map::new();
            m.insert(key.to_owned(), value);
            self.add(map, Value::Object(m));
        }
    }

    /// Number of operations so far.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when there are no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The finished patch.
    pub fn build(self) -> Patch {
        Patch(self.ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_are_escaped_per_rfc_6901() {
        assert_eq!(escape_pointer_token("podmedic.io/changes"), "podmedic.io~1changes");
        assert_eq!(escape_pointer_token("a~b/c"), "a~0b~1c");
        let mut b = PatchBuilder::new();
        b.set_map_entry(&Location::new(["metadata", "annotations"]), true, "podmedic.io/changes", json!("x"));
        let patch = serde_json::to_value(b.build()).unwrap();
        assert_eq!(patch[0]["path"], "/metadata/annotations/podmedic.io~1changes");
    }

    #[test]
    fn missing_maps_are_created_with_the_entry() {
        let mut doc = json!({"metadata": {}});
        let mut b = PatchBuilder::new();
        b.set_map_entry(&Location::new(["metadata", "annotations"]), false, "a/b", json!("v"));
        json_patch::patch(&mut doc, &b.build()).unwrap();
        assert_eq!(doc, json!({"metadata": {"annotations": {"a/b": "v"}}}));
    }
}
