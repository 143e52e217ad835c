//! Building RFC 6902 patches: JSON Pointer paths from unescaped tokens, and parents created first.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, MoveOperation, Patch, PatchOperation};
use serde_json::Value;

/// Escapes one JSON Pointer reference token (RFC 6901): `~` becomes `~0`, `/` becomes `~1`.
pub fn escape_pointer_token(token: &str) -> String {
    let mut out = String::with_capacity(token.len());
    push_escaped(&mut out, token);
    out
}

/// Appends `token` escaped (RFC 6901) to `out`.
fn push_escaped(out: &mut String, token: &str) {
    if !token.contains(['~', '/']) {
        out.push_str(token);
        return;
    }
    for c in token.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
}

/// A JSON Pointer location, e.g. `/spec/template/spec`, built from unescaped tokens.
///
/// Kept as the escaped pointer text itself: a child is one string with room for the new token, and
/// a patch operation's path is that text, not a list of tokens joined again (a Pod's patch has a
/// few dozen paths, each a few tokens deep).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location(String);

impl Location {
    /// A location from unescaped tokens.
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(tokens: I) -> Self {
        let mut pointer = String::new();
        for token in tokens {
            pointer.push('/');
            push_escaped(&mut pointer, token.as_ref());
        }
        Location(pointer)
    }

    /// This location extended by one more token.
    pub fn child(&self, token: impl AsRef<str>) -> Location {
        let token = token.as_ref();
        let mut pointer = String::with_capacity(self.0.len() + 1 + token.len());
        pointer.push_str(&self.0);
        pointer.push('/');
        push_escaped(&mut pointer, token);
        Location(pointer)
    }

    /// This location extended by an array index.
    pub fn index(&self, i: usize) -> Location {
        use std::fmt::Write as _;
        let mut pointer = String::with_capacity(self.0.len() + 8);
        pointer.push_str(&self.0);
        // Writing to a String cannot fail.
        let _ = write!(pointer, "/{i}");
        Location(pointer)
    }

    /// The unescaped tokens.
    pub fn tokens(&self) -> Vec<String> {
        self.0.split('/').skip(1).map(|t| t.replace("~1", "/").replace("~0", "~")).collect()
    }

    /// The escaped pointer text (`""` for the whole document).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn pointer(&self) -> PointerBuf {
        // Always a valid pointer: every token was escaped on the way in. Should that ever not hold,
        // the tokens are escaped again rather than panicking.
        PointerBuf::parse(self.0.clone()).unwrap_or_else(|_| PointerBuf::from_tokens(self.tokens().iter()))
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
    fn locations_are_pointer_text_and_give_their_tokens_back() {
        let at = Location::new(["spec", "template"]).child("metadata").child("annotations").child("a~b/c");
        assert_eq!(at.as_str(), "/spec/template/metadata/annotations/a~0b~1c");
        assert_eq!(at.tokens(), ["spec", "template", "metadata", "annotations", "a~b/c"]);
        assert_eq!(Location::new(["spec"]).child("containers").index(12).as_str(), "/spec/containers/12");
        assert_eq!(Location::default().as_str(), "");
        assert!(Location::default().tokens().is_empty());
        // The patch carries the same text, and what RFC 6901 reads back is the token.
        let mut b = PatchBuilder::new();
        b.add(&at, json!(1));
        b.append(&Location::new(["list"]), json!(2));
        let patch = serde_json::to_value(b.build()).unwrap();
        assert_eq!(patch[0]["path"], "/spec/template/metadata/annotations/a~0b~1c");
        assert_eq!(patch[1]["path"], "/list/-");
        // "~01" is the token "~1", not "/".
        assert_eq!(Location::new(["~1"]).as_str(), "/~01");
        assert_eq!(Location::new(["~1"]).tokens(), ["~1"]);
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
