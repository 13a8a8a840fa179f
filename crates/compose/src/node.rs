//! A YAML tree that remembers where each value came from (file, line, column), so every
//! error can point at it. Built from saphyr's marked tree; aliases are already expanded by the
//! loader, merge keys (`<<`) are applied here.

use std::sync::Arc;

use saphyr::{MarkedYamlOwned, ScalarOwned, ScalarStyle, YamlDataOwned, YamlLoader};

use crate::Error;

/// Where a value is: file, 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    /// The file as the user named it.
    pub file: Arc<str>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

/// A value and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

/// A YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order; keys are unique.
    Map(Vec<(Key, Node)>),
}

/// A mapping key and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub name: String,
    pub pos: Pos,
}

/// How deep mappings and sequences may nest in a Compose file (real ones stay under 10): the
/// tree is built, converted and dropped recursively, which deeper input would overflow.
pub const MAX_DEPTH: usize = 64;

/// How many nodes a file may hold once its aliases are expanded: a few aliases of aliases
/// ("billion laughs") would otherwise expand to more than memory holds.
pub const MAX_NODES: u64 = 1_000_000;

/// Refuses, from the parser's events alone and before any tree is built, a document nested
/// deeper than [`MAX_DEPTH`] or expanding to more than [`MAX_NODES`] nodes. A scan error is
/// left for the load to report.
fn bounded(file: &Arc<str>, text: &str) -> Result<(), Error> {
    use saphyr_parser::Event;
    let refuse = |mark: saphyr_parser::Marker, message: String| Error::Yaml {
        pos: Pos {
            file: Arc::clone(file),
            line: mark.line(),
            col: mark.col() + 1,
        },
        message,
    };
    // nodes so far; the nodes each anchor stands for; the collections open (with their anchor
    // and the count where they started)
    let mut nodes: u64 = 0;
    let mut anchored: std::collections::HashMap<usize, u64> = std::collections::HashMap::new();
    let mut open: Vec<(usize, u64)> = Vec::new();
    for event in saphyr_parser::Parser::new_from_str(text) {
        let Ok((event, span)) = event else {
            return Ok(());
        };
        match event {
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if open.len() >= MAX_DEPTH {
                    return Err(refuse(
                        span.start,
                        format!("mappings and sequences nest deeper than {MAX_DEPTH} here"),
                    ));
                }
                open.push((anchor, nodes));
                nodes += 1;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((anchor, start)) = open.pop()
                    && anchor != 0
                {
                    anchored.insert(anchor, nodes - start);
                }
            }
            Event::Scalar(_, _, anchor, _) => {
                nodes += 1;
                if anchor != 0 {
                    anchored.insert(anchor, 1);
                }
            }
            Event::Alias(anchor) => {
                nodes = nodes.saturating_add(anchored.get(&anchor).copied().unwrap_or(1));
            }
            _ => {}
        }
        if nodes > MAX_NODES {
            return Err(refuse(
                span.start,
                format!(
                    "the document expands to more than {MAX_NODES} values here (aliases of \
                     aliases?)"
                ),
            ));
        }
    }
    Ok(())
}

impl Node {
    /// Parses one YAML document.
    pub fn parse(file: &str, text: &str) -> Result<Self, Error> {
        let file: Arc<str> = Arc::from(file);
        let scan_error = |e: &saphyr::ScanError| Error::Yaml {
            pos: Pos {
                file: Arc::clone(&file),
                line: e.marker().line(),
                col: e.marker().col() + 1,
            },
            message: e.info().to_owned(),
        };
        bounded(&file, text)?;
        // scalars are resolved here, not by saphyr: Compose reads `0440` as octal (YAML 1.1)
        let mut loader = YamlLoader::<MarkedYamlOwned>::default();
        loader.early_parse(false);
        saphyr_parser::Parser::new_from_str(text)
            .load(&mut loader, true)
            .map_err(|e| scan_error(&e))?;
        if let Some(e) = loader.error() {
            return Err(scan_error(e));
        }
        let docs = loader.into_documents();
        match docs.len() {
            0 => Ok(Node {
                value: Value::Map(Vec::new()),
                pos: Pos {
                    file,
                    line: 1,
                    col: 1,
                },
            }),
            1 => convert(
                &file,
                docs.into_iter().next().unwrap_or_else(unreachable_doc),
            ),
            _ => Err(Error::Yaml {
                pos: Pos {
                    file,
                    line: 1,
                    col: 1,
                },
                message: "a Compose file holds one YAML document, this one holds several".into(),
            }),
        }
    }

