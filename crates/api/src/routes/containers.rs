use axum::Json;
use axum::extract::{Query, State};
use capstan_model::ContainerList;

use crate::params::{self, Pairs};
use crate::{ApiError, AppState};

/// `GET /api/v1/containers[?all=true]`: what the engine runs now (503 when it cannot be reached).
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<ContainerList>, ApiError> {
    params::only(&pairs, &["all"])?;
    let all = params::flag(&pairs, "all")?.unwrap_or(false);
    let mut containers = state.engine.list_containers(all).await?;
    containers.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.name.cmp(&b.name)));
    Ok(Json(ContainerList { containers }))
}
