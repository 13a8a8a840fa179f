//! Releases: the ledger row written before a deploy and finished after it, which release a
//! rollback runs again, and taking an app down. The API's routes, the auto-updater and
//! self-healing go through here alike; the caller holds the app's
//! [`capstan_model::RolloutLock`].

use std::collections::BTreeMap;

use capstan_compose::Project;
use capstan_model::{CapstanAction, Outcome, Progress, ReleaseResult, Report};
use capstan_store::{ReleaseRow, Store};
use tokio::sync::mpsc;

use crate::error::ReleaseError;
use crate::{DeployRequest, Deployer};

/// A ledger row for a release starting now (the number is assigned when it is stored).
pub fn new_release(
    app: &str,
    actor: &str,
    source: String,
    model: String,
    result: ReleaseResult,
) -> ReleaseRow {
    ReleaseRow {
        app: app.to_owned(),
        number: 0,
        created_nano: chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(),
        actor: actor.to_owned(),
        source,
        model,
        images: "{}".into(),
        result: result.as_str().to_owned(),
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
    parse_model(&row).map(Some)
}

/// The model of the release that runs now, with the digest of each config and secret it ran
/// (see [`ran_files`]).
///
/// # Errors
/// The store's, or [`ReleaseError::Model`].
pub async fn running_release(
    store: &Store,
    app: &str,
) -> Result<Option<(Project, BTreeMap<String, String>)>, ReleaseError> {
    let Some(row) = store.current_release(app.to_owned()).await? else {
        return Ok(None);
    };
    Ok(Some((parse_model(&row)?, ran_files(&row))))
}

/// The digest of each config and secret release `row` ran (`secrets/NAME` → digest), as its
/// source recorded them: a secret kept sealed is read back at that version.
pub fn ran_files(row: &ReleaseRow) -> BTreeMap<String, String> {
    serde_json::from_str::<serde_json::Value>(&row.source)
        .ok()
        .and_then(|s| serde_json::from_value(s["digests"].clone()).ok())
        .unwrap_or_default()
}

/// The target a release ran on, as its source recorded it: `None` for the local engine.
pub fn target_of(row: &ReleaseRow) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(&row.source)
        .ok()?
        .get("target")?
        .as_str()
        .map(str::to_owned)
}

fn parse_model(row: &ReleaseRow) -> Result<Project, ReleaseError> {
    serde_json::from_str(&row.model).map_err(|e| {
        tracing::error!(app = %row.app, release = row.number, error = %e, "stored release model does not parse");
        ReleaseError::Model(row.app.clone())
    })
}

impl Deployer {
    /// `project` as the ledger keeps it: with a vault, a secret's inline `content` is not
    /// kept there (the vault keeps it sealed, at the version of the digest the release's
    /// source records), so the ledger holds only its name and digest.
    fn ledger_model(&self, project: &Project) -> String {
        if self.secrets.is_none() {
            return serde_json::to_string(project).unwrap_or_default();
        }
        let mut kept = project.clone();
        for secret in kept.secrets.values_mut() {
            secret.content = None;
        }
        serde_json::to_string(&kept).unwrap_or_default()
    }

