use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use capstan_deploy::{DeployRequest, policy};
use capstan_model::{AppSummary, Release, nanos_to_datetime};
use capstan_model::{Plan, Progress, Report};
use capstan_store::ReleaseRow;
use futures_util::StreamExt;

use crate::auth::Principal;
use crate::params::{self, Pairs};
use crate::{ApiError, AppState, Code};

/// A Compose file (<https://compose-spec.io>), as the dashboard posts it. Documentation only:
/// it is read by `capstan_compose`, which checks every key.
#[derive(utoipa::ToSchema)]
#[expect(dead_code, reason = "the body is read by capstan_compose")]
pub(crate) struct ComposeFile {
    /// At least one service, by name.
    services: BTreeMap<String, serde_json::Value>,
    networks: Option<BTreeMap<String, serde_json::Value>>,
    volumes: Option<BTreeMap<String, serde_json::Value>>,
    configs: Option<BTreeMap<String, serde_json::Value>>,
    secrets: Option<BTreeMap<String, serde_json::Value>>,
}

/// The deploy request a plan or deploy posts: the resolved model as JSON (what the CLI sends),
/// or a Compose file (`Content-Type: application/yaml`, what the dashboard sends), resolved
/// here with no environment and no files beside it.
async fn request(
    state: &AppState,
    place: &Place,
    app: &str,
    headers: &HeaderMap,
    body: &axum::body::Bytes,
) -> Result<DeployRequest, ApiError> {
    let req = read_request(state, app, headers, body).await?;
    // a plan refuses what a deploy would
    place
        .deployer
        .check(&req)
        .map_err(|e| ApiError::new(Code::BadRequest, e.to_string()))?;
    // a host name another app serves here, before anything is recorded
    if place.deployer.place.is_none()
        && let Some(router) = &state.router
        && let Some(ext) = &req.project.capstan
    {
        router
            .check_hosts(app, &ext.routes)
            .await
            .map_err(|e| ApiError::new(Code::BadRequest, e.to_string()))?;
    }
    Ok(req)
}

/// The request in the body (JSON, or a Compose file), its placeholders of running values
/// filled in, checked as every target needs it.
async fn read_request(
    state: &AppState,
    app: &str,
    headers: &HeaderMap,
    body: &axum::body::Bytes,
) -> Result<DeployRequest, ApiError> {
    let yaml = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("yaml"));
    // a model edited from what the API showed carries placeholders of the running values
    let running = capstan_deploy::running_release(&state.store, app).await?;
    let (mut req, sealed) = if yaml {
        compose_request(state, app, body, running.as_ref())?
    } else {
        let mut req: DeployRequest = crate::params::json_object(body).map_err(|e| {
            ApiError::bad_param(
                "body",
                format!(
                    "not a deploy request ({e}); send JSON, or a Compose file as application/yaml"
                ),
            )
        })?;
        let sealed = crate::redact::restore(&mut req.project, running.as_ref())?;
        // host names as the CLI completes them: a client of its own is held to the same
        capstan_compose::routes::resolve(&mut req.project)
            .map_err(|e| ApiError::bad_param("body", e.to_string()))?;
        for (key, o) in req
            .project
            .configs
            .iter()
            .map(|(n, o)| (format!("configs/{n}"), o))
            .chain(
                req.project
                    .secrets
                    .iter()
                    .map(|(n, o)| (format!("secrets/{n}"), o)),
            )
        {
            if let Some(content) = &o.content {
                req.files
                    .insert(key, capstan_deploy::FileContent::Text(content.clone()));
            }
        }
        (req, sealed)
    };
    // secrets shown by placeholder that the ledger keeps only sealed: read from the vault, at
    // the version the running release ran
    if let Some((project, digests)) = running.as_ref().filter(|_| !sealed.is_empty()) {
        let only = capstan_compose::Project {
            name: project.name.clone(),
            secrets: project
                .secrets
                .iter()
                .filter(|(name, _)| sealed.contains(name))
                .map(|(n, o)| (n.clone(), o.clone()))
                .collect(),
            ..Default::default()
        };
        let files = state
            .deployer
            .stored_files_at(&only, digests)
            .await
            .map_err(|e| ApiError::new(Code::Conflict, e.to_string()))?;
        req.files.extend(files);
    }
    if req.project.name.as_deref() != Some(app) {
        return Err(ApiError::bad_param(
            "app",
            format!(
                "the path names app {app:?} but the model is project {:?}",
                req.project.name.as_deref().unwrap_or_default()
            ),
        ));
    }
    if req.project.services.is_empty() {
        // a deploy of nothing would remove every service the app runs
        return Err(ApiError::bad_param(
            "body",
            "the model defines no services; to remove an app and its containers, use `capstan down APP`",
        ));
    }
    if let Some(source) = git_source(&req) {
        capstan_pipeline::SourceExt::check(source)
            .map_err(|e| ApiError::new(Code::BadRequest, format!("x-capstan.{e}")))?;
    }
    Ok(req)
}

/// The app's git source its Compose file names (`x-capstan.source`).
fn git_source(req: &DeployRequest) -> Option<&capstan_model::GitSource> {
    req.project.capstan.as_ref().and_then(|c| c.source.as_ref())
}

/// Refuses an app name that could not be deployed (and could climb out of `<data>/apps`).
pub(super) fn check_app(app: &str) -> Result<(), ApiError> {
    capstan_model::check_app_name(app).map_err(|e| ApiError::bad_param("app", e.to_string()))
}

