//! Parsing the query language (a recursive-descent parser with operator precedence).

use regex::Regex;

use super::{Agg, BinOp, Expr, Func, MatchOp, Matcher, ParseError, Selector};

/// How deep parentheses and aggregations may nest: far beyond what anyone writes, and shallow
/// enough that parsing, evaluating and dropping a query never run out of stack.
pub const MAX_DEPTH: usize = 64;

/// The longest query accepted, in bytes.
pub const MAX_LEN: usize = 16 * 1024;

/// The most selectors one query reads (`x + x + x ...` costs one evaluation each, per step).
pub const MAX_SELECTORS: usize = 32;

/// Parses a whole query: its expression, the selectors it reads and its longest range.
pub(super) fn parse(text: &str) -> Result<(Expr, Vec<Selector>, i64), ParseError> {
    if text.len() > MAX_LEN {
        return Err(ParseError {
            at: MAX_LEN + 1,
            message: format!("the query is longer than {MAX_LEN} bytes"),
        });
    }
    let mut p = Parser {
        src: text,
        pos: 0,
        selectors: Vec::new(),
        longest: 0,
        depth: 0,
    };
    let expr = p.expr(0)?;
    p.skip_ws();
    if p.pos < text.len() {
        return Err(p.error("unexpected text after the query"));
    }
    Ok((expr, p.selectors, p.longest))
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    selectors: Vec<Selector>,
    longest: i64,
    /// Parentheses and aggregations open around `pos`.
    depth: usize,
}

fn precedence(op: BinOp) -> u8 {
    match op {
        BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le | BinOp::Eq | BinOp::Ne => 1,
        BinOp::Add | BinOp::Sub => 2,
        BinOp::Mul | BinOp::Div => 3,
    }
}

