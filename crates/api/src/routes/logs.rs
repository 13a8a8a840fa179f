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

/// A line's position, as `before` or `after` takes it.
fn seq(pairs: &Pairs, name: &str) -> Result<Option<u64>, ApiError> {
    last(pairs, name)
        .map(|v| {
            // positions are int64 in the API's document: nothing past i64::MAX is one
            v.parse::<i64>()
                .ok()
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| {
                    ApiError::bad_param(
                        name,
                        format!(
                            "{v:?} is not a line's position (the seq of a line, or a page's next)"
                        ),
                    )
                })
        })
        .transpose()
}

/// Where a page starts: `before` or `after` a line's position, or the newest lines.
fn cursor(pairs: &Pairs) -> Result<capstan_logs::store::Cursor, ApiError> {
    use capstan_logs::store::Cursor;
    match (seq(pairs, "before")?, seq(pairs, "after")?) {
        (Some(_), Some(_)) => Err(ApiError::bad_param(
            "after",
            "give before (older lines, newest first) or after (newer lines, oldest first), not both",
        )),
        (Some(before), None) => Ok(Cursor::Before(before)),
        (None, Some(after)) => Ok(Cursor::After(after)),
        (None, None) => Ok(Cursor::Newest),
    }
}

/// `GET /api/v1/logs?q=QUERY&since=&until=&limit=[&before=|&after=]`: a page of matching
/// lines, newest first (oldest first `after` a position), and the next page's cursor.
#[utoipa::path(
    get,
    path = "/api/v1/logs",
    tag = "logs",
    params(
        ("q" = Option<String>, Query, description = "the log query: terms, quoted phrases, field:value, AND/OR/NOT"),
        ("since" = Option<String>, Query, description = "RFC 3339 time or an age"),
        ("until" = Option<String>, Query, description = "RFC 3339 time or an age"),
        ("limit" = Option<u32>, Query, description = "most lines (1 to 10000, default 100)"),
        ("before" = Option<u64>, Query, description = "lines stored before this position (a line's seq, or a page's next), newest first"),
        ("after" = Option<u64>, Query, description = "lines stored after this position, oldest first")
    ),
    responses(
        (status = 200, description = "matching lines, newest first (oldest first with after), their total and the next page's cursor", body = LogPage),
        (status = 400, description = "a bad query (the message gives the position), or both before and after", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn search(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<LogPage>, ApiError> {
    params::only(&pairs, &["q", "since", "until", "limit", "before", "after"])?;
    let logs = logs(&state)?;
    let span = capstan_logs::store::Span {
        since: time(&pairs, "since")?,
        until: time(&pairs, "until")?,
        upto: None,
    };
    let limit = number(&pairs, "limit", 100, 10_000)?;
    let cursor = cursor(&pairs)?;
    let query = compile(&logs.store, &pairs)?;
    let store = Arc::clone(&logs.store);
    let (mut lines, total) = blocking(move || {
        // one more than asked: whether there is a next page
        let lines = store.page(&query, span, cursor, limit + 1)?;
        Ok((lines, store.count(&query, span)?))
    })
    .await?;
    let next = (lines.len() > limit).then(|| {
        lines.truncate(limit);
        lines.last().map_or(0, |l| l.seq)
    });
    Ok(Json(LogPage { lines, total, next }))
}

/// Lines an export reads at a time: its memory is a few of these, whatever it exports.
const EXPORT_BATCH: usize = 1_000;

/// `GET /api/v1/logs/export?q=&since=&until=&order=asc|desc[&after=|&before=]`: every matching
/// line stored when the export began, as NDJSON (one LogLine per line), oldest first unless
/// `order=desc`. Read in batches behind a bounded queue: any number of lines in constant
/// memory, at the pace the client reads.
#[utoipa::path(
    get,
    path = "/api/v1/logs/export",
    tag = "logs",
    params(
        ("q" = Option<String>, Query, description = "the log query"),
        ("since" = Option<String>, Query, description = "RFC 3339 time or an age"),
        ("until" = Option<String>, Query, description = "RFC 3339 time or an age"),
        ("order" = Option<String>, Query, description = "asc (oldest first, the default) or desc (newest first)"),
        ("after" = Option<u64>, Query, description = "resume an oldest-first export after this line's seq"),
        ("before" = Option<u64>, Query, description = "resume a newest-first export before this line's seq")
    ),
    responses(
        (status = 200, description = "every matching line, one LogLine JSON per line; a read that fails midway ends the body early (resume after the last seq received)", content_type = "application/x-ndjson", body = capstan_model::LogLine),
        (status = 400, description = "a bad query, a bad order, or a cursor against the order", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn export(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    use capstan_logs::store::Cursor;
    params::only(&pairs, &["q", "since", "until", "order", "after", "before"])?;
    let logs = logs(&state)?;
    let newest_first = match last(&pairs, "order") {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(ApiError::bad_param(
                "order",
                format!("{other:?} is neither asc (oldest first) nor desc (newest first)"),
            ));
        }
    };
    let mut cursor = match (cursor(&pairs)?, newest_first) {
        (Cursor::Newest, false) => Cursor::After(0),
        (c @ (Cursor::Newest | Cursor::Before(_)), true) | (c @ Cursor::After(_), false) => c,
        (Cursor::Before(_), false) => {
            return Err(ApiError::bad_param(
                "before",
                "resumes a newest-first export: add order=desc, or resume with after",
            ));
        }
        (Cursor::After(_), true) => {
            return Err(ApiError::bad_param(
                "after",
                "resumes an oldest-first export: drop order=desc, or resume with before",
            ));
        }
    };
    let span = capstan_logs::store::Span {
        since: time(&pairs, "since")?,
        until: time(&pairs, "until")?,
        // what was stored when the export began: a busy service does not make it endless
        upto: Some(*logs.committed.borrow()),
    };
    let query = compile(&logs.store, &pairs)?;
    let store = Arc::clone(&logs.store);
    let shutdown = state.shutdown.clone();
    // two batches ahead of the client at most
    let (tx, rx) = mpsc::channel::<Result<axum::body::Bytes, std::io::Error>>(2);
    // one blocking task for the whole export, which waits for the client between batches:
    // one thread's allocations, reused batch after batch (a pool thread per batch spreads
    // them over the allocator's per-thread arenas, and the memory grows with the export)
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let lines = match store.page(&query, span, cursor, EXPORT_BATCH) {
                Ok(lines) => lines,
                Err(e) => {
                    tracing::error!(error = %e, "log store failed during an export; ending it early");
                    let _ = tx.blocking_send(Err(std::io::Error::other("log store failed")));
                    return;
                }
            };
            out.clear();
            for line in &lines {
                // a LogLine always serialises
                if serde_json::to_writer(&mut out, line).is_ok() {
                    out.push(b'\n');
                }
            }
            if !lines.is_empty()
                && tx
                    .blocking_send(Ok(axum::body::Bytes::copy_from_slice(&out)))
                    .is_err()
            {
                return; // the client went away
            }
            match lines.last() {
                Some(last) if lines.len() == EXPORT_BATCH => {
                    cursor = if newest_first {
                        Cursor::Before(last.seq)
                    } else {
                        Cursor::After(last.seq)
                    };
                }
                _ => return,
            }
        }
    });
    let body = axum::body::Body::from_stream(ReceiverStream::new(rx));
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        body,
    )
        .into_response())
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
