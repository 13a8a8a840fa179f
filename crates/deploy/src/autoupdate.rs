//! Automatic updates (label `io.capstan.update.auto=true`): the watcher hands over an update it
//! found; the service's image is pulled by digest and the app's running release is deployed
//! again with only that service's image changed, pinned (`repo:tag@digest`), through the same
//! health-gated rollout as any deploy, where the app runs (the local engine, or the Swarm or
//! Kubernetes target its release names, whose nodes pull the digest themselves). A rollout that fails rolls back by itself: the service
//! keeps its previous digest, and the journal's `update_failed` event marks the candidate bad,
//! so the watcher does not offer it again (a newer one it does). Success is journaled as
//! `update_applied`. Both reach the notification channels.

use std::collections::BTreeMap;

use capstan_model::{AutoUpdate, CapstanAction, Event, Outcome, RolloutLock, RolloutLocks};
use capstan_store::Store;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Deployer;

/// How long an update waits for its app's rollout lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_mins(10);

/// The ledger's actor for releases made by automatic updates.
pub const ACTOR: &str = "auto-update";

/// Applies the updates the watcher hands over, one at a time.
pub struct AutoUpdater {
    deployer: Deployer,
    /// The deployer of each target of `[[targets]]`: an app deployed there is updated there.
    places: BTreeMap<String, Deployer>,
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
            places: BTreeMap::new(),
            store,
            locks,
            live,
        }
    }

    /// Updates the apps deployed to the targets of `places` through their deployers.
    #[must_use]
    pub fn with_places(mut self, places: BTreeMap<String, Deployer>) -> Self {
        self.places = places;
        self
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

    /// The app's rollout lock once it is free: an update found meanwhile is applied after
    /// the deploy that holds it, not an hour later at the next check. `None` at shutdown, or
    /// after [`LOCK_WAIT`].
    async fn lock(&self, app: &str, shutdown: &CancellationToken) -> Option<RolloutLock> {
        tokio::select! {
            () = shutdown.cancelled() => None,
            held = crate::hold_when_free(&self.locks, app, LOCK_WAIT) => {
                if held.is_none() {
                    warn!(app, "the app stayed busy; the update is tried at the next check");
                }
                held
            }
        }
    }

    async fn apply(&self, u: AutoUpdate, shutdown: &CancellationToken) {
        let Some(_lock) = self.lock(&u.app, shutdown).await else {
            return;
        };
        // where the app runs now: its running release says
        let deployer = match self.store.current_release(u.app.clone()).await {
            Ok(Some(row)) => match crate::target_of(&row) {
                None => &self.deployer,
                Some(target) => match self.places.get(&target) {
                    Some(d) => d,
                    None => {
                        warn!(app = %u.app, target, "the app runs on a target capstan.toml no longer names; its update is not applied");
                        return;
                    }
                },
            },
            _ => &self.deployer,
        };
        let change = crate::ImageChange {
            app: u.app.clone(),
            service: u.service.clone(),
            image: u.image.clone(),
            pull: true,
            source: serde_json::json!({ "auto_update": {
                "service": u.service,
                "reference": u.reference,
                "to": u.image,
                "reason": u.reason,
            }}),
            actor: ACTOR.to_owned(),
            as_app: None,
        };
        info!(app = %u.app, service = %u.service, to = %u.image, "applying an image update");
        let report = match deployer.redeploy_image(&self.store, &change).await {
            Ok(Some((report, _was))) => report,
            Ok(None) => return,
            Err(e @ crate::RedeployError::Pull { .. }) => {
                // the registry or the network, not the candidate: tried again next cycle
                warn!(error = %e, "tried again next cycle");
                return;
            }
            Err(e) => {
                warn!(app = %u.app, error = %e, "image update not applied");
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
