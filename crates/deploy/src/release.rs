//! Releases: the ledger row written before a deploy and finished after it, and the per-app lock
//! that lets one deploy, rollback, down or automatic update run at a time. The API's routes and
//! the auto-updater go through here alike.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use capstan_compose::Project;
use capstan_store::{ReleaseRow, Store};

use crate::{DeployRequest, Deployer, Outcome, Progress, Report};

/// Apps being deployed, rolled back or taken down right now (self-healing leaves them alone).
pub type AppLocks = Arc<Mutex<BTreeSet<String>>>;

/// One app's lock, released when dropped.
#[derive(Debug)]
pub struct AppLock(AppLocks, String);

impl Drop for AppLock {
    fn drop(&mut self) {
        if let Ok(mut held) = self.0.lock() {
            held.remove(&self.1);
        }
    }
}

/// Takes `app`'s lock; `None` while someone else holds it.
pub fn hold(locks: &AppLocks, app: &str) -> Option<AppLock> {
    let mut held = locks.lock().ok()?;
    held.insert(app.to_owned())
        .then(|| AppLock(Arc::clone(locks), app.to_owned()))
}

/// Why a release could not be run (its deploy's own failure is in the [`Report`]).
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error(transparent)]
    Store(#[from] capstan_store::Error),
    /// The stored model of the running release does not parse.
    #[error("the stored release of {0} does not parse; see the daemon's log")]
    Model(String),
}

/// A ledger row for a release starting now (the number is assigned when it is stored).
pub fn new_release(
    app: &str,
    actor: &str,
    source: String,
    model: String,
    result: &str,
) -> ReleaseRow {
    ReleaseRow {
        app: app.to_owned(),
        number: 0,
        created_nano: chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
        actor: actor.to_owned(),
        source,
        model,
        images: "{}".into(),
        result: result.to_owned(),
        detail: "{}".into(),
    }
}

/// The model of the release that runs now, if any.
///
/// # Errors
/// The store's, or [`ReleaseError::Model`].
pub async fn running_model(store: &Store, app: &str) -> Result<Option<Project>, ReleaseError> {
    let Some(row) = store.current_release(app.to_owned()).await? else {
        return Ok(None);
    };
    serde_json::from_str(&row.model).map(Some).map_err(|e| {
        tracing::error!(app, error = %e, "stored release model does not parse");
        ReleaseError::Model(app.to_owned())
    })
}

impl Deployer {
    /// Records a release by `actor`, deploys it, records how it ended (and the image ids each
    /// service ran). The caller holds the app's lock.
    ///
    /// # Errors
    /// The ledger cannot be read or written.
    pub async fn release(
        &self,
        store: &Store,
        actor: &str,
        req: &DeployRequest,
        progress: Option<tokio::sync::mpsc::Sender<Progress>>,
    ) -> Result<Report, ReleaseError> {
        let app = req.project.name.clone().unwrap_or_default();
        let previous = running_model(store, &app).await?;
        let model = serde_json::to_string(&req.project).unwrap_or_default();
        let number = store
            .begin_release(new_release(
                &app,
                actor,
                req.source.to_string(),
                model,
                "running",
            ))
            .await?;
        let report = Deployer {
            progress,
            ..self.clone()
        }
        .deploy(req, previous.as_ref(), number)
        .await;
        let mut images = BTreeMap::new();
        for (name, s) in &req.project.services {
            if let Some(image) = &s.image
                && let Ok(Some(found)) = self.engine.inspect_image(image).await
            {
                images.insert(name.clone(), found.id);
            }
        }
        let result = match report.outcome {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled_back",
        };
        if let (Outcome::RolledBack | Outcome::Failed, Some(live)) = (&report.outcome, &self.events)
        {
            // alert rules (`event = "rolled_back"`) and notification channels hear of it
            let attributes = BTreeMap::from([
                ("app".to_owned(), app.clone()),
                ("release".to_owned(), number.to_string()),
                ("actor".to_owned(), actor.to_owned()),
                ("result".to_owned(), result.to_owned()),
            ]);
            let action = if result == "rolled_back" {
                "release_rolled_back"
            } else {
                "release_failed"
            };
            store.record(live, action, app.clone(), attributes).await;
        }
        store
            .finish_release(
                app,
                number,
                result.into(),
                serde_json::to_string(&images).unwrap_or_default(),
                serde_json::to_string(&report).unwrap_or_default(),
            )
            .await?;
        Ok(report)
    }
}
