//! The rollout engine: one release of an app, written once for every target. A deploy checks
//! the request, lets the target prepare, plans against what the target runs, then applies the
//! plan level by level in start order (a level's services in parallel): new replicas are
//! created and gated on health, changed services roll in batches (start-first unless asked
//! otherwise) and roll back by themselves when a batch fails; retired replicas are drained
//! first. Every step is reported as it happens (NDJSON progress) and in the final report.

pub(crate) mod gate;
mod roll;
pub(crate) mod service;
mod steps;
mod whole;

pub(crate) use service::DEFAULT_GRACE;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use capstan_compose::Project;
use capstan_model::{Action, Event, Outcome, Plan, Progress, Report};
use tokio::sync::{broadcast, mpsc};

use crate::DeployRequest;
use crate::error::{CheckError, FileGone, TargetError};
use crate::files::FileContent;
use crate::plan::{Desired, plan};
use crate::request::file_digests;
use crate::target::{Replica, Target};

/// Runs releases against one target.
#[derive(Debug, Clone)]
pub struct Deployer {
    /// Where the replicas run.
    pub target: Arc<dyn Target>,
    /// `<data>/apps`: the configs and secrets each release used are kept under `<apps>/<app>/`,
    /// so a release from the ledger can be deployed again.
    pub apps_dir: PathBuf,
    /// Where to send progress as it happens (best effort: a slow reader misses lines, never
    /// the final report).
    pub progress: Option<mpsc::Sender<Progress>>,
    /// The journal's live events, where failed and rolled back releases are announced.
    pub live: Option<broadcast::Sender<Event>>,
    /// Where secrets are kept sealed (none: as plain files under `apps_dir`).
    pub secrets: Option<crate::SecretStore>,
    /// The journal, where a replica that could not be stopped in the background is recorded
    /// (with `live`); without it, only the daemon's log says so.
    pub ledger: Option<capstan_store::Store>,
    /// The target's name in `[[targets]]`; `None` for the local engine. Every release it makes
    /// records it (`source.target`), so what deploys the app next (a deploy, a rollback, an
    /// automatic update, a build) goes to the same place.
    pub place: Option<String>,
}

impl Deployer {
    /// A deployer over `target`, keeping files under `apps_dir`, announcing how releases end
    /// on `live`.
    pub fn new(
        target: Arc<dyn Target>,
        apps_dir: PathBuf,
        live: Option<broadcast::Sender<Event>>,
    ) -> Self {
        Self {
            target,
            apps_dir,
            progress: None,
            live,
            secrets: None,
            ledger: None,
            place: None,
        }
    }

    /// Stops and removes a replica `release` of `app` set aside, in the background: the
    /// rollout goes on meanwhile. A failure is journaled (`retire_failed`) and logged.
    pub(crate) fn stop_in_background(
        &self,
        app: String,
        release: i64,
        id: String,
        grace: std::time::Duration,
    ) {
        let target = Arc::clone(&self.target);
        let (ledger, live) = (self.ledger.clone(), self.live.clone());
        tokio::spawn(async move {
            let Err(e) = target.remove(&id, grace).await else {
                return;
            };
            tracing::warn!(app, release, container = id, error = %e, "a replica taken out of rotation could not be stopped and removed");
            if let (Some(store), Some(live)) = (ledger, live) {
                let attributes = std::collections::BTreeMap::from([
                    ("app".to_owned(), app.clone()),
                    ("release".to_owned(), release.to_string()),
                    ("container".to_owned(), id),
                    ("error".to_owned(), e.to_string()),
                ]);
                store
                    .record(
                        &live,
                        capstan_model::CapstanAction::RetireFailed,
                        app,
                        attributes,
                    )
                    .await;
            }
        });
    }

    /// The same deployer, sending its steps to `progress`.
    #[must_use]
    pub fn with_progress(&self, progress: Option<mpsc::Sender<Progress>>) -> Self {
        Self {
            progress,
            ..self.clone()
        }
    }

    /// Checks what cannot be deployed before anything changes: what every target requires,
    /// then what this one cannot do.
    ///
    /// # Errors
    /// The first problem, naming the service and key.
    pub fn check(&self, req: &DeployRequest) -> Result<(), CheckError> {
        req.check()?;
        Ok(self.target.check(req)?)
    }

