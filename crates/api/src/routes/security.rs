//! `GET /api/v1/security`: the host security checks (CIS Docker Benchmark ids), run now.

use axum::Json;
use axum::extract::{Query, State};
use capstan_model::{SecurityReport, Severity};

use crate::params::{self, Pairs};
use crate::{ApiError, AppState, Code};

/// `GET /api/v1/security[?severity=high]`: every check run against the engine's host now, and
/// its findings (those at or above `severity` when given), worst first.
#[utoipa::path(
    get,
    path = "/api/v1/security",
    tag = "security",
    params(
        ("severity" = Option<String>, Query, description = "only findings at or above this: low, medium, high or critical")
    ),
    responses(
        (status = 200, description = "every check and its findings, worst first", body = SecurityReport),
        (status = 503, description = "the engine did not answer", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn report(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<SecurityReport>, ApiError> {
    params::only(&pairs, &["severity"])?;
    let at_least = match pairs.iter().rev().find(|(k, _)| k == "severity") {
        Some((_, v)) => Some(
            v.parse::<Severity>()
                .map_err(|e| ApiError::bad_param("severity", e))?,
        ),
        None => None,
    };
    let security = state.security.as_ref().ok_or_else(|| {
        ApiError::new(
            Code::NotFound,
            "the security checks do not run in this daemon",
        )
    })?;
    let mut report = security
        .report()
        .await
        .map_err(|e| ApiError::new(Code::EngineUnavailable, e))?;
    if let Some(min) = at_least {
        report.findings.retain(|f| f.severity >= min);
    }
    Ok(Json(report))
}
