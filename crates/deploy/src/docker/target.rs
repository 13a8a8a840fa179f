//! [`DockerTarget`]: the [`Target`] seam over one Docker engine.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use capstan_compose::Project;
use capstan_engine::Engine;
use capstan_model::Event;
use tokio::sync::broadcast;

use super::names::Names;
use super::route::{PORTS_LABEL, Router, claims};
use super::spec::{SecretPaths, container_spec};
use crate::DeployRequest;
use crate::error::TargetError;
use crate::request::file_digests;
use crate::target::{Created, Replica, Status, Target, Unit};

/// Replicas as containers of one engine.
#[derive(Debug, Clone)]
pub struct DockerTarget {
    /// The engine.
    pub engine: Engine,
    /// `<data>/apps`: materialised configs and secrets live under `<apps>/<app>/`.
    pub apps_dir: PathBuf,
    /// The proxy's router: without one, published ports are refused.
    pub router: Option<Router>,
    /// The journal's live events: health gates wake on them instead of polling the engine.
    pub events: Option<broadcast::Sender<Event>>,
    /// Where secrets are kept sealed and placed on tmpfs; without it (a target for tests of
    /// the API alone) they are written under `apps_dir` as configs are.
    pub secrets: Option<crate::SecretStore>,
    /// Where registry credentials come from for pulls; without it, images are pulled
    /// anonymously.
    pub credentials: Option<std::sync::Arc<capstan_registry::CredentialSource>>,
    /// The replicas set aside and stopping in the background now (by id): one set aside that
    /// is not here was left by a capstan that stopped, and the next deploy removes it.
    pub retiring: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

impl DockerTarget {
    /// What the engine has of each image `project`'s services name: each image looked at once,
    /// all at once (20 services of one image: one inspect, not 20 in a row).
    pub(super) async fn inspect_images(
        &self,
        project: &Project,
    ) -> Result<BTreeMap<String, Option<capstan_engine::ImageState>>, TargetError> {
        let images: std::collections::BTreeSet<&String> = project
            .services
            .values()
            .filter_map(|s| s.image.as_ref())
            .collect();
        let looked = futures_util::future::join_all(
            images
                .into_iter()
                .map(|image| async move { (image, self.engine.inspect_image(image).await) }),
        )
        .await;
        let mut found = BTreeMap::new();
        for (image, state) in looked {
            found.insert(image.clone(), state.map_err(engine_error(None))?);
        }
        Ok(found)
    }
}

/// Maps an engine error to the seam's, with what was being done.
pub(crate) fn engine_error(
    context: impl Into<Option<String>>,
) -> impl FnOnce(capstan_engine::Error) -> TargetError {
    let context = context.into();
    move |e| {
        if e.is_unreachable() {
            TargetError::Unreachable {
                context,
                source: Box::new(e),
            }
        } else {
            TargetError::Failed {
                context,
                source: Box::new(e),
            }
        }
    }
}

/// Pulls `image` on `engine` with the credentials `credentials` knows for its registry. A
/// failure names the image, its registry and where the credentials came from, or says none
/// are known and how to give them.
///
/// # Errors
/// [`TargetError::Refused`] when the credentials cannot be read, [`TargetError::Failed`] when
/// the pull fails, [`TargetError::Unreachable`] when the engine is.
pub async fn pull_image(
    engine: &Engine,
    credentials: Option<&capstan_registry::CredentialSource>,
    image: &str,
) -> Result<(), TargetError> {
    let found = match credentials {
        Some(source) => source
            .for_image(image)
            .await
            .map_err(|e| TargetError::Refused(format!("cannot pull {image}: {e}")))?,
        None => None,
    };
    let result = engine
        .pull(image, found.as_ref().map(|(auth, _)| auth))
        .await;
    let Err(e) = result else {
        return Ok(());
    };
    if e.is_unreachable() {
        return Err(engine_error(format!("cannot pull {image}"))(e));
    }
    let registry = capstan_registry::Reference::parse(image)
        .map(|r| r.registry)
        .unwrap_or_default();
    let said = e.to_string().to_ascii_lowercase();
    let refused = [
        "unauthorized",
        "authentication required",
        "denied",
        "no basic auth",
    ]
    .iter()
    .any(|w| said.contains(w));
    let hint = match (&found, refused) {
        (Some((_, f)), true) => format!(
            "; {registry} refused the credentials from {}: check them, or replace them with capstan registries login {registry}",
            f.describe()
        ),
        (None, true) => format!(
            "; {registry} wants credentials and capstan has none for it: capstan registries login {registry}"
        ),
        (Some((_, f)), false) => format!(" (with the credentials from {})", f.describe()),
        (None, false) => String::new(),
    };
    Err(TargetError::Failed {
        context: Some(format!("cannot pull {image} from {registry}{hint}")),
        source: Box::new(e),
    })
}

/// Whole seconds of a grace period, as the engine takes them.
pub(super) fn seconds(grace: Duration) -> i64 {
    i64::try_from(grace.as_secs()).unwrap_or(i64::MAX)
}

impl DockerTarget {
    /// Pulls `image` with the credentials known for its registry.
    pub(super) async fn pull_image(&self, image: &str) -> Result<(), TargetError> {
        pull_image(&self.engine, self.credentials.as_deref(), image).await
    }

