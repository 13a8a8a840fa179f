//! The deploy policy (admins): the host-level features allowed per app. What a feature means,
//! and how a deploy is checked against them, is `capstan_deploy::policy`'s.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use capstan_deploy::policy::Feature;
use capstan_model::{Allowance, NewAllowance, PolicyList, nanos_to_datetime};
use capstan_store::policy::AllowanceRow;

use crate::auth::Principal;
use crate::params::{self, Pairs};
use crate::{ApiError, AppState, Code};

fn allowance(row: AllowanceRow) -> Allowance {
    Allowance {
        time: nanos_to_datetime(row.time_nano),
        app: row.app,
        feature: row.feature,
        allowed_by: row.allowed_by,
    }
}

/// A feature as written, checked (and written back the one way: `cap_add=SYS_ADMIN`).
fn feature(text: &str) -> Result<String, ApiError> {
    text.parse::<Feature>()
        .map(|f| f.to_string())
        .map_err(|e| ApiError::new(Code::BadRequest, format!("feature: {e}")))
}

/// `GET /api/v1/policy`: every allowance.
#[utoipa::path(
    get,
    path = "/api/v1/policy",
    tag = "access",
    responses(
        (status = 200, description = "the host-level features allowed per app", body = PolicyList)
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<PolicyList>, ApiError> {
    params::only(&pairs, &[])?;
    let rows = state.store.allowances(None).await?;
    Ok(Json(PolicyList {
        allowances: rows.into_iter().map(allowance).collect(),
    }))
}

/// `POST /api/v1/policy/{app}` with `{feature}`: allows it for the app's deploys.
#[utoipa::path(
    post,
    path = "/api/v1/policy/{app}",
    tag = "access",
    params(("app" = String, Path, description = "the app")),
    request_body = NewAllowance,
    responses(
        (status = 201, description = "allowed", body = Allowance),
        (status = 200, description = "it already was", body = Allowance),
        (status = 400, description = "not a feature", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn allow(
    State(state): State<AppState>,
    Path(app): Path<String>,
    Extension(who): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Allowance>), ApiError> {
    capstan_model::check_app_name(&app).map_err(|e| ApiError::bad_param("app", e.to_string()))?;
    let asked: NewAllowance = crate::params::json_object(&body).map_err(|e| {
        ApiError::new(
            Code::BadRequest,
            format!("policy: {e} (send {{\"feature\": \"privileged\"}})"),
        )
    })?;
    let row = AllowanceRow {
        app,
        feature: feature(&asked.feature)?,
        allowed_by: who.name,
        time_nano: super::now_nanos(),
    };
    let kept = row.clone();
    let new = state
        .store
        .write_synced(move |tx| capstan_store::policy::allow(tx, &kept))
        .await?;
    Ok((super::created_or_ok(new), Json(allowance(row))))
}

/// `DELETE /api/v1/policy/{app}?feature=F`: takes an allowance back; the app's next deploy,
/// rollback or update is checked without it.
#[utoipa::path(
    delete,
    path = "/api/v1/policy/{app}",
    tag = "access",
    params(
        ("app" = String, Path, description = "the app"),
        ("feature" = String, Query, description = "the feature, as allowed")
    ),
    responses(
        (status = 204, description = "taken back"),
        (status = 404, description = "it was not allowed", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn disallow(
    State(state): State<AppState>,
    Path(app): Path<String>,
    Query(pairs): Query<Pairs>,
) -> Result<StatusCode, ApiError> {
    params::only(&pairs, &["feature"])?;
    let text =
        params::last(&pairs, "feature").ok_or_else(|| ApiError::bad_param("feature", "missing"))?;
    let feature = feature(text)?;
    let (a, f) = (app.clone(), feature.clone());
    let removed = state
        .store
        .write_synced(move |tx| capstan_store::policy::disallow(tx, &a, &f))
        .await?;
    if removed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            Code::NotFound,
            format!("{feature} is not allowed for {app}; `capstan policy` lists what is"),
        ))
    }
}
