//! Applying a plan: networks and volumes, configs and secrets as files, images, then services in
//! dependency order (a level's services in parallel), each replica gated on health, rolling
//! updates in batches with automatic rollback.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use capstan_compose::Project;
use capstan_compose::model::{FileObject, Service};
use capstan_engine::{ContainerSpec, Engine};
use serde::{Deserialize, Serialize};

use crate::files::FileContent;
use crate::plan::{Action, Desired, fnv_hex, plan, replicas_of, replicas_of_app};
use crate::route::{Router, claims};
use crate::units::duration_nanos;
use crate::{Names, SecretPaths, container_spec, labels};

/// What the CLI posts to plan or deploy: the resolved model and the contents of the configs and
/// secrets it uses (`configs/NAME`, `secrets/NAME`), read on the caller's side.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeployRequest {
    /// The resolved Compose model.
    #[schema(value_type = Object)]
    pub project: Project,
    /// Config and secret contents by `configs/NAME` / `secrets/NAME`.
    #[serde(default)]
    pub files: BTreeMap<String, FileContent>,
    /// Where the model came from: file paths, content hash, git commit (free-form JSON).
    #[serde(default)]
    pub source: serde_json::Value,
}

impl DeployRequest {
    /// The request for a loaded project: `read` gives each config's and secret's content
    /// (`kind` is `configs` or `secrets`; `None` for one that needs none, like an external
    /// secret), and `source` says where the model came from (its hash is added as `model_hash`).
    ///
    /// # Errors
    /// The first message `read` returns, naming the object.
    pub fn from_project(
        project: Project,
        mut read: impl FnMut(&str, &str, &FileObject) -> Result<Option<FileContent>, String>,
        mut source: serde_json::Value,
    ) -> Result<Self, String> {
        let mut files = BTreeMap::new();
        for (kind, objects) in [("configs", &project.configs), ("secrets", &project.secrets)] {
            for (name, obj) in objects {
                if let Some(content) =
                    read(kind, name, obj).map_err(|e| format!("{kind}.{name}: {e}"))?
                {
                    files.insert(format!("{kind}/{name}"), content);
                }
            }
        }
        let model = serde_json::to_string(&project).unwrap_or_default();
        if let Some(map) = source.as_object_mut() {
            map.insert("model_hash".into(), fnv_hex(model.as_bytes()).into());
        }
        Ok(Self {
            project,
            files,
            source,
        })
    }
}

/// How a deploy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
    RolledBack,
}

/// What a deploy did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    pub app: String,
    pub release: i64,
    pub outcome: Outcome,
    pub services: Vec<ServiceReport>,
    /// What failed and why (the container's last log lines, exit code or health output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What happened to one service.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceReport {
    pub service: String,
    pub action: String,
    pub steps: Vec<String>,
    pub seconds: f64,
}

/// Runs deploys against one engine.
#[derive(Debug, Clone)]
pub struct Deployer {
    pub engine: Engine,
    /// `<data>/apps`: materialised configs and secrets live under `<apps>/<app>/`.
    pub apps_dir: PathBuf,
    /// Where to send progress as it happens (best effort: a slow reader misses lines, never
    /// the final report).
    pub progress: Option<tokio::sync::mpsc::Sender<Progress>>,
    /// The proxy's router: without one, published ports are refused.
    pub router: Option<Router>,
    /// The journal's live events: health waits wake on them instead of polling the engine.
    pub events: Option<tokio::sync::broadcast::Sender<capstan_model::Event>>,
}

/// One step of a deploy, as it happens.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    pub service: String,
    pub message: String,
}

/// A service's steps: kept for the report and sent as progress.
struct Steps {
    service: String,
    lines: Vec<String>,
    progress: Option<tokio::sync::mpsc::Sender<Progress>>,
}

impl Steps {
    fn push(&mut self, message: String) {
        if let Some(tx) = &self.progress {
            let _ = tx.try_send(Progress {
                service: self.service.clone(),
                message: message.clone(),
            });
        }
        self.lines.push(message);
    }
}