    pub(super) fn secret_paths(&self, app: &str, request: &DeployRequest) -> SecretPaths {
        SecretPaths {
            dir: self.apps_dir.join(app),
            run: self.secrets.as_ref().map(|s| s.run_dir.join(app)),
            digests: file_digests(&request.files),
        }
    }
}

/// Refuses what a request needs of capstan on the engine's machine when the engine at
/// `engine` is on another machine with no capstan there (a host without an agent): capstan's
/// proxy for published ports, and files for secrets and configs.
///
/// # Errors
/// [`TargetError::Refused`] naming the service and key, and what to do.
pub fn needs_no_agent(request: &DeployRequest, engine: &str) -> Result<(), TargetError> {
    for (name, s) in &request.project.services {
        let refused = |key: &str, what: &str| {
            Err(TargetError::Refused(format!(
                "services.{name}.{key}: {what}, and this engine is on another machine ({engine}) with no capstan agent there: run `capstan agent --join` on that host to have them"
            )))
        };
        if !claims(s).unwrap_or_default().is_empty() {
            return refused(
                "ports",
                "published ports are served by capstan's proxy on the engine's machine",
            );
        }
        if !s.secrets.is_empty() {
            return refused(
                "secrets",
                "secrets are placed in files on the engine's machine",
            );
        }
        if !s.configs.is_empty() {
            return refused(
                "configs",
                "configs are placed in files on the engine's machine",
            );
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl Target for DockerTarget {
    fn check(&self, request: &DeployRequest) -> Result<(), TargetError> {
        for (name, s) in &request.project.services {
            claims(s).map_err(|e| TargetError::Refused(format!("services.{name}.ports: {e}")))?;
        }
        if self.engine.is_local() {
            Ok(())
        } else {
            // an engine on another machine (a host without an agent)
            needs_no_agent(request, self.engine.host())
        }
    }

    async fn prepare(&self, request: &DeployRequest) -> Result<(), TargetError> {
        self.prepare_app(request).await
    }

    async fn finish(&self, app: &str) {
        if let Some(router) = &self.router {
            router.unclaim(app).await;
        }
    }

    async fn observe(&self, app: &str) -> Result<Vec<Replica>, TargetError> {
        let containers = self
            .engine
            .list_containers(true)
            .await
            .map_err(engine_error(None))?;
        Ok(super::replicas::of_app(app, &containers))
    }

    async fn observe_all(&self) -> Result<BTreeMap<String, Vec<Replica>>, TargetError> {
        let containers = self
            .engine
            .list_containers(true)
            .await
            .map_err(engine_error(None))?;
        Ok(super::replicas::by_app(&containers))
    }

    async fn image_ids(&self, project: &Project) -> Result<BTreeMap<String, String>, TargetError> {
        let found = self.inspect_images(project).await?;
        Ok(project
            .services
            .iter()
            .filter_map(|(name, s)| {
                let state = found.get(s.image.as_ref()?)?.as_ref()?;
                Some((name.clone(), state.id.clone()))
            })
            .collect())
    }

    async fn pull(&self, image: &str) -> Result<(), TargetError> {
        self.pull_image(image).await
    }

    fn stops_first(&self, service: &capstan_compose::model::Service) -> Option<String> {
        super::spec::stops_first(service)
    }

    async fn create(&self, unit: Unit<'_>) -> Result<Created, TargetError> {
        let names = Names::of(unit.project);
        let app = &names.project;
        self.ensure_secrets(unit.request, unit.service)
            .map_err(|e| TargetError::Refused(format!("services.{}.secrets: {e}", unit.service)))?;
        let spec = container_spec(
            unit.project,
            unit.service,
            unit.replica,
            unit.release,
            &self.secret_paths(app, unit.request),
        )
        .map_err(|e| TargetError::Refused(e.to_string()))?;
        let canonical = names.replica(unit.project, unit.service, unit.replica);
        let name = if unit.beside {
            // a `-next` left by a rollout that was cut off
            let next = format!("{canonical}-next");
            let _ = self.engine.remove_container_detached(&next).await;
            next
        } else {
            canonical
        };
        for m in &spec.mounts {
            if let capstan_engine::MountSpec::Bind {
                source,
                create_host_path: true,
                ..
            } = m
                && !std::path::Path::new(source).exists()
            {
                std::fs::create_dir_all(source).map_err(|e| {
                    TargetError::Refused(format!("cannot create bind source {source}: {e}"))
                })?;
            }
        }
        let id = self
            .engine
            .create_from_spec(&name, &spec)
            .await
            .map_err(engine_error(format!("cannot create {name}")))?;
        Ok(Created { id, name })
    }

    async fn start(&self, id: &str) -> Result<(), TargetError> {
        self.engine
            .start_container(id)
            .await
            .map_err(engine_error(None))
    }

    async fn status(&self, id: &str) -> Result<Option<Status>, TargetError> {
        let status = self
            .engine
            .container_status(id)
            .await
            .map_err(engine_error(None))?;
        Ok(status.map(|s| Status {
            state: s.state,
            exit_code: s.exit_code,
            health: s.health,
            health_output: s.health_output,
        }))
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<Event>> {
        self.events.as_ref().map(broadcast::Sender::subscribe)
    }

    fn is_replica_trouble(&self, e: &Event) -> bool {
        e.kind == "container"
            && e.attributes.contains_key("io.capstan.app")
            && (matches!(e.action.as_str(), "die" | "destroy" | "stop" | "kill")
                || e.action.starts_with("health_status"))
    }

    async fn last_logs(&self, id: &str, lines: usize) -> String {
        self.engine.tail_logs(id, lines).await.unwrap_or_default()
    }

    async fn admit(&self, id: &str, unit: Unit<'_>) {
        let publishes = unit
            .project
            .services
            .get(unit.service)
            .is_some_and(|s| claims(s).is_ok_and(|c| !c.is_empty()));
        if let Some(router) = &self.router
            && publishes
            && let Err(e) = router.sync().await
        {
            tracing::warn!(container = id, label = PORTS_LABEL, error = %e, "cannot put the replica in rotation yet; the router retries");
        }
    }

    async fn promote(&self, id: &str, unit: Unit<'_>) -> Result<(), TargetError> {
        let canonical = Names::of(unit.project).replica(unit.project, unit.service, unit.replica);
        self.engine
            .rename_container(id, &canonical)
            .await
            .map_err(engine_error(format!(
                "cannot rename {canonical}-next to {canonical}"
            )))
    }

    async fn drain(&self, id: &str, grace: Duration) -> usize {
        match &self.router {
            // out of rotation first; its open requests get up to the grace period
            Some(router) => router.drain(vec![id.to_owned()], grace).await as usize,
            None => 0,
        }
    }

    async fn remove(&self, id: &str, grace: Duration) -> Result<(), TargetError> {
        let result = async {
            match self.engine.stop_container(id, seconds(grace)).await {
                Err(e) if !e.is_not_found() => {
                    return Err(engine_error(format!("cannot stop {id}"))(e));
                }
                _ => {}
            }
            // one already gone is no error
            self.engine
                .remove_container_detached(id)
                .await
                .map_err(engine_error(format!("cannot remove {id}")))
        }
        .await;
        self.retiring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
        result
    }

    async fn set_aside(&self, id: &str, unit: Unit<'_>) -> Result<(), TargetError> {
        let canonical = Names::of(unit.project).replica(unit.project, unit.service, unit.replica);
        let aside = super::names::retiring(&canonical, id);
        self.retiring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.to_owned());
        self.engine
            .rename_container(id, &aside)
            .await
            .map_err(engine_error(format!(
                "cannot rename {canonical} to {aside}"
            )))
    }

    async fn discard(&self, id: &str) {
        let _ = self.engine.remove_container_detached(id).await;
    }

    async fn restart(&self, id: &str, grace: Duration) -> Result<(), TargetError> {
        let _ = self.engine.stop_container(id, seconds(grace)).await;
        self.engine
            .start_container(id)
            .await
            .map_err(engine_error(None))
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), TargetError> {
        self.engine
            .stop_container(id, seconds(grace))
            .await
            .map_err(engine_error(format!("cannot stop {id}")))?;
        // stopped, it leaves the router's drained set: started again, it may come back
        self.rotate().await;
        Ok(())
    }

    async fn rotate(&self) {
        if let Some(router) = &self.router
            && let Err(e) = router.sync().await
        {
            tracing::warn!(error = %e, "cannot update the proxy's table yet; the router retries");
        }
    }

    async fn down(&self, app: &str, volumes: bool) -> Result<Vec<String>, TargetError> {
        self.take_down(app, volumes)
            .await
            .map_err(engine_error(None))
    }
}
