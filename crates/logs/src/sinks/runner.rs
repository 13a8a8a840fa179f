//! The loop every sink runs: read the next batch after its cursor, deliver it (again and
//! again, only what still fails), move the cursor, repeat.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_model::LogLine;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use capstan_outbound::{Backoff, read_cursor, sleep, write_cursor};

use super::config::{Kind, SinkConfig};
use super::{Error, clickhouse, elasticsearch, file, loki, webhook};
use crate::store::Store;

/// The first wait after a failure; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between two tries (unless `Retry-After` asks for more).
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What became of a batch that the server took.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Positions in the batch of lines to send again (the server could not take them now).
    pub retry: Vec<usize>,
    /// Lines the server refused for good.
    pub rejected: u64,
}

impl Delivery {
    /// Every line delivered.
    pub fn all() -> Self {
        Self::default()
    }
}

/// A sink's counters.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub shipped: AtomicU64,
    pub batches: AtomicU64,
    pub failures: AtomicU64,
    /// Lines sent again after the server took the rest of their batch.
    pub retried: AtomicU64,
    pub rejected: AtomicU64,
    pub cursor: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// The counters as numbers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SinkSnapshot {
    pub name: String,
    pub shipped: u64,
    pub batches: u64,
    pub failures: u64,
    pub retried: u64,
    pub rejected: u64,
    pub cursor: u64,
    /// The newest failure, cleared by the next delivered batch.
    pub last_error: Option<String>,
}

impl SinkStats {
    pub fn snapshot(&self, name: &str) -> SinkSnapshot {
        SinkSnapshot {
            name: name.to_owned(),
            shipped: self.shipped.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            cursor: self.cursor.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .map(|e| e.clone())
                .unwrap_or_default(),
        }
    }

    fn set_error(&self, e: Option<String>) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = e;
        }
    }
}

enum Sink {
    File(file::Sink),
    Clickhouse(clickhouse::Sink),
    Elasticsearch(elasticsearch::Sink),
    Loki(loki::Sink),
    Http(webhook::Sink),
}

impl Sink {
    fn new(config: &SinkConfig) -> Result<Self, Error> {
        let tls = config.tls.as_ref();
        Ok(match &config.kind {
            Kind::File(c) => Self::File(file::Sink::new(c)),
            Kind::Clickhouse(c) => Self::Clickhouse(clickhouse::Sink::new(c, tls)?),
            Kind::Elasticsearch(c) => Self::Elasticsearch(elasticsearch::Sink::new(c, tls)?),
            Kind::Loki(c) => Self::Loki(loki::Sink::new(c, tls)?),
            Kind::Http(c) => Self::Http(webhook::Sink::new(c, tls)?),
        })
    }

    async fn deliver(&mut self, lines: &[LogLine]) -> Result<Delivery, Error> {
        match self {
            Self::File(s) => s.deliver(lines).await,
            Self::Clickhouse(s) => s.deliver(lines).await,
            Self::Elasticsearch(s) => s.deliver(lines).await,
            Self::Loki(s) => s.deliver(lines).await,
            Self::Http(s) => s.deliver(lines).await,
        }
    }
}

/// Runs one sink until `shutdown`.
pub async fn run(
    config: SinkConfig,
    store: Arc<Store>,
    cursors: PathBuf,
    mut committed: watch::Receiver<u64>,
    stats: Arc<SinkStats>,
    shutdown: CancellationToken,
) {
    let name = config.name.clone();
    let query = match store.compile(&config.query) {
        Ok(q) => Arc::new(q),
        Err(e) => {
            error!(sink = %name, error = %e, "the sink's query does not parse; the sink is off");
            stats.set_error(Some(format!("query: {e}")));
            return;
        }
    };
    let mut sink = match Sink::new(&config) {
        Ok(s) => s,
        Err(e) => {
            error!(sink = %name, error = %e, "the sink cannot start; it is off");
            stats.set_error(Some(e.to_string()));
            return;
        }
    };
    let cursor_path = cursors.join(format!("{name}.cursor"));
    let mut cursor = read_cursor(&cursor_path).unwrap_or(0);
    stats.cursor.store(cursor, Ordering::Relaxed);
    info!(sink = %name, kind = config.kind_name(), cursor, "sink resumes");
    let max_lines = config.batch_max_lines();
    let linger = config.batch_timeout();
    // shrinks when the server says 413, grows back after each delivered batch
    let mut limit = max_lines;
    let mut backoff = Backoff::new(&name, MIN_BACKOFF, MAX_BACKOFF);
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let s = Arc::clone(&store);
        let q = Arc::clone(&query);
        let after = cursor;
        let lines = match tokio::task::spawn_blocking(move || s.after(after, &q, limit)).await {
            Ok(Ok(lines)) => lines,
            Ok(Err(e)) => {
                warn!(sink = %name, error = %e, "cannot read the store for the sink");
                if !sleep(&shutdown, Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
            Err(e) => {
                warn!(sink = %name, error = %e, "the sink's store read failed");
                continue;
            }
        };
        if lines.is_empty() {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = committed.changed() => if changed.is_err() { return },
            }
            continue;
        }
        let full = lines.len() >= limit;
        let mut pending = lines;
        let mut last = pending.last().map_or(cursor, |l| l.seq);
        let mut refused = false;
        loop {
            match sink.deliver(&pending).await {
                Ok(d) => {
                    let retry = d.retry.len() as u64;
                    let done = pending.len() as u64 - retry - d.rejected;
                    stats.shipped.fetch_add(done, Ordering::Relaxed);
                    if d.rejected > 0 {
                        stats.rejected.fetch_add(d.rejected, Ordering::Relaxed);
                        warn!(sink = %name, rejected = d.rejected, "the server refused some lines for good");
                    }
                    if d.retry.is_empty() {
                        break;
                    }
                    stats.retried.fetch_add(retry, Ordering::Relaxed);
                    pending = d
                        .retry
                        .iter()
                        .filter_map(|&i| pending.get(i).cloned())
                        .collect();
                    if !backoff.wait(&shutdown, None).await {
                        return;
                    }
                }
                Err(e) if e.is_permanent() => {
                    stats
                        .rejected
                        .fetch_add(pending.len() as u64, Ordering::Relaxed);
                    stats.set_error(Some(e.to_string()));
                    error!(sink = %name, lines = pending.len(), error = %e, "the server refused a batch for good; it is skipped");
                    refused = true;
                    break;
                }
                Err(e) if e.is_too_large() && pending.len() > 1 => {
                    pending.truncate(pending.len() / 2);
                    last = pending.last().map_or(last, |l| l.seq);
                    limit = pending.len();
                    warn!(sink = %name, lines = limit, "the server wants smaller batches");
                }
                Err(e) => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    stats.set_error(Some(e.to_string()));
                    warn!(sink = %name, error = %e, retry_in = ?backoff.current(), "sink delivery failed");
                    if !backoff.wait(&shutdown, e.retry_after()).await {
                        return;
                    }
                }
            }
        }
        if let Err(e) = write_cursor(&cursor_path, last) {
            warn!(sink = %name, error = %e, "cannot save the sink's cursor; the batch may be sent again");
        }
        cursor = last;
        backoff.reset();
        limit = (limit * 2).min(max_lines);
        if !refused {
            stats.set_error(None);
        }
        stats.cursor.store(cursor, Ordering::Relaxed);
        stats.batches.fetch_add(1, Ordering::Relaxed);
        if !full && !linger.is_zero() && !sleep(&shutdown, linger).await {
            return;
        }
    }
}
