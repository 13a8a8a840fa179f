use axum::Json;
use axum::extract::{Path, Query, State};
use capstan_model::{ImageDetail, ImageList, ImageUpdates};

use crate::params::{self, Pairs};
use crate::{ApiError, AppState, Code};

/// `GET /api/v1/images[?all=true][&reference=SUBSTRING][&dangling=true|false][&target=NAME]`.
#[utoipa::path(
    get,
    path = "/api/v1/images",
    tag = "images",
    params(
        ("all" = Option<bool>, Query, description = "also deleted images"),
        ("reference" = Option<String>, Query, description = "a substring of a reference"),
        ("dangling" = Option<bool>, Query, description = "only images without (or with) a tag"),
        ("target" = Option<String>, Query, description = "the images a Kubernetes target's pods were seen running (by digest), instead of this engine's")
    ),
    responses(
        (status = 200, description = "OK", body = ImageList),
        (status = 400, description = "no such target, or one whose images are its nodes' engines'", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<ImageList>, ApiError> {
    params::only(&pairs, &["all", "reference", "dangling", "target"])?;
    let all = params::flag(&pairs, "all")?.unwrap_or(false);
    let dangling = params::flag(&pairs, "dangling")?;
    let last = |key: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let reference = last("reference");
    let mut images = match last("target") {
        None => state.store.images(all).await?,
        Some(t) if t == capstan_deploy::targets::LOCAL => state.store.images(all).await?,
        Some(t) => cluster_images(&state, &t).await?,
    };
    images.retain(|i| {
        dangling.is_none_or(|d| i.repo_tags.is_empty() == d)
            && reference
                .as_ref()
                .is_none_or(|r| i.repo_tags.iter().any(|t| t.contains(r.as_str())))
    });
    Ok(Json(ImageList { images }))
}

/// `GET /api/v1/images/{id-or-reference}`: one image with its lifecycle, also when deleted.
#[utoipa::path(
    get,
    path = "/api/v1/images/{key}",
    tag = "images",
    params(
        ("key" = String, Path, description = "an id, id prefix (12+ hex digits) or reference; may contain /")
    ),
    responses(
        (status = 200, description = "the image with its lifecycle, also when deleted", body = ImageDetail),
        (status = 404, description = "no such image", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn detail(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<ImageDetail>, ApiError> {
    let key = key.trim_start_matches('/').to_owned();
    if key.is_empty() {
        return Err(ApiError::bad_param("image", "empty image id or reference"));
    }
    match state.store.image_detail(key.clone()).await? {
        Some(detail) => Ok(Json(detail)),
        None => Err(ApiError::new(
            Code::NotFound,
            format!("no image {key:?} in the inventory (list them with: capstan images --all)"),
        )),
    }
}

fn watcher(state: &AppState) -> Result<&std::sync::Arc<capstan_images::WatchState>, ApiError> {
    state.updates.as_ref().ok_or_else(|| {
        ApiError::new(
            Code::NotFound,
            "registries are not watched ([images] watch = false in capstan.toml)",
        )
    })
}

/// `GET /api/v1/images/updates`: the last check of every watched image.
#[utoipa::path(
    get,
    path = "/api/v1/images/updates",
    tag = "images",
    responses(
        (status = 200, description = "the last check of every watched image", body = ImageUpdates)
    )
)]
pub(crate) async fn updates(State(state): State<AppState>) -> Result<Json<ImageUpdates>, ApiError> {
    let mut list = watcher(&state)?.snapshot();
    list.stale = capstan_images::stale_images(&state.engine).await?;
    Ok(Json(list))
}

/// `GET /api/v1/notify`: each notification channel, what it sends and how its deliveries went.
#[utoipa::path(
    get,
    path = "/api/v1/notify",
    tag = "images",
    responses(
        (status = 200, description = "OK", body = capstan_model::NotifyChannels)
    )
)]
pub(crate) async fn notify(State(state): State<AppState>) -> Json<capstan_model::NotifyChannels> {
    let channels = state
        .notify
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .values()
        .cloned()
        .collect();
    Json(capstan_model::NotifyChannels { channels })
}

/// `POST /api/v1/images/updates/check`: a check cycle now; answers when it is done.
#[utoipa::path(
    post,
    path = "/api/v1/images/updates/check",
    tag = "images",
    responses(
        (status = 200, description = "after a check cycle run now", body = ImageUpdates)
    )
)]
pub(crate) async fn check_updates(
    State(state): State<AppState>,
) -> Result<Json<ImageUpdates>, ApiError> {
    let watcher = watcher(&state)?;
    let mut list = watcher.check_now(std::time::Duration::from_mins(5)).await;
    list.stale = capstan_images::stale_images(&state.engine).await?;
    Ok(Json(list))
}

