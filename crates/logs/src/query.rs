//! The log query language, parsed here so an error can say where it is:
//!
//! ```text
//! error timeout                  both words (AND is implied)
//! "connection refused"           a phrase
//! service:api level:error        fields: service container image level stream app host
//!                                project container_id image_id replica label.NAME (an
//!                                allowed container label); any other name is a field a
//!                                parser found (status:500, user:alice)
//! a OR b, NOT a, -a, (a OR b) c  boolean logic; AND binds tighter than OR
//! timeout*                       a prefix
//! ```

use tantivy::Term;
use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, Occur, PhraseQuery, Query, RegexQuery, TermQuery,
    TermSetQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::{TextAnalyzer, TokenizerManager};

use crate::origin::{ORIGIN_FIELDS, Origin, Origins};
use crate::store::Fields;

/// A query that does not parse, with the character position of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at position {position}: {message}")]
pub struct QueryError {
    /// 0-based, in characters.
    pub position: usize,
    pub message: String,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Everything (an empty query).
    All,
    Word {
        text: String,
        prefix: bool,
    },
    Phrase(String),
    Field {
        name: String,
        value: Box<Node>,
    },
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Open,
    Close,
    And,
    Or,
    Not,
    Word(String),
    Quoted(String),
    Field(String),
}

fn lex(input: &str) -> Result<Vec<(usize, Tok)>, QueryError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        match c {
            '(' => {
                out.push((i, Tok::Open));
                i += 1;
            }
            ')' => {
                out.push((i, Tok::Close));
                i += 1;
            }
            '-' if chars.get(i + 1).is_some_and(|n| !n.is_whitespace())
                && out.last().is_none_or(|(_, t)| !matches!(t, Tok::Field(_))) =>
            {
                out.push((i, Tok::Not));
                i += 1;
            }
            '"' => {
                i += 1;
                let mut text = String::new();
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    text.push(chars[i]);
                    i += 1;
                }
                if i >= chars.len() {
                    return Err(QueryError {
                        position: start,
                        message: "this quote is never closed".into(),
                    });
                }
                i += 1;
                out.push((start, Tok::Quoted(text)));
            }
            _ => {
                let mut text = String::new();
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !matches!(chars[i], '(' | ')' | '"')
                {
                    if chars[i] == ':' && !text.is_empty() && !text.contains(':') {
                        break;
                    }
                    text.push(chars[i]);
                    i += 1;
                }
                if i < chars.len() && chars[i] == ':' {
                    i += 1;
                    if chars.get(i).is_none_or(|c| c.is_whitespace() || *c == ')') {
                        return Err(QueryError {
                            position: i,
                            message: format!("{text}: needs a value right after the colon"),
                        });
                    }
                    out.push((start, Tok::Field(text)));
                    if chars[i] != '"' && chars[i] != '(' {
                        // the value runs to the next space: `url:http://x/y` is one value
                        let vstart = i;
                        let mut value = String::new();
                        while i < chars.len()
                            && !chars[i].is_whitespace()
                            && !matches!(chars[i], '(' | ')' | '"')
                        {
                            value.push(chars[i]);
                            i += 1;
                        }
                        out.push((vstart, Tok::Word(value)));
                    }
                    continue;
                }
                let tok = match text.as_str() {
                    "AND" => Tok::And,
                    "OR" => Tok::Or,
                    "NOT" => Tok::Not,
                    _ => Tok::Word(text),
                };
                out.push((start, tok));
            }
        }
    }
    Ok(out)
}

/// How deep groups and negations may nest: far beyond what anyone writes, and shallow enough
/// that parsing, compiling and dropping a query never run out of stack.
pub const MAX_DEPTH: usize = 64;

/// The longest query accepted, in characters.
pub const MAX_LEN: usize = 16 * 1024;

struct Parser {
    toks: Vec<(usize, Tok)>,
    i: usize,
    end: usize,
    /// Groups and negations open around the token at `i`.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|(_, t)| t)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.i).map_or(self.end, |(p, _)| *p)
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, QueryError> {
        Err(QueryError {
            position: self.pos(),
            message: message.into(),
        })
    }

