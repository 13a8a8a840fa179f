//! What the log job does beside collecting: dropping partitions past the retention, and
//! journaling what the engine rotated away before it could be read.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use capstan_model::{CapstanAction, Event};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{RotatedAway, Store};

/// How often retention looks.
const RETAIN_EVERY: Duration = Duration::from_mins(5);

/// Drops whole partitions older than `retention` and, oldest first, past `max_bytes`, now and
/// every five minutes until `shutdown`.
pub async fn retain(
    store: Arc<Store>,
    retention: Duration,
    max_bytes: u64,
    shutdown: CancellationToken,
) {
    let age = i64::try_from(retention.as_nanos()).unwrap_or(i64::MAX);
    loop {
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let older_than = Some(now.saturating_sub(age));
        let s = Arc::clone(&store);
        match tokio::task::spawn_blocking(move || s.retain(older_than, Some(max_bytes))).await {
            Ok(Ok(dropped)) if !dropped.is_empty() => {
                info!(?dropped, "log retention dropped partitions");
            }
            Ok(Err(e)) => warn!(error = %e, "log retention failed"),
            _ => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(RETAIN_EVERY) => {}
        }
    }
}

/// Journals each loss the collector reports as a `logs_rotated_away` event, until the
/// collector is gone.
pub async fn journal_losses(
    store: capstan_store::Store,
    live: broadcast::Sender<Event>,
    mut lost: mpsc::Receiver<RotatedAway>,
) {
    while let Some(loss) = lost.recv().await {
        store
            .record(
                &live,
                CapstanAction::LogsRotatedAway,
                loss.container_id.clone(),
                attributes(&loss),
            )
            .await;
    }
}

/// The event's attributes: which container, how many files (counted or estimated) and lines.
fn attributes(loss: &RotatedAway) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("container".to_owned(), loss.container.clone()),
        ("files".to_owned(), loss.files.to_string()),
        (
            "files_counted".to_owned(),
            if loss.files_exact {
                "exactly"
            } else {
                "estimated"
            }
            .to_owned(),
        ),
        (
            "lines_estimated".to_owned(),
            loss.lines_estimated.to_string(),
        ),
    ])
}
