//! Builds of pushed commits: listed, read, cancelled, run again.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Query, State};
use capstan_model::Build;
use capstan_pipeline::{Builder, CancelError, RetryError};
use capstan_store::pipeline::BuildRow;

use crate::AppState;
use crate::error::{ApiError, Code};
use crate::params::Pairs;

/// Builds listed at most.
const LISTED: i64 = 100;

fn builder(state: &AppState) -> Result<&Builder, ApiError> {
    state
        .builder
        .as_ref()
        .ok_or_else(|| ApiError::new(Code::NotFound, "builds run in capstan serve only"))
}

/// A build's id from its path: what is no id names no build.
fn build_id(text: &str) -> Result<i64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(
            Code::NotFound,
            format!("no build {text:?} (capstan builds lists them)"),
        )
    })
}

/// A build as the API shows it.
pub(crate) fn build(b: BuildRow) -> Build {
    Build {
        id: b.id,
        app: b.app,
        service: b.service,
        branch: b.branch,
        commit: b.commit,
        author: b.author,
        message: b.message,
        status: b.status,
        builder: b.builder,
        queued: capstan_model::format_nanos(b.queued_nano),
        started: b.started_nano.map(capstan_model::format_nanos),
        finished: b.finished_nano.map(capstan_model::format_nanos),
        image: b.image,
        digest: b.digest,
        release: b.release,
        error: b.error,
        detail: serde_json::from_str(&b.detail).unwrap_or_default(),
    }
}

/// `GET /api/v1/builds[?app=APP]`: the last 100 builds, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/builds",
    tag = "pipeline",
    params(("app" = Option<String>, Query, description = "only this app's")),
    responses((status = 200, description = "the last 100 builds, newest first", body = Vec<Build>))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<Vec<Build>>, ApiError> {
    crate::params::only(&pairs, &["app"])?;
    let app = crate::params::last(&pairs, "app").map(str::to_owned);
    if let Some(a) = &app {
        capstan_model::check_app_name(a).map_err(|e| ApiError::bad_param("app", e.to_string()))?;
    }
    let rows = state.store.builds(app, LISTED).await?;
    Ok(Json(rows.into_iter().map(build).collect()))
}

/// `GET /api/v1/builds/{id}`: one build.
#[utoipa::path(
    get,
    path = "/api/v1/builds/{id}",
    tag = "pipeline",
    params(("id" = i64, Path, description = "the build")),
    responses((status = 200, description = "the build", body = Build))
)]
pub(crate) async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Build>, ApiError> {
    let id = build_id(&id)?;
    match state.store.build(id).await? {
        Some(b) => Ok(Json(build(b))),
        None => Err(ApiError::new(
            Code::NotFound,
            format!("no build {id} (capstan builds lists them)"),
        )),
    }
}

/// `POST /api/v1/builds/{id}/cancel`: stops a queued or running build; one that deploys runs
/// to its end (409).
#[utoipa::path(
    post,
    path = "/api/v1/builds/{id}/cancel",
    tag = "pipeline",
    params(("id" = i64, Path, description = "the build")),
    responses(
        (status = 200, description = "cancelled (a running one stops at once and says so in its record)", body = Build),
        (status = 409, description = "it ended already, or it deploys", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Build>, ApiError> {
    let id = build_id(&id)?;
    match builder(&state)?.cancel(id).await {
        Ok(b) => Ok(Json(build(b))),
        Err(e @ CancelError::NotFound(_)) => Err(ApiError::new(Code::NotFound, e.to_string())),
        Err(e) => Err(ApiError::new(Code::Conflict, e.to_string())),
    }
}

/// `POST /api/v1/builds/{id}/retry`: queues an ended build's commit again, as a new build that
/// names the one it retries (its image is built only if it is not there already).
#[utoipa::path(
    post,
    path = "/api/v1/builds/{id}/retry",
    tag = "pipeline",
    params(("id" = i64, Path, description = "the ended build")),
    responses(
        (status = 201, description = "the new build, queued", body = Build),
        (status = 404, description = "no such build", body = capstan_model::ErrorBody),
        (status = 409, description = "it is queued or running still", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn retry(
    State(state): State<AppState>,
    Path(id): Path<String>,
    who: Option<Extension<crate::auth::Principal>>,
) -> Result<(axum::http::StatusCode, Json<Build>), ApiError> {
    let id = build_id(&id)?;
    let by = crate::routes::apps::actor(who);
    match builder(&state)?.retry(id, &by).await {
        Ok(b) => Ok((axum::http::StatusCode::CREATED, Json(build(b)))),
        Err(e @ RetryError::NotFound(_)) => Err(ApiError::new(
            Code::NotFound,
            format!("{e} (capstan builds lists them)"),
        )),
        Err(e @ RetryError::NotEnded { .. }) => Err(ApiError::new(Code::Conflict, e.to_string())),
        Err(RetryError::Store(e)) => Err(e.into()),
    }
}
