//! Alerts: `GET /api/v1/alerts` (firing and pending), `GET /api/v1/alerts/history` (their
//! moves, from the journal), the rules (`GET`/`POST /api/v1/alerts/rules`, `DELETE
//! /api/v1/alerts/rules/{name}`) and `POST /api/v1/alerts/rules/{name}/test`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;

use crate::params::{self, Pairs};
use crate::{ApiError, AppState, Code};
use capstan_model::{AlertList, AlertRules, EventPage, RuleTest};

fn alerts(state: &AppState) -> Result<Arc<capstan_alerts::Alerts>, ApiError> {
    state
        .alerts
        .clone()
        .ok_or_else(|| ApiError::new(Code::NotFound, "alerts are not evaluated by this daemon"))
}

#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "alerts",
    responses(
        (status = 200, description = "pending and firing alerts", body = AlertList)
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<AlertList>, ApiError> {
    params::only(&pairs, &[])?;
    Ok(Json(AlertList {
        alerts: alerts(&state)?.alerts(),
    }))
}

/// The journal's `alert_*` events, newest first (`since`, `until`, `limit`, `cursor` as for
/// events).
#[utoipa::path(
    get,
    path = "/api/v1/alerts/history",
    tag = "alerts",
    params(
        ("since" = Option<String>, Query, description = "RFC 3339 time or an age such as 15m, 2h, 1d"),
        ("until" = Option<String>, Query, description = "RFC 3339 time or an age"),
        params::PageDoc
    ),
    responses(
        (status = 200, description = "OK", body = EventPage)
    )
)]
pub(crate) async fn history(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<EventPage>, ApiError> {
    let mut p = params::events(&pairs, &["since", "until", "limit", "cursor"])?;
    p.filter.kinds = vec!["capstan".into()];
    p.filter.actions = capstan_model::CapstanAction::ALERTS
        .iter()
        .map(|a| a.as_str().to_owned())
        .collect();
    crate::routes::events::page(&state, p).await.map(Json)
}

#[utoipa::path(
    get,
    path = "/api/v1/alerts/rules",
    tag = "alerts",
    responses(
        (status = 200, description = "every rule, built-in, from the config or added through the API", body = AlertRules)
    )
)]
pub(crate) async fn rules(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<AlertRules>, ApiError> {
    params::only(&pairs, &[])?;
    Ok(Json(AlertRules {
        rules: alerts(&state)?.rule_list(),
    }))
}

/// Adds or replaces a rule (the body is one `[[alerts.rules]]` entry as JSON).
#[utoipa::path(
    post,
    path = "/api/v1/alerts/rules",
    tag = "alerts",
    request_body = capstan_alerts::RuleConfig,
    responses(
        (status = 201, description = "the rules after the change", body = AlertRules),
        (status = 400, description = "the rule is not valid; the message names the field", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn add_rule(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<AlertRules>), ApiError> {
    let config: capstan_alerts::RuleConfig = crate::params::json_object(&body)
        .map_err(|e| ApiError::new(Code::BadRequest, format!("rule: {e}")))?;
    let engine = alerts(&state)?;
    engine.add_rule(&config)?;
    Ok((
        StatusCode::CREATED,
        Json(AlertRules {
            rules: engine.rule_list(),
        }),
    ))
}

#[utoipa::path(
    delete,
    path = "/api/v1/alerts/rules/{name}",
    tag = "alerts",
    params(
        ("name" = String, Path, description = "the rule's name")
    ),
    responses(
        (status = 204, description = "removed"),
        (status = 404, description = "no such rule", body = capstan_model::ErrorBody),
        (status = 409, description = "the rule comes from the config file", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn remove_rule(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let removed = alerts(&state)?.remove_rule(&name)?;
    if removed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            Code::NotFound,
            format!("no rule {name:?}; `capstan alerts rules` lists them"),
        ))
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/alerts/rules/{name}/test",
    tag = "alerts",
    params(
        ("name" = String, Path, description = "the rule's name")
    ),
    responses(
        (status = 200, description = "the rule evaluated now, and why it would or would not fire", body = RuleTest),
        (status = 422, description = "the rule cannot be evaluated now (what it reads is off)", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn test_rule(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<RuleTest>, ApiError> {
    alerts(&state)?
        .test(&name)
        .await
        .map_err(|e| ApiError::new(Code::Failed, e))?
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                Code::NotFound,
                format!("no rule {name:?}; `capstan alerts rules` lists them"),
            )
        })
}
