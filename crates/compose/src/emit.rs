//! The resolved model as YAML (what `capstan config` prints).

use std::borrow::Cow;

use saphyr::{Scalar, Yaml, YamlEmitter};

/// Renders a JSON value as a YAML document.
pub fn to_yaml(value: &serde_json::Value) -> String {
    let doc = convert(value);
    let mut out = String::new();
    let mut emitter = YamlEmitter::new(&mut out);
    // writing into a String cannot fail
    let _ = emitter.dump(&doc);
    let body = out.strip_prefix("---\n").unwrap_or(&out);
    format!("{body}\n")
}

fn convert(value: &serde_json::Value) -> Yaml<'static> {
    use serde_json::Value as J;
    match value {
        J::Null => Yaml::Value(Scalar::Null),
        J::Bool(b) => Yaml::Value(Scalar::Boolean(*b)),
        J::Number(n) => n.as_i64().map_or_else(
            || Yaml::Value(Scalar::FloatingPoint(n.as_f64().unwrap_or_default().into())),
            |i| Yaml::Value(Scalar::Integer(i)),
        ),
        J::String(s) => Yaml::Value(Scalar::String(Cow::Owned(s.clone()))),
        J::Array(items) => Yaml::Sequence(items.iter().map(convert).collect()),
        J::Object(map) => Yaml::Mapping(
            map.iter()
                .map(|(k, v)| {
                    (
                        Yaml::Value(Scalar::String(Cow::Owned(k.clone()))),
                        convert(v),
                    )
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_nested_values_that_read_back_the_same() {
        let v = serde_json::json!({"name": "app", "services": {"web": {"ports": [{"target": 80, "published": "8080"}], "read_only": true, "command": ["a", "b c"], "env": {"EMPTY": "", "YES": "yes", "NUM": "0440"}}}});
        let text = to_yaml(&v);
        let back = crate::node::Node::parse("t.yaml", &text).unwrap().to_json();
        assert_eq!(back, v, "{text}");
    }
}