    /// The contents of a model's configs and secrets from what was kept for its app, for
    /// deploys that come from the ledger, not the CLI: inline `content` as written, a secret
    /// at the version of its digest in `digests` (`secrets/NAME` → digest, as the ledger
    /// recorded a release's; see [`crate::ran_files`]), else its latest.
    ///
    /// # Errors
    /// [`FileGone`] naming the file that is no longer on this host.
    pub async fn stored_files_at(
        &self,
        project: &Project,
        digests: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, FileContent>, FileGone> {
        let app = project.name.clone().unwrap_or_default();
        let mut files = BTreeMap::new();
        for (kind, objects) in [("configs", &project.configs), ("secrets", &project.secrets)] {
            for (name, obj) in objects {
                let gone = |source| FileGone {
                    kind,
                    name: name.clone(),
                    source,
                };
                let content = match (&obj.content, kind, &self.secrets) {
                    (Some(c), _, _) => FileContent::Text(c.clone()),
                    (None, "secrets", Some(store)) => {
                        let (store, apps, app, name) = (
                            store.clone(),
                            self.apps_dir.clone(),
                            app.clone(),
                            name.clone(),
                        );
                        let digest = digests.get(&format!("secrets/{name}")).cloned();
                        FileContent::from_bytes(
                            tokio::task::spawn_blocking(move || {
                                let version = match &digest {
                                    Some(d) => store.read_version(&apps, &app, &name, d)?,
                                    None => None,
                                };
                                version.map_or_else(|| store.read(&apps, &app, &name), Ok)
                            })
                            .await
                            .map_err(std::io::Error::other)
                            .and_then(|r| r)
                            .map_err(gone)?,
                        )
                    }
                    (None, _, _) => FileContent::from_bytes(
                        tokio::fs::read(self.apps_dir.join(&app).join(kind).join(name))
                            .await
                            .map_err(gone)?,
                    ),
                };
                files.insert(format!("{kind}/{name}"), content);
            }
        }
        Ok(files)
    }

    /// The plan this request would run now.
    ///
    /// # Errors
    /// The target's.
    pub async fn plan(
        &self,
        req: &DeployRequest,
        previous: Option<&Project>,
    ) -> Result<Plan, TargetError> {
        Ok(self.plan_observed(req, previous).await?.0)
    }

    /// The plan, and the replicas it was made against (one look at the target for both).
    async fn plan_observed(
        &self,
        req: &DeployRequest,
        previous: Option<&Project>,
    ) -> Result<(Plan, Vec<Replica>), TargetError> {
        let running = self.target.observe(&req.app()).await?;
        let image_ids = self.target.image_ids(&req.project).await?;
        let digests = file_digests(&req.files);
        let mut plan = plan(
            Desired {
                project: &req.project,
                previous,
                image_ids: &image_ids,
                file_digests: &digests,
            },
            &running,
        );
        for (name, s) in &req.project.services {
            if let Some(why) = self.target.stops_first(s) {
                plan.notes.push(format!("{name} rolls stop-first: {why}"));
            }
            let gate = gate::Gate::of(s);
            if self.target.orchestrates() && !gate.has_healthcheck() {
                plan.notes.push(format!(
                    "{name} has no healthcheck: a new replica counts once it has run for {} s (update_config.monitor); give it a healthcheck to gate on its health",
                    gate.monitor().as_secs_f64()
                ));
            }
        }
        Ok((plan, running))
    }

    /// Deploys `req` as release `release`; `previous` is the model now running (for rollback).
    pub async fn deploy(
        &self,
        req: &DeployRequest,
        previous: Option<&Project>,
        release: i64,
    ) -> Report {
        let report = self.deploy_prepared(req, previous, release).await;
        self.target.finish(&report.app).await;
        report
    }

    async fn deploy_prepared(
        &self,
        req: &DeployRequest,
        previous: Option<&Project>,
        release: i64,
    ) -> Report {
        let app = req.app();
        let mut report = Report {
            app: app.clone(),
            release,
            outcome: Outcome::Succeeded,
            services: Vec::new(),
            error: None,
        };
        let prepared = match self.check(req) {
            Ok(()) => self.target.prepare(req).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let planned = match prepared {
            Ok(()) => self
                .plan_observed(req, previous)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let (plan, running) = match planned {
            Ok(both) => both,
            Err(e) => {
                report.outcome = Outcome::Failed;
                report.error = Some(e);
                return report;
            }
        };
        let actions: BTreeMap<String, Action> = plan
            .services
            .iter()
            .map(|s| (s.service.clone(), s.action.clone()))
            .collect();
        let rollout = service::Rollout {
            deployer: self,
            req,
            previous,
            release,
        };
        for level in &plan.levels {
            let runs = level.iter().map(|service| {
                let action = actions.get(service).cloned().unwrap_or(Action::Unchanged);
                let have: BTreeMap<u32, String> = running
                    .iter()
                    .filter(|r| &r.service == service)
                    .map(|r| (r.replica, r.id.clone()))
                    .collect();
                rollout.apply_service(service, action, have)
            });
            let results = futures_util::future::join_all(runs).await;
            let mut failed = None;
            for (r, failure) in results {
                report.services.push(r);
                if let Some(f) = failure {
                    failed.get_or_insert(f);
                }
            }
            if let Some(f) = failed {
                report.outcome = if f.rolled_back {
                    Outcome::RolledBack
                } else {
                    Outcome::Failed
                };
                report.error = Some(f.message);
                return report;
            }
        }
        // services the model no longer has
        for s in &plan.services {
            if let Action::Remove { .. } = s.action {
                let r = rollout.remove_service(&s.service, &running).await;
                report.services.push(r);
            }
        }
        report
    }

    /// Replaces the given replicas of a service (missing, dead or stuck) with fresh ones of
    /// `req`'s definition, gated on health like a deploy.
    ///
    /// # Errors
    /// What failed, with the replica's last log lines.
    pub async fn repair(
        &self,
        req: &DeployRequest,
        release: i64,
        service: &str,
        replicas: Vec<u32>,
        have: BTreeMap<u32, String>,
    ) -> Result<Vec<String>, String> {
        let action = Action::Repair {
            replicas,
            reasons: Vec::new(),
        };
        let rollout = service::Rollout {
            deployer: self,
            req,
            previous: None,
            release,
        };
        let (report, failure) = rollout.apply_service(service, action, have).await;
        match failure {
            None => Ok(report.steps),
            Some(f) => Err(f.message),
        }
    }

    /// Removes everything an app made on the target, and the files kept for it. Returns what
    /// was removed.
    ///
    /// # Errors
    /// The target's.
    pub async fn down(&self, app: &str, volumes: bool) -> Result<Vec<String>, TargetError> {
        self.target.down(app, volumes).await
    }
}
