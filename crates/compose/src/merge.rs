//! Merging several Compose files in order, as Compose does: mappings merge key by key, the
//! later file wins for plain values, some lists add up, and volumes merge by target.

use crate::node::{Key, Node, Value};

/// Service keys whose lists add up across files (duplicates dropped).
const APPENDED: &[&str] = &[
    "ports",
    "expose",
    "dns",
    "cap_add",
    "cap_drop",
    "security_opt",
    "tmpfs",
    "env_file",
    "configs",
    "secrets",
    "profiles",
];

/// Service keys that may be a `KEY=VALUE` list or a mapping: merged as mappings.
const KEYED: &[&str] = &["environment", "labels", "sysctls", "extra_hosts"];

/// Merges `over` onto `base` (both whole files).
pub fn merge_files(base: Node, over: Node) -> Node {
    merge(base, over, &[])
}

fn merge(base: Node, over: Node, path: &[&str]) -> Node {
    let key = path.last().copied().unwrap_or_default();
    let service_key = path.len() == 3 && path[0] == "services";
    match (base.value, over.value) {
        (Value::Map(b), Value::Map(o)) => {
            let mut entries = b;
            for (k, v) in o {
                match entries.iter().position(|(e, _)| e.name == k.name) {
                    Some(i) => {
                        let (bk, bv) = entries.remove(i);
                        let mut p = path.to_vec();
                        p.push(&k.name);
                        let merged = merge(bv, v, &p);
                        entries.insert(i, (Key { pos: k.pos, ..bk }, merged));
                    }
                    None => entries.push((k, v)),
                }
            }
            Node {
                value: Value::Map(entries),
                pos: over.pos,
            }
        }
        (Value::Seq(b), Value::Seq(o)) if service_key && APPENDED.contains(&key) => {
            let mut items = b;
            for item in o {
                if !items.iter().any(|i| i.to_json() == item.to_json()) {
                    items.push(item);
                }
            }
            Node {
                value: Value::Seq(items),
                pos: over.pos,
            }
        }
        (Value::Seq(b), Value::Seq(o)) if service_key && key == "volumes" => {
            let mut items = b;
            for item in o {
                let target = volume_target(&item);
                match items
                    .iter()
                    .position(|i| target.is_some() && volume_target(i) == target)
                {
                    Some(i) => items[i] = item,
                    None => items.push(item),
                }
            }
            Node {
                value: Value::Seq(items),
                pos: over.pos,
            }
        }
        (b, o) if service_key && KEYED.contains(&key) => {
            let base = Node {
                value: b,
                pos: base.pos,
            };
            let over_node = Node {
                value: o,
                pos: over.pos,
            };
            merge(as_map(base), as_map(over_node), path)
        }
        (_, o) => Node {
            value: o,
            pos: over.pos,
        },
    }
}

/// A `KEY=VALUE` list as a mapping (a mapping as is).
fn as_map(node: Node) -> Node {
    match node.value {
        Value::Seq(items) => {
            let entries = items
                .into_iter()
                .filter_map(|i| {
                    let text = i.scalar()?;
                    let (k, v) = match text.split_once('=') {
                        Some((k, v)) => (k.to_owned(), Value::Str(v.to_owned())),
                        None => (text.clone(), Value::Null),
                    };
                    Some((
                        Key {
                            name: k,
                            pos: i.pos.clone(),
                        },
                        Node {
                            value: v,
                            pos: i.pos,
                        },
                    ))
                })
                .collect();
            Node {
                value: Value::Map(entries),
                pos: node.pos,
            }
        }
        value => Node {
            value,
            pos: node.pos,
        },
    }
}

fn volume_target(node: &Node) -> Option<String> {
    match &node.value {
        Value::Str(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            match parts.as_slice() {
                [t] | [_, t] | [_, t, _] => Some((*t).to_owned()),
                _ => None,
            }
        }
        Value::Map(_) => node.get("target").and_then(Node::scalar),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(a: &str, b: &str) -> serde_json::Value {
        merge_files(
            Node::parse("a.yaml", a).unwrap(),
            Node::parse("b.yaml", b).unwrap(),
        )
        .to_json()
    }

    #[test]
    fn later_files_win_and_lists_add_up() {
        let m = merged(
            "services:\n  web:\n    image: a\n    ports: ['80:80']\n    environment: [A=1, B=2]\n    volumes: ['d:/data', '/x:/y']\n    command: [a]\n",
            "services:\n  web:\n    image: b\n    ports: ['81:81', '80:80']\n    environment: {B: '3', C: '4'}\n    volumes: ['e:/data']\n    command: [b]\n  db:\n    image: pg\n",
        );
        let web = &m["services"]["web"];
        assert_eq!(web["image"], "b");
        assert_eq!(web["ports"], serde_json::json!(["80:80", "81:81"]));
        assert_eq!(
            web["environment"],
            serde_json::json!({"A": "1", "B": "3", "C": "4"})
        );
        assert_eq!(web["volumes"], serde_json::json!(["e:/data", "/x:/y"]));
        assert_eq!(web["command"], serde_json::json!(["b"]));
        assert_eq!(m["services"]["db"]["image"], "pg");
    }
}
