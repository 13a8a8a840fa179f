//! Tokens (`GET`/`POST /api/v1/tokens`, `DELETE /api/v1/tokens/{name}`) and the audit log
//! (`GET /api/v1/audit`); an admin's.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use capstan_model::{
    AuditEntry, AuditLog, CreatedToken, NewToken, Role, TokenInfo, TokenList, nanos_to_datetime,
};
use capstan_store::TokenRow;

use crate::auth::{Principal, random_hex, token_hash};
use crate::params::{self, Pairs};
use crate::{ApiError, AppState, Code};

fn info(row: TokenRow) -> TokenInfo {
    TokenInfo {
        role: Role::parse(&row.role).unwrap_or(Role::Viewer),
        name: row.name,
        created: nanos_to_datetime(row.created_nano),
        created_by: row.created_by,
        last_used: row.last_used_nano.map(nanos_to_datetime),
        revoked: row.revoked_nano.map(nanos_to_datetime),
    }
}

/// A token's or user's name: 1 to 64 letters, digits, `-`, `_`, `.` and the characters in
/// `also`; `field` names it in the error.
pub(crate) fn check_name(field: &str, name: &str, also: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c) || also.contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            Code::BadRequest,
            format!(
                "{field}: {name:?} must be 1 to 64 letters, digits, `-`, `_`, `.`{}",
                if also.is_empty() {
                    String::new()
                } else {
                    format!(" or `{also}`")
                }
            ),
        ))
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "access",
    responses(
        (status = 200, description = "every token, revoked ones too; never a secret", body = TokenList)
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<TokenList>, ApiError> {
    params::only(&pairs, &[])?;
    let rows = state.store.read(capstan_store::access::tokens).await?;
    Ok(Json(TokenList {
        tokens: rows.into_iter().map(info).collect(),
    }))
}

/// Makes a token; its secret is in this answer only (capstan keeps its SHA-256).
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "access",
    request_body = NewToken,
    responses(
        (status = 201, description = "the token; its secret is shown only here", body = CreatedToken),
        (status = 409, description = "a token of that name exists", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let new: NewToken = crate::params::json_object(&body).map_err(|e| {
        ApiError::new(
            Code::BadRequest,
            format!("token: {e} (send {{\"name\": \"ci\", \"role\": \"viewer|operator|admin\"}})"),
        )
    })?;
    check_name("token.name", &new.name, "")?;
    if new.name == "admin" {
        return Err(ApiError::new(
            Code::BadRequest,
            "token.name: `admin` is the admin token's; pick another",
        ));
    }
    let token = format!("cap_{}_{}", random_hex(8)?, random_hex(32)?);
    let id = token.split('_').nth(1).unwrap_or_default().to_owned();
    let row = TokenRow {
        id,
        name: new.name.clone(),
        role: new.role.as_str().to_owned(),
        hash: token_hash(&token),
        created_nano: crate::routes::now_nanos(),
        created_by: who.name,
        last_used_nano: None,
        revoked_nano: None,
    };
    let stored = row.clone();
    let added = state
        .store
        .write(move |tx| capstan_store::access::add_token(tx, &stored))
        .await?;
    if !added {
        return Err(ApiError::new(
            Code::Conflict,
            format!(
                "a token named {:?} exists (revoked tokens keep their names); pick another",
                new.name
            ),
        ));
    }
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token,
            info: info(row),
        }),
    ))
}

#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{name}",
    tag = "access",
    params(
        ("name" = String, Path, description = "the token's name")
    ),
    responses(
        (status = 204, description = "revoked"),
        (status = 404, description = "no such token", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let now = crate::routes::now_nanos();
    let lookup = name.clone();
    let revoked = state
        .store
        .write_synced(move |tx| capstan_store::access::revoke_token(tx, &lookup, now))
        .await?;
    if revoked {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            Code::NotFound,
            format!("no live token {name:?}; `capstan tokens` lists them"),
        ))
    }
}

/// `GET /api/v1/audit?since=1d&limit=100`: newest first.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "access",
    params(
        ("since" = Option<String>, Query, description = "RFC 3339 time or an age such as 1d"),
        ("limit" = Option<u32>, Query, description = "most entries (default 100)")
    ),
    responses(
        (status = 200, description = "every mutating call: who, what, when, from where, newest first", body = AuditLog)
    )
)]
pub(crate) async fn audit(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<AuditLog>, ApiError> {
    params::only(&pairs, &["since", "limit"])?;
    let now = chrono::Utc::now();
    let since = match params::last(&pairs, "since") {
        Some(v) => {
            capstan_model::parse_time_or_ago(v, now).map_err(|e| ApiError::bad_param("since", e))?
        }
        None => 0,
    };
    let limit = match params::last(&pairs, "limit") {
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| ApiError::bad_param("limit", "a number from 1 to 10000"))?,
        None => 100,
    };
    let rows = state
        .store
        .read(move |c| capstan_store::access::audit_log(c, since, limit))
        .await?;
    Ok(Json(AuditLog {
        entries: rows
            .into_iter()
            .map(|r| AuditEntry {
                time: nanos_to_datetime(r.time_nano),
                role: Role::parse(&r.role).unwrap_or(Role::Viewer),
                who: r.who,
                method: r.method,
                path: r.path,
                status: r.status,
                remote: r.remote,
            })
            .collect(),
    }))
}