    /// Seals the inline secret contents that releases recorded by an older capstan keep in
    /// the ledger in plain text: each becomes a sealed version in the vault, and the release
    /// keeps only its name and digest (what a rollback reads back). Returns how many releases
    /// were rewritten; a second run finds none.
    ///
    /// # Errors
    /// The ledger cannot be read or written, or a version cannot be kept.
    pub async fn seal_ledger_secrets(&self, store: &Store) -> Result<usize, ReleaseError> {
        let Some(secrets) = self.secrets.clone() else {
            return Ok(0);
        };
        let mut rewritten = 0;
        for app in store.apps().await? {
            for row in store.releases(app.app.clone()).await? {
                let Ok(mut project) = serde_json::from_str::<Project>(&row.model) else {
                    continue;
                };
                let inline: Vec<(String, String)> = project
                    .secrets
                    .iter_mut()
                    .filter_map(|(name, o)| Some((name.clone(), o.content.take()?)))
                    .collect();
                if inline.is_empty() {
                    continue;
                }
                let mut source: serde_json::Value =
                    serde_json::from_str(&row.source).unwrap_or_else(|_| serde_json::json!({}));
                let mut digests = ran_files(&row);
                for (name, content) in inline {
                    let digest = crate::plan::fnv_hex(content.as_bytes());
                    let (secrets, apps, app, key) = (
                        secrets.clone(),
                        self.apps_dir.clone(),
                        row.app.clone(),
                        name.clone(),
                    );
                    let d = digest.clone();
                    tokio::task::spawn_blocking(move || {
                        secrets.keep_version(&apps, &app, &key, &d, content.as_bytes())
                    })
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|r| r)
                    .map_err(|e| {
                        ReleaseError::Keep(format!("secret {name} of {}: {e}", row.app))
                    })?;
                    digests.insert(format!("secrets/{name}"), digest);
                }
                if let Some(map) = source.as_object_mut() {
                    map.insert("digests".into(), serde_json::json!(digests));
                }
                store
                    .rewrite_release(
                        row.app.clone(),
                        row.number,
                        serde_json::to_string(&project).unwrap_or_default(),
                        source.to_string(),
                    )
                    .await?;
                rewritten += 1;
            }
        }
        Ok(rewritten)
    }

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
        progress: Option<mpsc::Sender<Progress>>,
    ) -> Result<Report, ReleaseError> {
        let app = req.app();
        let previous = running_model(store, &app).await?;
        let model = self.ledger_model(&req.project);
        // the digest of each config and secret it ran: a rollback to it reads those versions
        let mut source = req.source.clone();
        if let Some(map) = source.as_object_mut() {
            // where keys were written served the policy's refusals; the ledger keeps no copy
            map.remove("positions");
            if let Some(place) = &self.place {
                map.insert("target".into(), place.clone().into());
            }
            map.insert(
                "digests".into(),
                serde_json::json!(crate::file_digests(&req.files)),
            );
        }
        if self.target.orchestrates() {
            // a cluster gets configs and secrets as objects of its own; what a rollback from
            // the ledger reads back is kept here, as one engine's deploys keep it
            self.keep_files(req).await?;
        }
        let number = store
            .begin_release(new_release(
                &app,
                actor,
                source.to_string(),
                model,
                ReleaseResult::Running,
            ))
            .await?;
        // a release starts what it deploys: deliberate stops end with it
        let of_app = app.clone();
        store
            .write(move |tx| capstan_store::stopped::start(tx, &of_app, None, None))
            .await?;
        let report = match self.target.run_release(req, number, progress.clone()).await {
            Some(report) => report,
            None => {
                self.with_progress(progress)
                    .deploy(req, previous.as_ref(), number)
                    .await
            }
        };
        // what each service ran; a target that stopped answering leaves it empty
        let images = self
            .target
            .image_ids(&req.project)
            .await
            .unwrap_or_default();
        let result = report.outcome.result();
        if let (Outcome::RolledBack | Outcome::Failed, Some(live)) = (&report.outcome, &self.live) {
            // alert rules (`event = "rolled_back"`) and notification channels hear of it
            let attributes = BTreeMap::from([
                ("app".to_owned(), app.clone()),
                ("release".to_owned(), number.to_string()),
                ("actor".to_owned(), actor.to_owned()),
                ("result".to_owned(), result.as_str().to_owned()),
            ]);
            let action = if result == ReleaseResult::RolledBack {
                CapstanAction::ReleaseRolledBack
            } else {
                CapstanAction::ReleaseFailed
            };
            store.record(live, action, app.clone(), attributes).await;
        }
        store
            .finish_release(
                app,
                number,
                result.as_str().into(),
                serde_json::to_string(&images).unwrap_or_default(),
                serde_json::to_string(&report).unwrap_or_default(),
            )
            .await?;
        Ok(report)
    }

    /// Keeps `req`'s configs (plain, 0600) and secrets (sealed, each version) under the app's
    /// directory, where [`Deployer::stored_files_at`] reads them back.
    async fn keep_files(&self, req: &DeployRequest) -> Result<(), ReleaseError> {
        let app = req.app();
        let dir = self.apps_dir.join(&app);
        let files = req.files.clone();
        let secrets = self.secrets.clone();
        let apps = self.apps_dir.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::os::unix::fs::DirBuilderExt as _;
            for (key, content) in &files {
                let Some((kind, name)) = key.split_once('/') else {
                    continue;
                };
                if name.contains('/') || name.starts_with('.') {
                    continue;
                }
                let bytes = content.bytes().map_err(std::io::Error::other)?;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir.join(kind))?;
                match (kind, &secrets) {
                    ("secrets", Some(store)) => store.keep(&apps, &app, name, &bytes)?,
                    ("configs" | "secrets", _) => {
                        capstan_store::files::replace(&dir.join(kind).join(name), &bytes)?;
                    }
                    _ => {}
                }
            }
            Ok(())
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|e| ReleaseError::Keep(format!("configs and secrets of {}: {e}", req.app())))
    }

    /// The request that runs release `to` of `app` again (default: the last one that succeeded
    /// before the one running), with the image ids it ran where its tags have moved on since,
    /// and the configs and secrets kept for it.
    ///
    /// # Errors
    /// [`ReleaseError::NotFound`] without such a release, [`ReleaseError::Unusable`] when a
    /// file it used is gone, and the store's and the target's.
    pub async fn rollback_request(
        &self,
        store: &Store,
        app: &str,
        to: Option<i64>,
    ) -> Result<DeployRequest, ReleaseError> {
        let releases = store.releases(app.to_owned()).await?;
        let target = match to {
            Some(n) => releases.iter().find(|r| r.number == n).ok_or_else(|| {
                ReleaseError::NotFound(format!(
                    "app {app:?} has no release {n} (see: capstan releases {app})"
                ))
            })?,
            None => releases
                .iter()
                .filter(|r| r.result == ReleaseResult::Succeeded.as_str())
                .nth(1)
                .ok_or_else(|| {
                    ReleaseError::NotFound(format!(
                        "app {app:?} has no earlier successful release to roll back to"
                    ))
                })?,
        };
        self.again(
            target,
            serde_json::json!({ "rollback_to": target.number }),
            |_| Ok(()),
        )
        .await
    }

    /// The request that runs the running release of `app` again with each service of `counts`
    /// at that many replicas (a release of its own, through the same rollout; the ledger's
    /// source says `{"scale": {"web": {"from": 1, "to": 3}}}`), with the image ids it runs.
    ///
    /// # Errors
    /// [`ReleaseError::NotFound`] when the app runs no release, [`ReleaseError::BadScale`] for
    /// a service it does not have or one that runs on every node, and the store's and the
    /// target's.
    pub async fn scale_request(
        &self,
        store: &Store,
        app: &str,
        counts: &BTreeMap<String, u32>,
    ) -> Result<DeployRequest, ReleaseError> {
        let Some(running) = store.current_release(app.to_owned()).await? else {
            return Err(ReleaseError::NotFound(format!(
                "app {app:?} runs no release to scale (capstan apps lists them; deploy it first)"
            )));
        };
        if counts.is_empty() {
            return Err(ReleaseError::BadScale(
                "say which service and how many replicas: capstan scale APP SERVICE=N".into(),
            ));
        }
        let mut changes = serde_json::Map::new();
        self.again(&running, serde_json::Value::Null, |project| {
            for (name, want) in counts {
                let Some(service) = project.services.get_mut(name) else {
                    let have: Vec<&str> = project.services.keys().map(String::as_str).collect();
                    return Err(ReleaseError::BadScale(format!(
                        "app {app} has no service {name:?} (it has: {})",
                        have.join(", ")
                    )));
                };
                if service.is_global() {
                    return Err(ReleaseError::BadScale(format!(
                        "service {name} runs one replica on every node (deploy.mode: global) and cannot be scaled"
                    )));
                }
                let from = crate::plan::replicas_of(service);
                service.scale = None;
                service.deploy.get_or_insert_with(Default::default).replicas = Some(i64::from(*want));
                changes.insert(name.clone(), serde_json::json!({ "from": from, "to": want }));
            }
            Ok(())
        })
        .await
        .map(|mut req| {
            req.source = serde_json::json!({ "scale": changes });
            req
        })
    }

    /// The request that runs the running release of `app` again as it is (what the deploy
    /// policy is asked about an app as it runs).
    ///
    /// # Errors
    /// [`ReleaseError::NotFound`] when the app runs no release, and the store's and the
    /// target's.
    pub async fn running_request(
        &self,
        store: &Store,
        app: &str,
    ) -> Result<DeployRequest, ReleaseError> {
        let Some(running) = store.current_release(app.to_owned()).await? else {
            return Err(ReleaseError::NotFound(format!(
                "app {app:?} runs no release (capstan apps lists them)"
            )));
        };
        self.again(&running, serde_json::Value::Null, |_| Ok(()))
            .await
    }

    /// The request that runs release `row` again, changed by `change`, with the image ids it
    /// ran where its tags have moved on since, and the configs and secrets kept for it.
    async fn again(
        &self,
        row: &ReleaseRow,
        source: serde_json::Value,
        change: impl FnOnce(&mut Project) -> Result<(), ReleaseError>,
    ) -> Result<DeployRequest, ReleaseError> {
        let mut project = parse_model(row)?;
        change(&mut project)?;
        // the exact images it ran: pin one whose tag has moved on since
        let ran: BTreeMap<String, String> = serde_json::from_str(&row.images).unwrap_or_default();
        let now = self.target.image_ids(&project).await?;
        for (name, service) in &mut project.services {
            if let (Some(image), Some(id)) = (&service.image, ran.get(name))
                && now.get(name) != Some(id)
            {
                // a cluster's nodes pull by name and digest; one engine runs an image id
                service.image = Some(if self.target.orchestrates() {
                    let name = image.split_once('@').map_or(image.as_str(), |(n, _)| n);
                    format!("{name}@{id}")
                } else {
                    id.clone()
                });
            }
        }
        let files = self
            .stored_files_at(&project, &ran_files(row))
            .await
            .map_err(|source| ReleaseError::Unusable {
                release: row.number,
                source,
            })?;
        Ok(DeployRequest {
            project,
            files,
            source,
            pull: false,
        })
    }

    /// Records that `app` is down (so self-healing leaves it down) and removes what it made.
    /// The caller holds the app's lock.
    ///
    /// # Errors
    /// The store's and the target's.
    pub async fn take_down(
        &self,
        store: &Store,
        actor: &str,
        app: &str,
        volumes: bool,
    ) -> Result<Vec<String>, ReleaseError> {
        // the ledger says the app is down first, so self-healing leaves it down
        if !store.releases(app.to_owned()).await?.is_empty() {
            store
                .begin_release(new_release(
                    app,
                    actor,
                    serde_json::json!({ "down": { "volumes": volumes } }).to_string(),
                    "{}".into(),
                    ReleaseResult::Down,
                ))
                .await?;
        }
        Ok(self.down(app, volumes).await?)
    }
}
