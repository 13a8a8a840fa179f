//! Backups on a schedule: each app whose running release says `x-capstan.backups.every` is
//! backed up when its newest snapshot is that old (or it has none).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::Backups;

/// How often the schedule is looked at.
const TICK: Duration = Duration::from_secs(5);

/// Runs the schedule until `shutdown`.
pub fn start_schedule(backups: Backups, shutdown: CancellationToken) {
    if backups.restic.is_none() {
        return;
    }
    tokio::spawn(async move {
        // when each app was last backed up (or tried): read from the repository once
        let mut last: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(TICK) => {}
            }
            let apps = match backups.store.apps().await {
                Ok(apps) => apps,
                Err(e) => {
                    warn!(error = %e, "cannot read the apps for their backup schedules");
                    continue;
                }
            };
            for row in apps {
                let Ok(Some(project)) =
                    capstan_deploy::running_model(&backups.store, &row.app).await
                else {
                    continue;
                };
                let Some(every) = project
                    .capstan
                    .as_ref()
                    .and_then(|c| c.backups.as_ref())
                    .and_then(|b| b.every.as_deref())
                    .and_then(|e| capstan_model::parse_duration(e).ok())
                else {
                    continue;
                };
                if !last.contains_key(&row.app) {
                    let newest = backups
                        .snapshots(&row.app)
                        .await
                        .ok()
                        .and_then(|s| s.first().map(|s| s.time))
                        .unwrap_or(DateTime::<Utc>::MIN_UTC);
                    last.insert(row.app.clone(), newest);
                }
                let due = last
                    .get(&row.app)
                    .is_none_or(|t| (Utc::now() - *t).to_std().is_ok_and(|age| age >= every));
                if !due {
                    continue;
                }
                // a failure is journaled (and alerted on) by `backup`; tried again next period
                last.insert(row.app.clone(), Utc::now());
                let _ = backups.backup(&project, None, true).await;
            }
        }
    });
}
