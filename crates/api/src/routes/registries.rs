//! Registry credentials (admins): what capstan knows, from every origin, never a secret; a
//! login checked against the registry before it is kept sealed; a logout. Every pull, build,
//! scan and update check reads the same credentials.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use capstan_model::{CredentialOrigin, RegistryLogin, RegistryLoginRequest, RegistryLogins};

use crate::params::{self, Pairs};
use crate::{ApiError, AppState, Code};

/// The registry as a path names it, checked and named as references name it.
fn registry(text: &str) -> Result<String, ApiError> {
    capstan_registry::registry_name(text).map_err(|e| ApiError::bad_param("registry", e))
}

fn credentials_error(e: &capstan_registry::Error) -> ApiError {
    tracing::error!(error = %e, "cannot read or keep registry credentials");
    ApiError::new(Code::Internal, e.to_string())
}

/// `GET /api/v1/registries`: every registry capstan has credentials for, from each origin
/// (`capstan registries login`, capstan.toml, Docker's config and credential helpers), the
/// one used marked in effect. Never a password.
#[utoipa::path(
    get,
    path = "/api/v1/registries",
    tag = "images",
    responses(
        (status = 200, description = "the registries capstan has credentials for", body = RegistryLogins)
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<RegistryLogins>, ApiError> {
    params::only(&pairs, &[])?;
    let registries = state
        .registries
        .list()
        .await
        .map_err(|e| credentials_error(&e))?;
    Ok(Json(RegistryLogins { registries }))
}

/// `POST /api/v1/registries/{registry}` with `{username, password}`: checked against the
/// registry as `docker login` does, then kept sealed in the data dir's vault (replacing what
/// was kept). Refused credentials are not kept.
#[utoipa::path(
    post,
    path = "/api/v1/registries/{registry}",
    tag = "images",
    params(("registry" = String, Path, description = "the registry: ghcr.io, registry.example.com:5000, docker.io")),
    request_body = RegistryLoginRequest,
    responses(
        (status = 201, description = "checked and kept", body = RegistryLogin),
        (status = 200, description = "checked and kept, replacing what was kept", body = RegistryLogin),
        (status = 400, description = "not a registry, or not a login's body", body = capstan_model::ErrorBody),
        (status = 422, description = "the registry refused the credentials, or cannot be reached; nothing was kept", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn login(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<RegistryLogin>), ApiError> {
    let registry = registry(&name)?;
    let asked: RegistryLoginRequest = crate::params::json_object(&body).map_err(|e| {
        ApiError::new(
            Code::BadRequest,
            format!("login: {e} (send {{\"username\": \"...\", \"password\": \"...\"}})"),
        )
    })?;
    if asked.username.is_empty() || asked.password.is_empty() {
        return Err(ApiError::new(
            Code::BadRequest,
            "login: give both a username and a password (or access token)",
        ));
    }
    let Some(logins) = state.registries.logins.clone() else {
        return Err(ApiError::new(
            Code::Internal,
            "this daemon keeps no registry logins",
        ));
    };
    let credentials = capstan_registry::Credentials::new(&asked.username, &asked.password);
    state
        .registry
        .check_login(&registry, &credentials)
        .await
        .map_err(|e| ApiError::new(Code::Failed, format!("{e}; nothing was kept")))?;
    let (saved, existed) = tokio::task::spawn_blocking(move || {
        logins
            .save(&registry, &credentials)
            .map(|replaced| (registry, replaced))
    })
    .await
    .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?
    .map_err(|e| credentials_error(&e))?;
    tracing::info!(registry = %saved, username = %asked.username, "registry login kept");
    Ok((
        super::created_or_ok(!existed),
        Json(RegistryLogin {
            registry: saved,
            username: Some(asked.username),
            origin: CredentialOrigin::Capstan,
            detail: None,
            in_effect: true,
            saved_at: Some(chrono::Utc::now()),
        }),
    ))
}

/// `DELETE /api/v1/registries/{registry}`: forgets what `capstan registries login` kept for
/// it (credentials from capstan.toml or Docker's config stay where they are).
#[utoipa::path(
    delete,
    path = "/api/v1/registries/{registry}",
    tag = "images",
    params(("registry" = String, Path, description = "the registry")),
    responses(
        (status = 204, description = "forgotten"),
        (status = 400, description = "not a registry", body = capstan_model::ErrorBody),
        (status = 404, description = "capstan kept no login for it", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn logout(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(pairs): Query<Pairs>,
) -> Result<StatusCode, ApiError> {
    params::only(&pairs, &[])?;
    let registry = registry(&name)?;
    let removed = match state.registries.logins.clone() {
        Some(logins) => {
            let r = registry.clone();
            tokio::task::spawn_blocking(move || logins.remove(&r))
                .await
                .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?
                .map_err(|e| credentials_error(&e))?
        }
        None => false,
    };
    if removed {
        tracing::info!(%registry, "registry login forgotten");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            Code::NotFound,
            format!(
                "capstan kept no login for {registry}; `capstan registries ls` lists where its credentials come from"
            ),
        ))
    }
}
