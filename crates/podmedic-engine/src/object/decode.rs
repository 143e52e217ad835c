//! How the view's fields are decoded: strings borrowed from the input, small string maps that keep
//! only the values podmedic reads, numbers kept as their text, and structs that must be JSON objects.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::annotations::is_read_annotation;

/// Most list items and map entries the view holds for one object: containers, environment
/// variables, ports, arguments, labels, annotations, resources, podFailurePolicy rules and their
/// exit codes, counted together. An object with more is not read (the webhook lets it through
/// unchanged, with a warning): each item costs the view more memory than the JSON it came from
/// (an argument `"",` is 3 bytes of JSON and 24 of view), so this bounds what one request can make
/// podmedic hold, whatever its size. A real Pod has hundreds.
pub const MAX_ITEMS: usize = 50_000;

/// Most containers in one list of a pod spec (`containers`, `initContainers`,
/// `ephemeralContainers`): a container costs the view about 300 bytes, however few it takes in the
/// JSON. A real Pod has a handful.
pub const MAX_CONTAINERS: usize = 1_000;

thread_local! {
    /// Items decoded so far in the current object (see [`with_item_count`]).
    static ITEMS: Cell<usize> = const { Cell::new(0) };
}

/// Runs one decoding of an object, counting its items from zero.
pub(crate) fn with_item_count<R>(decode: impl FnOnce() -> R) -> R {
    ITEMS.set(0);
    let result = decode();
    ITEMS.set(0);
    result
}

/// Counts one item of the object being decoded; an error past [`MAX_ITEMS`].
fn count_item<E: de::Error>() -> Result<(), E> {
    let items = ITEMS.get() + 1;
    ITEMS.set(items);
    if items > MAX_ITEMS {
        return Err(E::custom(format!(
            "more than {MAX_ITEMS} list items and map entries; podmedic does not read objects this large"
        )));
    }
    Ok(())
}

/// A list whose items are counted (see [`MAX_ITEMS`]), and of at most `MAX` items.
struct Items<T, const MAX: usize = { usize::MAX }>(Vec<T>);

impl<'de, T: Deserialize<'de>, const MAX: usize> Deserialize<'de> for Items<T, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T, const MAX: usize>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const MAX: usize> Visitor<'de> for V<T, MAX> {
            type Value = Items<T, MAX>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(item) = seq.next_element()? {
                    if out.len() == MAX {
                        return Err(de::Error::custom(format!(
                            "a list of more than {MAX} items; podmedic does not read such a Pod"
                        )));
                    }
                    count_item()?;
                    out.push(item);
                }
                Ok(Items(out))
            }
        }
        d.deserialize_seq(V(PhantomData))
    }
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

pub(super) fn podmedic_annotations<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<StrMap<'a>>, D::Error> {
    // Annotation values (last-applied-configuration, for one) can be large: skip all but those read.
    let keep: fn(&str) -> bool = is_read_annotation;
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
            count_item()?;
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
pub(super) fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Ok(Option::<MapOnly<T>>::deserialize(d)?.map(|m| m.0))
}

/// An optional list whose items must be JSON objects.
pub(super) fn objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Vec<T>>, D::Error> {
    Ok(Option::<Items<MapOnly<T>>>::deserialize(d)?.map(|v| v.0.into_iter().map(|m| m.0).collect()))
}

/// A list of containers: [`objects`], at most [`MAX_CONTAINERS`] of them.
pub(super) fn containers<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Vec<T>>, D::Error> {
    let list = Option::<Items<MapOnly<T>, MAX_CONTAINERS>>::deserialize(d)?;
    Ok(list.map(|v| v.0.into_iter().map(|m| m.0).collect()))
}

/// An optional list of values (arguments), counted.
pub(super) fn items<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Vec<T>>, D::Error> {
    Ok(Option::<Items<T>>::deserialize(d)?.map(|v| v.0))
}

/// A list of values that may be missing (an empty list then), counted.
pub(super) fn counted<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Items::<T>::deserialize(d)?.0)
}

/// Deserializes any value (skipping it) and records whether it was present and not null.
pub(super) fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Option::<IgnoredAny>::deserialize(d).map(|o| o.is_some())
}
