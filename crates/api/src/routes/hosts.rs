//! The fleet's hosts: list, join tokens, remove (docs/fleet.md).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use capstan_model::{FleetHost, JoinTokenIssued, NewJoinToken};

use crate::auth::random_hex;
use crate::params::{self, Pairs};
use crate::{ApiError, AppState, Code};

/// A join token lives this long unless asked otherwise.
const TOKEN_TTL: &str = "1h";
/// ... and at most this long.
const TOKEN_TTL_MAX: std::time::Duration = std::time::Duration::from_hours(24 * 7);
/// The most hosts one token lets in.
const TOKEN_USES_MAX: u32 = 1000;

fn hub(state: &AppState) -> Result<&capstan_fleet::Hub, ApiError> {
    state.hub.as_ref().ok_or_else(|| {
        ApiError::new(
            Code::Conflict,
            "this capstan is not a fleet hub: set [fleet] listen = \"ADDR:PORT\" in capstan.toml (where agents connect) and restart it",
        )
    })
}

/// Every host that joined, and whether its agent is connected.
#[utoipa::path(
    get,
    path = "/api/v1/hosts",
    tag = "hosts",
    responses(
        (status = 200, description = "the fleet's hosts, by name", body = Vec<FleetHost>),
        (status = 409, description = "this capstan is not a hub", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<Vec<FleetHost>>, ApiError> {
    params::only(&pairs, &[])?;
    let mut hosts = hub(&state)?.hosts().await?;
    // how each is doing, from what the hub keeps of it: its metrics and the alerts on them
    if let Some(history) = state.history.clone() {
        let per_host = tokio::task::spawn_blocking(move || {
            let now = chrono::Utc::now().timestamp_millis();
            let by_host = |text: &str| -> BTreeMap<String, f64> {
                capstan_metrics::Query::parse(text)
                    .ok()
                    .and_then(|q| q.instant(&history, now).ok())
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(labels, v)| Some((labels.get("host")?.clone(), v)))
                    .collect()
            };
            (
                by_host("node_load1"),
                by_host("count by (host) (container_memory_working_set_bytes)"),
            )
        })
        .await;
        if let Ok((load, containers)) = per_host {
            for h in &mut hosts {
                h.load1 = load.get(&h.name).copied();
                // a host that ships metrics and measures no container runs none
                h.containers = match (containers.get(&h.name), h.load1) {
                    (Some(n), _) => Some(n.max(0.0).round() as u64),
                    (None, Some(_)) => Some(0),
                    (None, None) => None,
                };
            }
        }
    }
    if let Some(alerts) = &state.alerts {
        let firing = alerts.alerts();
        for h in &mut hosts {
            h.alerts = firing
                .iter()
                .filter(|a| {
                    a.state == capstan_model::AlertState::Firing
                        && a.labels.get("host") == Some(&h.name)
                })
                .map(|a| a.rule.clone())
                .collect();
            h.alerts.dedup();
        }
    }
    Ok(Json(hosts))
}

/// A one-time join token pinning this hub's key; shown only here.
#[utoipa::path(
    post,
    path = "/api/v1/hosts/join-tokens",
    tag = "hosts",
    request_body = NewJoinToken,
    responses(
        (status = 201, description = "the token; its secret is shown only here", body = JoinTokenIssued),
        (status = 400, description = "a bad label or ttl", body = capstan_model::ErrorBody),
        (status = 409, description = "this capstan is not a hub", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn join_token(
    State(state): State<AppState>,
    axum::Extension(who): axum::Extension<crate::auth::Principal>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<JoinTokenIssued>), ApiError> {
    let new: NewJoinToken = crate::params::json_object(&body).map_err(|e| {
        ApiError::new(
            Code::BadRequest,
            format!(
                "join token: {e} (send {{\"labels\": {{\"env\": \"prod\"}}, \"ttl\": \"1h\", \"uses\": 1}}, or {{}})"
            ),
        )
    })?;
    for (k, v) in &new.labels {
        if k.is_empty() || k.len() > 63 || v.len() > 253 || k.chars().any(char::is_whitespace) {
            return Err(ApiError::bad_param(
                "labels",
                format!(
                    "{k:?}={v:?}: a label is KEY=VALUE, a key of 1 to 63 characters without spaces"
                ),
            ));
        }
    }
    let ttl_text = new.ttl.as_deref().unwrap_or(TOKEN_TTL);
    let ttl = capstan_model::parse_duration(ttl_text)
        .map_err(|e| ApiError::bad_param("ttl", e.to_string()))?;
    if ttl.is_zero() || ttl > TOKEN_TTL_MAX {
        return Err(ApiError::bad_param(
            "ttl",
            format!("{ttl_text}: a join token lives between 1s and 7d"),
        ));
    }
    let uses = new.uses.unwrap_or(1);
    if !(1..=TOKEN_USES_MAX).contains(&uses) {
        return Err(ApiError::bad_param(
            "uses",
            format!("{uses}: a join token lets 1 to {TOKEN_USES_MAX} hosts in"),
        ));
    }
    let hub = hub(&state)?;
    let expires_nano =
        crate::routes::now_nanos() + i64::try_from(ttl.as_nanos()).unwrap_or(i64::MAX);
    let token = hub
        .issue(
            (random_hex(8)?, random_hex(32)?),
            (&new.labels, uses),
            expires_nano,
            &who.name,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(JoinTokenIssued {
            token: token.to_text(),
            hub_fingerprint: hub.fingerprint(),
            expires: chrono::DateTime::from_timestamp_nanos(expires_nano),
            labels: new.labels,
            uses,
        }),
    ))
}

/// Removes a host: its key is refused from now on and its connections are cut at once.
#[utoipa::path(
    delete,
    path = "/api/v1/hosts/{name}",
    tag = "hosts",
    params(("name" = String, Path, description = "the host")),
    responses(
        (status = 200, description = "the host, as it was", body = FleetHost),
        (status = 404, description = "no such host", body = capstan_model::ErrorBody),
        (status = 409, description = "this capstan is not a hub", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<FleetHost>, ApiError> {
    hub(&state)?.remove(&name).await?.map(Json).ok_or_else(|| {
        ApiError::new(
            Code::NotFound,
            format!("no host named {name} in the fleet (capstan hosts lists them)"),
        )
    })
}
