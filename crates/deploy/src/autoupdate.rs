//! Automatic updates (label `io.capstan.update.auto=true`): the watcher hands over an update it
//! found; the service's image is pulled by digest and the app's running release is deployed
//! again with only that service's image changed, pinned (`repo:tag@digest`), through the same
//! health-gated rollout as any deploy. A rollout that fails rolls back by itself: the service
//! keeps its previous digest, and the journal's `update_failed` event marks the candidate bad,
//! so the watcher does not offer it again (a newer one it does). Success is journaled as
//! `update_applied`. Both reach the notification channels.

use std::collections::BTreeMap;

use capstan_model::{AutoUpdate, CapstanAction, Event, Outcome, RolloutLock, RolloutLocks};
use capstan_store::Store;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{DeployRequest, Deployer, running_release};

/// How long an update waits for its app's rollout lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_mins(10);
/// How often it looks again.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// The ledger's actor for releases made by automatic updates.
pub const ACTOR: &str = "auto-update";

/// Applies the updates the watcher hands over, one at a time.
pub struct AutoUpdater {
    deployer: Deployer,
    store: Store,
    locks: RolloutLocks,
    live: broadcast::Sender<Event>,
}

impl std::fmt::Debug for AutoUpdater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoUpdater").finish_non_exhaustive()
    }
}

impl AutoUpdater {
    pub fn new(
        deployer: Deployer,
        store: Store,
        locks: RolloutLocks,
        live: broadcast::Sender<Event>,
    ) -> Self {
        Self {
            deployer,
            store,
            locks,
            live,
        }
    }

    /// Applies what arrives on `updates` until `shutdown`.
    pub async fn run(self, mut updates: mpsc::Receiver<AutoUpdate>, shutdown: CancellationToken) {
        loop {
            let update = tokio::select! {
                () = shutdown.cancelled() => return,
                u = updates.recv() => match u {
                    Some(u) => u,
                    None => return,
                },
            };
            self.apply(update, &shutdown).await;
        }
    }

    /// The app's rollout lock, once whoever holds it (a deploy, a rollback, a pass of
    /// self-healing) lets go: an update found meanwhile is applied after it, not an hour
    /// later at the next check. `None` at shutdown, or after [`LOCK_WAIT`].
    async fn lock(&self, app: &str, shutdown: &CancellationToken) -> Option<RolloutLock> {
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        let mut said = false;
        loop {
            if let Some(lock) = self.locks.hold(app) {
                return Some(lock);
            }
            if !said {
                info!(
                    app,
                    "the app is being deployed or healed; the update waits for it"
                );
                said = true;
            }
            if tokio::time::Instant::now() >= deadline {
                warn!(
                    app,
                    "the app stayed busy; the update is tried at the next check"
                );
                return None;
            }
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(LOCK_POLL) => {}
            }
        }
    }

    async fn apply(&self, u: AutoUpdate, shutdown: &CancellationToken) {
        let Some(_lock) = self.lock(&u.app, shutdown).await else {
            return;
        };
        if let Ok(Some(row)) = self.store.current_release(u.app.clone()).await
            && let Some(target) = crate::target_of(&row)
        {
            warn!(app = %u.app, target, "automatic updates apply to apps on the local engine only; deploy the new image with capstan deploy --target");
            return;
        }
        let (mut project, ran) = match running_release(&self.store, &u.app).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                warn!(app = %u.app, "no release of the app to update (deployed by capstan?)");
                return;
            }
            Err(e) => {
                warn!(app = %u.app, error = %e, "cannot read the app's release");
                return;
            }
        };
        let Some(service) = project.services.get_mut(&u.service) else {
            warn!(app = %u.app, service = %u.service, "the running release has no such service");
            return;
        };
        if service.image.as_deref() == Some(u.image.as_str()) {
            return;
        }
        let was = service.image.clone().unwrap_or_default();
        service.image = Some(u.image.clone());
        info!(app = %u.app, service = %u.service, from = %was, to = %u.image, "applying an image update");
        if let Err(e) = self.deployer.target.pull(&u.image).await {
            // the registry or the network, not the candidate: tried again next cycle
            warn!(image = %u.image, error = %e, "cannot pull the update; tried again next cycle");
            return;
        }
        let files = match self.deployer.stored_files_at(&project, &ran).await {
            Ok(f) => f,
            Err(e) => {
                warn!(app = %u.app, error = %e, "cannot redeploy the app by itself");
                return;
            }
        };
        let req = DeployRequest {
            project,
            files,
            source: serde_json::json!({ "auto_update": {
                "service": u.service,
                "reference": u.reference,
                "from": was,
                "to": u.image,
                "reason": u.reason,
            }}),
            pull: false,
        };
        // the policy as it stands now: an allowance taken back stops the app's updates too
        let data_dir = self
            .deployer
            .apps_dir
            .parent()
            .unwrap_or(&self.deployer.apps_dir);
        match crate::policy::check(&self.store, data_dir, &req, crate::policy::Deployer::Admin)
            .await
        {
            Ok(found) if found.is_empty() => {}
            Ok(found) => {
                warn!(app = %u.app, refusal = %crate::policy::refusal(&u.app, &found), "image update not applied");
                return;
            }
            Err(e) => {
                warn!(app = %u.app, error = %e, "cannot read the deploy policy; image update not applied");
                return;
            }
        }
        let report = match self.deployer.release(&self.store, ACTOR, &req, None).await {
            Ok(r) => r,
            Err(e) => {
                warn!(app = %u.app, error = %e, "cannot record the update's release");
                return;
            }
        };
        let mut attributes = BTreeMap::from([
            ("reference".to_owned(), u.reference.clone()),
            ("tag".to_owned(), u.tag.clone()),
            ("digest".to_owned(), u.digest.clone()),
            ("app".to_owned(), u.app.clone()),
            ("service".to_owned(), u.service.clone()),
            ("release".to_owned(), report.release.to_string()),
        ]);
        let action = if report.outcome == Outcome::Succeeded {
            info!(app = %u.app, service = %u.service, release = report.release, "image update applied");
            attributes.insert(
                "reason".into(),
                format!("release {} runs {}", report.release, u.image),
            );
            CapstanAction::UpdateApplied
        } else {
            let error = report.error.clone().unwrap_or_default();
            warn!(app = %u.app, service = %u.service, release = report.release, error = %error, "image update failed; the service keeps its previous image");
            let rolled = if report.outcome == Outcome::RolledBack {
                "rolled back"
            } else {
                "failed"
            };
            attributes.insert(
                "reason".into(),
                format!("release {} {rolled}: {error}", report.release),
            );
            CapstanAction::UpdateFailed
        };
        self.store
            .record(
                &self.live,
                action,
                format!("{}/{}", u.app, u.service),
                attributes,
            )
            .await;
    }
}
