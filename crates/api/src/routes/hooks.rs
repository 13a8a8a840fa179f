//! An app's git webhook: the receiver providers post to (it checks its own proof), the app's
//! source, its secret (shown once), and its deliveries.

use axum::Json;
use axum::extract::{Path, State};
use capstan_model::{GitSource, HookDelivery, HookInfo, HookOutcome, HookSecret};
use capstan_pipeline::{Hooks, Received};

use crate::AppState;
use crate::error::{ApiError, Code};

/// Deliveries listed.
const LISTED: i64 = 50;

fn hooks(state: &AppState) -> Result<&Hooks, ApiError> {
    state.hooks.as_ref().ok_or_else(|| {
        ApiError::new(
            Code::NotFound,
            "git hooks need capstan serve's vault, where their secrets are kept",
        )
    })
}

fn check_app(app: &str) -> Result<(), ApiError> {
    capstan_model::check_app_name(app).map_err(|e| ApiError::bad_param("app", e.to_string()))
}

fn path_of(app: &str) -> String {
    format!("/api/v1/hooks/git/{app}")
}

impl From<capstan_pipeline::Error> for ApiError {
    fn from(e: capstan_pipeline::Error) -> Self {
        match e {
            capstan_pipeline::Error::BadSource(m) => Self::new(Code::BadRequest, m),
            capstan_pipeline::Error::Store(e) => e.into(),
            e => {
                tracing::error!(error = %e, "the pipeline failed while serving a request");
                Self::new(
                    Code::Internal,
                    "internal error; see the capstan daemon's log",
                )
            }
        }
    }
}

/// `POST /api/v1/hooks/git/{app}`: a git provider says something was pushed. Authenticated by
/// the app's hook secret, checked over the raw body before any of it is read (no token:
/// providers send none).
#[utoipa::path(
    post,
    path = "/api/v1/hooks/git/{app}",
    tag = "pipeline",
    params(("app" = String, Path, description = "the app")),
    request_body(content = String, description = "the provider's payload (GitHub, Gitea, Forgejo or GitLab format), signed with the app's hook secret"),
    responses(
        (status = 202, description = "a build of the pushed commit is queued", body = HookOutcome),
        (status = 200, description = "nothing to build (skipped, with the reason) or a delivery seen before (replay, ignored)", body = HookOutcome),
        (status = 400, description = "the body is not what the provider sends", body = capstan_model::ErrorBody),
        (status = 401, description = "no signature, or one that does not match the body and the app's secret", body = capstan_model::ErrorBody),
        (status = 404, description = "no such app, or no hooks set up for it", body = capstan_model::ErrorBody),
        (status = 413, description = "a body over 5 MiB", body = capstan_model::ErrorBody)
    ),
    security(()),
)]
pub(crate) async fn receive(
    State(state): State<AppState>,
    Path(app): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<(axum::http::StatusCode, Json<HookOutcome>), ApiError> {
    check_app(&app)?;
    // read up to the limit, no further: a bigger body is refused without being held
    let body = axum::body::to_bytes(body, capstan_pipeline::MAX_BODY)
        .await
        .map_err(|_| {
            ApiError::new(
                Code::TooLarge,
                format!(
                    "a delivery is at most {} MiB: send push events only, or fewer commits at once",
                    capstan_pipeline::MAX_BODY >> 20
                ),
            )
        })?;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let outcome = |outcome: &str, reason: String| HookOutcome {
        outcome: outcome.into(),
        reason,
        build: None,
        commit: String::new(),
    };
    match hooks(&state)?.receive(&app, &header, &body).await? {
        Received::Unknown => Err(ApiError::new(
            Code::NotFound,
            format!("{app:?} has no git hook: make one with `capstan hooks {app}`"),
        )),
        Received::Refused(refusal) => Err(ApiError::new(Code::Unauthorized, refusal.to_string())),
        Received::BadPayload(why) => Err(ApiError::new(Code::BadRequest, why)),
        Received::Replay => Ok((
            axum::http::StatusCode::OK,
            Json(outcome(
                "replay",
                "this delivery id was received before".into(),
            )),
        )),
        Received::Skipped(why) => Ok((axum::http::StatusCode::OK, Json(outcome("skipped", why)))),
        Received::Queued { build, commit } => Ok((
            axum::http::StatusCode::ACCEPTED,
            Json(HookOutcome {
                build: Some(build),
                commit,
                ..outcome("queued", String::new())
            }),
        )),
    }
}

/// `GET /api/v1/apps/{app}/hooks`: the app's webhook (never its secret), source and last
/// deliveries.
#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}/hooks",
    tag = "pipeline",
    params(("app" = String, Path, description = "the app")),
    responses((status = 200, description = "the hook and its last 50 deliveries, newest first", body = HookInfo))
)]
pub(crate) async fn info(
    State(state): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<HookInfo>, ApiError> {
    check_app(&app)?;
    let hooks = hooks(&state)?;
    let deliveries = hooks
        .deliveries(&app, LISTED)
        .await?
        .into_iter()
        .map(|d| HookDelivery {
            delivery: d.delivery,
            provider: d.provider,
            event: d.event,
            received: capstan_model::format_nanos(d.received_nano),
            outcome: d.outcome,
            reason: d.reason,
            commit: d.commit,
            build: d.build,
        })
        .collect();
    Ok(Json(HookInfo {
        path: path_of(&app),
        has_secret: hooks.secret(&app).await?.is_some(),
        source: hooks.source(&app).await?,
        deliveries,
        app,
    }))
}

/// `POST /api/v1/apps/{app}/hooks`: makes the app's hook secret (a new one replaces the one
/// before, which stops working at once) and shows it, this once.
#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/hooks",
    tag = "pipeline",
    params(("app" = String, Path, description = "the app")),
    responses((status = 201, description = "the new secret, shown this once", body = HookSecret))
)]
pub(crate) async fn new_secret(
    State(state): State<AppState>,
    Path(app): Path<String>,
) -> Result<(axum::http::StatusCode, Json<HookSecret>), ApiError> {
    check_app(&app)?;
    let secret = hooks(&state)?.new_secret(&app).await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(HookSecret {
            path: path_of(&app),
            secret,
            app,
        }),
    ))
}

/// `PUT /api/v1/apps/{app}/source`: where the app's code is, and what its pushes build.
#[utoipa::path(
    put,
    path = "/api/v1/apps/{app}/source",
    tag = "pipeline",
    params(("app" = String, Path, description = "the app")),
    request_body = GitSource,
    responses(
        (status = 200, description = "the source as kept", body = GitSource),
        (status = 400, description = "a setting that does not hold, named", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn set_source(
    State(state): State<AppState>,
    Path(app): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<GitSource>, ApiError> {
    check_app(&app)?;
    let source: GitSource = crate::params::json_object(&body).map_err(|e| {
        ApiError::new(
            Code::BadRequest,
            format!("source: {e} (send {{\"repository\": \"https://…\", \"branch\": \"main\"}})"),
        )
    })?;
    hooks(&state)?.set_source(&app, Some(&source)).await?;
    Ok(Json(source))
}

/// `DELETE /api/v1/apps/{app}/source`: pushes build nothing any more.
#[utoipa::path(
    delete,
    path = "/api/v1/apps/{app}/source",
    tag = "pipeline",
    params(("app" = String, Path, description = "the app")),
    responses((status = 204, description = "forgotten (or there was none)"))
)]
pub(crate) async fn remove_source(
    State(state): State<AppState>,
    Path(app): Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    check_app(&app)?;
    hooks(&state)?.set_source(&app, None).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
