//! `GET /metrics` in the Prometheus text format (0.0.4): every container's counters under
//! cAdvisor's names, then capstan's own (the log pipeline and its sinks).

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
    let mut out = Exposition::default();
    if let Ok(logs) = logs(&state) {
        let last = *logs.committed.borrow();
        let p = logs.stats.snapshot(last);
        for (name, help, value) in [
            (
                "lines_read",
                "Lines read from containers' logs.",
                p.lines_read,
            ),
            ("bytes_read", "Bytes of log text read.", p.bytes_read),
            (
                "lines_parsed",
                "Lines a parser found fields in.",
                p.lines_parsed,
            ),
            (
                "parse_failures",
                "Lines the configured parser could not read (kept raw).",
                p.parse_failures,
            ),
            (
                "lines_stored",
                "Lines committed to the embedded store.",
                p.lines_stored,
            ),
            (
                "bad_records",
                "Records of a log file that were not the engine's JSON.",
                p.bad_records,
            ),
            (
                "rotated_away_files",
                "Log files the engine deleted before capstan read them.",
                p.rotated_away_files,
            ),
            (
                "rotated_away_lines",
                "Lines in those files (estimated: json-file records carry no sequence numbers).",
                p.rotated_away_lines,
            ),
            ("commits", "Commits of the embedded store.", p.commits),
            (
                "store_errors",
                "Failed writes to the embedded store (read again from the last commit).",
                p.store_errors,
            ),
        ] {
            out.single(
                &format!("capstan_logs_{name}_total"),
                "counter",
                help,
                value as f64,
            );
        }
        let family = "capstan_logs_container_rotated_away_lines_total";
        out.family(
            family,
            "counter",
            "Lines the engine rotated away from a container before capstan read them (estimated).",
        );
        for (container, loss) in &p.rotated_away_by_container {
            out.sample(
                family,
                &[("container", container)],
                loss.lines_estimated as f64,
            );
        }
        out.single(
            "capstan_logs_containers",
            "gauge",
            "Containers whose logs are followed.",
            p.containers as f64,
        );
        out.single(
            "capstan_logs_last_seq",
            "gauge",
            "Sequence number of the newest stored line.",
            p.last_seq as f64,
        );
        out.single(
            "capstan_logs_lag_seconds",
            "gauge",
            "Age of the newest stored line.",
            p.lag_seconds,
        );
        let sinks: Vec<_> = logs.sinks.iter().map(|(n, s)| s.snapshot(n)).collect();
        for (name, help, pick) in [
            (
                "shipped",
                "Lines delivered by the sink.",
                (|s| s.shipped) as fn(&capstan_logs::sinks::SinkSnapshot) -> u64,
            ),
            ("batches", "Batches delivered by the sink.", |s| s.batches),
            ("failures", "Failed deliveries (each tried again).", |s| {
                s.failures
            }),
            (
                "retried",
                "Lines sent again after the rest of their batch was taken.",
                |s| s.retried,
            ),
            ("rejected", "Lines the server refused for good.", |s| {
                s.rejected
            }),
        ] {
            let metric = format!("capstan_logs_sink_{name}_total");
            out.family(&metric, "counter", help);
            for s in &sinks {
                out.sample(&metric, &[("sink", &s.name)], pick(s) as f64);
            }
        }
        out.family(
            "capstan_logs_sink_behind",
            "gauge",
            "Store sequence numbers between the sink's cursor and the newest line.",
        );
        for s in &sinks {
            out.sample(
                "capstan_logs_sink_behind",
                &[("sink", &s.name)],
                last.saturating_sub(s.cursor) as f64,
            );
        }
        let store = Arc::clone(&logs.store);
        let partitions = blocking(move || Ok(store.partitions())).await?;
        out.single(
            "capstan_logs_store_partitions",
            "gauge",
            "Hourly partitions of the embedded store.",
            partitions.len() as f64,
        );
        out.single(
            "capstan_logs_store_bytes",
            "gauge",
            "Disk used by the embedded store.",
            partitions.iter().map(|(_, _, b)| *b as f64).sum(),
        );
    }
    // rollouts: every release in the ledger by how it ended
    let results = state.store.release_results().await?;
    out.family(
        "capstan_releases_total",
        "counter",
        "Releases in the ledger (deploys, rollbacks, automatic updates, downs) by how they ended.",
    );
    for (result, n) in &results {
        out.sample("capstan_releases_total", &[("result", result)], *n as f64);
    }
    // registry checks
    if let Some(updates) = &state.updates {
        let snapshot = updates.snapshot();
        out.family(
            "capstan_registry_requests_total",
            "counter",
            "Requests made to registries to check for updates, by kind.",
        );
        for (kind, n) in &snapshot.requests {
            out.sample(
                "capstan_registry_requests_total",
                &[("kind", kind)],
                *n as f64,
            );
        }
        out.single(
            "capstan_images_watched",
            "gauge",
            "Images watched for updates.",
            snapshot.updates.len() as f64,
        );
        out.single(
            "capstan_image_updates_available",
            "gauge",
            "Watched images with an update on offer.",
            snapshot.updates.iter().filter(|u| u.has_update()).count() as f64,
        );
        out.single(
            "capstan_image_checks_failed",
            "gauge",
            "Watched images whose last check failed.",
            snapshot
                .updates
                .iter()
                .filter(|u| u.error.is_some())
                .count() as f64,
        );
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
            .map_err(|e| ApiError::new(crate::Code::Internal, e.to_string()))?;
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