impl Parser<'_> {
    fn error(&self, message: &str) -> ParseError {
        ParseError {
            at: self.pos + 1,
            message: message.to_owned(),
        }
    }

    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.src.len() - trimmed.len();
    }

    fn eat(&mut self, s: &str) -> bool {
        self.skip_ws();
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, s: &str) -> Result<(), ParseError> {
        if self.eat(s) {
            Ok(())
        } else {
            Err(self.error(&format!("expected `{s}`")))
        }
    }

    fn ident(&mut self) -> Option<String> {
        self.skip_ws();
        let rest = self.rest();
        let len = rest
            .char_indices()
            .find(|(i, c)| !(c.is_ascii_alphanumeric() || *c == '_' || (*c == ':' && *i > 0)))
            .map_or(rest.len(), |(i, _)| i);
        if len == 0 || rest.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        let word = rest[..len].to_owned();
        self.pos += len;
        Some(word)
    }

    fn binop(&mut self) -> Option<BinOp> {
        self.skip_ws();
        let ops = [
            (">=", BinOp::Ge),
            ("<=", BinOp::Le),
            ("==", BinOp::Eq),
            ("!=", BinOp::Ne),
            (">", BinOp::Gt),
            ("<", BinOp::Lt),
            ("+", BinOp::Add),
            ("-", BinOp::Sub),
            ("*", BinOp::Mul),
            ("/", BinOp::Div),
        ];
        ops.iter()
            .find(|(s, _)| self.rest().starts_with(s))
            .map(|(s, op)| {
                self.pos += s.len();
                *op
            })
    }

    fn expr(&mut self, min: u8) -> Result<Expr, ParseError> {
        let mut lhs = self.term()?;
        loop {
            let save = self.pos;
            let Some(op) = self.binop() else { break };
            if precedence(op) <= min {
                self.pos = save;
                break;
            }
            let rhs = self.expr(precedence(op))?;
            if op.is_comparison()
                && matches!(lhs, Expr::Number(_))
                && matches!(rhs, Expr::Number(_))
            {
                return Err(self.error("a comparison needs a series on one side"));
            }
            lhs = Expr::Binary(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn number(&mut self) -> Option<f64> {
        self.skip_ws();
        let rest = self.rest();
        let len = rest
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == 'E'))
            .map_or(rest.len(), |(i, _)| i);
        let v = rest[..len].parse().ok()?;
        self.pos += len;
        Some(v)
    }

    /// Runs `f` one level deeper, refusing to go past [`MAX_DEPTH`].
    fn nested<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ParseError>,
    ) -> Result<T, ParseError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error(&format!(
                "parentheses and aggregations nest deeper than {MAX_DEPTH} here; write the query flatter"
            )));
        }
        self.depth += 1;
        let out = f(self);
        self.depth -= 1;
        out
    }

    fn term(&mut self) -> Result<Expr, ParseError> {
        self.skip_ws();
        if self.rest().starts_with('(') {
            return self.nested(|p| {
                p.expect("(")?;
                let e = p.expr(0)?;
                p.expect(")")?;
                Ok(e)
            });
        }
        if self
            .rest()
            .starts_with(|c: char| c.is_ascii_digit() || c == '.')
        {
            return self
                .number()
                .map(Expr::Number)
                .ok_or_else(|| self.error("not a number"));
        }
        if self.rest().starts_with('{') {
            return self.selector(None);
        }
        let at = self.pos;
        let Some(word) = self.ident() else {
            return Err(self.error("expected a metric name, a function or an aggregation"));
        };
        let func = match word.as_str() {
            "rate" => Some(Func::Rate),
            "increase" => Some(Func::Increase),
            "avg_over_time" => Some(Func::AvgOverTime),
            "max_over_time" => Some(Func::MaxOverTime),
            "min_over_time" => Some(Func::MinOverTime),
            _ => None,
        };
        let agg = match word.as_str() {
            "sum" => Some(Agg::Sum),
            "avg" => Some(Agg::Avg),
            "max" => Some(Agg::Max),
            "min" => Some(Agg::Min),
            "count" => Some(Agg::Count),
            _ => None,
        };
        self.skip_ws();
        if let Some(f) = func
            && self.rest().starts_with('(')
        {
            self.expect("(")?;
            let Expr::Select(i) = self.selector_term()? else {
                return Err(self.error("a function takes a selector"));
            };
            self.expect("[")?;
            let range = self.duration()?;
            self.expect("]")?;
            self.expect(")")?;
            self.longest = self.longest.max(range);
            return Ok(Expr::Range(f, i, range));
        }
        if let Some(agg) = agg
            && (self.rest().starts_with('(')
                || self.rest().starts_with("by")
                || self.rest().starts_with("without"))
        {
            let mut grouping = self.grouping()?;
            let expr = self.nested(|p| {
                p.expect("(")?;
                let expr = p.expr(0)?;
                p.expect(")")?;
                Ok(expr)
            })?;
            if grouping.is_none() {
                grouping = self.grouping()?;
            }
            let (without, by) = grouping.unwrap_or((false, Vec::new()));
            return Ok(Expr::Aggregate {
                agg,
                by,
                without,
                expr: Box::new(expr),
            });
        }
        if func.is_some() || agg.is_some() {
            self.pos = at;
            return Err(self.error(&format!("`{word}` needs its arguments in parentheses")));
        }
        self.selector(Some(word))
    }

    fn selector_term(&mut self) -> Result<Expr, ParseError> {
        self.skip_ws();
        if self.rest().starts_with('{') {
            return self.selector(None);
        }
        let name = self
            .ident()
            .ok_or_else(|| self.error("expected a metric name"))?;
        self.selector(Some(name))
    }

    fn grouping(&mut self) -> Result<Option<(bool, Vec<String>)>, ParseError> {
        let without = if self.eat("by") {
            false
        } else if self.eat("without") {
            true
        } else {
            return Ok(None);
        };
        self.expect("(")?;
        let mut labels = Vec::new();
        while !self.eat(")") {
            labels.push(
                self.ident()
                    .ok_or_else(|| self.error("expected a label name"))?,
            );
            if !self.eat(",") {
                self.expect(")")?;
                break;
            }
        }
        Ok(Some((without, labels)))
    }

    fn selector(&mut self, name: Option<String>) -> Result<Expr, ParseError> {
        let mut matchers = Vec::new();
        if self.eat("{") {
            while !self.eat("}") {
                let label = self
                    .ident()
                    .ok_or_else(|| self.error("expected a label name"))?;
                self.skip_ws();
                let op = if self.eat("=~") {
                    MatchOp::Re
                } else if self.eat("!~") {
                    MatchOp::NotRe
                } else if self.eat("!=") {
                    MatchOp::Ne
                } else if self.eat("=") {
                    MatchOp::Eq
                } else {
                    return Err(self.error("expected `=`, `!=`, `=~` or `!~`"));
                };
                let at = self.pos;
                let value = self.string()?;
                let regex = match op {
                    MatchOp::Re | MatchOp::NotRe => Some(
                        Regex::new(&format!("^(?:{value})$")).map_err(|e| ParseError {
                            at: at + 1,
                            message: format!("bad regular expression: {e}"),
                        })?,
                    ),
                    _ => None,
                };
                matchers.push(Matcher {
                    label,
                    op,
                    value,
                    regex,
                });
                if !self.eat(",") {
                    self.expect("}")?;
                    break;
                }
            }
        }
        if name.is_none() && matchers.iter().all(|m| m.label != "__name__") && matchers.is_empty() {
            return Err(self.error("a selector needs a metric name or a matcher"));
        }
        if self.selectors.len() >= MAX_SELECTORS {
            return Err(self.error(&format!(
                "more than {MAX_SELECTORS} selectors in one query; each is read at every step"
            )));
        }
        self.selectors.push(Selector { name, matchers });
        Ok(Expr::Select(self.selectors.len() - 1))
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.skip_ws();
        let Some(quote @ ('"' | '\'')) = self.rest().chars().next() else {
            return Err(self.error("expected a quoted value"));
        };
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        out.push(match n {
                            'n' => '\n',
                            't' => '\t',
                            n => n,
                        });
                    }
                }
                c if c == quote => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                c => out.push(c),
            }
        }
        Err(self.error("unterminated string"))
    }

    fn duration(&mut self) -> Result<i64, ParseError> {
        self.skip_ws();
        let rest = self.rest();
        let len = rest
            .char_indices()
            .find(|(_, c)| !c.is_ascii_alphanumeric())
            .map_or(rest.len(), |(i, _)| i);
        let text = &rest[..len];
        let ms = parse_duration_ms(text)
            .ok_or_else(|| self.error(&format!("`{text}` is not a duration (like 30s, 5m, 1h)")))?;
        self.pos += len;
        Ok(ms)
    }
}

/// A range (`30s`, `5m`, `1h30m`, `7d`: capstan's one duration grammar) in milliseconds; none
/// when it is not a duration or is zero.
fn parse_duration_ms(text: &str) -> Option<i64> {
    let d = capstan_model::parse_duration(text).ok()?;
    i64::try_from(d.as_millis()).ok().filter(|ms| *ms > 0)
}
