//! Parsing, `auto` flavour (the default): a line that is a JSON object gives its fields, its
//! level and its message from the usual names; any other line stays as it is.

use std::collections::BTreeMap;

/// Names a level goes by, in order of preference.
const LEVEL_KEYS: [&str; 6] = [
    "level",
    "lvl",
    "severity",
    "loglevel",
    "log.level",
    "levelname",
];
/// Names a message goes by.
const MESSAGE_KEYS: [&str; 5] = ["msg", "message", "text", "log", "event"];

/// What a parser found in a line.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub level: Option<String>,
    pub message: Option<String>,
    pub fields: BTreeMap<String, serde_json::Value>,
}

/// `auto`: JSON objects are read, other lines are left alone.
pub fn auto(raw: &str) -> Option<Parsed> {
    let trimmed = raw.trim();
    if !trimmed.starts_with('{') {
        return None;
    }
    let serde_json::Value::Object(map) = serde_json::from_str(trimmed).ok()? else {
        return None;
    };
    let mut parsed = Parsed::default();
    for key in LEVEL_KEYS {
        if let Some(v) = map.get(key).and_then(serde_json::Value::as_str) {
            parsed.level = Some(normalise_level(v));
            break;
        }
    }
    for key in MESSAGE_KEYS {
        if let Some(v) = map.get(key).and_then(serde_json::Value::as_str) {
            parsed.message = Some(v.to_owned());
            break;
        }
    }
    parsed.fields = map.into_iter().collect();
    Some(parsed)
}

/// `ERROR`, `Err`, `error` → `error`; `WARNING` → `warn`; others lowercased.
pub fn normalise_level(level: &str) -> String {
    let l = level.trim().to_lowercase();
    match l.as_str() {
        "err" | "eror" => "error".into(),
        "warning" => "warn".into(),
        "critical" | "crit" => "fatal".into(),
        "information" | "informational" => "info".into(),
        "dbg" => "debug".into(),
        _ => l,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_give_level_message_and_fields() {
        let p =
            auto(r#"{"level":"WARNING","msg":"disk almost full","used":0.93,"host":{"name":"a"}}"#)
                .unwrap();
        assert_eq!(p.level.as_deref(), Some("warn"));
        assert_eq!(p.message.as_deref(), Some("disk almost full"));
        assert_eq!(p.fields["used"], serde_json::json!(0.93));
        assert!(auto("plain text line").is_none());
        assert!(auto("{not json").is_none());
        assert!(auto("[1,2]").is_none());
    }
}