/// What a registry posts: the CNCF distribution's notification envelope (Docker Hub's and
/// Harbor's are read too; see `capstan_images::pushed_repositories`). Documentation only: the
/// body is read raw, for its signature.
#[derive(utoipa::ToSchema)]
#[expect(
    dead_code,
    reason = "the body is read raw (its signature covers the bytes)"
)]
pub(crate) struct RegistryNotification {
    events: Vec<RegistryEvent>,
}

/// One event of a [`RegistryNotification`].
#[derive(utoipa::ToSchema)]
#[expect(dead_code, reason = "documentation of what registries send")]
pub(crate) struct RegistryEvent {
    /// `push` (others are ignored).
    action: String,
    target: RegistryTarget,
}

/// What a [`RegistryEvent`] is about.
#[derive(utoipa::ToSchema)]
#[expect(dead_code, reason = "documentation of what registries send")]
pub(crate) struct RegistryTarget {
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
    #[schema(rename = "mediaType")]
    media_type: Option<String>,
}

/// `POST /api/v1/hooks/registry[?secret=...]`: a registry says something was pushed; the
/// images of the pushed repositories are checked at once. Authenticated by the hook secret
/// (in the URL or an HMAC of the body), not by the admin token: registries send none.
#[utoipa::path(
    post,
    path = "/api/v1/hooks/registry",
    tag = "images",
    params(
        ("secret" = Option<String>, Query, description = "the hook secret, unless the body is signed (X-Hub-Signature-256 or X-Capstan-Signature)")
    ),
    request_body = RegistryNotification,
    responses(
        (status = 202, description = "accepted; the pushed repositories are checked at once", body = capstan_model::HookAccepted),
        (status = 401, description = "no or a wrong secret or signature", body = capstan_model::ErrorBody),
        (status = 404, description = "registry hooks are off ([images] watch = false)", body = capstan_model::ErrorBody)
    ),
    security(()),
)]
pub(crate) async fn registry_hook(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<(axum::http::StatusCode, Json<capstan_model::HookAccepted>), ApiError> {
    let Some(secret) = state.hook_secret.clone() else {
        return Err(ApiError::new(
            Code::NotFound,
            "registry hooks are off ([images] watch = false in capstan.toml)",
        ));
    };
    let query_secret = pairs
        .iter()
        .find(|(k, _)| k == "secret")
        .map(|(_, v)| v.as_str());
    if !crate::auth::hook_authorized(&secret, query_secret, &headers, &body) {
        return Err(ApiError::new(
            Code::Unauthorized,
            "a registry hook must prove its secret: ?secret=<what `capstan secrets show registry-hook` prints on capstan's host> in the URL, or an X-Capstan-Signature: sha256=<HMAC-SHA256 of the body>",
        ));
    }
    let repositories =
        capstan_images::pushed_repositories(&body).map_err(|e| ApiError::bad_param("body", &e))?;
    if !repositories.is_empty() {
        watcher(&state)?.pushed(repositories.clone());
    }
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(capstan_model::HookAccepted { repositories }),
    ))
}