    fn or(&mut self) -> Result<Node, QueryError> {
        let mut parts = vec![self.and()?];
        while self.peek() == Some(&Tok::Or) {
            self.i += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Node::Or(parts)
        })
    }

    fn and(&mut self) -> Result<Node, QueryError> {
        let mut parts = vec![self.unary()?];
        loop {
            match self.peek() {
                Some(Tok::And) => {
                    self.i += 1;
                    parts.push(self.unary()?);
                }
                Some(Tok::Or | Tok::Close) | None => break,
                Some(_) => parts.push(self.unary()?),
            }
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Node::And(parts)
        })
    }

    /// Runs `f` one level deeper, refusing to go past [`MAX_DEPTH`].
    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, QueryError>,
    ) -> Result<T, QueryError> {
        if self.depth >= MAX_DEPTH {
            return self.err(format!(
                "groups and negations nest deeper than {MAX_DEPTH} here; write the query flatter"
            ));
        }
        self.depth += 1;
        let out = f(self);
        self.depth -= 1;
        out
    }

    fn unary(&mut self) -> Result<Node, QueryError> {
        if self.peek() == Some(&Tok::Not) {
            return self.nested(|p| {
                p.i += 1;
                Ok(Node::Not(Box::new(p.unary()?)))
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Node, QueryError> {
        let Some(tok) = self.peek().cloned() else {
            return self.err("the query ends where a term was expected");
        };
        match tok {
            Tok::Open => self.nested(|p| {
                p.i += 1;
                let inner = p.or()?;
                if p.peek() != Some(&Tok::Close) {
                    return p.err("expected ) to close the group");
                }
                p.i += 1;
                Ok(inner)
            }),
            Tok::Close => self.err("unexpected ) with no group open"),
            Tok::And | Tok::Or => self.err("AND/OR needs a term on both sides"),
            Tok::Not => self.err("NOT needs a term after it"),
            Tok::Word(w) => {
                self.i += 1;
                Ok(word(w))
            }
            Tok::Quoted(q) => {
                self.i += 1;
                Ok(Node::Phrase(q))
            }
            Tok::Field(name) => {
                let at = self.pos();
                self.i += 1;
                let value = match self.peek().cloned() {
                    Some(Tok::Word(w)) => word(w),
                    Some(Tok::Quoted(q)) => Node::Phrase(q),
                    _ => {
                        return Err(QueryError {
                            position: at + name.chars().count() + 1,
                            message: format!("{name}: needs a value"),
                        });
                    }
                };
                self.i += 1;
                Ok(Node::Field {
                    name,
                    value: Box::new(value),
                })
            }
        }
    }
}

fn word(w: String) -> Node {
    match w.strip_suffix('*') {
        Some(stem) if !stem.is_empty() => Node::Word {
            text: stem.to_owned(),
            prefix: true,
        },
        _ => Node::Word {
            text: w,
            prefix: false,
        },
    }
}

/// Parses a query; an empty one matches everything.
///
/// # Errors
/// Where the query stops making sense.
pub fn parse(input: &str) -> Result<Node, QueryError> {
    if let Some((at, _)) = input.char_indices().nth(MAX_LEN) {
        return Err(QueryError {
            position: input[..at].chars().count(),
            message: format!("the query is longer than {MAX_LEN} characters"),
        });
    }
    let toks = lex(input)?;
    if toks.is_empty() {
        return Ok(Node::All);
    }
    let mut p = Parser {
        toks,
        i: 0,
        end: input.chars().count(),
        depth: 0,
    };
    let node = p.or()?;
    if p.i < p.toks.len() {
        return p.err("unexpected ) here");
    }
    Ok(node)
}

/// Turns a parsed query into a tantivy query over the store's schema.
pub(crate) struct Compiler<'a> {
    f: Fields,
    origins: &'a Origins,
    analyzer: TextAnalyzer,
}

impl<'a> Compiler<'a> {
    pub fn new(f: &Fields, origins: &'a Origins) -> Self {
        let analyzer = TokenizerManager::default()
            .get("default")
            .unwrap_or_else(|| TextAnalyzer::from(tantivy::tokenizer::SimpleTokenizer::default()));
        Self {
            f: *f,
            origins,
            analyzer,
        }
    }

    fn tokens(&mut self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut stream = self.analyzer.token_stream(text);
        while stream.advance() {
            out.push(stream.token().text.clone());
        }
        out
    }

    fn text(&mut self, field: Field, node: &Node, json_path: Option<&str>) -> Box<dyn Query> {
        let term = |t: &str| match json_path {
            Some(path) => {
                let mut term = Term::from_field_json_path(field, path, false);
                term.append_type_and_str(t);
                term
            }
            None => Term::from_field_text(field, t),
        };
        let (text, prefix) = match node {
            Node::Word { text, prefix } => (text.as_str(), *prefix),
            Node::Phrase(p) => (p.as_str(), false),
            _ => return Box::new(EmptyQuery),
        };
        let tokens = self.tokens(text);
        match (tokens.as_slice(), prefix) {
            ([], _) => Box::new(EmptyQuery),
            ([one], true) if json_path.is_none() => {
                match RegexQuery::from_pattern(&format!("{}.*", regex_escape(one)), field) {
                    Ok(q) => Box::new(q),
                    Err(_) => Box::new(EmptyQuery),
                }
            }
            ([one], _) => Box::new(TermQuery::new(term(one), IndexRecordOption::WithFreqs)),
            (many, _) => Box::new(PhraseQuery::new(many.iter().map(|t| term(t)).collect())),
        }
    }

    /// The tantivy query for `node`.
    pub fn compile(&mut self, node: &Node) -> Box<dyn Query> {
        match node {
            Node::All => Box::new(AllQuery),
            Node::Word { .. } | Node::Phrase(_) => self.text(self.f.raw, node, None),
            Node::Field { name, value } => self.field(name, value),
            Node::And(parts) => {
                let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
                for p in parts {
                    match p {
                        Node::Not(inner) => clauses.push((Occur::MustNot, self.compile(inner))),
                        _ => clauses.push((Occur::Must, self.compile(p))),
                    }
                }
                if clauses.iter().all(|(o, _)| *o == Occur::MustNot) {
                    clauses.push((Occur::Must, Box::new(AllQuery)));
                }
                Box::new(BooleanQuery::new(clauses))
            }
            Node::Or(parts) => Box::new(BooleanQuery::new(
                parts
                    .iter()
                    .map(|p| (Occur::Should, self.compile(p)))
                    .collect(),
            )),
            Node::Not(inner) => Box::new(BooleanQuery::new(vec![
                (Occur::Must, Box::new(AllQuery) as Box<dyn Query>),
                (Occur::MustNot, self.compile(inner)),
            ])),
        }
    }

    fn field(&mut self, name: &str, value: &Node) -> Box<dyn Query> {
        let text = match value {
            Node::Word { text, .. } | Node::Phrase(text) => text.clone(),
            _ => String::new(),
        };
        let prefix = matches!(value, Node::Word { prefix: true, .. });
        if name == "level" {
            let v = text.to_lowercase();
            return if prefix {
                match RegexQuery::from_pattern(&format!("{}.*", regex_escape(&v)), self.f.level) {
                    Ok(q) => Box::new(q),
                    Err(_) => Box::new(EmptyQuery),
                }
            } else {
                Box::new(TermQuery::new(
                    Term::from_field_text(self.f.level, &v),
                    IndexRecordOption::Basic,
                ))
            };
        }
        if Origin::is_field(name) {
            // the origins that match, now: a query is compiled again for every search, so
            // containers that start later are found too
            let ids = self.origins.matching(|o| {
                o.field(name).is_some_and(|v| {
                    if prefix {
                        v.starts_with(&text)
                    } else {
                        v == text
                    }
                })
            });
            if ids.is_empty() {
                return Box::new(EmptyQuery);
            }
            return Box::new(TermSetQuery::new(
                ids.into_iter()
                    .map(|id| Term::from_field_u64(self.f.origin, id)),
            ));
        }
        match name {
            "raw" | "message" | "text" => self.text(self.f.raw, value, None),
            _ => {
                let as_text = self.text(self.f.parsed, value, Some(name));
                let number = |term: Option<Term>| -> Option<Box<dyn Query>> {
                    term.map(|t| {
                        Box::new(TermQuery::new(t, IndexRecordOption::Basic)) as Box<dyn Query>
                    })
                };
                let mut alternatives = vec![(Occur::Should, as_text)];
                let path_term = || Term::from_field_json_path(self.f.parsed, name, false);
                if let Ok(n) = text.parse::<i64>() {
                    let mut t = path_term();
                    t.append_type_and_fast_value(n);
                    alternatives.extend(number(Some(t)).map(|q| (Occur::Should, q)));
                    if let Ok(u) = u64::try_from(n) {
                        let mut t = path_term();
                        t.append_type_and_fast_value(u);
                        alternatives.extend(number(Some(t)).map(|q| (Occur::Should, q)));
                    }
                }
                if let Ok(x) = text.parse::<f64>() {
                    let mut t = path_term();
                    t.append_type_and_fast_value(x);
                    alternatives.extend(number(Some(t)).map(|q| (Occur::Should, q)));
                }
                if matches!(text.as_str(), "true" | "false") {
                    let mut t = path_term();
                    t.append_type_and_fast_value(text == "true");
                    alternatives.extend(number(Some(t)).map(|q| (Occur::Should, q)));
                }
                Box::new(BooleanQuery::new(alternatives))
            }
        }
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Field names the language knows besides parsed fields (for help texts).
pub fn known_fields() -> Vec<&'static str> {
    let mut v: Vec<&str> = ORIGIN_FIELDS.to_vec();
    v.extend(["level", "label.NAME", "raw", "message"]);
    v
}

/// A query in the log query language, parsed; turned into a tantivy query at each search,
/// against the origins known then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery(pub(crate) Node);

impl LogQuery {
    /// Parses `text`.
    ///
    /// # Errors
    /// Where the query stops making sense.
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        parse(text).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(t: &str) -> Node {
        Node::Word {
            text: t.into(),
            prefix: false,
        }
    }

    #[test]
    fn the_language_parses() {
        assert_eq!(parse("").unwrap(), Node::All);
        assert_eq!(parse("a b").unwrap(), Node::And(vec![w("a"), w("b")]));
        assert_eq!(
            parse("a OR b c").unwrap(),
            Node::Or(vec![w("a"), Node::And(vec![w("b"), w("c")])])
        );
        assert_eq!(
            parse("service:api -level:debug \"conn refused\"").unwrap(),
            Node::And(vec![
                Node::Field {
                    name: "service".into(),
                    value: Box::new(w("api"))
                },
                Node::Not(Box::new(Node::Field {
                    name: "level".into(),
                    value: Box::new(w("debug"))
                })),
                Node::Phrase("conn refused".into()),
            ])
        );
        assert_eq!(
            parse("(a OR b) NOT c*").unwrap(),
            Node::And(vec![
                Node::Or(vec![w("a"), w("b")]),
                Node::Not(Box::new(Node::Word {
                    text: "c".into(),
                    prefix: true
                })),
            ])
        );
        assert_eq!(
            parse("url:http://x/y").unwrap(),
            Node::Field {
                name: "url".into(),
                value: Box::new(w("http://x/y"))
            }
        );
    }

    #[test]
    fn errors_say_where() {
        let e = parse("error AND").unwrap_err();
        assert_eq!(e.position, 9);
        let e = parse("(a OR b").unwrap_err();
        assert_eq!(
            (e.position, e.message.as_str()),
            (7, "expected ) to close the group")
        );
        let e = parse("a \"open").unwrap_err();
        assert_eq!(e.position, 2);
        let e = parse("service: x").unwrap_err();
        assert_eq!(e.position, 8);
        let e = parse("a ) b").unwrap_err();
        assert_eq!(e.position, 2);
        assert!(parse("OR a").is_err());
    }

    #[test]
    fn deep_and_long_queries_are_refused_not_overflowed() {
        // each of these overflowed the stack (and killed the daemon) before depths were counted
        let cases = [
            format!("{}error", "-".repeat(10_000)),
            format!("{}a{}", "(".repeat(8_000), ")".repeat(8_000)),
            format!("{}a", "NOT ".repeat(4_000)),
            format!("{}a", "-(".repeat(5_000)),
        ];
        for q in &cases {
            let e = parse(q).unwrap_err();
            assert!(e.message.contains("nest deeper than 64"), "{}", e.message);
        }
        // where the 65th level starts
        assert_eq!(parse(&cases[0]).unwrap_err().position, MAX_DEPTH);
        // 100,000 deep: refused for its length, before any of it is parsed
        let e = parse(&format!("{}error", "-".repeat(100_000))).unwrap_err();
        assert!(e.message.contains("longer than"), "{}", e.message);
        assert_eq!(e.position, MAX_LEN);
        // as deep as allowed still parses
        let ok = format!("{}a{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        assert!(parse(&format!("{}a", "-".repeat(MAX_DEPTH))).is_ok());
    }
}