/// Content digests of the configs and secrets in a request (never the contents themselves).
pub fn file_digests(files: &BTreeMap<String, FileContent>) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|(k, v)| (k.clone(), fnv_hex(&v.bytes().unwrap_or_default())))
        .collect()
}

struct Failure {
    message: String,
    rolled_back: bool,
}

impl Deployer {
    fn secret_paths(&self, app: &str, files: &BTreeMap<String, FileContent>) -> SecretPaths {
        SecretPaths {
            dir: self.apps_dir.join(app),
            digests: file_digests(files),
        }
    }

    /// The contents of a model's configs and secrets from what was materialised for its app
    /// (inline `content` as written), for deploys that come from the ledger, not the CLI.
    ///
    /// # Errors
    /// Names the file that is no longer on this host.
    pub async fn stored_files(
        &self,
        project: &Project,
    ) -> Result<BTreeMap<String, FileContent>, String> {
        let app = project.name.clone().unwrap_or_default();
        let mut files = BTreeMap::new();
        for (kind, objects) in [("configs", &project.configs), ("secrets", &project.secrets)] {
            for (name, obj) in objects {
                let content = match &obj.content {
                    Some(c) => FileContent::Text(c.clone()),
                    None => FileContent::from_bytes(
                        tokio::fs::read(self.apps_dir.join(&app).join(kind).join(name))
                            .await
                            .map_err(|e| {
                                format!("{kind}.{name} is no longer on this host ({e})")
                            })?,
                    ),
                };
                files.insert(format!("{kind}/{name}"), content);
            }
        }
        Ok(files)
    }