    /// The entries of a mapping (`None` for anything else).
    pub fn entries(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The value under `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    /// The key entry named `key` of a mapping (for its position).
    pub fn key(&self, key: &str) -> Option<&Key> {
        self.entries()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(k, _)| k)
    }

    /// Scalar text, for scalars.
    pub fn scalar(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// The same tree as JSON, for serde.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => {
                serde_json::Number::from_f64(*f).map_or_else(|| J::String(f.to_string()), J::Number)
            }
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Resolves a plain scalar the way Compose files are read: null, true/false, integers (decimal,
/// `0x` hex, `0o` and YAML 1.1 leading-zero octal), floats; anything else is a string.
fn plain_scalar(s: String) -> Value {
    match s.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(&s)),
    };
    let int = if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()
    } else if let Some(oct) = digits.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()
    } else if digits.len() > 1
        && digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        i64::from_str_radix(&digits[1..], 8).ok()
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    };
    if let Some(i) = int {
        return Value::Int(if neg { -i } else { i });
    }
    let looks_float = digits.contains('.')
        && digits
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_digit() || b == b'.')
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    if looks_float && let Ok(f) = s.parse::<f64>() {
        return Value::Float(f);
    }
    Value::Str(s)
}

fn unreachable_doc() -> MarkedYamlOwned {
    MarkedYamlOwned::value_from_str("")
}

fn pos_of(file: &Arc<str>, node: &MarkedYamlOwned) -> Pos {
    Pos {
        file: Arc::clone(file),
        line: node.span.start.line(),
        col: node.span.start.col() + 1,
    }
}

fn convert(file: &Arc<str>, node: MarkedYamlOwned) -> Result<Node, Error> {
    let pos = pos_of(file, &node);
    let value = match node.data {
        YamlDataOwned::Value(scalar) => match scalar {
            ScalarOwned::Null => Value::Null,
            ScalarOwned::Boolean(b) => Value::Bool(b),
            ScalarOwned::Integer(i) => Value::Int(i),
            ScalarOwned::FloatingPoint(f) => Value::Float(f.into_inner()),
            ScalarOwned::String(s) => Value::Str(s),
        },
        YamlDataOwned::Representation(s, style, _) => {
            if style == ScalarStyle::Plain {
                plain_scalar(s)
            } else {
                Value::Str(s)
            }
        }
        YamlDataOwned::Tagged(_, inner) => return convert(file, *inner),
        YamlDataOwned::Sequence(items) => Value::Seq(
            items
                .into_iter()
                .map(|i| convert(file, i))
                .collect::<Result<_, _>>()?,
        ),
        YamlDataOwned::Mapping(map) => {
            let mut entries: Vec<(Key, Node)> = Vec::with_capacity(map.len());
            let mut merges = Vec::new();
            for (k, v) in map {
                let key_pos = pos_of(file, &k);
                let key = convert(file, k)?;
                let name = match key.scalar() {
                    Some(name) => name,
                    None if key.value == Value::Null => "null".to_owned(),
                    None => {
                        return Err(Error::Yaml {
                            pos: key_pos,
                            message: "mapping keys must be plain values".into(),
                        });
                    }
                };
                let value = convert(file, v)?;
                if name == "<<" {
                    merges.push(value);
                } else {
                    entries.push((Key { name, pos: key_pos }, value));
                }
            }
            // merge keys: explicit keys win, earlier merged mappings win over later ones
            for merge in merges {
                let sources = match merge.value {
                    Value::Map(_) => vec![merge],
                    Value::Seq(items) => items,
                    _ => {
                        return Err(Error::Yaml {
                            pos: merge.pos,
                            message: "`<<` takes a mapping or a list of mappings".into(),
                        });
                    }
                };
                for source in sources {
                    let Value::Map(extra) = source.value else {
                        return Err(Error::Yaml {
                            pos: source.pos,
                            message: "`<<` takes a mapping or a list of mappings".into(),
                        });
                    };
                    for (k, v) in extra {
                        if !entries.iter().any(|(e, _)| e.name == k.name) {
                            entries.push((k, v));
                        }
                    }
                }
            }
            Value::Map(entries)
        }
        YamlDataOwned::Alias(_) | YamlDataOwned::BadValue => {
            return Err(Error::Yaml {
                pos,
                message: "unresolvable value (an alias to an unknown anchor?)".into(),
            });
        }
    };
    Ok(Node { value, pos })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_or_exploding_documents_are_refused_before_a_tree_is_built() {
        use std::fmt::Write as _;
        // 100,000 deep, in flow style and in block style: each overflowed the stack before
        let n = 100_000;
        let flow = |n| format!("x: {}1{}\n", "[".repeat(n), "]".repeat(n));
        let Err(Error::Yaml { message, .. }) = Node::parse("deep.yaml", &flow(n)) else {
            panic!("a document {n} deep was loaded");
        };
        assert!(message.contains("recursion limit"), "{message}");
        for (text, col) in [
            (flow(200), 4 + MAX_DEPTH - 1),
            (format!("{}1\n", "- ".repeat(n)), 1 + 2 * MAX_DEPTH),
        ] {
            let Err(Error::Yaml { pos, message }) = Node::parse("deep.yaml", &text) else {
                panic!("a document {n} deep was loaded");
            };
            assert!(message.contains("nest deeper than 64"), "{message}");
            assert_eq!((pos.line, pos.col), (1, col), "{message}");
        }
        // "billion laughs": nine aliases of aliases expand to 10^9 values
        let mut text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n".to_owned();
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            let _ = writeln!(text, "a{i}: &a{i} [{refs}]");
        }
        let Err(Error::Yaml { pos, message }) = Node::parse("laughs.yaml", &text) else {
            panic!("the aliases were expanded");
        };
        assert!(message.contains("more than 1000000 values"), "{message}");
        assert_eq!(pos.line, 6, "{message}");
        // as deep as allowed, and a few honest aliases, still load
        let ok = format!(
            "x: {}1{}\n",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(Node::parse("ok.yaml", &ok).is_ok());
        assert!(Node::parse("ok.yaml", "a: &a [1, 2]\nb: [*a, *a]\n").is_ok());
    }

    #[test]
    fn positions_are_one_based_and_merge_keys_apply() {
        let n = Node::parse(
            "c.yaml",
            "x-base: &base\n  image: a\n  user: u\nservices:\n  web:\n    <<: *base\n    image: b\n",
        )
        .unwrap();
        let web = n.get("services").unwrap().get("web").unwrap();
        assert_eq!(web.get("image").unwrap().value, Value::Str("b".into()));
        assert_eq!(web.get("user").unwrap().value, Value::Str("u".into()));
        let key = n.get("services").unwrap().key("web").unwrap();
        assert_eq!((key.pos.line, key.pos.col), (5, 3));
        assert_eq!(web.get("image").unwrap().pos.to_string(), "c.yaml:7:12");
    }

    #[test]
    fn scalars_resolve_like_compose() {
        let n = Node::parse("s.yaml", "a: 0440\nb: '0440'\nc: 8080\nd: 0.5\ne: ~\nf: true\ng: yes\nh: 1.2.3\ni: 0x1f\nj: 09\n").unwrap();
        let v = |k: &str| n.get(k).unwrap().value.clone();
        assert_eq!(v("a"), Value::Int(0o440));
        assert_eq!(v("b"), Value::Str("0440".into()));
        assert_eq!(v("c"), Value::Int(8080));
        assert_eq!(v("d"), Value::Float(0.5));
        assert_eq!(v("e"), Value::Null);
        assert_eq!(v("f"), Value::Bool(true));
        assert_eq!(v("g"), Value::Str("yes".into()));
        assert_eq!(v("h"), Value::Str("1.2.3".into()));
        assert_eq!(v("i"), Value::Int(31));
        assert_eq!(v("j"), Value::Str("09".into()));
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = Node::parse("bad.yaml", "services:\n  web: [\n").unwrap_err();
        assert!(err.to_string().starts_with("bad.yaml:"), "{err}");
        let err = Node::parse("dup.yaml", "a: 1\na: 2\n").unwrap_err();
        assert!(err.to_string().starts_with("dup.yaml:"), "{err}");
    }
}
