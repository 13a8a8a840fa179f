//! `/api/v1/targets`: where apps run (the local engine and each `[[targets]]` entry), each
//! probed now, all at once.

use axum::Json;
use axum::extract::{Query, State};
use capstan_model::TargetStatus;

use crate::params::{self, Pairs};
use crate::{ApiError, AppState};

/// `GET /api/v1/targets`: the local engine first, then each configured target, with whether it
/// answers as its kind needs and, for a Swarm, its nodes (role, state, leader, engine version),
/// for a Kubernetes cluster, its API server's version.
/// A target that does not answer within 5 s is listed as such, with why.
#[utoipa::path(
    get,
    path = "/api/v1/targets",
    tag = "apps",
    responses(
        (status = 200, description = "every target and how it is doing now", body = Vec<TargetStatus>)
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<Vec<TargetStatus>>, ApiError> {
    params::only(&pairs, &[])?;
    let local = capstan_deploy::targets::probe_local(&state.engine);
    let others = futures_util::future::join_all(state.targets.iter().map(|t| async move {
        match t.kind {
            capstan_model::TargetKind::Kubernetes => capstan_kube::probe(t).await,
            _ => capstan_deploy::targets::probe(t).await,
        }
    }));
    let (local, others) = tokio::join!(local, others);
    Ok(Json(std::iter::once(local).chain(others).collect()))
}