/// The images the pods of Kubernetes target `name` were seen running, by digest, from the image
/// journal (`pod` events): newest first seen first.
async fn cluster_images(
    state: &AppState,
    name: &str,
) -> Result<Vec<capstan_model::Image>, ApiError> {
    use std::collections::{BTreeMap, BTreeSet};
    match state.targets.iter().find(|t| t.name == name) {
        Some(t) if t.kind == capstan_model::TargetKind::Kubernetes => {}
        Some(_) => {
            return Err(ApiError::bad_param(
                "target",
                format!(
                    "target {name} is a Swarm: its images are on its nodes' engines (capstan targets --nodes lists them); --target lists a Kubernetes target's"
                ),
            ));
        }
        None => {
            return Err(ApiError::bad_param(
                "target",
                format!("no target named {name:?} (capstan targets lists them)"),
            ));
        }
    }
    let filter = capstan_store::EventFilter {
        kinds: vec!["pod".into()],
        actions: vec!["image_running".into()],
        ..capstan_store::EventFilter::default()
    };
    let events = state.store.events(filter, 100_000).await?;
    // by digest: the references that ran it, the pods, when first and last seen
    let mut by: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>, capstan_model::Image)> =
        BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.attributes.get("target").map(String::as_str) == Some(name))
    {
        let Some(ran) = e.image_id.as_deref() else {
            continue;
        };
        let digest = ran.rsplit_once('@').map_or(ran, |(_, d)| d).to_owned();
        let entry = by.entry(digest.clone()).or_insert_with(|| {
            (
                BTreeSet::new(),
                BTreeSet::new(),
                capstan_model::Image {
                    id: digest,
                    repo_tags: Vec::new(),
                    repo_digests: Vec::new(),
                    size: 0,
                    created: None,
                    layers: 0,
                    containers: 0,
                    first_seen: e.time,
                    last_seen: e.time,
                    deleted: None,
                },
            )
        });
        if let Some(image) = e.attributes.get("image") {
            // what the pod's spec named, without the digest capstan pins it at
            let named = image.split_once('@').map_or(image.as_str(), |(n, _)| n);
            entry.0.insert(named.to_owned());
        }
        entry.1.insert(e.actor.clone());
        let image = &mut entry.2;
        if !image.repo_digests.iter().any(|d| d == ran) {
            image.repo_digests.push(ran.to_owned());
        }
        image.first_seen = image.first_seen.min(e.time);
        image.last_seen = image.last_seen.max(e.time);
    }
    let mut out: Vec<capstan_model::Image> = by
        .into_values()
        .map(|(tags, pods, mut image)| {
            image.repo_tags = tags.into_iter().collect();
            image.containers = i64::try_from(pods.len()).unwrap_or(i64::MAX);
            image
        })
        .collect();
    out.sort_by_key(|i| std::cmp::Reverse(i.first_seen));
    Ok(out)
}

/// The most releases a prune may be asked to keep per app.
const MAX_KEEP: u32 = 1000;

/// `POST /api/v1/images/prune[?keep=N][&dry_run=true]`: removes the images capstan deployed
/// or built that none of their app's last N releases (default `[images] prune_keep`, 3) and
/// no container use, each journaled; images capstan did not bring are never touched. The
/// build cache is brought under `[images] build_cache`.
#[utoipa::path(
    post,
    path = "/api/v1/images/prune",
    tag = "images",
    params(
        ("keep" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "each app's latest releases whose images stay (1 to 1000)"),
        ("dry_run" = Option<bool>, Query, description = "say what would go; remove nothing")
    ),
    responses(
        (status = 200, description = "what was removed (or would be) and what was left, and why", body = capstan_model::PruneReport),
        (status = 400, description = "a keep of 0 or not a number", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn prune(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<capstan_model::PruneReport>, ApiError> {
    params::only(&pairs, &["keep", "dry_run"])?;
    let keep = match params::last(&pairs, "keep") {
        None => state.prune.keep,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=MAX_KEEP).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_param(
                    "keep",
                    format!(
                        "{v:?}: keep at least 1 release's images (the running one's), at most {MAX_KEEP}"
                    ),
                ));
            }
        },
    };
    let dry_run = params::flag(&pairs, "dry_run")?.unwrap_or(false);
    if !state.engine_on {
        return Err(ApiError::new(
            Code::Conflict,
            "this capstan runs without a Docker engine ([docker] enabled = false): it has no images to prune",
        ));
    }
    let options = capstan_deploy::prune::PruneOptions {
        keep,
        dry_run,
        build_cache: Some(state.prune.build_cache),
    };
    let report = capstan_deploy::prune::prune(&state.engine, &state.store, &state.live, options)
        .await
        .map_err(|e| match e {
            capstan_deploy::prune::PruneError::Store(e) => ApiError::from(e),
            capstan_deploy::prune::PruneError::Engine(e) => ApiError::from(e),
        })?;
    Ok(Json(report))
}
