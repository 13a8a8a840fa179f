//! `/api/v1/targets`: where apps run (the local engine and each `[[targets]]` entry), each
//! probed now, all at once.

use axum::Json;
use axum::extract::{Query, State};
use capstan_model::TargetStatus;

use crate::params::{self, Pairs};
use crate::{ApiError, AppState};

/// `GET /api/v1/targets`: the local engine first, then each configured target, then (on a
/// fleet's hub) each joined host, with whether it
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
    // (a host of [[targets]] is a host of the fleet: listed with them)
    let configured = state
        .targets
        .iter()
        .filter(|t| t.kind != capstan_model::TargetKind::Host);
    let others = futures_util::future::join_all(configured.map(|t| async move {
        match t.kind {
            capstan_model::TargetKind::Kubernetes => capstan_kube::probe(t).await,
            _ => capstan_deploy::targets::probe(t).await,
        }
    }));
    let (local, others) = tokio::join!(local, others);
    // a hub's hosts: each a target by its name, healthy while its agent is connected
    let hosts = match &state.hub {
        Some(hub) => hub.hosts().await?,
        None => Vec::new(),
    };
    let hosts = hosts.into_iter().map(|h| {
        let mut status =
            capstan_deploy::targets::unasked(&h.name, capstan_model::TargetKind::Host, &h.address);
        status.error = if h.state == "connected" {
            // (an agent the hub runs for a host without one: its engine over ssh or TLS)
            h.engine
                .strip_prefix("unreachable: ")
                .map(|why| format!("its agent cannot reach its engine: {why}"))
        } else {
            Some(format!(
                "its agent is not connected to this hub (last contact {}): deploys to it are refused until it is back",
                h.last_contact
                    .map_or_else(|| "never".to_owned(), |t| t.to_rfc3339())
            ))
        };
        status.healthy = status.error.is_none();
        if status.healthy && !h.engine.is_empty() {
            status.engine_versions = vec![h.engine];
        }
        status
    });
    Ok(Json(
        std::iter::once(local).chain(others).chain(hosts).collect(),
    ))
}

/// `GET /api/v1/targets/{name}/self?image=IMAGE`: capstan's own objects for Kubernetes target
/// `name` (`capstan render-self`): the node agent's DaemonSet with its ServiceAccount,
/// ClusterRole and config, and the deployer's ServiceAccount and Role.
#[utoipa::path(
    get,
    path = "/api/v1/targets/{name}/self",
    tag = "apps",
    params(
        ("name" = String, Path, description = "a Kubernetes target of `[[targets]]`"),
        ("image" = String, Query, description = "capstan's image, which every node pulls"),
        ("join" = Option<String>, Query, description = "a fleet hub's https://HOST:PORT: each node's agent joins it with the token of the Secret capstan-join")
    ),
    responses(
        (status = 200, description = "the objects, in the order they are applied", body = Vec<crate::routes::apps::KubernetesObject>),
        (status = 400, description = "a target that is no Kubernetes cluster, or no image", body = capstan_model::ErrorBody),
        (status = 404, description = "no such target", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn render_self(
    State(state): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<Vec<crate::routes::apps::KubernetesObject>>, ApiError> {
    params::only(&pairs, &["image", "join"])?;
    if !state.targets.iter().any(|t| t.name == name) {
        return Err(ApiError::new(
            crate::Code::NotFound,
            format!(
                "no target named {name:?} (capstan targets lists them; [[targets]] in capstan.toml adds one)"
            ),
        ));
    }
    let image = params::last(&pairs, "image")
        .filter(|i| !i.trim().is_empty())
        .ok_or_else(|| {
            ApiError::bad_param(
                "image",
                "name capstan's image, which every node pulls (?image=registry.example.com/capstan:VERSION; docs/kubernetes.md says how to build one)",
            )
        })?;
    if let Err(e) = capstan_registry::Reference::parse(image) {
        return Err(ApiError::bad_param("image", format!("{image}: {e}")));
    }
    let (_, namespace) = crate::routes::apps::kubernetes_target(&state, &name).await?;
    let join = params::last(&pairs, "join").filter(|j| !j.trim().is_empty());
    if let Some(j) = join
        && (!j.starts_with("https://") || j.contains(char::is_whitespace))
    {
        return Err(ApiError::bad_param(
            "join",
            format!("{j:?}: the hub's fleet address is https://HOST:PORT (its [fleet] listen)"),
        ));
    }
    let objects = capstan_kube::render_self(&capstan_kube::SelfOptions {
        namespace,
        image: image.to_owned(),
        join: join.map(str::to_owned),
    });
    Ok(Json(
        objects
            .into_iter()
            .map(crate::routes::apps::KubernetesObject)
            .collect(),
    ))
}
