//! Running the queued builds: one per host at a time unless configured otherwise, each with a
//! timeout and a memory limit. A build fetches its commit, builds the app's service from it
//! (unless that commit's image is here already), pushes it to the service's registry and
//! deploys it by digest through the app's rollout. A newer push of the same app supersedes a
//! queued build and a running one that is not deploying yet: a rollout is never interrupted.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use capstan_deploy::{Deployer, ImageChange};
use capstan_engine::{BuildContext, Engine};
use capstan_model::{Outcome, RolloutLocks};
use capstan_registry::CredentialSource;
use capstan_store::Store;
use capstan_store::pipeline::BuildRow;
use capstan_vault::keyring::Keyring;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::buildlog::{BuildLog, log_path, logs_dir};

/// The ledger's actor for releases made by builds.
pub const ACTOR: &str = "pipeline";

/// How long a build's deploy waits for the app's rollout lock.
const LOCK_WAIT: Duration = Duration::from_mins(10);

/// Which builder builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuilderChoice {
    /// BuildKit where the engine has it (API 1.39 and up), else the classic builder.
    #[default]
    Auto,
    #[serde(rename = "buildkit")]
    BuildKit,
    Classic,
}

/// How builds run.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Builds at once on this host.
    pub concurrency: usize,
    /// Which builder builds.
    pub builder: BuilderChoice,
    /// The longest a build may take, deploy included.
    pub timeout: Duration,
    /// The memory each build step may use, in bytes.
    pub memory: Option<i64>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            concurrency: 1,
            builder: BuilderChoice::Auto,
            timeout: Duration::from_mins(30),
            memory: Some(2 << 30),
        }
    }
}

/// A build that runs: how to stop it, and whether it reached its deploy (never stopped).
struct Running {
    app: String,
    stop: CancellationToken,
    /// Why it was stopped: `cancelled` or `superseded`.
    why: Arc<Mutex<&'static str>>,
    deploying: Arc<AtomicBool>,
}

/// Where the apps' releases run: the local engine's deployer and each target's.
#[derive(Clone)]
pub struct Places {
    pub local: Deployer,
    pub targets: Arc<BTreeMap<String, Deployer>>,
}

/// What the builder works with.
#[derive(Clone)]
pub struct Setup {
    pub store: Store,
    /// The engine that builds (and, for apps on the local engine, runs) the images.
    pub engine: Engine,
    /// Credentials for base images and for pushes.
    pub registries: Arc<CredentialSource>,
    /// Where sources' git credentials are kept.
    pub keyring: Keyring,
    /// The scan gate's scanner.
    pub scanner: capstan_scan::Scanner,
    pub places: Places,
    /// The apps' rollout locks, shared with every deploy.
    pub locks: RolloutLocks,
    /// The data dir: `git/` (the caches), `builds/` (logs, work dirs).
    pub data: PathBuf,
    pub options: BuildOptions,
    /// Woken when a build is queued (the hooks' side holds it too).
    pub queued: Arc<Notify>,
}

/// Runs the queued builds.
#[derive(Clone)]
pub struct Builder {
    setup: Setup,
    running: Arc<Mutex<HashMap<i64, Running>>>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder").finish_non_exhaustive()
    }
}

/// Why `cancel` did not stop a build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CancelError {
    #[error("no build {0}")]
    NotFound(i64),
    #[error("build {id} is {status} already")]
    Finished { id: i64, status: String },
    #[error(
        "build {0} is deploying: a rollout runs to its end (roll back afterwards with capstan rollback)"
    )]
    Deploying(i64),
}

/// Why a build cannot be run again.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("no build {0}")]
    NotFound(i64),
    #[error("build {id} is {status}: wait for its end, or cancel it (capstan builds cancel {id})")]
    NotEnded { id: i64, status: String },
    #[error(transparent)]
    Store(#[from] capstan_store::Error),
}

fn now_nano() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
}

