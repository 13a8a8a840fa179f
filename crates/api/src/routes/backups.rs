//! Backups of an app's named volumes: take one, list them, restore one (docs/backups.md).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use capstan_backup::BackupError;
use capstan_model::{BackupReport, RestoreReport, RestoreRequest, Snapshot};

use crate::auth::Principal;
use crate::error::Code;
use crate::params::{self, Pairs};

use crate::routes::apps::{actor, check_app, hold};
use crate::{ApiError, AppState};

impl From<BackupError> for ApiError {
    fn from(err: BackupError) -> Self {
        match err {
            e @ (BackupError::NotConfigured | BackupError::Config { .. }) => {
                Self::new(Code::Conflict, e.to_string())
            }
            BackupError::NotFound(m) => Self::new(Code::NotFound, m),
            BackupError::Refused(m) => Self::new(Code::BadRequest, m),
            e => Self::new(Code::Failed, e.to_string()),
        }
    }
}

fn backups(state: &AppState) -> Result<&capstan_backup::Backups, ApiError> {
    state
        .backups
        .as_ref()
        .filter(|b| b.restic.is_some())
        .ok_or_else(|| BackupError::NotConfigured.into())
}

/// The model of `app`'s running release.
async fn running(state: &AppState, app: &str) -> Result<capstan_compose::Project, ApiError> {
    match capstan_deploy::running_model(&state.store, app).await {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(ApiError::new(
            Code::NotFound,
            format!("app {app:?} runs no release (capstan apps lists them)"),
        )),
        Err(e) => Err(ApiError::new(Code::NotFound, e.to_string())),
    }
}

/// `GET /api/v1/apps/{app}/backups`: the app's snapshots, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/apps/{app}/backups",
    tag = "backups",
    params(("app" = String, Path, description = "the app")),
    responses(
        (status = 200, description = "its snapshots, newest first", body = Vec<Snapshot>),
        (status = 409, description = "no backup repository is configured", body = capstan_model::ErrorBody),
        (status = 422, description = "the repository cannot be read (restic's words)", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Path(app): Path<String>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<Vec<Snapshot>>, ApiError> {
    check_app(&app)?;
    params::only(&pairs, &[])?;
    let backups = backups(&state)?;
    Ok(Json(backups.snapshots(&app).await?))
}

/// `POST /api/v1/apps/{app}/backups[?volume=V]`: backs the app's volumes up now (its
/// pre-backup commands first), then applies its retention.
#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/backups",
    tag = "backups",
    params(
        ("app" = String, Path, description = "the app"),
        ("volume" = Option<String>, Query, description = "only this volume")
    ),
    responses(
        (status = 201, description = "a snapshot per volume", body = BackupReport),
        (status = 400, description = "the app has no named volume", body = capstan_model::ErrorBody),
        (status = 404, description = "no such app, or volume", body = capstan_model::ErrorBody),
        (status = 409, description = "no backup repository is configured, or a deploy of the app is under way", body = capstan_model::ErrorBody),
        (status = 422, description = "the backup failed (a pre-backup command, the repository): journaled as backup_failed", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn take(
    State(state): State<AppState>,
    Path(app): Path<String>,
    Query(pairs): Query<Pairs>,
) -> Result<(StatusCode, Json<BackupReport>), ApiError> {
    check_app(&app)?;
    params::only(&pairs, &["volume"])?;
    let volume = params::last(&pairs, "volume");
    let backups = backups(&state)?;
    let project = running(&state, &app).await?;
    let _lock = hold(&state, &app)?;
    let report = backups.backup(&project, volume, false).await?;
    Ok((StatusCode::CREATED, Json(report)))
}

/// `POST /api/v1/apps/{app}/restore`: puts a snapshot back into its volume, the services that
/// mount it stopped meanwhile and started again after.
#[utoipa::path(
    post,
    path = "/api/v1/apps/{app}/restore",
    tag = "backups",
    params(("app" = String, Path, description = "the app")),
    request_body = RestoreRequest,
    responses(
        (status = 200, description = "what was restored", body = RestoreReport),
        (status = 400, description = "not a snapshot id", body = capstan_model::ErrorBody),
        (status = 404, description = "no such app, or snapshot of it", body = capstan_model::ErrorBody),
        (status = 409, description = "no backup repository is configured, or a deploy of the app is under way", body = capstan_model::ErrorBody),
        (status = 422, description = "the restore failed (the services are started again)", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn restore(
    State(state): State<AppState>,
    Path(app): Path<String>,
    who: Option<Extension<Principal>>,
    body: axum::body::Bytes,
) -> Result<Json<RestoreReport>, ApiError> {
    check_app(&app)?;
    let asked: RestoreRequest = params::json_object(&body).map_err(|e| {
        ApiError::new(
            Code::BadRequest,
            format!("restore: {e} (send {{\"snapshot\": \"1a2b3c4d\"}})"),
        )
    })?;
    let backups = backups(&state)?;
    let project = running(&state, &app).await?;
    let snapshot = backups.find(&app, &asked.snapshot).await?;
    let _lock = hold(&state, &app)?;
    let services = capstan_backup::services_mounting(&project, &snapshot.volume);
    let actor = actor(who);
    let operate = |service: String, operation| {
        let (state, actor, app) = (state.clone(), actor.clone(), app.clone());
        async move {
            state
                .deployer
                .operate(&state.store, &actor, &app, operation, Some(&service), None)
                .await
        }
    };
    for s in &services {
        operate(s.clone(), capstan_deploy::Operation::Stop).await?;
    }
    let restored = backups.restore_volume(&project, &snapshot).await;
    // started again whatever happened: a failed restore must not leave the app down
    for s in &services {
        operate(s.clone(), capstan_deploy::Operation::Start).await?;
    }
    restored?;
    Ok(Json(RestoreReport {
        app,
        snapshot,
        services,
    }))
}
