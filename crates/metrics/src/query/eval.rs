//! Evaluating a parsed query at one instant over the history's points.

use std::collections::BTreeMap;

use super::{Agg, Expr, Func, Labels, label_of};
use crate::history::{Points, SeriesKey};

pub(super) struct Eval<'a> {
    pub(super) data: &'a [Vec<&'a Points>],
    pub(super) t: i64,
    pub(super) lookback: i64,
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
    pub(super) fn eval(&self, e: &Expr) -> Vector {
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