/// A step of a build, as its record keeps it.
fn step(detail: &mut serde_json::Value, name: &str, outcome: &str, note: &str) {
    if !detail.is_object() {
        *detail = serde_json::json!({});
    }
    let steps = detail
        .as_object_mut()
        .map(|m| m.entry("steps").or_insert_with(|| serde_json::json!([])));
    if let Some(serde_json::Value::Array(steps)) = steps {
        steps.push(serde_json::json!({
            "step": name,
            "outcome": outcome,
            "note": note,
            "time": capstan_model::format_nanos(now_nano()),
        }));
    }
}

/// How a build ended, before it is written down.
struct Ended {
    status: &'static str,
    error: String,
}

impl Ended {
    fn failed(error: impl Into<String>) -> Self {
        Self {
            status: "failed",
            error: error.into(),
        }
    }
}

impl Builder {
    pub fn new(setup: Setup) -> Self {
        Self {
            setup,
            running: Arc::default(),
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs builds as they are queued, until `shutdown` (a build running then is stopped and
    /// recorded as failed at the next start).
    pub async fn run(self, shutdown: CancellationToken) {
        match self
            .setup
            .store
            .write(|tx| capstan_store::pipeline::fail_interrupted(tx, now_nano()))
            .await
        {
            Ok(0) => {}
            Ok(n) => warn!(
                builds = n,
                "builds capstan was running when it stopped are marked failed"
            ),
            Err(e) => warn!(error = %e, "cannot mark the builds a stopped capstan left"),
        }
        loop {
            if let Err(e) = self.start_queued().await {
                warn!(error = %e, "cannot read the queued builds; trying again");
            }
            self.remove_due_previews().await;
            tokio::select! {
                () = shutdown.cancelled() => {
                    for r in self.running().values() {
                        r.stop.cancel();
                    }
                    return;
                }
                () = self.setup.queued.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Supersedes what newer pushes replace, then starts the oldest queued builds there is
    /// room for (one per app at a time).
    async fn start_queued(&self) -> Result<(), capstan_store::Error> {
        let queued = self.setup.store.queued_builds().await?;
        let mut newest: BTreeMap<String, i64> = BTreeMap::new();
        for b in &queued {
            newest.insert(b.app.clone(), b.id);
        }
        for (app, id) in &newest {
            let (app2, id2) = (app.clone(), *id);
            let gone = self
                .setup
                .store
                .write(move |tx| {
                    capstan_store::pipeline::supersede_queued(tx, &app2, id2, now_nano())
                })
                .await?;
            for g in gone {
                info!(
                    build = g,
                    app,
                    newer = id,
                    "a queued build is superseded by a newer push"
                );
            }
            // a running build of the app that is not deploying yet stops for the newer one
            for (rid, r) in self.running().iter() {
                if r.app == *app && *rid < *id && !r.deploying.load(Ordering::SeqCst) {
                    *r.why.lock().unwrap_or_else(PoisonError::into_inner) = "superseded";
                    r.stop.cancel();
                }
            }
        }
        for b in queued
            .into_iter()
            .filter(|b| newest.get(&b.app) == Some(&b.id))
        {
            {
                let running = self.running();
                if running.len() >= self.setup.options.concurrency.max(1)
                    || running.values().any(|r| r.app == b.app)
                {
                    continue;
                }
            }
            self.start(b);
        }
        Ok(())
    }

    /// Records (or extends) a preview's life after a push.
    async fn keep_preview(&self, app: &str, parent: &str, branch: &str, ttl: &str) {
        let ttl = capstan_model::parse_duration(ttl).unwrap_or(Duration::from_hours(24));
        let row = capstan_store::pipeline::PreviewRow {
            app: app.to_owned(),
            parent: parent.to_owned(),
            branch: branch.to_owned(),
            expires_nano: now_nano().saturating_add(ttl.as_nanos() as i64),
        };
        if let Err(e) = self
            .setup
            .store
            .write(move |tx| capstan_store::pipeline::set_preview(tx, &row))
            .await
        {
            warn!(app, error = %e, "cannot record the preview's expiry");
        }
    }

    /// Takes down the previews whose time is up (or whose branch is gone).
    async fn remove_due_previews(&self) {
        let due = match self.setup.store.due_previews(now_nano()).await {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "cannot read the previews");
                return;
            }
        };
        for p in due {
            // a preview being built or deployed is left to its build
            if self.running().values().any(|r| r.app == p.app) {
                continue;
            }
            let Some(_lock) = self.setup.locks.hold(&p.app) else {
                continue;
            };
            let deployer = match self.setup.store.current_release(p.parent.clone()).await {
                Ok(Some(r)) => match capstan_deploy::target_of(&r) {
                    None => self.setup.places.local.clone(),
                    Some(t) => match self.setup.places.targets.get(&t) {
                        Some(d) => d.clone(),
                        None => continue,
                    },
                },
                _ => self.setup.places.local.clone(),
            };
            match deployer
                .take_down(&self.setup.store, ACTOR, &p.app, true)
                .await
            {
                Ok(_) => {
                    info!(preview = %p.app, branch = %p.branch, "a preview is removed");
                    let app = p.app.clone();
                    if let Err(e) = self
                        .setup
                        .store
                        .write(move |tx| capstan_store::pipeline::forget_preview(tx, &app))
                        .await
                    {
                        warn!(preview = %p.app, error = %e, "cannot forget a removed preview");
                    }
                }
                Err(e) => {
                    warn!(preview = %p.app, error = %e, "cannot remove a preview; trying again");
                }
            }
        }
    }

    fn start(&self, mut b: BuildRow) {
        let stop = CancellationToken::new();
        let why = Arc::new(Mutex::new("cancelled"));
        let deploying = Arc::new(AtomicBool::new(false));
        self.running().insert(
            b.id,
            Running {
                app: b.app.clone(),
                stop: stop.clone(),
                why: Arc::clone(&why),
                deploying: Arc::clone(&deploying),
            },
        );
        let this = self.clone();
        tokio::spawn(async move {
            b.status = "running".into();
            b.started_nano = Some(now_nano());
            // the log is kept by service: said before the log opens (a build that cannot say
            // fails in its first step, and says why there)
            if b.service.is_empty() {
                b.service = this
                    .service_of(&parent_of(&b))
                    .await
                    .unwrap_or_else(|_| "unknown".into());
            }
            this.save(&b).await;
            let path = log_path(&logs_dir(&this.setup.data), &b.app, &b.service, b.id);
            let mut log = BuildLog::open(path);
            info!(build = b.id, app = %b.app, commit = %b.commit, "build started");
            let ended = tokio::select! {
                r = tokio::time::timeout(this.setup.options.timeout, this.steps(&mut b, &mut log, &deploying)) => {
                    r.unwrap_or_else(|_| Ended::failed(format!(
                        "the build took longer than {} s ([pipeline] timeout)",
                        this.setup.options.timeout.as_secs()
                    )))
                }
                () = stop.cancelled() => {
                    let why = *why.lock().unwrap_or_else(PoisonError::into_inner);
                    Ended { status: why, error: format!("{why} while it ran") }
                }
            };
            if ended.status == "failed" {
                log.line("stderr", &format!("build failed: {}", ended.error));
                let mut detail: serde_json::Value =
                    serde_json::from_str(&b.detail).unwrap_or_else(|_| serde_json::json!({}));
                if let Some(map) = detail.as_object_mut() {
                    map.insert("log_tail".into(), log.tail().into());
                }
                b.detail = detail.to_string();
            } else {
                log.line("stdout", &format!("build {}", ended.status));
            }
            log.done();
            b.status = ended.status.into();
            b.error = ended.error;
            b.finished_nano = Some(now_nano());
            this.save(&b).await;
            info!(build = b.id, app = %b.app, status = %b.status, "build ended");
            let _ = std::fs::remove_dir_all(this.work_dir(b.id));
            this.running().remove(&b.id);
            this.setup.queued.notify_one();
        });
    }

    fn work_dir(&self, id: i64) -> PathBuf {
        self.setup
            .data
            .join("builds")
            .join("work")
            .join(id.to_string())
    }

    async fn save(&self, b: &BuildRow) {
        let row = b.clone();
        if let Err(e) = self
            .setup
            .store
            .write(move |tx| capstan_store::pipeline::update_build(tx, &row))
            .await
        {
            warn!(build = b.id, error = %e, "cannot record the build's progress");
        }
    }

    /// Stops a queued or running build (not one that deploys).
    ///
    /// # Errors
    /// A [`CancelError`]; the store's own errors as `NotFound` are not hidden: they are
    /// logged.
    pub async fn cancel(&self, id: i64) -> Result<BuildRow, CancelError> {
        let stopped = match self.running().get(&id) {
            Some(r) if r.deploying.load(Ordering::SeqCst) => {
                return Err(CancelError::Deploying(id));
            }
            Some(r) => {
                *r.why.lock().unwrap_or_else(PoisonError::into_inner) = "cancelled";
                r.stop.cancel();
                true
            }
            None => false,
        };
        let found = self.setup.store.build(id).await.map_err(|e| {
            warn!(build = id, error = %e, "cannot read a build");
            CancelError::NotFound(id)
        })?;
        let Some(mut b) = found else {
            return Err(CancelError::NotFound(id));
        };
        match b.status.as_str() {
            "queued" => {
                b.status = "cancelled".into();
                b.error = "cancelled before it ran".into();
                b.finished_nano = Some(now_nano());
                self.save(&b).await;
                Ok(b)
            }
            "running" => Ok(b),
            // it stopped at this word, and its task recorded so before the record was read
            _ if stopped => Ok(b),
            _ => Err(CancelError::Finished {
                id,
                status: b.status,
            }),
        }
    }

    /// Queues the commit of ended build `id` again, as a new build of the same app (a
    /// preview's too) that names the one it retries and who asked. Its image is built only if
    /// it is not here already; it is pushed and deployed like any push's.
    ///
    /// # Errors
    /// A [`RetryError`].
    pub async fn retry(&self, id: i64, by: &str) -> Result<BuildRow, RetryError> {
        let Some(old) = self.setup.store.build(id).await? else {
            return Err(RetryError::NotFound(id));
        };
        if matches!(old.status.as_str(), "queued" | "running") {
            return Err(RetryError::NotEnded {
                id,
                status: old.status,
            });
        }
        let was: serde_json::Value = serde_json::from_str(&old.detail).unwrap_or_default();
        let mut detail = serde_json::json!({ "retry_of": id, "by": by });
        if let Some(parent) = was.get("preview_of") {
            detail["preview_of"] = parent.clone();
        }
        let mut b = BuildRow {
            app: old.app,
            service: old.service,
            branch: old.branch,
            commit: old.commit,
            author: old.author,
            message: old.message,
            status: "queued".into(),
            queued_nano: now_nano(),
            detail: detail.to_string(),
            ..BuildRow::default()
        };
        let row = b.clone();
        b.id = self
            .setup
            .store
            .write(move |tx| capstan_store::pipeline::queue_build(tx, &row))
            .await?;
        info!(build = b.id, retry_of = id, by, "a build is queued again");
        self.setup.queued.notify_one();
        Ok(b)
    }

    /// The service the app's builds build, from its source and running release.
    async fn service_of(&self, app: &str) -> Result<String, String> {
        let source = self
            .setup
            .store
            .source(app.to_owned())
            .await
            .map_err(|e| e.to_string())?
            .and_then(|j| serde_json::from_str::<crate::Source>(&j).ok());
        let release = self
            .setup
            .store
            .current_release(app.to_owned())
            .await
            .map_err(|e| e.to_string())?
            .ok_or("never deployed")?;
        let project: capstan_compose::Project =
            serde_json::from_str(&release.model).map_err(|e| e.to_string())?;
        built_service(&project, source.and_then(|s| s.service).as_deref())
    }

    /// Fetch, build, push, deploy: how the build ended.
    async fn steps(&self, b: &mut BuildRow, log: &mut BuildLog, deploying: &AtomicBool) -> Ended {
        let mut detail: serde_json::Value =
            serde_json::from_str(&b.detail).unwrap_or_else(|_| serde_json::json!({}));
        let ended = self.steps_inner(b, &mut detail, log, deploying).await;
        b.detail = detail.to_string();
        ended
    }

    async fn steps_inner(
        &self,
        b: &mut BuildRow,
        detail: &mut serde_json::Value,
        log: &mut BuildLog,
        deploying: &AtomicBool,
    ) -> Ended {
        // what to build, from the app's source and running release (a preview's: its parent's)
        let parent = parent_of(b);
        let preview = (parent != b.app).then(|| b.app.clone());
        let source = match self.setup.store.source(parent.clone()).await {
            Ok(Some(json)) => match serde_json::from_str::<crate::Source>(&json) {
                Ok(s) => s,
                Err(e) => return Ended::failed(format!("the app's source does not read: {e}")),
            },
            Ok(None) => return Ended::failed("the app has no source any more"),
            Err(e) => return Ended::failed(format!("cannot read the app's source: {e}")),
        };
        let release = match self.setup.store.current_release(parent.clone()).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Ended::failed(format!(
                    "{parent} was never deployed: deploy it once with capstan deploy, then pushes build and deploy it"
                ));
            }
            Err(e) => return Ended::failed(format!("cannot read the app's release: {e}")),
        };
        let project: capstan_compose::Project = match serde_json::from_str(&release.model) {
            Ok(p) => p,
            Err(e) => return Ended::failed(format!("the app's release does not read: {e}")),
        };
        let service = match built_service(&project, source.service.as_deref()) {
            Ok(s) => s,
            Err(e) => return Ended::failed(e),
        };
        b.service.clone_from(&service);
        let image = project.services[&service].image.clone().unwrap_or_default();
        let repo = repository_of(&image, &parent, &service);
        let short: String = b.commit.chars().take(12).collect();
        let reference = format!("{repo}:{short}");
        b.image.clone_from(&reference);
        b.detail = detail.to_string();
        self.save(b).await;

        // fetch the commit
        log.line(
            "stdout",
            &format!("build {} of {} ({})", b.id, b.app, b.commit),
        );
        let credential = match &source.credentials {
            Some(c) => match self.credential(c).await {
                Ok(v) => Some(v),
                Err(e) => return Ended::failed(e),
            },
            None => None,
        };
        let work = self.work_dir(b.id);
        let checkout = work.join("src");
        if let Err(e) = std::fs::create_dir_all(&checkout) {
            return Ended::failed(format!("cannot make {}: {e}", checkout.display()));
        }
        let cache = self.setup.data.join("git");
        let fetched = crate::git::checkout(
            &cache,
            &source.repository,
            &b.branch,
            &b.commit,
            credential.as_deref(),
            &checkout,
            &mut |l| log.line("stderr", l),
        )
        .await;
        if let Err(e) = fetched {
            step(detail, "fetch", "failed", &e);
            return Ended::failed(e);
        }
        step(detail, "fetch", "succeeded", "");

        // build, unless the commit's image is here already
        let exists = self
            .setup
            .engine
            .inspect_image(&reference)
            .await
            .ok()
            .flatten()
            .is_some();
        if exists {
            log.line(
                "stdout",
                &format!("{reference} is here already: not built again"),
            );
            step(detail, "build", "skipped", "the commit's image exists");
        } else {
            let buildkit = match self.setup.options.builder {
                BuilderChoice::Classic => false,
                BuilderChoice::BuildKit => true,
                BuilderChoice::Auto => self.setup.engine.has_buildkit().await.unwrap_or(false),
            };
            b.builder = if buildkit { "buildkit" } else { "classic" }.into();
            b.detail = detail.to_string();
            self.save(b).await;
            if let Err((e, at)) = self
                .build(b, &source, &checkout, &reference, buildkit, log)
                .await
            {
                step(detail, "build", "failed", &e);
                if let Some(at) = at.or_else(|| failed_step(&log.tail())) {
                    detail["failed_at"] = at.into();
                }
                return Ended::failed(e);
            }
            step(detail, "build", "succeeded", "");
        }

        // the scan gate, before anything leaves this host
        if let Some(fail_on) = source.fail_on {
            log.line("stdout", &format!("scanning {reference} (gate: {fail_on})"));
            let report = match self.setup.scanner.scan(&reference, false).await {
                Ok(r) => r,
                Err(e) => {
                    // not knowing is not passing
                    let e = format!("cannot scan {reference}: {e}");
                    step(detail, "scan", "failed", &e);
                    return Ended::failed(e);
                }
            };
            let stopped: Vec<&capstan_model::Finding> = report
                .findings
                .iter()
                .filter(|f| f.severity >= fail_on)
                .collect();
            detail["findings"] = serde_json::to_value(&stopped).unwrap_or_default();
            if let Some(worst) = stopped.iter().max_by_key(|f| f.severity) {
                for f in &stopped {
                    log.line(
                        "stderr",
                        &format!(
                            "{} {} in {} {}",
                            f.severity, f.advisory, f.package, f.installed
                        ),
                    );
                }
                let e = format!(
                    "{} finding(s) at or above {fail_on} (the worst: {} {} in {} {}): stopped before push",
                    stopped.len(),
                    worst.severity,
                    worst.advisory,
                    worst.package,
                    worst.installed
                );
                step(detail, "scan", "failed", &e);
                return Ended::failed(e);
            }
            step(
                detail,
                "scan",
                "succeeded",
                &format!(
                    "{} finding(s), none at or above {fail_on}",
                    report.findings.len()
                ),
            );
        }

        // push (a registry-hosted repository), then deploy by digest
        let pinned = if has_registry(&repo) {
            log.line("stdout", &format!("pushing {reference}"));
            match self.push(&reference, &repo).await {
                Ok(digest) => {
                    b.digest.clone_from(&digest);
                    step(detail, "push", "succeeded", &digest);
                    format!("{reference}@{digest}")
                }
                Err(e) => {
                    step(detail, "push", "failed", &e);
                    return Ended::failed(e);
                }
            }
        } else {
            // no registry to push to: the local engine runs it by its tag, and the record
            // keeps the image id
            if let Ok(Some(i)) = self.setup.engine.inspect_image(&reference).await {
                b.digest = i.id;
            }
            step(detail, "push", "skipped", "the image has no registry");
            reference.clone()
        };
        b.detail = detail.to_string();
        self.save(b).await;
        deploying.store(true, Ordering::SeqCst);
        let Some(_lock) =
            capstan_deploy::hold_when_free(&self.setup.locks, &b.app, LOCK_WAIT).await
        else {
            return Ended::failed("the app stayed busy (another deploy) for 10 minutes");
        };
        let deployer = match crate_target(&release) {
            None => self.setup.places.local.clone(),
            Some(t) => match self.setup.places.targets.get(&t) {
                Some(d) => d.clone(),
                None => return Ended::failed(format!("the app's target {t} is not configured")),
            },
        };
        log.line("stdout", &format!("deploying {pinned}"));
        let change = ImageChange {
            app: parent.clone(),
            as_app: preview.clone(),
            service: service.clone(),
            image: pinned,
            pull: false,
            source: serde_json::json!({ "build": {
                "id": b.id,
                "commit": b.commit,
                "branch": b.branch,
                "author": b.author,
                "message": b.message,
                "digest": b.digest,
            }}),
            actor: ACTOR.to_owned(),
        };
        match deployer.redeploy_image(&self.setup.store, &change).await {
            Ok(None) => {
                step(
                    detail,
                    "deploy",
                    "skipped",
                    "the app runs this image already",
                );
                Ended {
                    status: "succeeded",
                    error: String::new(),
                }
            }
            Ok(Some((report, _))) => {
                b.release = Some(report.release);
                if report.outcome == Outcome::Succeeded
                    && let (Some(app), Some(previews)) = (&preview, &source.previews)
                {
                    self.keep_preview(app, &parent, &b.branch, &previews.ttl)
                        .await;
                    log.line(
                        "stdout",
                        &format!(
                            "the preview {app} runs until {} after its last push",
                            previews.ttl
                        ),
                    );
                }
                if report.outcome == Outcome::Succeeded {
                    step(
                        detail,
                        "deploy",
                        "succeeded",
                        &format!("release {}", report.release),
                    );
                    log.line("stdout", &format!("release {} runs it", report.release));
                    Ended {
                        status: "succeeded",
                        error: String::new(),
                    }
                } else {
                    let e = format!(
                        "release {} {}: {}",
                        report.release,
                        report.outcome.result().as_str(),
                        report.error.unwrap_or_default()
                    );
                    step(detail, "deploy", "failed", &e);
                    Ended::failed(e)
                }
            }
            Err(e) => {
                step(detail, "deploy", "failed", &e.to_string());
                Ended::failed(e.to_string())
            }
        }
    }

    /// A `vault:NAME` credential's value.
    async fn credential(&self, reference: &str) -> Result<String, String> {
        let name = reference
            .strip_prefix("vault:")
            .ok_or_else(|| format!("source.credentials: {reference:?} must be vault:NAME"))?
            .to_owned();
        let keyring = self.setup.keyring.clone();
        let n = name.clone();
        let got = tokio::task::spawn_blocking(move || keyring.get(&n))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        got.map(|v| String::from_utf8_lossy(&v).into_owned())
            .ok_or_else(|| {
                format!(
                    "no credential {name:?} is kept; put it there with: capstan secrets set {name}"
                )
            })
    }

    /// Builds the checkout; on a failure, why and the step it failed at (when the builder
    /// says).
    async fn build(
        &self,
        b: &BuildRow,
        source: &crate::Source,
        checkout: &std::path::Path,
        reference: &str,
        buildkit: bool,
        log: &mut BuildLog,
    ) -> Result<(), (String, Option<String>)> {
        let failed = |e: String| (e, None);
        let context = match &source.context {
            Some(c) if !c.split('/').any(|s| s == "..") => checkout.join(c.trim_start_matches('/')),
            Some(c) => {
                return Err(failed(format!(
                    "source.context: {c:?} leaves the repository"
                )));
            }
            None => checkout.to_owned(),
        };
        let dockerfile = source
            .dockerfile
            .clone()
            .unwrap_or_else(|| "Dockerfile".into());
        let (dir, file) = (context.clone(), dockerfile.clone());
        let tar = tokio::task::spawn_blocking(move || crate::context::pack(&dir, &file))
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(|e| {
                failed(format!(
                    "cannot pack the build context {}: {e}",
                    context.display()
                ))
            })?;
        let text = std::fs::read_to_string(context.join(&dockerfile)).unwrap_or_default();
        let args = BTreeMap::new();
        let credentials = self
            .setup
            .registries
            .for_dockerfile(&text, &args)
            .await
            .map_err(|e| failed(format!("cannot read the base images' credentials: {e}")))?;
        let mut labels = capstan_deploy::labels(&b.app, Some(&b.service), &[]);
        labels.insert("org.opencontainers.image.revision".into(), b.commit.clone());
        labels.insert(
            "org.opencontainers.image.source".into(),
            source.repository.clone(),
        );
        labels.insert("io.capstan.build".into(), b.id.to_string());
        let ctx = BuildContext {
            tar: tar.into(),
            dockerfile,
            args,
            target: None,
            labels,
            credentials,
            memory: self.setup.options.memory,
        };
        if buildkit {
            log.line("stdout", &format!("building {reference} (BuildKit)"));
            let outcome = self
                .setup
                .engine
                .build_buildkit(ctx, reference, &mut |l| log.line("stdout", l))
                .await
                .map_err(|e| failed(format!("the engine refused the build: {e}")))?;
            return match outcome.error {
                None => Ok(()),
                Some(e) => Err((format!("the build failed: {e}"), outcome.failed_step)),
            };
        }
        log.line("stdout", &format!("building {reference} (classic builder)"));
        self.setup
            .engine
            .build_logged(ctx, reference, &mut |l| log.line("stdout", l))
            .await
            .map_err(|e| failed(format!("the build failed: {e}")))
    }

    /// Pushes `reference` and returns the digest the registry gave it.
    async fn push(&self, reference: &str, repo: &str) -> Result<String, String> {
        let registry = repo.split('/').next().unwrap_or_default();
        let auth = self
            .setup
            .registries
            .for_registry(registry)
            .await
            .map_err(|e| format!("cannot read the credentials for {registry}: {e}"))?
            .map(|(a, _)| a);
        self.setup
            .engine
            .push(reference, auth.as_ref())
            .await
            .map_err(|e| format!("cannot push {reference}: {e}"))?;
        let image = self
            .setup
            .engine
            .inspect_image(reference)
            .await
            .map_err(|e| format!("cannot read {reference} after its push: {e}"))?
            .ok_or_else(|| format!("{reference} is gone after its push"))?;
        image
            .repo_digests
            .iter()
            .find_map(|d| {
                d.split_once('@')
                    .filter(|(r, _)| *r == repo)
                    .map(|(_, digest)| digest.to_owned())
            })
            .ok_or_else(|| format!("the registry gave {reference} no digest"))
    }
}

/// The app whose source and release a build starts from: its own, or a preview's parent.
fn parent_of(b: &BuildRow) -> String {
    serde_json::from_str::<serde_json::Value>(&b.detail)
        .ok()
        .and_then(|d| d["preview_of"].as_str().map(str::to_owned))
        .unwrap_or_else(|| b.app.clone())
}

/// The app's target, from its release (none: the local engine).
fn crate_target(release: &capstan_store::ReleaseRow) -> Option<String> {
    capstan_deploy::target_of(release)
}

/// The service a source builds: the one it names, else the only one with `build:`.
fn built_service(
    project: &capstan_compose::Project,
    named: Option<&str>,
) -> Result<String, String> {
    if let Some(n) = named {
        return if project.services.contains_key(n) {
            Ok(n.to_owned())
        } else {
            Err(format!("source.service: the app has no service {n}"))
        };
    }
    let built: Vec<&String> = project
        .services
        .iter()
        .filter(|(_, s)| s.build.is_some())
        .map(|(n, _)| n)
        .collect();
    match built.as_slice() {
        [one] => Ok((*one).clone()),
        [] if project.services.len() == 1 => {
            Ok(project.services.keys().next().cloned().unwrap_or_default())
        }
        [] => Err("no service of the app has build:; say which one in source.service".into()),
        _ => Err("several services have build:; say which one in source.service".into()),
    }
}

/// The repository a service's image is pushed to: its image without tag or digest; Compose's
/// `<app>-<service>` when it has none.
fn repository_of(image: &str, app: &str, service: &str) -> String {
    if image.is_empty() {
        return format!("{app}-{service}");
    }
    let name = image.split('@').next().unwrap_or(image);
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo.to_owned(),
        _ => name.to_owned(),
    }
}

/// Whether a repository names a registry host (`host.tld/…`, `host:port/…`, `localhost/…`).
fn has_registry(repo: &str) -> bool {
    match repo.split_once('/') {
        Some((first, _)) => first.contains(['.', ':']) || first == "localhost",
        None => false,
    }
}

/// The classic builder's last `Step N/M : …` line before the failure.
fn failed_step(tail: &[String]) -> Option<String> {
    tail.iter().rev().find(|l| l.starts_with("Step ")).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_image_names_its_repository_and_registry() {
        assert_eq!(
            repository_of("127.0.0.1:5000/shop/web:v1@sha256:ab", "shop", "web"),
            "127.0.0.1:5000/shop/web"
        );
        assert_eq!(
            repository_of("127.0.0.1:5000/shop/web", "s", "w"),
            "127.0.0.1:5000/shop/web"
        );
        assert_eq!(repository_of("", "shop", "web"), "shop-web");
        assert!(has_registry("127.0.0.1:5000/shop/web"));
        assert!(has_registry("ghcr.io/o/web"));
        assert!(has_registry("localhost/web"));
        assert!(!has_registry("shop-web"));
        assert!(!has_registry("library/busybox"));
    }

    #[test]
    fn the_failed_step_is_the_last_one_begun() {
        let tail: Vec<String> = [
            "Step 1/5 : FROM x",
            " ---> 1",
            "Step 3/5 : RUN exit 3",
            "oops",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(failed_step(&tail).as_deref(), Some("Step 3/5 : RUN exit 3"));
    }
}
