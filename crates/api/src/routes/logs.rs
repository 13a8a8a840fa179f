//! `/api/v1/logs`: search, histogram, live tail and pipeline counters over the embedded store.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use capstan_logs::Store;
use capstan_model::{LogPage, parse_time_or_ago};
use futures_util::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::params::{self, Pairs, last};
use crate::{ApiError, AppState, Code};

/// What the log routes need from the daemon.
#[derive(Clone)]
pub struct LogsState {
    pub store: Arc<Store>,
    pub stats: Arc<capstan_logs::Stats>,
    /// The last sequence number committed.
    pub committed: watch::Receiver<u64>,
    /// The sinks and their counters.
    pub sinks: Vec<(String, Arc<capstan_logs::sinks::SinkStats>)>,
    /// Live tails open at once (each searches the store at every commit): [`MAX_TAILS`].
    pub tails: Arc<tokio::sync::Semaphore>,
}

/// Live tails open at once, every client together.
pub const MAX_TAILS: usize = 64;

impl std::fmt::Debug for LogsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogsState").finish_non_exhaustive()
    }
}

pub(crate) fn logs(state: &AppState) -> Result<&LogsState, ApiError> {
    state.logs.as_ref().ok_or_else(|| {
        ApiError::new(
            Code::NotFound,
            "log collection is off in this daemon ([logs] collect = false in capstan.toml)",
        )
    })
}

fn time(pairs: &Pairs, name: &str) -> Result<Option<i64>, ApiError> {
    last(pairs, name)
        .map(|v| parse_time_or_ago(v, chrono::Utc::now()).map_err(|e| ApiError::bad_param(name, e)))
        .transpose()
}

fn number(pairs: &Pairs, name: &str, default: usize, max: usize) -> Result<usize, ApiError> {
    match last(pairs, name) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::bad_param(name, format!("{v:?} is not a number from 1 to {max}"))
            }),
    }
}

fn compile(store: &Store, pairs: &Pairs) -> Result<capstan_logs::LogQuery, ApiError> {
    let q = last(pairs, "q").unwrap_or_default();
    store.compile(q).map_err(|e| {
        ApiError::bad_param(
            "q",
            format!(
                "{} at position {} of {:?}",
                e.message,
                e.position,
                capstan_model::excerpt(q, e.position)
            ),
        )
    })
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, capstan_logs::store::Error> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(Code::Internal, format!("log search failed: {e}")))?
        .map_err(|e| {
            tracing::error!(error = %e, "log store failed while serving a request");
            ApiError::new(Code::Internal, "log store failed; see the daemon's log")
        })
}

/// `GET /api/v1/logs?q=QUERY&since=&until=&limit=`: matching lines, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/logs",
    tag = "logs",
    params(
        ("q" = Option<String>, Query, description = "the log query: terms, quoted phrases, field:value, AND/OR/NOT"),
        ("since" = Option<String>, Query, description = "RFC 3339 time or an age"),
        ("until" = Option<String>, Query, description = "RFC 3339 time or an age"),
        ("limit" = Option<u32>, Query, description = "most lines (default 100)")
    ),
    responses(
        (status = 200, description = "matching lines, newest first", body = LogPage),
        (status = 400, description = "a bad query; the message gives the position", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn search(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<LogPage>, ApiError> {
    params::only(&pairs, &["q", "since", "until", "limit"])?;
    let logs = logs(&state)?;
    let (since, until) = (time(&pairs, "since")?, time(&pairs, "until")?);
    let limit = number(&pairs, "limit", 100, 10_000)?;
    let query = compile(&logs.store, &pairs)?;
    let store = Arc::clone(&logs.store);
    let (lines, total) = blocking(move || store.search(&query, since, until, limit)).await?;
    Ok(Json(LogPage { lines, total }))
}

/// `GET /api/v1/logs/histogram?q=&since=&until=&buckets=`: counts per time bucket.
#[utoipa::path(
    get,
    path = "/api/v1/logs/histogram",
    tag = "logs",
    params(
        ("q" = Option<String>, Query, description = "the log query"),
        ("since" = Option<String>, Query, description = "RFC 3339 time or an age"),
        ("until" = Option<String>, Query, description = "RFC 3339 time or an age"),
        ("buckets" = Option<u32>, Query, description = "how many buckets (default 60)")
    ),
    responses(
        (status = 200, description = "matching lines per time bucket, oldest first", body = capstan_model::LogHistogram)
    )
)]
pub(crate) async fn histogram(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<capstan_model::LogHistogram>, ApiError> {
    params::only(&pairs, &["q", "since", "until", "buckets"])?;
    let logs = logs(&state)?;
    let now = crate::routes::now_nanos();
    let until = time(&pairs, "until")?.unwrap_or(now);
    let since = time(&pairs, "since")?.unwrap_or(until - 3_600_000_000_000);
    if since >= until {
        return Err(ApiError::bad_param("since", "must be before until"));
    }
    let buckets = number(&pairs, "buckets", 60, 1000)? as i64;
    let width = ((until - since) / buckets).max(1);
    let query = compile(&logs.store, &pairs)?;
    let store = Arc::clone(&logs.store);
    let counts = blocking(move || store.histogram(&query, since, until, width)).await?;
    let buckets = counts
        .iter()
        .enumerate()
        .map(|(i, c)| capstan_model::HistogramBucket {
            time: capstan_model::nanos_to_datetime(since + i as i64 * width),
            count: *c,
        })
        .collect();
    Ok(Json(capstan_model::LogHistogram {
        width_seconds: width as f64 / 1e9,
        buckets,
    }))
}

/// `GET /api/v1/logs/stats`: the pipeline's counters and the store's partitions.
#[utoipa::path(
    get,
    path = "/api/v1/logs/stats",
    tag = "logs",
    responses(
        (status = 200, description = "the pipeline counters and the store partitions", body = LogStats)
    )
)]
pub(crate) async fn stats(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<LogStats>, ApiError> {
    params::only(&pairs, &[])?;
    let logs = logs(&state)?;
    let last = *logs.committed.borrow();
    let store = Arc::clone(&logs.store);
    let partitions = blocking(move || Ok(store.partitions())).await?;
    Ok(Json(LogStats {
        pipeline: logs.stats.snapshot(last),
        sinks: logs
            .sinks
            .iter()
            .map(|(name, s)| s.snapshot(name))
            .collect(),
        partitions: partitions
            .iter()
            .map(|(name, meta, bytes)| capstan_model::LogPartition {
                name: name.clone(),
                lines: meta.lines,
                first_seq: meta.first_seq,
                last_seq: meta.last_seq,
                oldest: capstan_model::nanos_to_datetime(meta.min_time),
                newest: capstan_model::nanos_to_datetime(meta.max_time),
                bytes: *bytes,
            })
            .collect(),
    }))
}

/// `GET /api/v1/logs/stats`: the collector's counters, each sink's, and the store's partitions.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct LogStats {
    pipeline: capstan_logs::StatsSnapshot,
    sinks: Vec<capstan_logs::sinks::SinkSnapshot>,
    partitions: Vec<capstan_model::LogPartition>,
}

