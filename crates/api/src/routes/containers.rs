use axum::Json;
use axum::extract::{Query, State};
use capstan_model::ContainerList;

use crate::params::{self, Pairs};
use crate::{ApiError, AppState};

/// `GET /api/v1/containers[?all=true][&app=APP]`: what the engine runs now, or one app's
/// replicas (503 when the engine cannot be reached).
#[utoipa::path(
    get,
    path = "/api/v1/containers",
    tag = "containers",
    params(
        ("all" = Option<bool>, Query, description = "also stopped containers"),
        ("app" = Option<String>, Query, description = "only this app's replicas")
    ),
    responses(
        (status = 200, description = "OK", body = ContainerList),
        (status = 503, description = "the engine cannot be reached", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<ContainerList>, ApiError> {
    params::only(&pairs, &["all", "app"])?;
    let all = params::flag(&pairs, "all")?.unwrap_or(false);
    let app = params::last(&pairs, "app");
    let mut containers = state.engine.list_containers(all).await?;
    if let Some(app) = app {
        containers.retain(|c| c.labels.get("io.capstan.app").map(String::as_str) == Some(app));
    }
    containers.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.name.cmp(&b.name)));
    Ok(Json(ContainerList { containers }))
}
