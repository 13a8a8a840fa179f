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
                .read(true)
                .append(true)
                .open(path)?;
            drop_torn_tail(&mut f)?;
            f.write_all(&out)?;
            f.sync_data()
        }
    }
}

/// A crash in the middle of a write leaves a last line without its newline; that batch was not
/// delivered (the cursor did not move) and comes again whole, so the torn part goes.
fn drop_torn_tail(f: &mut std::fs::File) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut keep = len;
    let mut chunk = vec![0_u8; 64 * 1024];
    loop {
        let start = keep.saturating_sub(chunk.len() as u64);
        let n = (keep - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut chunk[..n])?;
        if let Some(pos) = chunk[..n].iter().rposition(|b| *b == b'\n') {
            keep = start + pos as u64 + 1;
            break;
        }
        if start == 0 {
            keep = 0;
            break;
        }
        keep = start;
    }
    if keep < len {
        warn!(
            dropped = len - keep,
            "a file sink's last line was torn by a crash; it is written again"
        );
        f.set_len(keep)?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_dropped_before_the_batch_comes_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ndjson");
        std::fs::write(&path, "{\"a\":1}\n{\"a\":2}\n{\"a\":").unwrap();
        let line = LogLine {
            seq: 3,
            raw: "three".into(),
            ..LogLine::default()
        };
        deliver(&Target::File { path: path.clone() }, &[line]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[2].contains("\"three\""));
        assert!(text.ends_with('\n'));
        // a cursor survives a reopen
        write_cursor(&dir.path().join("s.cursor"), 42).unwrap();
        assert_eq!(read_cursor(&dir.path().join("s.cursor")), 42);
        assert_eq!(read_cursor(&dir.path().join("missing.cursor")), 0);
    }
}
