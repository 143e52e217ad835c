//! Where the raw JSON of a decoded [`Object`](super::Object) can be read again.
//!
//! The view keeps only the fields the rules read. The few things that need every field of a
//! value (the fingerprint of a moved container, `crate::record`) read it again from here, only
//! when they need it, so the common path decodes the object once.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

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
            Source::Json(text) => raw_value_at(text, tokens),
            Source::Review(body) => {
                #[derive(Deserialize)]
                struct Review<'b> {
                    #[serde(borrow)]
                    request: Request<'b>,
                }
                #[derive(Deserialize)]
                struct Request<'b> {
                    #[serde(borrow)]
                    object: &'b RawValue,
                }
                let review: Review<'_> = serde_json::from_slice(body).ok()?;
                raw_value_at(review.request.object.get(), tokens)
            }
        }
    }
}

/// Walks raw JSON text down `tokens`, capturing each level without building it, and parses only
/// what is found at the end.
fn raw_value_at(text: &str, tokens: &[String]) -> Option<Value> {
    let mut here = text;
    for token in tokens {
        here = match here.trim_start().as_bytes().first()? {
            b'{' => serde_json::from_str::<BTreeMap<String, &RawValue>>(here).ok()?.get(token.as_str())?.get(),
            b'[' => serde_json::from_str::<Vec<&RawValue>>(here).ok()?.get(token.parse::<usize>().ok()?)?.get(),
            _ => return None,
        };
    }
    serde_json::from_str(here).ok()
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
