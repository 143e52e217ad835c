//! Where the raw JSON of a decoded [`Object`](super::Object) can be read again.
//!
//! The view keeps only the fields the rules read. The few things that need every field of a
//! value (the fingerprint of a moved container, `crate::record::moved`) read it again from here, only
//! when they need it, so the common path decodes the object once.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The raw form of a decoded object.
#[derive(Clone, Copy, Default)]
pub enum Source<'a> {
    /// Not known (an object built without its JSON).
    #[default]
    Unknown,
    /// The object's JSON text.
    Json(&'a str),
    /// The object, parsed.
    Value(&'a Value),
    /// An AdmissionReview body whose `request.object` is the object.
    Review(&'a [u8]),
}

impl fmt::Debug for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the contents: an object's environment values are often secrets.
        match self {
            Source::Unknown => f.write_str("Unknown"),
            Source::Json(text) => write!(f, "Json({} bytes)", text.len()),
            Source::Value(_) => f.write_str("Value"),
            Source::Review(body) => write!(f, "Review({} bytes)", body.len()),
        }
    }
}

impl Source<'_> {
    /// The value at `tokens` (unescaped JSON Pointer tokens) in the object, parsed; `None` when
    /// the source is unknown or there is nothing there.
    pub fn value_at(&self, tokens: &[String]) -> Option<Value> {
        match *self {
            Source::Unknown => None,
            Source::Value(value) => {
                tokens.iter().try_fold(value, |v, t| match v {
                    Value::Object(map) => map.get(t),
                    Value::Array(items) => items.get(t.parse::<usize>().ok()?),
                    _ => None,
                })
            }
            .cloned(),
            Source::Json(text) => at_path(&mut serde_json::Deserializer::from_str(text), tokens.iter()),
            Source::Review(body) => {
                let prefix = [String::from("request"), String::from("object")];
                at_path(&mut serde_json::Deserializer::from_slice(body), prefix.iter().chain(tokens))
            }
        }
    }
}

/// Reads the value at `path` in one pass over the JSON, skipping everything else without building
/// it; only the value found is parsed.
fn at_path<'de, 'p, D: Deserializer<'de>>(de: D, path: impl Iterator<Item = &'p String> + Clone) -> Option<Value> {
    PathSeed(path).deserialize(de).ok().flatten()
}

/// Descends one token per level: the member of that name, or the element at that index.
#[derive(Clone)]
struct PathSeed<I>(I);

impl<'de, 'p, I: Iterator<Item = &'p String> + Clone> DeserializeSeed<'de> for PathSeed<I> {
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        let mut rest = self.0.clone();
        match rest.next() {
            None => Value::deserialize(de).map(Some),
            Some(token) => de.deserialize_any(PathVisitor { token, rest }),
        }
    }
}

struct PathVisitor<'p, I> {
    token: &'p str,
    rest: I,
}

impl<'de, 'p, I: Iterator<Item = &'p String> + Clone> Visitor<'de> for PathVisitor<'p, I> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object or array")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if found.is_none() && key == self.token {
                found = map.next_value_seed(PathSeed(self.rest.clone()))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        let Ok(wanted) = self.token.parse::<usize>() else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(None);
        };
        let mut found = None;
        let mut index = 0;
        loop {
            let more = if index == wanted {
                seq.next_element_seed(PathSeed(self.rest.clone()))?.map(|v| found = v)
            } else {
                seq.next_element::<IgnoredAny>()?.map(drop)
            };
            if more.is_none() {
                return Ok(found);
            }
            index += 1;
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tokens(path: &[&str]) -> Vec<String> {
        path.iter().map(|t| (*t).to_owned()).collect()
    }

    #[test]
    fn every_source_finds_the_same_value() {
        let object =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "b/c", "x": [1]}]}}}});
        let text = object.to_string();
        let review = json!({"request": {"uid": "u", "object": object, "oldObject": null}}).to_string();
        let at = tokens(&["spec", "template", "spec", "containers", "1"]);
        let expected = Some(json!({"name": "b/c", "x": [1]}));
        assert_eq!(Source::Value(&object).value_at(&at), expected);
        assert_eq!(Source::Json(&text).value_at(&at), expected);
        assert_eq!(Source::Review(review.as_bytes()).value_at(&at), expected);
        assert_eq!(Source::Unknown.value_at(&at), None);
        for missing in [&["spec", "nope"][..], &["spec", "template", "spec", "containers", "9"], &["spec", "x", "y"]] {
            assert_eq!(Source::Json(&text).value_at(&tokens(missing)), None, "{missing:?}");
            assert_eq!(Source::Value(&object).value_at(&tokens(missing)), None, "{missing:?}");
        }
    }
}
