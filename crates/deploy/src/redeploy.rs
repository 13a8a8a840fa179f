//! The app's running release deployed again with one service's image changed, pinned: what an
//! automatic update and a pipeline's build both end in, through the same health-gated
//! rollout (and the same deploy policy) as any deploy.

use capstan_model::{Report, RolloutLock, RolloutLocks};
use capstan_store::Store;

use crate::{DeployRequest, Deployer, running_release};

/// One image change to deploy.
#[derive(Debug, Clone)]
pub struct ImageChange {
    pub app: String,
    pub service: String,
    /// The image the service runs from now on (`repo:tag@digest`).
    pub image: String,
    /// Pull it first (an update found in a registry; a build's image is already here).
    pub pull: bool,
    /// Where the change came from, kept in the ledger (`{"auto_update": {…}}`,
    /// `{"build": {…}}`); its entry gets `from`, the image the service ran before.
    pub source: serde_json::Value,
    /// Who the ledger names.
    pub actor: String,
    /// Deploy it as another app (a preview: `<app>-<branch>`), with the app's configs and
    /// secrets and no published port (the app's own are the app's).
    pub as_app: Option<String>,
}

/// Why a change was not deployed.
#[derive(Debug, thiserror::Error)]
pub enum RedeployError {
    #[error("no release of {0} to deploy again (deployed by capstan?)")]
    NoRelease(String),
    #[error("the running release of {app} has no service {service}")]
    NoService { app: String, service: String },
    #[error("cannot read the app's release: {0}")]
    Read(String),
    /// The registry or the network, not the image: worth trying again.
    #[error("cannot pull {image}: {error}")]
    Pull { image: String, error: String },
    #[error("cannot deploy the app again by itself: {0}")]
    Files(String),
    /// The deploy policy refuses it as it stands now.
    #[error("{0}")]
    Refused(String),
    #[error("cannot read the deploy policy: {0}")]
    Policy(String),
    #[error("cannot record the release: {0}")]
    Release(String),
}

impl Deployer {
    /// Deploys the app's running release again with `change`'s service on `change.image`;
    /// `Ok(None)` when it runs that image already. The policy is asked as it stands now: an
    /// allowance taken back stops the change too.
    ///
    /// # Errors
    /// A [`RedeployError`] saying what stopped it before a release was made.
    pub async fn redeploy_image(
        &self,
        store: &Store,
        change: &ImageChange,
    ) -> Result<Option<(Report, String)>, RedeployError> {
        let app = &change.app;
        let (mut project, ran) = match running_release(store, app).await {
            Ok(Some(p)) => p,
            Ok(None) => return Err(RedeployError::NoRelease(app.clone())),
            Err(e) => return Err(RedeployError::Read(e.to_string())),
        };
        let Some(service) = project.services.get_mut(&change.service) else {
            return Err(RedeployError::NoService {
                app: app.clone(),
                service: change.service.clone(),
            });
        };
        if change.as_app.is_none() && service.image.as_deref() == Some(change.image.as_str()) {
            return Ok(None);
        }
        let was = service.image.clone().unwrap_or_default();
        service.image = Some(change.image.clone());
        if change.pull
            && let Err(e) = self.target.pull(&change.image).await
        {
            return Err(RedeployError::Pull {
                image: change.image.clone(),
                error: e.to_string(),
            });
        }
        let files = self
            .stored_files_at(&project, &ran)
            .await
            .map_err(|e| RedeployError::Files(e.to_string()))?;
        if let Some(other) = &change.as_app {
            project.name = Some(other.clone());
            for s in project.services.values_mut() {
                s.ports.clear();
            }
        }
        // the ledger says what it ran before, in the source's own entry
        let mut source = change.source.clone();
        if let Some(entry) = source
            .as_object_mut()
            .and_then(|m| m.values_mut().next())
            .and_then(serde_json::Value::as_object_mut)
        {
            entry.insert("from".into(), was.clone().into());
        }
        let req = DeployRequest {
            project,
            files,
            source,
            pull: false,
        };
        let data_dir = self.apps_dir.parent().unwrap_or(&self.apps_dir);
        match crate::policy::check(store, data_dir, &req, crate::policy::Deployer::Admin).await {
            Ok(found) if found.is_empty() => {}
            Ok(found) => return Err(RedeployError::Refused(crate::policy::refusal(app, &found))),
            Err(e) => return Err(RedeployError::Policy(e.to_string())),
        }
        let report = self
            .release(store, &change.actor, &req, None)
            .await
            .map_err(|e| RedeployError::Release(e.to_string()))?;
        Ok(Some((report, was)))
    }
}

/// How often a wait for an app's rollout lock looks again.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// The app's rollout lock, once whoever holds it (a deploy, a rollback, a pass of
/// self-healing, a build's deploy) lets go; `None` after `wait`.
pub async fn hold_when_free(
    locks: &RolloutLocks,
    app: &str,
    wait: std::time::Duration,
) -> Option<RolloutLock> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut said = false;
    loop {
        if let Some(lock) = locks.hold(app) {
            return Some(lock);
        }
        if !said {
            tracing::info!(app, "the app is being deployed or healed; waiting for it");
            said = true;
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(LOCK_POLL).await;
    }
}