/// Resolves an uploaded Compose file as the project `app` whose directory is the app's own. The
/// loader reads nothing beside it; nothing of the daemon's environment is interpolated, and
/// configs and secrets must be inline (`content:`): files and variables beside a Compose file
/// exist only on the uploader's side, where the CLI reads them.
fn compose_request(
    state: &AppState,
    app: &str,
    body: &axum::body::Bytes,
    running: Option<&(capstan_compose::Project, BTreeMap<String, String>)>,
) -> Result<(DeployRequest, Vec<String>), ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_param("body", "the Compose file is not UTF-8 text"))?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_param("body", "the Compose file is empty"));
    }
    let loaded = capstan_compose::load(&capstan_compose::Options {
        project_name: Some(app.to_owned()),
        working_dir: state.apps_dir.join(app),
        text: Some(text.to_owned()),
        ..Default::default()
    })
    .map_err(|e| ApiError::bad_param("body", e.to_string()))?;
    let mut project = loaded.project;
    let sealed = crate::redact::restore(&mut project, running)?;
    let source = serde_json::json!({ "files": ["(uploaded)"], "positions": loaded.positions });
    let req = DeployRequest::from_project(
        project,
        |_, _, obj| {
            if obj.environment.is_some() {
                return Err(
                    "an uploaded Compose file cannot take variables from the daemon's \
                     environment; inline the content, or deploy with the CLI"
                        .to_owned(),
                );
            }
            Ok(obj.content.clone().map(capstan_deploy::FileContent::Text))
        },
        source,
    )
    .map_err(|e| ApiError::bad_param("body", e))?;
    Ok((req, sealed))
}

/// The largest build context accepted (a tar archive, held in memory while the engine builds).
pub const BUILD_CONTEXT_LIMIT: usize = 1 << 30;

/// `POST /api/v1/apps/{app}/build/{service}?image=REF[&dockerfile=PATH][&target=STAGE][&arg=K=V...]`
/// with the build context as a tar body: builds and tags the service's image, labelled with the
/// app and service. Answers `{image, id}`; a failed build step is a 422 with the engine's message.
#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/build/{service}",
    tag = "apps",
    params(
        ("app" = String, Path, description = "the app (Compose project)"),
        ("service" = String, Path, description = "the service"),
        ("image" = String, Query, description = "the reference to tag the result with"),
        ("dockerfile" = Option<String>, Query, description = "the Dockerfile inside the context (default Dockerfile)"),
        ("target" = Option<String>, Query, description = "the build stage"),
        ("arg" = Option<String>, Query, description = "a build argument NAME=VALUE; repeatable")
    ),
    request_body(content = Vec<u8>, content_type = "application/x-tar", description = "the build context"),
    responses(
        (status = 200, description = "the image built", body = capstan_model::BuiltImage),
        (status = 422, description = "a build step failed", body = capstan_model::ErrorBody)
    )
)]
pub async fn build_service(
    State(state): State<AppState>,
    Path((app, service)): Path<(String, String)>,
    Query(pairs): Query<Pairs>,
    context: axum::body::Bytes,
) -> Result<Json<capstan_model::BuiltImage>, ApiError> {
    check_app(&app)?;
    capstan_model::check_object_name("service", &service)
        .map_err(|e| ApiError::bad_param("service", e.to_string()))?;
    params::only(&pairs, &["image", "dockerfile", "target", "arg"])?;
    let one = |name: &str| params::last(&pairs, name).map(str::to_owned);
    let image = one("image").ok_or_else(|| ApiError::bad_param("image", "missing"))?;
    if context.is_empty() {
        return Err(ApiError::bad_param(
            "body",
            "the build context (a tar archive) is empty",
        ));
    }
    let mut args = BTreeMap::new();
    for (k, v) in pairs.iter().filter(|(k, _)| k == "arg") {
        let (name, value) = v
            .split_once('=')
            .ok_or_else(|| ApiError::bad_param(k, format!("{v:?} is not NAME=VALUE")))?;
        args.insert(name.to_owned(), value.to_owned());
    }
    owns_image(&state, &app, &service, &image).await?;
    let dockerfile = one("dockerfile").unwrap_or_else(|| "Dockerfile".into());
    let credentials = base_credentials(&state, &context, &dockerfile, &args).await?;
    let build = capstan_engine::BuildContext {
        tar: context,
        dockerfile,
        args,
        target: one("target").filter(|t| !t.is_empty()),
        labels: capstan_deploy::labels(&app, Some(&service), &[]),
        credentials,
        memory: None,
    };
    state.engine.build(build, &image).await.map_err(|e| {
        if e.is_unreachable() {
            ApiError::from(e)
        } else {
            ApiError::new(
                Code::Failed,
                format!("services.{service}.build: building {image} failed: {e}"),
            )
        }
    })?;
    let id = state
        .engine
        .inspect_image(&image)
        .await?
        .map(|i| i.id)
        .unwrap_or_default();
    Ok(Json(capstan_model::BuiltImage { image, id }))
}

/// The credentials of the registries the context's Dockerfile pulls its `FROM` images from
/// (those alone: the builder is not handed every credential capstan knows).
async fn base_credentials(
    state: &AppState,
    context: &axum::body::Bytes,
    dockerfile: &str,
    args: &BTreeMap<String, String>,
) -> Result<Vec<capstan_model::RegistryAuth>, ApiError> {
    let (tar, wanted) = (
        context.clone(),
        dockerfile.trim_start_matches("./").to_owned(),
    );
    let text = tokio::task::spawn_blocking(move || dockerfile_text(&tar, &wanted))
        .await
        .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?;
    // a context without it fails in the builder, which says so
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    state
        .registries
        .for_dockerfile(&text, args)
        .await
        .map_err(|e| {
            ApiError::new(
                Code::Failed,
                format!("cannot read the credentials of the Dockerfile's base images: {e}"),
            )
        })
}

/// The Dockerfile at `path` inside a context archive, when it is there and is text.
fn dockerfile_text(tar: &[u8], path: &str) -> Option<String> {
    use std::io::Read as _;
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().ok()? {
        let entry = entry.ok()?;
        let name = entry
            .path()
            .ok()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_owned();
        if name == path {
            let mut text = String::new();
            entry.take(1 << 20).read_to_string(&mut text).ok()?;
            return Some(text);
        }
    }
    None
}

