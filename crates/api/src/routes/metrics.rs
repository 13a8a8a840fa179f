//! `GET /metrics` in the Prometheus text format (0.0.4): capstan's own figures, each crate
//! writing its part (the log pipeline and its sinks, the ledger, the watcher), then every
//! container's counters under cAdvisor's names and the host's under node_exporter's.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use crate::params::{self, Pairs};
use crate::routes::logs::{blocking, logs};
use crate::{ApiError, AppState};
use capstan_metrics::Exposition;

const CONTENT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    responses(
        (status = 200, description = "the Prometheus text exposition (cAdvisor names)", content_type = "text/plain; version=0.0.4", body = String)
    )
)]
pub(crate) async fn metrics(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<impl IntoResponse, ApiError> {
    params::only(&pairs, &[])?;
    // each crate writes its own figures
    let mut out = Exposition::default();
    if let Ok(logs) = logs(&state) {
        let pipeline = logs.stats.snapshot(*logs.committed.borrow());
        let sinks: Vec<_> = logs.sinks.iter().map(|(n, s)| s.snapshot(n)).collect();
        let store = Arc::clone(&logs.store);
        let partitions = blocking(move || Ok(store.partitions())).await?;
        let bytes = partitions.iter().map(|(_, _, b)| *b).sum();
        capstan_logs::telemetry::render(&mut out, &pipeline, &sinks, partitions.len(), bytes);
    }
    let results = state.store.release_results().await?;
    capstan_deploy::telemetry::render(&mut out, &results);
    if let Some(updates) = &state.updates {
        updates.render(&mut out);
    }
    if let Some(metrics) = &state.metrics {
        metrics.render(&mut out);
        capstan_metrics::render_host(&mut out, std::path::Path::new("/proc"));
    }
    Ok(([(CONTENT_TYPE, CONTENT)], out.into_text()))
}

/// `GET /api/v1/metrics/containers[?window=5s]`: every running container's use over the
/// window (default: the last two readings), like `docker stats` but from what was already
/// read.
#[utoipa::path(
    get,
    path = "/api/v1/metrics/containers",
    tag = "metrics",
    params(
        ("window" = Option<String>, Query, description = "a duration such as 5s (default: the last two readings)")
    ),
    responses(
        (status = 200, description = "OK", body = Vec<capstan_model::ContainerStats>)
    )
)]
pub(crate) async fn containers(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<axum::Json<Vec<capstan_model::ContainerStats>>, ApiError> {
    params::only(&pairs, &["window"])?;
    let metrics = state.metrics.as_ref().ok_or_else(|| {
        ApiError::new(
            crate::Code::NotFound,
            "container metrics are not collected ([metrics] collect = false in capstan.toml)",
        )
    })?;
    let window = match pairs.iter().rev().find(|(k, _)| k == "window") {
        None => None,
        Some((_, v)) => {
            let ns = capstan_model::parse_duration_nanos(v)
                .map_err(|e| ApiError::bad_param("window", e))?;
            Some(std::time::Duration::from_nanos(ns.max(0) as u64))
        }
    };
    Ok(axum::Json(metrics.stats(window)))
}

/// Points a range query returns per series, at most.
const MAX_POINTS: i64 = 11_000;

/// `GET /api/v1/metrics/query?query=...&since=1h[&until=][&step=]`: the history's query
/// language over a range (default the last hour, about 240 points per series).
#[utoipa::path(
    get,
    path = "/api/v1/metrics/query",
    tag = "metrics",
    params(
        ("query" = String, Query, description = "a PromQL-like query: selector, rate/increase/*_over_time, sum/avg/max/min/count by"),
        ("since" = Option<String>, Query, description = "range start (default 1h)"),
        ("until" = Option<String>, Query, description = "range end (default now)"),
        ("step" = Option<String>, Query, description = "resolution, e.g. 15s")
    ),
    responses(
        (status = 200, description = "OK", body = capstan_model::MetricsResult)
    )
)]
pub(crate) async fn query(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<axum::Json<capstan_model::MetricsResult>, ApiError> {
    params::only(&pairs, &["query", "since", "until", "step"])?;
    let history = state.history.clone().ok_or_else(|| {
        ApiError::new(
            crate::Code::NotFound,
            "no metrics history is kept ([metrics] collect or history is false in capstan.toml)",
        )
    })?;
    let text = params::last(&pairs, "query").ok_or_else(|| {
        ApiError::bad_param(
            "query",
            "give a query, like container_memory_working_set_bytes{name=\"web-1\"}",
        )
    })?;
    let query = capstan_metrics::Query::parse(text).map_err(|e| ApiError::bad_param("query", e))?;
    let now = chrono::Utc::now();
    let time = |name: &str, default: i64| -> Result<i64, ApiError> {
        params::last(&pairs, name).map_or(Ok(default), |v| {
            capstan_model::parse_time_or_ago(v, now)
                .map(|ns| ns / 1_000_000)
                .map_err(|e| ApiError::bad_param(name, e))
        })
    };
    let end = time("until", now.timestamp_millis())?;
    let start = time("since", end - 3_600_000)?;
    if start > end {
        return Err(ApiError::bad_param("since", "is after until"));
    }
    let step = match params::last(&pairs, "step") {
        Some(v) => {
            let ns = capstan_model::parse_duration_nanos(v)
                .map_err(|e| ApiError::bad_param("step", e))?;
            (ns / 1_000_000).max(1)
        }
        None => ((end - start) / 240).max(1_000),
    };
    if (end - start) / step > MAX_POINTS {
        return Err(ApiError::bad_param(
            "step",
            format!("gives more than {MAX_POINTS} points; take a longer step or a shorter range"),
        ));
    }
    let q = query.clone();
    let (resolution, series) =
        tokio::task::spawn_blocking(move || q.range(&history, start, end, step))
            .await
            .map_err(|e| ApiError::new(crate::Code::Internal, format!("the query failed: {e}")))?
            .map_err(|e| match e {
                e @ capstan_metrics::query::QueryError::Deadline => ApiError::bad_param("query", e),
                e @ capstan_metrics::query::QueryError::History(_) => {
                    ApiError::new(crate::Code::Internal, e.to_string())
                }
            })?;
    let time = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    Ok(axum::Json(capstan_model::MetricsResult {
        query: query.to_string(),
        resolution: match resolution {
            capstan_metrics::history::Resolution::Raw => "raw".into(),
            capstan_metrics::history::Resolution::Minute => "minute".into(),
        },
        start: time(start),
        end: time(end),
        step_seconds: step as f64 / 1000.0,
        series: series
            .into_iter()
            .map(|s| capstan_model::MetricSeries {
                labels: s.labels,
                points: s.points.into_iter().map(|(t, v)| (time(t), v)).collect(),
            })
            .collect(),
    }))
}
