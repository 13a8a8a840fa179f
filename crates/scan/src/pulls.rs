//! Scanning on pull (`[images] scan_on_pull = true`): every image the engine pulls is scanned
//! at once, so that its layers are in the cache before anyone asks, and what it carries is
//! journaled as a `capstan` event `image_scanned` (counts by severity), which notification
//! channels and alert rules can use.

use std::collections::BTreeMap;

use capstan_model::{CapstanAction, Event, Severity};
use capstan_store::Store;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Scanner;

/// Scans what the journal sees pulled until `shutdown`.
pub async fn scan_pulls(
    scanner: Scanner,
    store: Store,
    live: broadcast::Sender<Event>,
    shutdown: CancellationToken,
) {
    let mut events = live.subscribe();
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => return,
            e = events.recv() => e,
        };
        let image = match event {
            Ok(e) if e.kind == "image" && e.action == "pull" && !e.inferred => e.actor,
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!(
                    missed = n,
                    "scan on pull fell behind the journal; some pulls are not scanned"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        match scanner.scan(&image, false).await {
            Ok(report) => {
                let mut attributes = BTreeMap::from([
                    ("image".to_owned(), image.clone()),
                    ("id".to_owned(), report.id.clone()),
                    ("packages".to_owned(), report.packages.to_string()),
                    ("findings".to_owned(), report.findings.len().to_string()),
                    (
                        "os".to_owned(),
                        report.os.clone().unwrap_or_else(|| "unknown".into()),
                    ),
                ]);
                let mut counts: BTreeMap<Severity, usize> = BTreeMap::new();
                for f in &report.findings {
                    *counts.entry(f.severity).or_default() += 1;
                }
                for (severity, n) in counts {
                    attributes.insert(severity.as_str().to_owned(), n.to_string());
                }
                if let Some(worst) = report.worst() {
                    attributes.insert("worst".into(), worst.as_str().to_owned());
                }
                info!(%image, findings = report.findings.len(), "pulled image scanned");
                store
                    .record(&live, CapstanAction::ImageScanned, image, attributes)
                    .await;
            }
            Err(e) => warn!(%image, error = %e, "cannot scan a pulled image"),
        }
    }
}
