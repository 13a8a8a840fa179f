use axum::Json;
use axum::extract::{Path, Query, State};
use capstan_model::{ImageDetail, ImageList, ImageUpdates};

use crate::params::{self, Pairs};
use crate::{ApiError, AppState, Code};

/// `GET /api/v1/images[?all=true][&reference=SUBSTRING][&dangling=true|false]`.
#[utoipa::path(
    get,
    path = "/api/v1/images",
    tag = "images",
    params(
        ("all" = Option<bool>, Query, description = "also deleted images"),
        ("reference" = Option<String>, Query, description = "a substring of a reference"),
        ("dangling" = Option<bool>, Query, description = "only images without (or with) a tag")
    ),
    responses(
        (status = 200, description = "OK", body = ImageList)
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<ImageList>, ApiError> {
    params::only(&pairs, &["all", "reference", "dangling"])?;
    let all = params::flag(&pairs, "all")?.unwrap_or(false);
    let dangling = params::flag(&pairs, "dangling")?;
    let reference = pairs
        .iter()
        .rev()
        .find(|(k, _)| k == "reference")
        .map(|(_, v)| v.clone());
    let mut images = state.store.images(all).await?;
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