/// `GET /api/v1/logs/stream?q=&tail=N`: Server-Sent Events (`event: line`, `id: <seq>`), the
/// last `tail` matching lines first (default 10), then every new matching line as it is
/// stored: no gap and no repeat between the two.
#[utoipa::path(
    get,
    path = "/api/v1/logs/stream",
    tag = "logs",
    params(
        ("q" = Option<String>, Query, description = "the log query"),
        ("tail" = Option<u32>, Query, description = "start from the last N matching lines")
    ),
    responses(
        (status = 200, description = "Server-Sent Events: `event: line`, `id: <seq>`, data a LogLine", content_type = "text/event-stream", body = capstan_model::LogLine)
    )
)]
pub(crate) async fn stream(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    params::only(&pairs, &["q", "tail"])?;
    let logs = logs(&state)?.clone();
    let tail = match last(&pairs, "tail") {
        Some("0") => 0,
        _ => number(&pairs, "tail", 10, 10_000)?,
    };
    let query = Arc::new(compile(&logs.store, &pairs)?);
    let tail_slot = Arc::clone(&logs.tails).try_acquire_owned().map_err(|_| {
        ApiError::new(
            Code::TooManyRequests,
            format!("{MAX_TAILS} live tails are open; close one, or search instead of following"),
        )
        .retry_after(5)
    })?;
    let (tx, rx) = mpsc::channel(1024);
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let _tail_slot = tail_slot;
        let mut committed = logs.committed.clone();
        // where the backlog ends: lines after it come live
        let mut last_seq = *committed.borrow_and_update();
        if tail > 0 {
            let store = Arc::clone(&logs.store);
            let q = Arc::clone(&query);
            let upto = last_seq;
            let backlog = tokio::task::spawn_blocking(move || {
                store.search(&q, None, None, tail).map(|(mut lines, _)| {
                    lines.retain(|l| l.seq <= upto);
                    lines.reverse();
                    lines
                })
            })
            .await;
            if let Ok(Ok(lines)) = backlog {
                for l in lines {
                    if send(&tx, &l).await.is_err() {
                        return;
                    }
                }
            }
        }
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tx.closed() => return,
                changed = committed.changed() => if changed.is_err() { return },
            }
            let store = Arc::clone(&logs.store);
            let q = Arc::clone(&query);
            let after = last_seq;
            let Ok(Ok(lines)) =
                tokio::task::spawn_blocking(move || store.after(after, &q, 10_000)).await
            else {
                continue;
            };
            for l in lines {
                last_seq = last_seq.max(l.seq);
                if send(&tx, &l).await.is_err() {
                    return;
                }
            }
            // a long burst: catch up before waiting again
            let now = *committed.borrow();
            if now > last_seq {
                committed.mark_changed();
            }
        }
    });
    Ok(Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

async fn send(
    tx: &mpsc::Sender<Result<SseEvent, Infallible>>,
    line: &capstan_model::LogLine,
) -> Result<(), ()> {
    let Ok(frame) = SseEvent::default()
        .id(line.seq.to_string())
        .event("line")
        .json_data(line)
    else {
        return Ok(());
    };
    tx.send(Ok(frame)).await.map_err(drop)
}