    /// Replaces the given replicas of a service (missing, dead or stuck) with fresh ones of
    /// `req`'s definition, gated on health like a deploy.
    ///
    /// # Errors
    /// What failed, with the container's last log lines.
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
        let (report, failure) = self
            .apply_service(req, None, release, service, action, have)
            .await;
        match failure {
            None => Ok(report.steps),
            Some(f) => Err(f.message),
        }
    }

    /// Checks what this version cannot do before anything changes.
    ///
    /// # Errors
    /// A message naming the service and key.
    pub fn check(req: &DeployRequest) -> Result<(), String> {
        for (key, content) in &req.files {
            content.bytes().map_err(|e| format!("files.{key}: {e}"))?;
        }
        for (name, s) in &req.project.services {
            claims(s).map_err(|e| format!("services.{name}.ports: {e}"))?;
            if s.image.is_none() {
                return Err(format!(
                    "services.{name}: no image to run; deploy with the capstan CLI, which builds `build:` services first, or give it an `image`"
                ));
            }
            for (kind, refs) in [("configs", &s.configs), ("secrets", &s.secrets)] {
                for r in refs {
                    if !req.files.contains_key(&format!("{kind}/{}", r.source)) {
                        return Err(format!(
                            "services.{name}.{kind}: the content of {kind}.{} was not sent",
                            r.source
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The plan this request would run now.
    ///
    /// # Errors
    /// The engine's error.
    pub async fn plan(
        &self,
        req: &DeployRequest,
        previous: Option<&Project>,
    ) -> Result<crate::Plan, capstan_engine::Error> {
        let app = req.project.name.clone().unwrap_or_default();
        let running = replicas_of_app(&app, &self.engine.list_containers(true).await?);
        let mut image_ids = BTreeMap::new();
        for (name, s) in &req.project.services {
            if let Some(image) = &s.image
                && let Some(found) = self.engine.inspect_image(image).await?
            {
                image_ids.insert(name.clone(), found.id);
            }
        }
        let digests = file_digests(&req.files);
        Ok(plan(
            Desired {
                project: &req.project,
                previous,
                image_ids: &image_ids,
                file_digests: &digests,
            },
            &running,
        ))
    }

    /// Deploys `req` as release `release`; `previous` is the model now running (for rollback).
    pub async fn deploy(
        &self,
        req: &DeployRequest,
        previous: Option<&Project>,
        release: i64,
    ) -> Report {
        let report = self.deploy_claimed(req, previous, release).await;
        if let Some(router) = &self.router {
            // from now on the app's containers alone say what is published
            router.unclaim(&report.app).await;
        }
        report
    }

    async fn deploy_claimed(
        &self,
        req: &DeployRequest,
        previous: Option<&Project>,
        release: i64,
    ) -> Report {
        let app = req.project.name.clone().unwrap_or_default();
        let mut report = Report {
            app: app.clone(),
            release,
            outcome: Outcome::Succeeded,
            services: Vec::new(),
            error: None,
        };
        if let Err(e) = self.prepare(req).await {
            report.outcome = Outcome::Failed;
            report.error = Some(e);
            return report;
        }
        let plan = match self.plan(req, previous).await {
            Ok(p) => p,
            Err(e) => {
                report.outcome = Outcome::Failed;
                report.error = Some(e.to_string());
                return report;
            }
        };
        let running = match self.engine.list_containers(true).await {
            Ok(c) => replicas_of_app(&app, &c),
            Err(e) => {
                report.outcome = Outcome::Failed;
                report.error = Some(e.to_string());
                return report;
            }
        };
        let actions: BTreeMap<String, Action> = plan
            .services
            .iter()
            .map(|s| (s.service.clone(), s.action.clone()))
            .collect();
        for level in &plan.levels {
            let runs = level.iter().map(|service| {
                let action = actions.get(service).cloned().unwrap_or(Action::Unchanged);
                let have: BTreeMap<u32, String> = running
                    .iter()
                    .filter(|r| &r.service == service)
                    .map(|r| (r.replica, r.id.clone()))
                    .collect();
                self.apply_service(req, previous, release, service, action, have)
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
        // services no longer in the file
        for s in &plan.services {
            if let Action::Remove { .. } = s.action {
                let start = Instant::now();
                let mut steps = Vec::new();
                for r in running.iter().filter(|r| r.service == s.service) {
                    self.retire(&r.id, 10).await;
                    steps.push(format!("removed replica {}", r.replica));
                }
                report.services.push(ServiceReport {
                    service: s.service.clone(),
                    action: "remove".into(),
                    steps,
                    seconds: start.elapsed().as_secs_f64(),
                });
            }
        }
        report
    }

    /// Files, networks, volumes, images.
    async fn prepare(&self, req: &DeployRequest) -> Result<(), String> {
        Self::check(req)?;
        let project = &req.project;
        let app = project.name.clone().unwrap_or_default();
        let names = Names::of(project);
        // the proxy listens before anything changes, so a taken port fails the deploy here
        let mut published = BTreeMap::new();
        for (name, s) in &project.services {
            let c = claims(s).map_err(|e| format!("services.{name}.ports: {e}"))?;
            if !c.is_empty() {
                published.insert(name.clone(), c);
            }
        }
        match &self.router {
            Some(router) => router.claim(&app, &published).await?,
            None if !published.is_empty() => {
                return Err(
                    "published ports need capstan's proxy, which only runs under `capstan serve`"
                        .into(),
                );
            }
            None => {}
        }
        self.materialise(req).map_err(|e| {
            format!(
                "cannot write configs and secrets under {}: {e}",
                self.apps_dir.display()
            )
        })?;
        let mut networks: Vec<(String, bool)> = project
            .networks
            .iter()
            .filter(|(_, d)| d.as_ref().and_then(|d| d.external) != Some(true))
            .map(|(n, d)| {
                (
                    n.clone(),
                    d.as_ref().and_then(|d| d.internal).unwrap_or(false),
                )
            })
            .collect();
        if project
            .services
            .values()
            .any(|s| s.networks.as_ref().is_none_or(|n| n.0.is_empty()))
        {
            networks.push(("default".into(), false));
        }
        for (net, internal) in networks {
            let l = labels(&app, None, &[("com.docker.compose.network", net.clone())]);
            self.engine
                .ensure_network(&names.network(project, &net), internal, &l)
                .await
                .map_err(|e| format!("networks.{net}: {e}"))?;
        }
        for (vol, def) in &project.volumes {
            if def.as_ref().and_then(|d| d.external) == Some(true) {
                continue;
            }
            let mut l = labels(&app, None, &[("com.docker.compose.volume", vol.clone())]);
            if let Some(d) = def {
                l.extend(d.labels.clone());
            }
            self.engine
                .ensure_volume(&names.volume(project, vol), &l)
                .await
                .map_err(|e| format!("volumes.{vol}: {e}"))?;
        }
        for (name, s) in &project.services {
            let Some(image) = &s.image else { continue };
            let present = self
                .engine
                .inspect_image(image)
                .await
                .map_err(|e| e.to_string())?;
            if present.is_none() {
                self.engine
                    .pull(image)
                    .await
                    .map_err(|e| format!("services.{name}.image: cannot pull {image}: {e}"))?;
            }
        }
        Ok(())
    }

    /// Writes configs (0444) and secrets (0400 unless a reference sets `mode`) under the app's
    /// private directory, owned by the `uid`/`gid` a reference asks for.
    fn materialise(&self, req: &DeployRequest) -> std::io::Result<()> {
        let app = req.project.name.clone().unwrap_or_default();
        let dir = self.apps_dir.join(&app);
        for kind in ["configs", "secrets"] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir.join(kind))?;
        }
        for (key, content) in &req.files {
            let Some((kind, name)) = key.split_once('/') else {
                continue;
            };
            if !matches!(kind, "configs" | "secrets") || name.contains('/') || name.starts_with('.')
            {
                continue;
            }
            let reference = req
                .project
                .services
                .values()
                .flat_map(|s| {
                    if kind == "configs" {
                        &s.configs
                    } else {
                        &s.secrets
                    }
                })
                .find(|r| r.source == name && (r.mode.is_some() || r.uid.is_some()));
            let mode = reference
                .and_then(|r| r.mode)
                .unwrap_or(if kind == "secrets" { 0o400 } else { 0o444 });
            let path = dir.join(kind).join(name);
            let tmp = dir.join(kind).join(format!(".{name}.tmp"));
            {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)?;
                f.write_all(&content.bytes().map_err(std::io::Error::other)?)?;
                f.sync_all()?;
            }
            if let Some(r) = reference {
                let uid = r.uid.as_deref().and_then(|u| u.parse().ok());
                let gid = r.gid.as_deref().and_then(|g| g.parse().ok());
                if uid.is_some() || gid.is_some() {
                    std::os::unix::fs::chown(&tmp, uid, gid)?;
                }
            }
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
            std::fs::rename(&tmp, &path)?;
        }
        Ok(())
    }

    fn spec(
        &self,
        req: &DeployRequest,
        project: &Project,
        service: &str,
        replica: u32,
        release: i64,
    ) -> Result<ContainerSpec, String> {
        let app = project.name.clone().unwrap_or_default();
        container_spec(
            project,
            service,
            replica,
            release,
            &self.secret_paths(&app, &req.files),
        )
        .map_err(|e| e.to_string())
    }

    /// Creates, starts and waits for one replica under `name`.
    async fn launch(
        &self,
        name: &str,
        spec: &ContainerSpec,
        service: &Service,
    ) -> Result<String, String> {
        for m in &spec.mounts {
            if let capstan_engine::MountSpec::Bind {
                source,
                create_host_path: true,
                ..
            } = m
                && !std::path::Path::new(source).exists()
            {
                std::fs::create_dir_all(source)
                    .map_err(|e| format!("cannot create bind source {source}: {e}"))?;
            }
        }
        let id = self
            .engine
            .create_from_spec(name, spec)
            .await
            .map_err(|e| format!("cannot create {name}: {e}"))?;
        if let Err(e) = self.engine.start_container(&id).await {
            let logs = self.engine.tail_logs(&id, 20).await.unwrap_or_default();
            let _ = self.engine.remove_container(&id, true).await;
            return Err(format!("cannot start {name}: {e}\n{logs}"));
        }
        if let Some(tx) = &self.progress {
            let _ = tx.try_send(Progress {
                service: spec
                    .labels
                    .get("io.capstan.service")
                    .cloned()
                    .unwrap_or_default(),
                message: format!(
                    "{name} started, waiting until it is {}",
                    if spec.healthcheck.is_some() {
                        "healthy"
                    } else {
                        "running steadily"
                    }
                ),
            });
        }
        if let Err(e) = self.wait_ready(&id, name, spec, service).await {
            let logs = self.engine.tail_logs(&id, 20).await.unwrap_or_default();
            let _ = self.engine.remove_container(&id, true).await;
            let logs = if logs.is_empty() {
                String::new()
            } else {
                format!("\nlast log lines of {name}:\n{logs}")
            };
            return Err(format!("{e}{logs}"));
        }
        if let Some(router) = &self.router
            && spec.labels.contains_key(crate::route::PORTS_LABEL)
            && let Err(e) = router.sync().await
        {
            tracing::warn!(container = name, error = %e, "cannot put the replica in rotation yet; the router retries");
        }
        Ok(id)
    }

    /// Healthy (with a healthcheck) or running for `monitor` (without one).
    async fn wait_ready(
        &self,
        id: &str,
        name: &str,
        spec: &ContainerSpec,
        service: &Service,
    ) -> Result<(), String> {
        let check = spec
            .healthcheck
            .as_ref()
            .filter(|h| h.test.first().map(String::as_str) != Some("NONE"));
        let monitor = update_setting(service, |u| u.monitor.clone())
            .and_then(|m| duration_nanos(&m).ok())
            .map_or(Duration::from_secs(2), |ns| {
                Duration::from_nanos(ns.max(0) as u64)
            });
        let deadline = Instant::now()
            + check.map_or(monitor + Duration::from_secs(30), |h| {
                let ns =
                    |v: Option<i64>, d: i64| Duration::from_nanos(v.unwrap_or(d).max(0) as u64);
                let round = ns(h.interval_ns, 30_000_000_000) + ns(h.timeout_ns, 30_000_000_000);
                (ns(h.start_period_ns, 0)
                    + round * (h.retries.unwrap_or(3).max(1) as u32 + 1)
                    + Duration::from_secs(10))
                .min(Duration::from_mins(5))
            });
        let mut running_since: Option<Instant> = None;
        // subscribed before the first look, so no event between the two is missed
        let mut events = self
            .events
            .as_ref()
            .map(tokio::sync::broadcast::Sender::subscribe);
        loop {
            let status = self
                .engine
                .container_status(id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("{name} disappeared while starting"))?;
            match status.state.as_str() {
                "exited" | "dead" => {
                    return Err(format!("{name} exited with code {}", status.exit_code));
                }
                "running" => {
                    let since = *running_since.get_or_insert_with(Instant::now);
                    match (&check, status.health.as_deref()) {
                        (Some(_), Some("healthy")) => return Ok(()),
                        (Some(_), Some("unhealthy")) => {
                            return Err(format!(
                                "{name} is unhealthy: {}",
                                status
                                    .health_output
                                    .unwrap_or_else(|| "no healthcheck output".into())
                            ));
                        }
                        (None, _) if since.elapsed() >= monitor => return Ok(()),
                        _ => {}
                    }
                }
                _ => {}
            }
            if Instant::now() > deadline {
                return Err(match status.health_output {
                    Some(out) => {
                        format!("{name} did not become healthy in time; last healthcheck: {out}")
                    }
                    None => format!("{name} did not become ready in time"),
                });
            }
            let mut pause = if events.is_some() {
                // a fallback only: the container's events wake us
                Duration::from_secs(1)
            } else {
                Duration::from_millis(200)
            };
            if check.is_none()
                && let Some(since) = running_since
            {
                pause = pause.min(monitor.saturating_sub(since.elapsed()));
            }
            next_event(events.as_mut(), id, pause).await;
        }
    }

    /// Stops (with the grace period) and removes a container; failures are ignored (it may be
    /// gone already).
    async fn retire(&self, id: &str, grace_secs: i64) {
        if let Some(router) = &self.router {
            // out of rotation first; its open requests get up to the grace period
            let open = router
                .drain(
                    vec![id.to_owned()],
                    Duration::from_secs(grace_secs.max(0) as u64),
                )
                .await;
            if open > 0 {
                tracing::warn!(
                    container = id,
                    open,
                    "stopping a replica with requests still open after its grace period"
                );
            }
        }
        let _ = self.engine.stop_container(id, grace_secs).await;
        let _ = self.engine.remove_container(id, true).await;
    }

    async fn apply_service(
        &self,
        req: &DeployRequest,
        previous: Option<&Project>,
        release: i64,
        name: &str,
        action: Action,
        have: BTreeMap<u32, String>,
    ) -> (ServiceReport, Option<Failure>) {
        let start = Instant::now();
        let project = &req.project;
        let names = Names::of(project);
        let mut steps = Steps {
            service: name.to_owned(),
            lines: Vec::new(),
            progress: self.progress.clone(),
        };
        let Some(service) = project.services.get(name) else {
            return (
                ServiceReport {
                    service: name.into(),
                    action: "none".into(),
                    steps: steps.lines,
                    seconds: 0.0,
                },
                None,
            );
        };
        let grace = service
            .stop_grace_period
            .as_deref()
            .and_then(|g| duration_nanos(g).ok())
            .map_or(10, |ns| (ns / 1_000_000_000).max(0));
        let label = match &action {
            Action::Create { .. } => "create",
            Action::Recreate { .. } => "recreate",
            Action::Scale { .. } => "scale",
            Action::Repair { .. } => "repair",
            Action::Remove { .. } => "remove",
            Action::Unchanged => "unchanged",
        };
        let fresh: Vec<u32> = match &action {
            Action::Create { replicas } => (1..=*replicas).collect(),
            Action::Scale { from, to } if to > from => {
                (from + 1..=*to).filter(|r| !have.contains_key(r)).collect()
            }
            Action::Repair { replicas, .. } => replicas.clone(),
            _ => Vec::new(),
        };
        let mut failure = None;
        if let Action::Recreate { reasons } = &action {
            steps.push(format!("rolling update: {}", reasons.join("; ")));
            failure = self
                .roll(
                    req, previous, release, name, service, &have, grace, &mut steps,
                )
                .await
                .err();
        } else {
            if let Action::Scale { to, .. } = action {
                for (r, id) in have.iter().filter(|(r, _)| **r > to) {
                    self.retire(id, grace).await;
                    steps.push(format!("removed replica {r}"));
                }
            }
            let names = &names;
            let launches = fresh.iter().map(|r| {
                let r = *r;
                let old = have.get(&r).cloned();
                async move {
                    if let Some(old) = old {
                        self.retire(&old, grace).await;
                    }
                    let spec = self.spec(req, project, name, r, release)?;
                    self.launch(&names.container(name, r), &spec, service)
                        .await
                        .map(|_| r)
                }
            });
            for result in futures_util::future::join_all(launches).await {
                match result {
                    Ok(r) => steps.push(format!("replica {r} ready")),
                    Err(e) => {
                        failure.get_or_insert(Failure {
                            message: format!("services.{name}: {e}"),
                            rolled_back: false,
                        });
                    }
                }
            }
        }
        (
            ServiceReport {
                service: name.into(),
                action: label.into(),
                steps: steps.lines,
                seconds: start.elapsed().as_secs_f64(),
            },
            failure,
        )
    }

    /// A rolling update: batches of `parallelism`, `delay` between, start-first unless
    /// `order: stop-first`; on failure, `failure_action` (rollback by default).
    #[allow(clippy::too_many_arguments)]
    async fn roll(
        &self,
        req: &DeployRequest,
        previous: Option<&Project>,
        release: i64,
        name: &str,
        service: &Service,
        have: &BTreeMap<u32, String>,
        grace: i64,
        steps: &mut Steps,
    ) -> Result<(), Failure> {
        let names = Names::of(&req.project);
        let want = replicas_of(service);
        let parallelism = update_setting(service, |u| u.parallelism)
            .unwrap_or(1)
            .max(1) as usize;
        let stop_first =
            update_setting(service, |u| u.order.clone()).as_deref() == Some("stop-first");
        let delay = update_setting(service, |u| u.delay.clone())
            .and_then(|d| duration_nanos(&d).ok())
            .map_or(Duration::ZERO, |ns| Duration::from_nanos(ns.max(0) as u64));
        let failure_action = update_setting(service, |u| u.failure_action.clone())
            .unwrap_or_else(|| "rollback".into());
        let replicas: Vec<u32> = (1..=want).collect();
        let mut done: Vec<u32> = Vec::new();
        for batch in replicas.chunks(parallelism) {
            let result = self
                .replace_batch(
                    req,
                    &req.project,
                    release,
                    name,
                    service,
                    batch,
                    have,
                    grace,
                    stop_first,
                )
                .await;
            match result {
                Ok(()) => {
                    steps.push(format!(
                        "replica{} {} replaced",
                        if batch.len() == 1 { "" } else { "s" },
                        join(batch)
                    ));
                    done.extend_from_slice(batch);
                }
                Err(message) if failure_action == "continue" => {
                    steps.push(format!(
                        "replicas {} failed, continuing as asked: {message}",
                        join(batch)
                    ));
                }
                Err(message) => {
                    steps.push(format!("replicas {} failed: {message}", join(batch)));
                    if failure_action == "pause" {
                        return Err(Failure {
                            message: format!("services.{name}: rollout paused: {message}"),
                            rolled_back: false,
                        });
                    }
                    // put back what this rollout already replaced
                    let Some(prev) = previous.filter(|p| p.services.contains_key(name)) else {
                        return Err(Failure {
                            message: format!(
                                "services.{name}: {message} (no earlier release to roll back to)"
                            ),
                            rolled_back: false,
                        });
                    };
                    let prev_service = &prev.services[name];
                    for r in &done {
                        let current: BTreeMap<u32, String> = self
                            .engine
                            .list_containers(true)
                            .await
                            .map(|c| replicas_of_app(&names.project, &c))
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|x| x.service == name)
                            .map(|x| (x.replica, x.id))
                            .collect();
                        if let Err(e) = self
                            .replace_batch(
                                req,
                                prev,
                                release - 1,
                                name,
                                prev_service,
                                &[*r],
                                &current,
                                grace,
                                false,
                            )
                            .await
                        {
                            return Err(Failure {
                                message: format!(
                                    "services.{name}: {message}; and rolling replica {r} back failed too: {e}"
                                ),
                                rolled_back: false,
                            });
                        }
                        steps.push(format!("replica {r} rolled back"));
                    }
                    return Err(Failure {
                        message: format!("services.{name}: {message}"),
                        rolled_back: true,
                    });
                }
            }
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
        for (r, id) in have.iter().filter(|(r, _)| **r > want) {
            self.retire(id, grace).await;
            steps.push(format!("removed replica {r}"));
        }
        Ok(())
    }

    /// Replaces the replicas of one batch with containers of `project`'s definition.
    #[allow(clippy::too_many_arguments)]
    async fn replace_batch(
        &self,
        req: &DeployRequest,
        project: &Project,
        release: i64,
        name: &str,
        service: &Service,
        batch: &[u32],
        have: &BTreeMap<u32, String>,
        grace: i64,
        stop_first: bool,
    ) -> Result<(), String> {
        let names = &Names::of(project);
        let runs = batch.iter().map(|r| async move {
            let r = *r;
            let canonical = names.container(name, r);
            let spec = self.spec(req, project, name, r, release)?;
            let old = have.get(&r).cloned();
            if stop_first {
                if let Some(old) = &old {
                    self.retire(old, grace).await;
                }
                return self.launch(&canonical, &spec, service).await.map(drop);
            }
            // start-first: the new replica runs beside the old one until it is ready
            let next = format!("{canonical}-next");
            let _ = self.engine.remove_container(&next, true).await;
            let id = self.launch(&next, &spec, service).await?;
            if let Some(old) = &old {
                self.retire(old, grace).await;
            }
            self.engine
                .rename_container(&id, &canonical)
                .await
                .map_err(|e| format!("cannot rename {next} to {canonical}: {e}"))
        });
        let results = futures_util::future::join_all(runs).await;
        results
            .into_iter()
            .collect::<Result<Vec<()>, String>>()
            .map(drop)
    }

    /// Stops and removes every container of `app`, looking again until none is left (a busy
    /// engine may leave one behind: a removal that timed out), a few times at most.
    async fn retire_all(
        &self,
        app: &str,
        removed: &mut Vec<String>,
    ) -> Result<(), capstan_engine::Error> {
        for _ in 0..3 {
            let mine: Vec<_> = self
                .engine
                .list_containers(true)
                .await?
                .into_iter()
                .filter(|c| c.labels.get("io.capstan.app").map(String::as_str) == Some(app))
                .collect();
            if mine.is_empty() {
                break;
            }
            // in parallel: each may take its whole grace period
            futures_util::future::join_all(mine.iter().map(|c| self.retire(&c.id, 10))).await;
            for c in &mine {
                let entry = format!("container {}", c.name);
                if !removed.contains(&entry) {
                    removed.push(entry);
                }
            }
        }
        Ok(())
    }

    /// Removes everything an app made: containers, networks, and with `volumes` its volumes;
    /// and its materialised configs and secrets. Returns what was removed.
    ///
    /// # Errors
    /// The engine's error.
    pub async fn down(
        &self,
        app: &str,
        volumes: bool,
    ) -> Result<Vec<String>, capstan_engine::Error> {
        let mut removed = Vec::new();
        self.retire_all(app, &mut removed).await?;
        if let Some(router) = &self.router {
            let _ = router.sync().await;
        }
        let (networks, vols) = self
            .engine
            .labeled_networks_and_volumes("io.capstan.app", app)
            .await?;
        for n in networks {
            // the engine releases a removed container's endpoint a moment after the removal,
            // longer when it is busy, and a loaded engine may keep it for good: a container it
            // had not listed yet is retired, and after that what is left is disconnected by force
            let mut tries = 0;
            loop {
                match self.engine.remove_network(&n).await {
                    Err(e) if tries < 40 && e.to_string().contains("active endpoints") => {
                        tries += 1;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        if tries % 4 == 0 {
                            self.retire_all(app, &mut removed).await?;
                            if tries >= 8 {
                                let names: Vec<String> = removed
                                    .iter()
                                    .filter_map(|r| r.strip_prefix("container "))
                                    .map(str::to_owned)
                                    .collect();
                                let forced = self.engine.disconnect_all(&n, &names).await?;
                                tracing::warn!(
                                    app,
                                    endpoints = forced,
                                    "endpoints left on the app's network after its containers \
                                     were removed: disconnected by force"
                                );
                            }
                        }
                    }
                    result => break result?,
                }
            }
            removed.push(format!("network {n}"));
        }
        if volumes {
            for v in vols {
                self.engine.remove_volume(&v).await?;
                removed.push(format!("volume {v}"));
            }
        }
        let dir = self.apps_dir.join(app);
        if dir.exists() && !app.is_empty() && !app.contains('/') {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(removed)
    }
}

/// Waits up to `pause` for an event of container `id` (without a subscription, just waits).
async fn next_event(
    events: Option<&mut tokio::sync::broadcast::Receiver<capstan_model::Event>>,
    id: &str,
    pause: Duration,
) {
    let Some(rx) = events else {
        tokio::time::sleep(pause).await;
        return;
    };
    let deadline = tokio::time::Instant::now() + pause;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(e)) if e.actor == id => return,
            Ok(Ok(_)) => {}
            // lagged: look now; closed: the daemon is stopping, fall back to the timer
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) | Err(_) => return,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                tokio::time::sleep_until(deadline).await;
                return;
            }
        }
    }
}

fn join(batch: &[u32]) -> String {
    batch
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn update_setting<T>(
    service: &Service,
    f: impl Fn(&capstan_compose::model::UpdateConfig) -> Option<T>,
) -> Option<T> {
    service.deploy.as_ref()?.update_config.as_ref().and_then(f)
}
