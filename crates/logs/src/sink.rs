//! Sinks: each ships the stored lines that match its query, in store order, with a cursor of
//! its own (`<data>/logs/sinks/<name>.cursor`, the last sequence number delivered). The cursor
//! moves only after a batch is delivered, so delivery is at-least-once across restarts and
//! outages: a crash between the two sends the batch again, never loses it. A failed delivery is
//! retried with exponential backoff and jitter (up to 30 s), and does not hold back other
//! sinks or collection.
//!
//! This version ships to an NDJSON file (`type = "file"`); the network sinks build on the same
//! runner.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use capstan_model::LogLine;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::store::Store;

/// Lines read from the store per batch.
const BATCH: usize = 5_000;
/// The longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where a sink ships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Appends one JSON object per line to a file, synced before the cursor moves.
    File { path: PathBuf },
}

/// One configured sink.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub name: String,
    pub target: Target,
    /// Only lines matching this query (the log query language); empty: every line.
    pub query: String,
}

/// A sink's counters.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub shipped: AtomicU64,
    pub batches: AtomicU64,
    pub failures: AtomicU64,
    pub cursor: AtomicU64,
}

/// The counters as numbers.
#[derive(Debug, Clone, Serialize)]
pub struct SinkSnapshot {
    pub name: String,
    pub shipped: u64,
    pub batches: u64,
    pub failures: u64,
    pub cursor: u64,
}

impl SinkStats {
    pub fn snapshot(&self, name: &str) -> SinkSnapshot {
        SinkSnapshot {
            name: name.to_owned(),
            shipped: self.shipped.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            cursor: self.cursor.load(Ordering::Relaxed),
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
    let query: Arc<dyn tantivy::query::Query> = match store.compile(&config.query) {
        Ok(q) => Arc::from(q),
        Err(e) => {
            warn!(sink = %config.name, error = %e, "the sink's query does not parse; the sink is off");
            return;
        }
    };
    let cursor_path = cursors.join(format!("{}.cursor", config.name));
    let mut cursor = read_cursor(&cursor_path);
    stats.cursor.store(cursor, Ordering::Relaxed);
    info!(sink = %config.name, cursor, "sink resumes");
    let mut backoff = Duration::from_millis(200);
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let s = Arc::clone(&store);
        let q = Arc::clone(&query);
        let after = cursor;
        let Ok(Ok(lines)) = tokio::task::spawn_blocking(move || s.after(after, &*q, BATCH)).await
        else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        if lines.is_empty() {
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = committed.changed() => if changed.is_err() { return },
            }
            continue;
        }
        let last = lines.last().map_or(cursor, |l| l.seq);
        let target = config.target.clone();
        let n = lines.len() as u64;
        let delivered = tokio::task::spawn_blocking(move || deliver(&target, &lines)).await;
        match delivered {
            Ok(Ok(())) => {
                if let Err(e) = write_cursor(&cursor_path, last) {
                    warn!(sink = %config.name, error = %e, "cannot save the sink's cursor; the batch may be sent again");
                }
                cursor = last;
                backoff = Duration::from_millis(200);
                stats.cursor.store(cursor, Ordering::Relaxed);
                stats.shipped.fetch_add(n, Ordering::Relaxed);
                stats.batches.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                warn!(sink = %config.name, error = %e, retry_in = ?backoff, "sink delivery failed");
                let jitter =
                    Duration::from_millis(u64::from(std::process::id() % 97) + (cursor % 101));
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff + jitter) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => warn!(sink = %config.name, error = %e, "sink task failed"),
        }
    }
}

fn deliver(target: &Target, lines: &[LogLine]) -> std::io::Result<()> {
    match target {
        Target::File { path } => {
            let mut out = Vec::with_capacity(lines.len() * 256);
            for l in lines {
                serde_json::to_writer(&mut out, l).map_err(std::io::Error::other)?;
                out.push(b'\n');
            }
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            f.write_all(&out)?;
            f.sync_data()
        }
    }
}

fn read_cursor(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Replaces the cursor file atomically (write, sync, rename).
fn write_cursor(path: &Path, cursor: u64) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("cursor.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        write!(f, "{cursor}")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
