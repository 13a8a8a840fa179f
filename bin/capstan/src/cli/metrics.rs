//! `capstan metrics QUERY`: the history's query language over a range, a row per series with
//! its latest, lowest, average and highest figure and a sparkline.

use capstan_model::MetricsResult;
use clap::Args;

use super::client::Client;
use super::table::Table;
use super::{Failure, print_json};
use crate::Output;

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// A query: `container_memory_working_set_bytes{service="api"}`,
    /// `sum by (service) (rate(container_cpu_usage_seconds_total[1m]))`.
    pub query: String,
    /// From (`1h` ago by default; a duration ago or an RFC 3339 time).
    #[arg(long, default_value = "1h")]
    pub since: String,
    /// Until (now by default).
    #[arg(long)]
    pub until: Option<String>,
    /// Between points (default: about 240 points over the range).
    #[arg(long)]
    pub step: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

fn sparkline(values: &[f64], width: usize) -> String {
    if values.is_empty() {
        return String::new();
    }
    let (lo, hi) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
    let chunk = values.len().div_ceil(width).max(1);
    values
        .chunks(chunk)
        .map(|c| {
            let v = c.iter().sum::<f64>() / c.len() as f64;
            let i = if hi > lo {
                (((v - lo) / (hi - lo)) * 7.0).round() as usize
            } else {
                3
            };
            BARS[i.min(7)]
        })
        .collect()
}

/// A figure in few characters: `1.5G`, `230.4k`, `0.034`.
pub fn human(v: f64) -> String {
    let a = v.abs();
    for (unit, n) in [("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)] {
        if a >= n {
            return format!("{:.1}{unit}", v / n);
        }
    }
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

pub async fn run(args: MetricsArgs) -> Result<(), Failure> {
    let client = Client::from_env()?;
    let mut query = vec![("query", args.query.clone()), ("since", args.since.clone())];
    if let Some(u) = &args.until {
        query.push(("until", u.clone()));
    }
    if let Some(s) = &args.step {
        query.push(("step", s.clone()));
    }
    let result: MetricsResult = client.get("/api/v1/metrics/query", &query).await?;
    if args.output == Output::Json {
        return print_json(&result);
    }
    let mut table = Table::new(&["SERIES", "LAST", "MIN", "AVG", "MAX", "TREND"]);
    for s in &result.series {
        let values: Vec<f64> = s.points.iter().map(|(_, v)| *v).collect();
        let Some(last) = values.last() else { continue };
        let min = values.iter().copied().fold(f64::MAX, f64::min);
        let max = values.iter().copied().fold(f64::MIN, f64::max);
        let avg = values.iter().sum::<f64>() / values.len() as f64;
        let name = s.labels.get("__name__").cloned().unwrap_or_default();
        let labels: Vec<String> = s
            .labels
            .iter()
            .filter(|(k, _)| {
                k.as_str() != "__name__" && !k.starts_with("container_label_") && k.as_str() != "id"
            })
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        table.row(vec![
            format!("{name}{{{}}}", labels.join(",")),
            human(*last),
            human(min),
            human(avg),
            human(max),
            sparkline(&values, 30),
        ]);
    }
    table.print();
    if result.series.is_empty() {
        println!(
            "no series matched {} between {} and {}",
            result.query, result.start, result.end
        );
    } else {
        println!(
            "{} series, {} resolution, a point every {}s",
            result.series.len(),
            result.resolution,
            result.step_seconds
        );
    }
    Ok(())
}
