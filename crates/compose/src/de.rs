//! Lenient scalar readers: after interpolation a number or a boolean may arrive as a string
//! (`"${REPLICAS:-2}"`), as Compose allows.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// Accepts a boolean or the strings true/false/yes/no/on/off.
pub fn bool_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    match &v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Bool(b) => Ok(Some(*b)),
        serde_json::Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => Ok(Some(true)),
            "false" | "no" | "off" => Ok(Some(false)),
            _ => Err(de::Error::custom(format!(
                "expected a boolean, found {s:?}"
            ))),
        },
        other => Err(de::Error::custom(format!(
            "expected a boolean, found {other}"
        ))),
    }
}

/// Accepts an integer or a string holding one.
pub fn int_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    match &v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| de::Error::custom(format!("expected an integer, found {n}"))),
        serde_json::Value::String(s) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| de::Error::custom(format!("expected an integer, found {s:?}"))),
        other => Err(de::Error::custom(format!(
            "expected an integer, found {other}"
        ))),
    }
}

/// [`int_opt`], required.
pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    int_opt(d)?.ok_or_else(|| de::Error::custom("expected an integer, found null"))
}

/// [`text_opt`], required.
pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    text_opt(d)?.ok_or_else(|| de::Error::custom("expected a string or number, found null"))
}

/// Accepts a number (kept as text) or a string: sizes, cpus, durations.
pub fn text_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    match v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some(s)),
        serde_json::Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(de::Error::custom(format!(
            "expected a string or number, found {other}"
        ))),
    }
}

/// A string or a list of strings, as a list.
pub fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    match v {
        serde_json::Value::Null => Ok(Vec::new()),
        serde_json::Value::String(s) => Ok(vec![s]),
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                serde_json::Value::String(s) => Ok(s),
                serde_json::Value::Number(n) => Ok(n.to_string()),
                other => Err(de::Error::custom(format!(
                    "expected a string, found {other}"
                ))),
            })
            .collect(),
        other => Err(de::Error::custom(format!(
            "expected a string or a list of strings, found {other}"
        ))),
    }
}

/// `KEY=VALUE` list or `KEY: VALUE` mapping, as a mapping. With `from_env`, a bare `KEY` (or a
/// null value) means "take it from the environment" and stays `None` here; otherwise the
/// separator is `sep`.
pub fn map_with<'de, D: Deserializer<'de>>(
    d: D,
    sep: char,
) -> Result<BTreeMap<String, Option<String>>, D::Error> {
    struct MapVisitor(char);
    impl<'de> Visitor<'de> for MapVisitor {
        type Value = BTreeMap<String, Option<String>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a mapping or a list of \"KEY{}VALUE\" strings", self.0)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(item) = seq.next_element::<String>()? {
                match item.split_once(self.0) {
                    Some((k, v)) => out.insert(k.trim().to_owned(), Some(v.to_owned())),
                    None => out.insert(item.trim().to_owned(), None),
                };
            }
            Ok(out)
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(k) = map.next_key::<String>()? {
                let v = map.next_value::<serde_json::Value>()?;
                let v = match v {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(s),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    serde_json::Value::Bool(b) => Some(b.to_string()),
                    other => {
                        return Err(de::Error::custom(format!(
                            "{k}: expected a plain value, found {other}"
                        )));
                    }
                };
                out.insert(k, v);
            }
            Ok(out)
        }
    }
    d.deserialize_any(MapVisitor(sep))
}

/// `KEY=VALUE` list or mapping.
pub fn kv<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Option<String>>, D::Error> {
    map_with(d, '=')
}

/// `KEY=VALUE` list or mapping where every key must have a value.
pub fn kv_strict<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    map_with(d, '=')?
        .into_iter()
        .map(|(k, v)| Ok((k, v.unwrap_or_default())))
        .collect()
}

/// `host:ip` list or mapping (extra_hosts).
pub fn hosts<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    map_with(d, ':')?
        .into_iter()
        .map(|(k, v)| {
            v.map(|v| (k.clone(), v)).ok_or_else(|| {
                de::Error::custom(format!("extra host {k:?} needs an address (host:ip)"))
            })
        })
        .collect()
}