/// A build may tag only a new name, or an image capstan built for this very service: tagging
/// another's (`postgres:16`, an image another app runs) would plant the build in whatever
/// runs that name next (a heal, a rollout, another app's deploy).
async fn owns_image(
    state: &AppState,
    app: &str,
    service: &str,
    image: &str,
) -> Result<(), ApiError> {
    let Some(labels) = state.engine.image_labels(image).await? else {
        return Ok(());
    };
    let label = |k: &str| labels.get(k).map(String::as_str);
    if label("io.capstan.app") == Some(app) && label("io.capstan.service") == Some(service) {
        return Ok(());
    }
    Err(ApiError::new(
        Code::Forbidden,
        format!(
            "services.{service}.build: {image} exists and was not built by capstan for \
             {app}/{service}; a build may not replace it. Name the built image after the \
             service (the default is {app}-{service})"
        ),
    ))
}

/// `GET /api/v1/proxy`: whether capstan's proxy runs, and what it serves.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ProxyState {
    running: bool,
    /// Its routes (published ports), their replicas and counters.
    proxy: Option<capstan_proxy::Status>,
}

/// `GET /api/v1/proxy`: the published ports the proxy serves, their replicas and counters.
#[utoipa::path(
    get,
    path = "/api/v1/proxy",
    tag = "apps",
    responses(
        (status = 200, description = "the published ports the proxy serves, their replicas and counters", body = ProxyState)
    )
)]
pub async fn proxy_status(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Response, ApiError> {
    params::only(&pairs, &[])?;
    let status = match &state.router {
        Some(router) => router.status().await,
        None => None,
    };
    Ok(Json(ProxyState {
        running: status.is_some(),
        proxy: status,
    })
    .into_response())
}

/// Progress lines buffered for a slow client before they are dropped (the report is not).
const PROGRESS_BUFFER: usize = 1024;

/// Runs a release on a task of its own (it finishes and is recorded even if the client goes)
/// and answers either the report as JSON, or, when the client accepts `application/x-ndjson`,
/// one JSON line per step as it happens and the report as the last line (`{"report": ...}`).
async fn respond(
    state: AppState,
    place: Place,
    req: DeployRequest,
    headers: &HeaderMap,
    actor: String,
) -> Result<Response, ApiError> {
    let app = req.app();
    place
        .deployer
        .check(&req)
        .map_err(|e| ApiError::new(Code::BadRequest, e.to_string()))?;
    // a cluster that does not answer is said so before a release is recorded (exit 3)
    if place.deployer.target.orchestrates() {
        place.deployer.target.observe(&app).await?;
    }
    let held = hold(&state, &app)?;
    let streaming = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/x-ndjson"));
    let (tx, rx) = tokio::sync::mpsc::channel(PROGRESS_BUFFER);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _held = held;
        let result = run_release(&state, &place, &actor, req, Some(tx)).await;
        let _ = done_tx.send(result);
    });
    if !streaming {
        drop(rx);
        let report = done_rx.await.map_err(|_| {
            ApiError::new(
                Code::Internal,
                "the deploy task failed; see the daemon's log",
            )
        })??;
        return Ok(Json(report).into_response());
    }
    let progress = tokio_stream::wrappers::ReceiverStream::new(rx).map(|p| {
        let mut line = serde_json::to_string(&p).unwrap_or_default();
        line.push('\n');
        Ok::<_, std::convert::Infallible>(line)
    });
    let last = futures_util::stream::once(async move {
        let line = match done_rx.await {
            Ok(Ok(report)) => serde_json::json!({ "report": report }),
            Ok(Err(e)) => serde_json::json!({ "error": e.message() }),
            Err(_) => {
                serde_json::json!({ "error": "the deploy task failed; see the daemon's log" })
            }
        };
        Ok::<_, std::convert::Infallible>(format!("{line}\n"))
    });
    let body = axum::body::Body::from_stream(progress.chain(last));
    Ok(([(CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// `POST /api/v1/apps/{app}/plan`: what a deploy would change and why. Changes nothing.
#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/plan",
    tag = "apps",
    params(
        ("app" = String, Path, description = "the app (Compose project)"),
        ("pull" = Option<bool>, Query, description = "plan as `capstan deploy --pull` would deploy: every image pulled first"),
        ("target" = Option<String>, Query, description = "the target to plan for (default: the one the app runs on, else the local engine); a target the app does not run on is refused")
    ),
    request_body(description = "the resolved model as JSON, or a Compose file", content((DeployRequest = "application/json"), (ComposeFile = "application/yaml"))),
    responses(
        (status = 200, description = "what a deploy would change and why", body = capstan_model::Plan)
    )
)]
pub(crate) async fn plan_app(
    State(state): State<AppState>,
    Path(app): Path<String>,
    Query(pairs): Query<Pairs>,
    who: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Plan>, ApiError> {
    check_app(&app)?;
    let pull = pull_flag(&pairs)?;
    let place = place(&state, &app, target_param(&pairs)).await?;
    let mut req = request(&state, &place, &app, &headers, &body).await?;
    req.pull = pull;
    let previous = capstan_deploy::running_model(&state.store, &app).await?;
    let mut plan = place.deployer.plan(&req, previous.as_ref()).await?;
    registry_checks(&state, &req, &mut plan).await?;
    // what the policy would refuse of the one who asks for the plan
    plan.violations = policy_violations(&state, &req, who.as_ref()).await?;
    Ok(Json(plan))
}

/// `POST /api/v1/apps/{app}/render?target=NAME`: the objects a Kubernetes target would get
/// for the model, without asking the cluster anything (Secrets without their values). What
/// the cluster cannot honour is refused (400) naming the file, line and key.
#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/render",
    tag = "apps",
    params(
        ("app" = String, Path, description = "the app (Compose project)"),
        ("target" = String, Query, description = "the Kubernetes target of `[[targets]]` to render for")
    ),
    request_body(description = "the resolved model as JSON, or a Compose file", content((DeployRequest = "application/json"), (ComposeFile = "application/yaml"))),
    responses(
        (status = 200, description = "the objects, in the order they are applied", body = Vec<KubernetesObject>),
        (status = 400, description = "no such Kubernetes target, or a key the cluster cannot honour", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn render_app(
    State(state): State<AppState>,
    Path(app): Path<String>,
    Query(pairs): Query<Pairs>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Vec<KubernetesObject>>, ApiError> {
    check_app(&app)?;
    params::only(&pairs, &["target"])?;
    let Some(name) = params::last(&pairs, "target") else {
        return Err(ApiError::bad_param(
            "target",
            "name the Kubernetes target to render for (?target=NAME; capstan targets lists them)",
        ));
    };
    let (target, namespace) = kubernetes_target(&state, name).await?;
    let req = read_request(&state, &app, &headers, &body).await?;
    let none = std::collections::BTreeMap::new();
    let objects = capstan_kube::render(
        &capstan_kube::Input {
            project: &req.project,
            files: &req.files,
            images: &none,
            release: None,
            spec_hashes: &none,
            redact: true,
        },
        &capstan_kube::options(target, &namespace),
    )
    .map_err(|r| {
        let at = capstan_deploy::position_of(&req.source, &r.key)
            .map(|p| format!("{p}: "))
            .unwrap_or_default();
        ApiError::new(
            Code::BadRequest,
            format!("{at}{r}; target {name} is a Kubernetes cluster"),
        )
    })?;
    Ok(Json(
        objects
            .iter()
            .map(|o| KubernetesObject(o.to_value()))
            .collect(),
    ))
}

/// The Kubernetes target `name` and the namespace it renders into: the target's, else its
/// context's (read from the kubeconfig, the cluster not asked), else `default`.
pub(crate) async fn kubernetes_target<'a>(
    state: &'a AppState,
    name: &str,
) -> Result<(&'a capstan_deploy::targets::TargetConfig, String), ApiError> {
    let Some(target) = state.targets.iter().find(|t| t.name == name) else {
        return Err(ApiError::bad_param(
            "target",
            format!(
                "no target named {name:?} (capstan targets lists them; [[targets]] in capstan.toml adds one)"
            ),
        ));
    };
    if target.kind != capstan_model::TargetKind::Kubernetes {
        return Err(ApiError::bad_param(
            "target",
            format!(
                "target {name} is a {}: capstan renders manifests for Kubernetes targets",
                target.kind.as_str()
            ),
        ));
    }
    let namespace = match &target.namespace {
        Some(ns) => ns.clone(),
        None => capstan_kube::Cluster::connect(target)
            .await
            .map_or_else(|_| "default".to_owned(), |c| c.namespace),
    };
    Ok((target, namespace))
}

/// A Kubernetes object, as the API takes it (`apiVersion`, `kind`, `metadata`, `spec`...).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub(crate) struct KubernetesObject(pub(crate) serde_json::Value);

/// `?pull=true`; a deploy and a plan also take `?target=`.
fn pull_flag(pairs: &Pairs) -> Result<bool, ApiError> {
    params::only(pairs, &["pull", "target"])?;
    Ok(params::flag(pairs, "pull")?.unwrap_or(false))
}

/// For each service run from a registry's tag, what the registry names for the tag now
/// against the digest the engine's copy was pulled as: shown when they differ (or the registry
/// could not say). A service whose deploy pulls (`pull_policy: always`, an elapsed
/// `every_<duration>`, `?pull=true`) a digest it does not run is planned as recreated. Images
/// built or loaded here (no digest from their registry), pinned by digest, or that the engine
/// lacks are not asked about.
async fn registry_checks(
    state: &AppState,
    req: &DeployRequest,
    plan: &mut Plan,
) -> Result<(), ApiError> {
    for sp in &mut plan.services {
        let Some(s) = req.project.services.get(&sp.service) else {
            continue;
        };
        let Some(image) = s.image.as_deref().filter(|i| !i.contains('@')) else {
            continue;
        };
        if s.build.is_some() {
            continue;
        }
        let Ok(reference) = capstan_registry::Reference::parse(image) else {
            continue;
        };
        let Some(local) = state.engine.inspect_image(image).await? else {
            continue;
        };
        let Some(local_digest) = local.repo_digests.iter().find_map(|d| {
            let (name, digest) = d.split_once('@')?;
            let r = capstan_registry::Reference::parse(name).ok()?;
            (r.registry == reference.registry && r.repository == reference.repository)
                .then(|| digest.to_owned())
        }) else {
            continue;
        };
        let Ok(pulled) =
            capstan_deploy::must_pull(s, image, Some(&local), req.pull, chrono::Utc::now())
        else {
            continue;
        };
        let (registry_digest, error) = match state.registry.head(&reference).await {
            Ok(head) if head.digest == local_digest => continue,
            Ok(head) => (Some(head.digest), None),
            Err(e) => (None, Some(e.to_string())),
        };
        if pulled
            && sp.action == capstan_model::Action::Unchanged
            && let Some(new) = &registry_digest
        {
            sp.action = capstan_model::Action::Recreate {
                reasons: vec![format!(
                    "{image} moved in its registry ({} -> {}); the deploy pulls it",
                    short_digest(&local_digest),
                    short_digest(new)
                )],
            };
        }
        sp.registry = Some(capstan_model::RegistryCheck {
            image: image.to_owned(),
            local_digest: Some(local_digest),
            registry_digest,
            pulled,
            error,
        });
    }
    Ok(())
}

/// The first 12 hex digits of a digest.
fn short_digest(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
    &hex[..hex.len().min(12)]
}

/// The ledger's actor: the name of the token that asked.
pub(crate) fn actor(who: Option<Extension<Principal>>) -> String {
    who.map_or_else(|| "admin".to_owned(), |w| w.0.name)
}

/// Takes the per-app lock (one deploy, rollback or down at a time; self-healing waits).
pub(super) fn hold(state: &AppState, app: &str) -> Result<capstan_model::RolloutLock, ApiError> {
    state.deploying.hold(app).ok_or_else(|| {
        ApiError::new(
            Code::Conflict,
            format!("a deploy of {app} is already running; wait for it to end"),
        )
    })
}

/// `POST /api/v1/apps/{app}/deploy`: applies the model as a new release; the answer says how it
/// ended (a rolled back or failed deploy is still a 200 with its report).
#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/deploy",
    tag = "apps",
    params(
        ("app" = String, Path, description = "the app (Compose project)"),
        ("pull" = Option<bool>, Query, description = "pull every image first, as pull_policy: always does (a tag pushed again is deployed)"),
        ("target" = Option<String>, Query, description = "where to run the app, a target of GET /api/v1/targets (default: the one it runs on, else the local engine); an app lives on one target, so another one is refused")
    ),
    request_body(description = "the resolved model as JSON, or a Compose file", content((DeployRequest = "application/json"), (ComposeFile = "application/yaml"))),
    responses(
        (status = 200, description = "the release's report; with Accept: application/x-ndjson one progress line per step, then {\"report\": ...}", content((capstan_model::Report = "application/json"), (capstan_model::Progress = "application/x-ndjson"))),
        (status = 409, description = "a deploy of this app is under way", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn deploy_app(
    State(state): State<AppState>,
    Path(app): Path<String>,
    Query(pairs): Query<Pairs>,
    who: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    check_app(&app)?;
    let pull = pull_flag(&pairs)?;
    let place = place(&state, &app, target_param(&pairs)).await?;
    let mut req = request(&state, &place, &app, &headers, &body).await?;
    req.pull = pull;
    authorize(&state, &app, &req, who.as_ref()).await?;
    // the source its Compose file names is the app's from now on (checked with the request)
    if let (Some(source), Some(hooks)) = (git_source(&req), state.hooks.as_ref()) {
        hooks.set_source(&app, Some(source)).await?;
    }
    respond(state, place, req, &headers, actor(who)).await
}

/// `POST /api/v1/apps/{app}/rollback[?to=N]`: deploys release N again (default: the last one
/// that succeeded before the one running), with the image digests it ran, through the same
/// rollout.
#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/rollback",
    tag = "apps",
    params(
        ("app" = String, Path, description = "the app"),
        ("to" = Option<i64>, Query, description = "the release to run again (default: the one before the running one)")
    ),
    responses(
        (status = 200, description = "the report (or NDJSON progress, as for deploy)", body = capstan_model::Report),
        (status = 404, description = "no such app, or no such release of it", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn rollback_app(
    State(state): State<AppState>,
    Path(app): Path<String>,
    Query(pairs): Query<Pairs>,
    who: Option<Extension<Principal>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_app(&app)?;
    params::only(&pairs, &["to"])?;
    let to = pairs
        .iter()
        .rev()
        .find(|(k, _)| k == "to")
        .map(|(_, v)| {
            v.parse::<i64>()
                .map_err(|_| ApiError::bad_param("to", format!("{v:?} is not a release number")))
        })
        .transpose()?;
    let place = place(&state, &app, None).await?;
    let req = place
        .deployer
        .rollback_request(&state.store, &app, to)
        .await?;
    // the release rolled back to passes the policy as it stands now, for who asks
    authorize(&state, &app, &req, who.as_ref()).await?;
    respond(state, place, req, &headers, actor(who)).await
}

/// What `POST /api/v1/apps/{app}/scale` takes: the replicas each named service runs from now
/// on.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScaleRequest {
    /// Replicas by service (`{"web": 3}`); `0` stops a service's replicas and keeps the service.
    #[schema(value_type = std::collections::BTreeMap<String, u32>)]
    pub(crate) replicas: std::collections::BTreeMap<String, u32>,
}

/// The most replicas one scale may ask of a service.
const MAX_REPLICAS: u32 = 1000;

/// `POST /api/v1/apps/{app}/scale`: runs the running release again with services at new
/// replica counts: a release of its own in the ledger, through the same rollout.
#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/scale",
    tag = "apps",
    params(("app" = String, Path, description = "the app")),
    request_body = ScaleRequest,
    responses(
        (status = 200, description = "the release's report (or NDJSON progress, as for deploy)", body = capstan_model::Report),
        (status = 400, description = "a service the app does not have, a global one, or a count over 1000", body = capstan_model::ErrorBody),
        (status = 404, description = "the app runs no release", body = capstan_model::ErrorBody),
        (status = 409, description = "a deploy of this app is under way", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn scale_app(
    State(state): State<AppState>,
    Path(app): Path<String>,
    who: Option<Extension<Principal>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    check_app(&app)?;
    let asked: ScaleRequest = crate::params::json_object(&body).map_err(|e| {
        ApiError::new(
            Code::BadRequest,
            format!("scale: {e} (send {{\"replicas\": {{\"web\": 3}}}})"),
        )
    })?;
    if let Some((service, n)) = asked.replicas.iter().find(|(_, n)| **n > MAX_REPLICAS) {
        return Err(ApiError::new(
            Code::BadRequest,
            format!("replicas.{service}: {n} is more than {MAX_REPLICAS} replicas"),
        ));
    }
    let place = place(&state, &app, None).await?;
    let req = place
        .deployer
        .scale_request(&state.store, &app, &asked.replicas)
        .await?;
    authorize(&state, &app, &req, who.as_ref()).await?;
    respond(state, place, req, &headers, actor(who)).await
}

/// `?service=` and `?replica=` of a stop, start or restart.
fn operated_on(pairs: &Pairs) -> Result<(Option<&str>, Option<u32>), ApiError> {
    params::only(pairs, &["service", "replica"])?;
    let service = params::last(pairs, "service");
    let replica = params::number::<u32>(pairs, "replica")?;
    if replica.is_some() && service.is_none() {
        return Err(ApiError::bad_param(
            "replica",
            "a replica is a service's: say ?service= too",
        ));
    }
    Ok((service, replica))
}

/// Stops, starts or restarts replicas of `app` (the app's lock held meanwhile).
async fn operate(
    state: AppState,
    app: String,
    pairs: &Pairs,
    who: Option<Extension<Principal>>,
    operation: capstan_deploy::Operation,
) -> Result<Json<capstan_model::Operated>, ApiError> {
    check_app(&app)?;
    let (service, replica) = operated_on(pairs)?;
    let place = place(&state, &app, None).await?;
    let _lock = hold(&state, &app)?;
    Ok(Json(
        place
            .deployer
            .operate(&state.store, &actor(who), &app, operation, service, replica)
            .await?,
    ))
}

/// `POST /api/v1/apps/{app}/stop[?service=S[&replica=N]]`: stops replicas, which then stay
/// stopped: self-healing leaves them until a start or the app's next release.
#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/stop",
    tag = "apps",
    params(
        ("app" = String, Path, description = "the app"),
        ("service" = Option<String>, Query, description = "only this service's replicas"),
        ("replica" = Option<u32>, Query, description = "only this replica of the service (from 1)")
    ),
    responses(
        (status = 200, description = "what each replica is now", body = capstan_model::Operated),
        (status = 404, description = "no such app, service or replica: nothing was done", body = capstan_model::ErrorBody),
        (status = 409, description = "a deploy of this app is under way, or the app runs on another target", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn stop_app(
    State(state): State<AppState>,
    Path(app): Path<String>,
    Query(pairs): Query<Pairs>,
    who: Option<Extension<Principal>>,
) -> Result<Json<capstan_model::Operated>, ApiError> {
    operate(state, app, &pairs, who, capstan_deploy::Operation::Stop).await
}

/// `POST /api/v1/apps/{app}/start[?service=S[&replica=N]]`: starts stopped replicas (ending
/// their deliberate stop), each waited on through its health gate.
#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/start",
    tag = "apps",
    params(
        ("app" = String, Path, description = "the app"),
        ("service" = Option<String>, Query, description = "only this service's replicas"),
        ("replica" = Option<u32>, Query, description = "only this replica of the service (from 1)")
    ),
    responses(
        (status = 200, description = "what each replica is now", body = capstan_model::Operated),
        (status = 404, description = "no such app, service or replica: nothing was done", body = capstan_model::ErrorBody),
        (status = 409, description = "a deploy of this app is under way, or the app runs on another target", body = capstan_model::ErrorBody),
        (status = 422, description = "a replica did not pass its health gate (the ones before it were started)", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn start_app(
    State(state): State<AppState>,
    Path(app): Path<String>,
    Query(pairs): Query<Pairs>,
    who: Option<Extension<Principal>>,
) -> Result<Json<capstan_model::Operated>, ApiError> {
    operate(state, app, &pairs, who, capstan_deploy::Operation::Start).await
}

/// `POST /api/v1/apps/{app}/restart[?service=S[&replica=N]]`: a rolling restart, one replica
/// at a time: out of rotation, drained, restarted, and back once it passes its health gate.
#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/restart",
    tag = "apps",
    params(
        ("app" = String, Path, description = "the app"),
        ("service" = Option<String>, Query, description = "only this service's replicas"),
        ("replica" = Option<u32>, Query, description = "only this replica of the service (from 1)")
    ),
    responses(
        (status = 200, description = "what each replica is now", body = capstan_model::Operated),
        (status = 404, description = "no such app, service or replica: nothing was done", body = capstan_model::ErrorBody),
        (status = 409, description = "a deploy of this app is under way, or the app runs on another target", body = capstan_model::ErrorBody),
        (status = 422, description = "a replica did not come back (the ones before it were restarted, the rest left alone)", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn restart_app(
    State(state): State<AppState>,
    Path(app): Path<String>,
    Query(pairs): Query<Pairs>,
    who: Option<Extension<Principal>>,
) -> Result<Json<capstan_model::Operated>, ApiError> {
    operate(state, app, &pairs, who, capstan_deploy::Operation::Restart).await
}

/// How the deploy policy sees the caller: an admin, or anyone else.
pub(super) fn policy_role(who: Option<&Extension<Principal>>) -> policy::Deployer {
    // no principal: the admin token through a test router without the middleware
    if who.is_none_or(|w| w.role >= capstan_model::Role::Admin) {
        policy::Deployer::Admin
    } else {
        policy::Deployer::Restricted
    }
}

/// What the deploy policy finds in `req` for the caller.
pub(super) async fn policy_violations(
    state: &AppState,
    req: &DeployRequest,
    who: Option<&Extension<Principal>>,
) -> Result<Vec<capstan_model::Violation>, ApiError> {
    let data_dir = state.apps_dir.parent().unwrap_or(&state.apps_dir);
    Ok(policy::check(&state.store, data_dir, req, policy_role(who)).await?)
}

/// Refuses, with 403 and every violation, a deploy the policy does not let the caller make.
async fn authorize(
    state: &AppState,
    app: &str,
    req: &DeployRequest,
    who: Option<&Extension<Principal>>,
) -> Result<(), ApiError> {
    let found = policy_violations(state, req, who).await?;
    if found.is_empty() {
        return Ok(());
    }
    Err(ApiError::new(Code::Forbidden, policy::refusal(app, &found)))
}

/// Records a release (the deployer records the target it runs on), deploys it, records how it
/// ended. The caller holds the app's lock.
async fn run_release(
    state: &AppState,
    place: &Place,
    actor: &str,
    req: DeployRequest,
    progress: Option<tokio::sync::mpsc::Sender<Progress>>,
) -> Result<Report, ApiError> {
    Ok(place
        .deployer
        .release(&state.store, actor, &req, progress)
        .await?)
}

/// Where an app's releases run: the deployer of its target (`deployer.place`, `None` for the
/// local engine).
#[derive(Clone)]
pub(super) struct Place {
    pub(super) deployer: capstan_deploy::Deployer,
}

/// The target app `app` lives on (its newest release's; `None`: the local engine), or
/// `Err(())` when it lives nowhere now (never deployed, or taken down).
async fn lives_on(state: &AppState, app: &str) -> Result<Result<Option<String>, ()>, ApiError> {
    Ok(match state.store.newest_release(app.to_owned()).await? {
        Some(newest) if newest.result != capstan_model::ReleaseResult::Down.as_str() => {
            Ok(capstan_deploy::target_of(&newest))
        }
        _ => Err(()),
    })
}

/// Where a deploy, plan, rollback or down of `app` runs: the target it lives on, else the one
/// `asked` (`?target=`), else the local engine. A target it does not live on is refused.
pub(super) async fn place(
    state: &AppState,
    app: &str,
    asked: Option<&str>,
) -> Result<Place, ApiError> {
    // asked for: `Some(None)` is the local engine
    let asked: Option<Option<&str>> =
        asked.map(|t| Some(t).filter(|t| *t != capstan_deploy::targets::LOCAL));
    if let Some(Some(name)) = asked
        && !state.places.contains_key(name)
        && fleet_host(state, name).await?.is_none()
    {
        let known: Vec<&str> = std::iter::once(capstan_deploy::targets::LOCAL)
            .chain(state.places.keys().map(String::as_str))
            .collect();
        return Err(ApiError::bad_param(
            "target",
            format!(
                "no target named {name:?} (there are: {}; capstan targets lists them, [[targets]] in capstan.toml adds one)",
                known.join(", ")
            ),
        ));
    }
    let target = match (lives_on(state, app).await?, asked) {
        (Ok(lives), Some(asked)) if lives.as_deref() != asked => {
            let lives = lives.as_deref().unwrap_or(capstan_deploy::targets::LOCAL);
            return Err(ApiError::bad_param(
                "target",
                format!(
                    "app {app} runs on target {lives}, and an app lives on one target; to move it, take it down there (capstan down {app}; its volumes stay on {lives}), then deploy it with --target {}",
                    asked.unwrap_or(capstan_deploy::targets::LOCAL)
                ),
            ));
        }
        (Ok(lives), _) => lives,
        (Err(()), asked) => asked.flatten().map(str::to_owned),
    };
    let deployer = match &target {
        None if !state.engine_on => {
            return Err(ApiError::bad_param(
                "target",
                "this capstan runs without a Docker engine ([docker] enabled = false): name a target of [[targets]] (--target NAME)",
            ));
        }
        None => state.deployer.clone(),
        Some(name) => match state.places.get(name) {
            Some(d) => d.clone(),
            None => match fleet_host(state, name).await? {
                Some(host) => {
                    if !host.connected() {
                        return Err(ApiError::new(
                            Code::EngineUnavailable,
                            format!(
                                "host {name} is not connected to the hub (its agent is down or cut off; capstan hosts shows its last contact): nothing was sent, try again once it is back"
                            ),
                        ));
                    }
                    // the hub keeps the ledger; the host's agent runs the rollout
                    let mut d = state.deployer.clone();
                    d.target = host;
                    d.place = Some(name.clone());
                    d
                }
                None => {
                    return Err(ApiError::new(
                        Code::Conflict,
                        format!(
                            "app {app} runs on target {name}, which capstan.toml no longer names and is no host of the fleet: add it back to [[targets]] (or join the host again) to manage the app"
                        ),
                    ));
                }
            },
        },
    };
    Ok(Place { deployer })
}

/// The fleet host named `name`, when this capstan is a hub and it is one of its hosts.
async fn fleet_host(
    state: &AppState,
    name: &str,
) -> Result<Option<std::sync::Arc<capstan_fleet::HostTarget>>, ApiError> {
    let Some(hub) = &state.hub else {
        return Ok(None);
    };
    let Some(host) = capstan_fleet::host_target(hub, name).await? else {
        return Ok(None);
    };
    // a host of [[targets]]: its agent runs on this machine, its engine is over there
    let host = match state
        .targets
        .iter()
        .find(|t| t.name == name && t.kind == capstan_model::TargetKind::Host)
    {
        Some(t) => host.without_agent(&t.docker_host),
        None => host,
    };
    Ok(Some(std::sync::Arc::new(host)))
}

/// `?target=NAME`.
fn target_param(pairs: &Pairs) -> Option<&str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == "target")
        .map(|(_, v)| v.as_str())
}

/// `GET /api/v1/apps`.
#[utoipa::path(
    get,
    path = "/api/v1/apps",
    tag = "apps",
    responses(
        (status = 200, description = "every app with its running release", body = Vec<AppSummary>)
    )
)]
pub(crate) async fn list_apps(
    State(state): State<AppState>,
) -> Result<Json<Vec<AppSummary>>, ApiError> {
    let rows = state.store.apps().await?;
    let containers = state.engine.list_containers(true).await?;
    // an app on a cluster: its replicas as the cluster shows them, one look per target
    let mut elsewhere: BTreeMap<String, BTreeMap<String, Vec<capstan_deploy::Replica>>> =
        BTreeMap::new();
    let mut placed = BTreeMap::new();
    // (each row is the app's newest release, which says where it runs)
    for r in &rows {
        let Some(target) = capstan_deploy::target_of(r) else {
            continue;
        };
        if !elsewhere.contains_key(&target)
            && let Some(d) = state.places.get(&target)
        {
            let seen = d.target.observe_all().await.unwrap_or_else(|e| {
                tracing::warn!(target, error = %e, "cannot list an app target's replicas");
                BTreeMap::new()
            });
            elsewhere.insert(target.clone(), seen);
        }
        placed.insert(r.app.clone(), target);
    }
    Ok(Json(
        rows.into_iter()
            .map(|r| {
                if let Some(target) = placed.get(&r.app) {
                    let replicas = elsewhere
                        .get(target)
                        .and_then(|m| m.get(&r.app))
                        .cloned()
                        .unwrap_or_default();
                    return AppSummary {
                        containers: replicas.len(),
                        running: replicas.iter().filter(|x| x.state == "running").count(),
                        name: r.app,
                        release: r.number,
                        result: r.result,
                        time: nanos_to_datetime(r.created_nano),
                        target: target.clone(),
                    };
                }
                let mine: Vec<_> = containers
                    .iter()
                    .filter(|c| c.labels.get("io.capstan.app") == Some(&r.app))
                    // set aside by a rollout, stopping: no longer one of its replicas
                    .filter(|c| !capstan_deploy::is_retiring(&c.name))
                    .collect();
                AppSummary {
                    containers: mine.len(),
                    running: mine.iter().filter(|c| c.state == "running").count(),
                    name: r.app,
                    release: r.number,
                    result: r.result,
                    time: nanos_to_datetime(r.created_nano),
                    target: capstan_deploy::targets::LOCAL.to_owned(),
                }
            })
            .collect(),
    ))
}

fn release(r: ReleaseRow) -> Release {
    let json = |s: &str| serde_json::from_str(s).unwrap_or(serde_json::Value::Null);
    let mut source = json(&r.source);
    // the content digests of configs and secrets (what a rollback reads back) are the ledger's
    // own: a short secret's digest could be guessed back
    // (and the model's whole hash, which with the shown model could do the same)
    let digests = capstan_deploy::ran_files(&r);
    if let Some(map) = source.as_object_mut() {
        map.remove("digests");
        map.remove("model_hash");
    }
    Release {
        time: nanos_to_datetime(r.created_nano),
        source,
        images: json(&r.images),
        detail: json(&r.detail),
        // environment values and inline contents are never shown, to any role
        model: crate::redact::redacted(&json(&r.model), &digests),
        app: r.app,
        number: r.number,
        actor: r.actor,
        result: r.result,
    }
}

/// `GET /api/v1/apps/{app}/releases`: the ledger, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}/releases",
    tag = "apps",
    params(
        ("app" = String, Path, description = "the app")
    ),
    responses(
        (status = 200, description = "the ledger, newest first, with each release's model", body = Vec<Release>),
        (status = 404, description = "no such app", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn list_releases(
    State(state): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<Vec<Release>>, ApiError> {
    check_app(&app)?;
    let rows = state.store.releases(app.clone()).await?;
    if rows.is_empty() {
        return Err(ApiError::new(
            Code::NotFound,
            format!("no releases of app {app:?} (deploy it with: capstan deploy)"),
        ));
    }
    Ok(Json(rows.into_iter().map(release).collect()))
}

/// `GET /api/v1/apps/{app}/replicas`: the app's replicas as the target it runs on shows them
/// (on a cluster: each task with its node and the host ports it publishes there).
#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}/replicas",
    tag = "apps",
    params(("app" = String, Path, description = "the app")),
    responses(
        (status = 200, description = "its replicas, by service and slot", body = Vec<capstan_model::AppReplica>)
    )
)]
pub(crate) async fn app_replicas(
    State(state): State<AppState>,
    Path(app): Path<String>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<Vec<capstan_model::AppReplica>>, ApiError> {
    check_app(&app)?;
    params::only(&pairs, &[])?;
    let place = place(&state, &app, None).await?;
    let mut replicas = place.deployer.target.observe(&app).await?;
    replicas.sort_by(|a, b| (&a.service, a.replica).cmp(&(&b.service, b.replica)));
    Ok(Json(
        replicas
            .into_iter()
            .map(|r| capstan_model::AppReplica {
                service: r.service,
                replica: r.replica,
                id: r.id,
                name: r.name,
                state: r.state,
                health: r.health,
                node: r.node,
                image: r.image_id,
                endpoints: r.endpoints,
            })
            .collect(),
    ))
}

/// `POST /api/v1/apps/{app}/down[?volumes=true]`: removes the app's containers and networks
/// (and volumes when asked). The ledger stays.
#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/down",
    tag = "apps",
    params(
        ("app" = String, Path, description = "the app"),
        ("volumes" = Option<bool>, Query, description = "also remove the app's named volumes")
    ),
    responses(
        (status = 200, description = "what was removed", body = Vec<String>)
    )
)]
pub(crate) async fn down_app(
    State(state): State<AppState>,
    Path(app): Path<String>,
    Query(pairs): Query<Pairs>,
    who: Option<Extension<Principal>>,
) -> Result<Json<Vec<String>>, ApiError> {
    check_app(&app)?;
    params::only(&pairs, &["volumes"])?;
    let volumes = params::flag(&pairs, "volumes")?.unwrap_or(false);
    // no deploy and no self-healing while the app goes down
    let _held = hold(&state, &app)?;
    let place = place(&state, &app, None).await?;
    let removed = place
        .deployer
        .take_down(&state.store, &actor(who), &app, volumes)
        .await?;
    Ok(Json(removed))
}
