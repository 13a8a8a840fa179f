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

mod eval;
mod parse;

use eval::Eval;

/// How long one evaluation may run (the blocking pool is shared; a request that went away
/// does not stop it, this does).
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// A range that starts this much before the last [`RAW_KEEP`] still reads full resolution: a
/// chart of "the last hour" measured its start a moment before the query runs, and a new
/// container's first minutes are only there (the per-minute table has them a minute later).
const RAW_GRACE: std::time::Duration = std::time::Duration::from_mins(1);

/// Why a query was not answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    History(#[from] crate::history::Error),
    /// It ran past [`DEADLINE`].
    #[error(
        "the query ran longer than {}s; ask for fewer series, a shorter range or a longer step",
        DEADLINE.as_secs()
    )]
    Deadline,
}

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
        let (expr, selectors, longest) = parse::parse(text)?;
        if matches!(expr, Expr::Number(_)) {
            return Err(ParseError {
                at: 0,
                message: "a query needs a metric name or selector".into(),
            });
        }
        Ok(Self {
            text: text.to_owned(),
            expr,
            selectors,
            longest_range: longest,
        })
    }

    /// The query evaluated at every `step` from `start` to `end` (unix ms). Full resolution
    /// when the range is within the last hour and the step under a minute; per-minute
    /// figures otherwise. An evaluation that runs past [`DEADLINE`] is stopped.
    ///
    /// # Errors
    /// The history cannot be read, or [`QueryError::Deadline`].
    pub fn range(
        &self,
        history: &History,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<(Resolution, Vec<ResultSeries>), QueryError> {
        self.range_until(
            history,
            (start, end, step),
            std::time::Instant::now() + DEADLINE,
        )
    }

    /// [`Self::range`], stopped at `deadline`.
    fn range_until(
        &self,
        history: &History,
        (start, end, step): (i64, i64, i64),
        deadline: std::time::Instant,
    ) -> Result<(Resolution, Vec<ResultSeries>), QueryError> {
        let step = step.max(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        // "the last hour" as the caller measured it, a moment before `now`: within the grace
        // it is still the full-resolution table's (which keeps [`RAW_SLACK`] more than that)
        let recent = now - (RAW_KEEP + RAW_GRACE).as_millis() as i64;
        let resolution = if step < 60_000 && start >= recent {
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
            if std::time::Instant::now() > deadline {
                return Err(QueryError::Deadline);
            }
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
    ///
    /// # Errors
    /// As [`Self::range`].
    pub fn instant(&self, history: &History, at: i64) -> Result<Vec<(Labels, f64)>, QueryError> {
        let (_, series) = self.range(history, at, at, 1)?;
        Ok(series
            .into_iter()
            .filter_map(|s| Some((s.labels, s.points.last()?.1)))
            .collect())
    }
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
    fn an_evaluation_past_its_deadline_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(&dir.path().join("m.db"), Duration::from_secs(1)).unwrap();
        let t0 = 1_800_000_000_000_i64;
        h.record(t0, &[sample("mem", &[("name", "a")], 1.0)])
            .unwrap();
        let q = Query::parse("mem").unwrap();
        let passed = std::time::Instant::now();
        let e = q
            .range_until(&h, (t0, t0 + 60_000, 1000), passed)
            .unwrap_err();
        assert!(matches!(e, QueryError::Deadline), "{e}");
        assert!(e.to_string().contains("longer step"), "{e}");
        let far = passed + Duration::from_hours(1);
        assert!(q.range_until(&h, (t0, t0 + 60_000, 1000), far).is_ok());
    }

    #[test]
    fn the_last_hour_measured_a_moment_ago_is_read_at_full_resolution() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(&dir.path().join("m.db"), Duration::from_secs(1)).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        // a container that started seconds ago: raw rows only, no minute rolled up yet
        for i in 0..5 {
            h.record(
                now - 4_000 + i * 1000,
                &[sample("mem", &[("name", "new")], 7.0)],
            )
            .unwrap();
        }
        let q = Query::parse("mem").unwrap();
        // "since=1h" as the API computes it, 40 ms before the query reads
        let hour = RAW_KEEP.as_millis() as i64;
        let (resolution, series) = q.range(&h, now - 40 - hour, now, 15_000).unwrap();
        assert_eq!(resolution, Resolution::Raw);
        assert_eq!(series.len(), 1, "the new container's series");
        assert_eq!(series[0].points.last().map(|p| p.1), Some(7.0));
        // a range older than the grace reads per minute
        let (resolution, _) = q.range(&h, now - 2 * hour, now, 15_000).unwrap();
        assert_eq!(resolution, Resolution::Minute);
    }

    #[test]
    fn a_query_reads_at_most_32_selectors() {
        let many = vec!["x"; parse::MAX_SELECTORS + 1].join(" + ");
        let err = Query::parse(&many).unwrap_err();
        assert!(err.message.contains("more than 32 selectors"), "{err}");
        assert!(Query::parse(&vec!["x"; parse::MAX_SELECTORS].join(" + ")).is_ok());
    }

    #[test]
    fn deep_and_long_queries_are_refused_not_overflowed() {
        // each of these overflowed the stack before depths were counted
        for q in [
            format!("{}x{}", "(".repeat(8_000), ")".repeat(8_000)),
            format!("{}x{}", "sum(".repeat(3_000), ")".repeat(3_000)),
            format!("{}x{}", "sum by (a) (".repeat(1_000), ")".repeat(1_000)),
        ] {
            let err = Query::parse(&q).unwrap_err();
            assert!(err.message.contains("nest deeper than 64"), "{err}");
        }
        // where the 65th level opens
        let deep = format!("{}x{}", "(".repeat(8_000), ")".repeat(8_000));
        assert_eq!(Query::parse(&deep).unwrap_err().at, parse::MAX_DEPTH + 1);
        // 100,000 deep: refused for its length
        let err = Query::parse(&"(".repeat(100_000)).unwrap_err();
        assert!(err.message.contains("longer than"), "{err}");
        // as deep as allowed still parses
        let ok = format!(
            "{}x{}",
            "(".repeat(parse::MAX_DEPTH),
            ")".repeat(parse::MAX_DEPTH)
        );
        assert!(Query::parse(&ok).is_ok());
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
