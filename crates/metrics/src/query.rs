//! The query language of the history: a small part of PromQL, enough for the dashboard, the
//! CLI and alert rules.
//!
//! ```text
//! container_memory_working_set_bytes{service="api"}
//! rate(container_cpu_usage_seconds_total{name=~"web.*"}[1m])
//! sum by (service) (rate(container_network_receive_bytes_total[5m]))
//! container_memory_working_set_bytes / container_spec_memory_limit_bytes > 0.9
//! ```
//! Selectors take `=`, `!=`, `=~` and `!~` matchers; `app` and `service` also match the
//! container's capstan or Compose labels. Functions: `rate`, `increase`, `avg_over_time`,
//! `max_over_time`, `min_over_time`. Aggregations: `sum`, `avg`, `max`, `min`, `count`, with
//! `by (...)` or `without (...)`. Binary `+ - * /` between vectors (matched on equal labels) or
//! with a number, and comparisons `> < >= <= == !=`, which keep the series where they hold.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;

use crate::history::{History, Points, RAW_KEEP, Resolution, SeriesKey};

/// A series' labels.
pub type Labels = BTreeMap<String, String>;

/// Why a query was refused, with where in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at character {at} of the query")]
pub struct ParseError {
    pub at: usize,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MatchOp {
    Eq,
    Ne,
    Re,
    NotRe,
}

#[derive(Debug, Clone)]
struct Matcher {
    label: String,
    op: MatchOp,
    value: String,
    regex: Option<Regex>,
}

impl Matcher {
    fn matches(&self, key: &SeriesKey) -> bool {
        let v = if self.label == "__name__" {
            Some(key.name.as_str())
        } else {
            label_of(&key.labels, &self.label)
        };
        let v = v.unwrap_or("");
        match self.op {
            MatchOp::Eq => v == self.value,
            MatchOp::Ne => v != self.value,
            MatchOp::Re => self.regex.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::NotRe => !self.regex.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

/// A label of a series; `app` and `service` fall back to the container's capstan and then
/// Compose labels.
pub fn label_of<'a>(labels: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let get = |k: &str| labels.iter().find(|(l, _)| l == k).map(|(_, v)| v.as_str());
    get(name).or_else(|| match name {
        "app" => get("container_label_io_capstan_app")
            .or_else(|| get("container_label_com_docker_compose_project")),
        "service" => get("container_label_io_capstan_service")
            .or_else(|| get("container_label_com_docker_compose_service")),
        _ => None,
    })
}

#[derive(Debug, Clone)]
struct Selector {
    name: Option<String>,
    matchers: Vec<Matcher>,
}

impl Selector {
    fn matches(&self, key: &SeriesKey) -> bool {
        self.name.as_ref().is_none_or(|n| &key.name == n)
            && self.matchers.iter().all(|m| m.matches(key))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Rate,
    Increase,
    AvgOverTime,
    MaxOverTime,
    MinOverTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Agg {
    Sum,
    Avg,
    Max,
    Min,
    Count,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Gt,
    Lt,
    Ge,
    Le,
    Eq,
    Ne,
}

impl BinOp {
    fn is_comparison(self) -> bool {
        matches!(
            self,
            Self::Gt | Self::Lt | Self::Ge | Self::Le | Self::Eq | Self::Ne
        )
    }

    fn apply(self, a: f64, b: f64) -> Option<f64> {
        let holds = |c: bool| c.then_some(a);
        match self {
            Self::Add => Some(a + b),
            Self::Sub => Some(a - b),
            Self::Mul => Some(a * b),
            Self::Div => (b != 0.0).then(|| a / b),
            Self::Gt => holds(a > b),
            Self::Lt => holds(a < b),
            Self::Ge => holds(a >= b),
            Self::Le => holds(a <= b),
            // PromQL compares exactly
            Self::Eq => holds(a.total_cmp(&b).is_eq()),
            Self::Ne => holds(a.total_cmp(&b).is_ne()),
        }
    }
}

#[derive(Debug, Clone)]
enum Expr {
    Number(f64),
    Select(usize),
    Range(Func, usize, i64),
    Aggregate {
        agg: Agg,
        by: Vec<String>,
        without: bool,
        expr: Box<Expr>,
    },
    Binary(BinOp, Box<Expr>, Box<Expr>),
}

/// A parsed query.
#[derive(Debug, Clone)]
pub struct Query {
    text: String,
    expr: Expr,
    selectors: Vec<Selector>,
    /// The longest `[range]` in it, ms.
    longest_range: i64,
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A series in a result: labels and `(unix ms, value)` points.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultSeries {
    pub labels: Labels,
    pub points: Vec<(i64, f64)>,
}

impl Query {
    /// Parses `text`, or says what is wrong and where.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut p = Parser {
            src: text,
            pos: 0,
            selectors: Vec::new(),
            longest: 0,
        };
        let expr = p.expr(0)?;
        p.skip_ws();
        if p.pos < text.len() {
            return Err(p.error("unexpected text after the query"));
        }
        if matches!(expr, Expr::Number(_)) {
            return Err(ParseError {
                at: 0,
                message: "a query needs a metric name or selector".into(),
            });
        }
        Ok(Self {
            text: text.to_owned(),
            expr,
            selectors: p.selectors,
            longest_range: p.longest,
        })
    }

    /// The query evaluated at every `step` from `start` to `end` (unix ms). Full resolution
    /// when the range is within the last hour and the step under a minute; per-minute
    /// figures otherwise.
    pub fn range(
        &self,
        history: &History,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<(Resolution, Vec<ResultSeries>), crate::history::Error> {
        let step = step.max(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let resolution = if step < 60_000 && start >= now - RAW_KEEP.as_millis() as i64 {
            Resolution::Raw
        } else {
            Resolution::Minute
        };
        let lookback = match resolution {
            Resolution::Raw => (history.interval().as_millis() as i64 * 3).max(15_000),
            Resolution::Minute => 150_000,
        };
        let from = start - self.longest_range - lookback;
        let selectors = &self.selectors;
        let data = history.read(from, end, resolution, &|k| {
            selectors.iter().any(|s| s.matches(k))
        })?;
        let per_selector: Vec<Vec<&Points>> = selectors
            .iter()
            .map(|s| data.iter().filter(|p| s.matches(&p.key)).collect())
            .collect();
        let mut out: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
        let mut t = start;
        while t <= end {
            let ctx = Eval {
                data: &per_selector,
                t,
                lookback,
            };
            for (labels, v) in ctx.eval(&self.expr) {
                out.entry(labels).or_default().push((t, v));
            }
            t += step;
        }
        Ok((
            resolution,
            out.into_iter()
                .map(|(labels, points)| ResultSeries { labels, points })
                .collect(),
        ))
    }

    /// The query now: each series' value at `at` (unix ms).
    pub fn instant(
        &self,
        history: &History,
        at: i64,
    ) -> Result<Vec<(Labels, f64)>, crate::history::Error> {
        let (_, series) = self.range(history, at, at, 1)?;
        Ok(series
            .into_iter()
            .filter_map(|s| Some((s.labels, s.points.last()?.1)))
            .collect())
    }
}

struct Eval<'a> {
    data: &'a [Vec<&'a Points>],
    t: i64,
    lookback: i64,
}

type Vector = Vec<(Labels, f64)>;

fn labels_of(key: &SeriesKey, keep_name: bool) -> Labels {
    let mut l: Labels = key.labels.iter().cloned().collect();
    if keep_name {
        l.insert("__name__".into(), key.name.clone());
    }
    l
}

impl Eval<'_> {
    fn eval(&self, e: &Expr) -> Vector {
        match e {
            Expr::Number(n) => vec![(Labels::new(), *n)],
            Expr::Select(i) => self.data[*i]
                .iter()
                .filter_map(|p| {
                    let (at, v) = p.points.iter().rev().find(|(at, _)| *at <= self.t)?;
                    (self.t - at <= self.lookback).then(|| (labels_of(&p.key, true), *v))
                })
                .collect(),
            Expr::Range(f, i, range) => self.data[*i]
                .iter()
                .filter_map(|p| {
                    let window: Vec<(i64, f64)> = p
                        .points
                        .iter()
                        .copied()
                        .filter(|(at, _)| *at > self.t - range && *at <= self.t)
                        .collect();
                    let v = over_time(*f, &window)?;
                    Some((labels_of(&p.key, false), v))
                })
                .collect(),
            Expr::Aggregate {
                agg,
                by,
                without,
                expr,
            } => {
                let mut groups: BTreeMap<Labels, Vec<f64>> = BTreeMap::new();
                for (labels, v) in self.eval(expr) {
                    let flat: Vec<(String, String)> = labels.clone().into_iter().collect();
                    let key: Labels = if *without {
                        labels
                            .into_iter()
                            .filter(|(k, _)| k != "__name__" && !by.contains(k))
                            .collect()
                    } else {
                        by.iter()
                            .filter_map(|b| label_of(&flat, b).map(|v| (b.clone(), v.to_owned())))
                            .collect()
                    };
                    groups.entry(key).or_default().push(v);
                }
                groups
                    .into_iter()
                    .map(|(k, vs)| {
                        let n = vs.len() as f64;
                        let v = match agg {
                            Agg::Sum => vs.iter().sum(),
                            Agg::Avg => vs.iter().sum::<f64>() / n,
                            Agg::Max => vs.iter().copied().fold(f64::MIN, f64::max),
                            Agg::Min => vs.iter().copied().fold(f64::MAX, f64::min),
                            Agg::Count => n,
                        };
                        (k, v)
                    })
                    .collect()
            }
            Expr::Binary(op, a, b) => {
                let (lhs, rhs) = (self.eval(a), self.eval(b));
                let scalar = |e: &Expr| matches!(e, Expr::Number(_));
                let drop_name = |mut l: Labels| {
                    if !op.is_comparison() {
                        l.remove("__name__");
                    }
                    l
                };
                match (scalar(a), scalar(b)) {
                    (_, true) => {
                        let n = rhs.first().map_or(0.0, |(_, v)| *v);
                        lhs.into_iter()
                            .filter_map(|(l, v)| Some((drop_name(l), op.apply(v, n)?)))
                            .collect()
                    }
                    (true, false) => {
                        let n = lhs.first().map_or(0.0, |(_, v)| *v);
                        rhs.into_iter()
                            .filter_map(|(l, v)| {
                                // a comparison keeps the vector's value
                                let out = op
                                    .apply(n, v)
                                    .map(|r| if op.is_comparison() { v } else { r })?;
                                Some((drop_name(l), out))
                            })
                            .collect()
                    }
                    (false, false) => {
                        let strip = |mut l: Labels| {
                            l.remove("__name__");
                            l
                        };
                        let right: BTreeMap<Labels, f64> =
                            rhs.into_iter().map(|(l, v)| (strip(l), v)).collect();
                        lhs.into_iter()
                            .filter_map(|(l, v)| {
                                let r = right.get(&strip(l.clone()))?;
                                Some((drop_name(l), op.apply(v, *r)?))
                            })
                            .map(|(l, v)| (strip(l), v))
                            .collect()
                    }
                }
            }
        }
    }
}

/// A function over one series' points in its window, oldest first.
fn over_time(f: Func, w: &[(i64, f64)]) -> Option<f64> {
    match f {
        Func::Rate | Func::Increase => {
            if w.len() < 2 {
                return None;
            }
            // a counter that went down was reset: count from zero again
            let mut increase = 0.0;
            for pair in w.windows(2) {
                let (a, b) = (pair[0].1, pair[1].1);
                increase += if b >= a { b - a } else { b };
            }
            let secs = (w[w.len() - 1].0 - w[0].0) as f64 / 1000.0;
            if f == Func::Rate {
                (secs > 0.0).then(|| increase / secs)
            } else {
                Some(increase)
            }
        }
        Func::AvgOverTime => {
            (!w.is_empty()).then(|| w.iter().map(|(_, v)| v).sum::<f64>() / w.len() as f64)
        }
        Func::MaxOverTime => w.iter().map(|(_, v)| *v).reduce(f64::max),
        Func::MinOverTime => w.iter().map(|(_, v)| *v).reduce(f64::min),
    }
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    selectors: Vec<Selector>,
    longest: i64,
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

    fn term(&mut self) -> Result<Expr, ParseError> {
        self.skip_ws();
        if self.eat("(") {
            let e = self.expr(0)?;
            self.expect(")")?;
            return Ok(e);
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
            self.expect("(")?;
            let expr = self.expr(0)?;
            self.expect(")")?;
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

/// `30s`, `5m`, `1h`, `7d` in milliseconds.
fn parse_duration_ms(text: &str) -> Option<i64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(split);
    let n: i64 = n.parse().ok()?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    (n > 0).then_some(n * unit_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_model::Sample;
    use std::time::Duration;

    fn sample(name: &str, labels: &[(&str, &str)], v: f64) -> Sample {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        labels.sort();
        Sample {
            name: name.into(),
            labels,
            value: v,
        }
    }

    #[test]
    fn bad_queries_say_where() {
        for (q, at) in [
            ("rate(x)", 7),
            ("x{a=1}", 5),
            ("x{a=~\"(\"}", 6),
            ("sum x", 1),
            ("x[5m]", 2),
            ("rate(x[5q])", 8),
            ("", 1),
        ] {
            let err = Query::parse(q).unwrap_err();
            assert_eq!(err.at, at, "{q}: {err}");
        }
    }

    #[test]
    fn rates_aggregations_and_comparisons() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(&dir.path().join("m.db"), Duration::from_secs(1)).unwrap();
        let t0 = 1_800_000_000_000_i64;
        for i in 0..=60 {
            let t = t0 + i * 1000;
            h.record(
                t,
                &[
                    sample(
                        "cpu_total",
                        &[("name", "a"), ("container_label_io_capstan_service", "api")],
                        i as f64 * 0.5,
                    ),
                    sample(
                        "cpu_total",
                        &[("name", "b"), ("container_label_io_capstan_service", "api")],
                        i as f64 * 0.25,
                    ),
                    sample(
                        "cpu_total",
                        &[
                            ("name", "c"),
                            ("container_label_com_docker_compose_service", "db"),
                        ],
                        // reset half way
                        (i % 30) as f64,
                    ),
                    sample("mem", &[("name", "a")], 100.0),
                    sample("limit", &[("name", "a")], 400.0),
                ],
            )
            .unwrap();
        }
        let at = t0 + 60_000;
        let q = |text: &str| {
            let mut v = Query::parse(text).unwrap().instant(&h, at).unwrap();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let v = q("sum by (service) (rate(cpu_total[30s]))");
        assert_eq!(v.len(), 2, "{v:?}");
        assert_eq!(v[0].0.get("service").map(String::as_str), Some("api"));
        assert!((v[0].1 - 0.75).abs() < 1e-9, "{v:?}");
        assert_eq!(v[1].0.get("service").map(String::as_str), Some("db"));
        // 30 s window over a reset: 29 increments before the reset, then from zero
        assert!((v[1].1 - 1.0).abs() < 0.05, "{v:?}");
        let v = q("cpu_total{service=\"api\", name=~\"a|b\"}");
        assert_eq!(v.len(), 2);
        let v = q("mem / limit > 0.2");
        assert_eq!(v.len(), 1);
        assert!((v[0].1 - 0.25).abs() < 1e-9);
        assert!(q("mem / limit > 0.3").is_empty());
        let v = q("max(cpu_total) - 1");
        assert!((v[0].1 - 29.0).abs() < 1e-9, "{v:?}");
        // a range: one point per step
        let (res, series) = Query::parse("mem")
            .unwrap()
            .range(&h, at - 10_000, at, 5_000)
            .unwrap();
        assert_eq!(res, Resolution::Raw);
        assert_eq!(series[0].points.len(), 3);
    }
}
