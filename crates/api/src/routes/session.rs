//! Signing in from a browser (`POST /api/v1/session` with a user name and password, or a
//! token; `GET` and `DELETE /api/v1/session`) and the users who may (`GET`/`POST
//! /api/v1/users`, `DELETE /api/v1/users/{name}`; an admin's).
//!
//! A session is a cookie (`capstan_session`: HttpOnly, SameSite=Strict, Secure under TLS) of
//! which capstan keeps a hash; every changing request it authenticates must also carry the
//! session's `X-CSRF-Token`.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::{Path, Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use capstan_model::{NewUser, Role, Session, SignIn, User, UserList, nanos_to_datetime};
use capstan_store::{SessionRow, UserRow};

use super::now_nanos;
use crate::auth::{Principal, SESSION_COOKIE, random_hex, session_cookie, token_hash};
use crate::params::{self, Pairs};
use crate::{ApiError, AppState, Code};

/// How long a session lasts.
const SESSION_HOURS: i64 = 12;

/// A refused sign-in: audited (as a viewer, the least role), and said without telling which
/// part was wrong.
/// The longest password a user may have, in bytes: hashing a 64 KiB one costs the blocking
/// pool for nothing.
const MAX_PASSWORD: usize = 1024;

async fn refused(state: &AppState, who: &str, remote: String) -> ApiError {
    let principal = Principal {
        name: who.to_owned(),
        role: Role::Viewer,
    };
    crate::auth::audit(
        state,
        &principal,
        "POST",
        "/api/v1/session".into(),
        401,
        remote,
    )
    .await;
    ApiError::new(Code::Unauthorized, "wrong user name, password or token")
}

/// Signs in: a user name and password, or a token. Sets the session cookie and answers the
/// session with its CSRF token.
#[utoipa::path(
    post,
    path = "/api/v1/session",
    tag = "access",
    request_body = SignIn,
    responses(
        (status = 200, description = "the session and its CSRF token; sets the capstan_session cookie", body = Session),
        (status = 401, description = "wrong name, password or token", body = capstan_model::ErrorBody),
        (status = 429, description = "too many failed sign-ins from this address or for this name", body = capstan_model::ErrorBody,
            headers(("Retry-After" = u64, description = "seconds to wait before the next attempt")))
    ),
    security(()),
)]
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let remote = crate::auth::remote_of(request.extensions());
    let address = request
        .extensions()
        .get::<axum::extract::ConnectInfo<crate::Peer>>()
        .map(|c| c.0.0.ip());
    same_origin_json(request.headers())?;
    let body = axum::body::to_bytes(request.into_body(), 64 * 1024)
        .await
        .map_err(|e| ApiError::new(Code::BadRequest, format!("sign-in: {e}")))?;
    let asked: SignIn = crate::params::json_object(&body).map_err(|e| {
        ApiError::new(
            Code::BadRequest,
            format!("sign-in: {e} (send {{\"username\", \"password\"}} or {{\"token\"}})"),
        )
    })?;
    // a name no user can have, or a password longer than any user's, costs no hashing and
    // leaves no attacker-chosen text in the audit log
    let name = asked.username.as_deref().filter(|name| {
        crate::routes::access::check_name("username", name, "@").is_ok()
            && asked
                .password
                .as_ref()
                .is_some_and(|p| p.len() <= MAX_PASSWORD)
    });
    let guard = &state.sign_ins.0;
    // an address or a name that failed too often waits, whatever it sends now
    if let Some(wait) = guard.wait(address, name) {
        let seconds = wait.as_secs().max(1);
        crate::auth::audit(
            &state,
            &Principal {
                name: name.unwrap_or("(not a user name)").to_owned(),
                role: Role::Viewer,
            },
            "POST",
            "/api/v1/session".into(),
            429,
            remote,
        )
        .await;
        return Err(ApiError::new(
            Code::TooManyRequests,
            format!(
                "too many failed sign-ins from this address or for this user; try again in {seconds} s"
            ),
        )
        .retry_after(seconds));
    }
    let (who, role, source) = match (&asked.username, &asked.password, &asked.token) {
        (Some(_), Some(password), None) => {
            let Some(name) = name else {
                guard.failed(address, None);
                return Err(refused(&state, "(not a user name)", remote).await);
            };
            let lookup = name.to_owned();
            let user = state
                .store
                .read(move |c| capstan_store::access::user(c, &lookup))
                .await?;
            // a missing user costs the same as a wrong password
            let (hash, role) = match &user {
                Some(u) => (u.hash.clone(), Role::parse(&u.role)),
                None => (DUMMY_HASH.to_owned(), None),
            };
            let password = password.clone();
            // a few hashes at once: the blocking pool is SQLite's too
            let _hashing = guard
                .hashing
                .acquire()
                .await
                .map_err(|_| ApiError::new(Code::Internal, "sign-in is shutting down"))?;
            let ok = tokio::task::spawn_blocking(move || {
                PasswordHash::new(&hash).is_ok_and(|parsed| {
                    argon2::Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
            })
            .await
            .unwrap_or(false);
            match (ok, role) {
                (true, Some(role)) => (name.to_owned(), role, format!("user:{name}")),
                _ => {
                    guard.failed(address, Some(name));
                    return Err(refused(&state, name, remote).await);
                }
            }
        }
        (None, None, Some(token)) => match crate::auth::identify(&state, token).await {
            Ok(p) => (p.name, p.role, crate::auth::token_source(&state, token)),
            Err(_) => {
                guard.failed(address, None);
                return Err(refused(&state, "(a token)", remote).await);
            }
        },
        _ => {
            return Err(ApiError::new(
                Code::BadRequest,
                "sign-in: send a username and password, or a token",
            ));
        }
    };
    guard.succeeded(address, name);
    let cookie = random_hex(32)?;
    let csrf = random_hex(32)?;
    let now = now_nanos();
    let row = SessionRow {
        id_hash: token_hash(&cookie),
        who: who.clone(),
        role: role.as_str().to_owned(),
        csrf: csrf.clone(),
        created_nano: now,
        expires_nano: now + SESSION_HOURS * 3_600_000_000_000,
        source,
    };
    let expires = nanos_to_datetime(row.expires_nano);
    state
        .store
        .write(move |tx| capstan_store::access::add_session(tx, &row))
        .await?;
    let principal = Principal {
        name: who.clone(),
        role,
    };
    crate::auth::audit(
        &state,
        &principal,
        "POST",
        "/api/v1/session".into(),
        200,
        remote,
    )
    .await;
    let mut response = Json(Session {
        who,
        role,
        csrf_token: csrf,
        expires,
    })
    .into_response();
    if let Ok(v) = session_cookie(&cookie, SESSION_HOURS * 3600, state.secure_cookies).parse() {
        response.headers_mut().insert(SET_COOKIE, v);
    }
    Ok(response)
}

/// A sign-in must come from the dashboard's own page or a program, never from a form on
/// another site (login CSRF: signing the victim's browser in as the attacker): it is JSON (a
/// cross-site form cannot send that without the browser asking first), and an `Origin`, when
/// the browser sends one, is this host's.
fn same_origin_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !json {
        return Err(ApiError::new(
            Code::BadRequest,
            "sign-in: send the body as application/json",
        ));
    }
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &axum::http::HeaderValue| v.to_str().ok())
    };
    if let Some(origin) = text(axum::http::header::ORIGIN) {
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if Some(origin_host) != text(axum::http::header::HOST) {
            return Err(ApiError::new(
                Code::Forbidden,
                format!("sign-in: a page of {origin} may not sign in here"),
            ));
        }
    }
    Ok(())
}

/// An argon2 hash of nothing anyone types, verified against when the user does not exist.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$2Cx3Y3h8Qm3iDUqGZmS5fY0jLBOSmNf4vGLB5xh7CxU";

/// The session of the request's cookie (or, with a bearer token, who that is, no CSRF token).
#[utoipa::path(
    get,
    path = "/api/v1/session",
    tag = "access",
    responses(
        (status = 200, description = "who is signed in", body = Session)
    )
)]
pub(crate) async fn current(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    headers: HeaderMap,
) -> Result<Json<Session>, ApiError> {
    let found = match crate::auth::cookie(&headers, SESSION_COOKIE) {
        Some(c) => {
            let (hash, now) = (token_hash(c), now_nanos());
            state
                .store
                .read(move |conn| capstan_store::access::session(conn, &hash, now))
                .await?
        }
        None => None,
    };
    Ok(Json(match found {
        Some(s) => Session {
            who: s.who,
            role: Role::parse(&s.role).unwrap_or(Role::Viewer),
            csrf_token: s.csrf,
            expires: nanos_to_datetime(s.expires_nano),
        },
        None => Session {
            who: who.name,
            role: who.role,
            csrf_token: String::new(),
            expires: nanos_to_datetime(i64::MAX),
        },
    }))
}

/// Signs out: the session ends and the cookie is cleared.
#[utoipa::path(
    delete,
    path = "/api/v1/session",
    tag = "access",
    responses(
        (status = 204, description = "signed out; the cookie is cleared")
    )
)]
pub(crate) async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(c) = crate::auth::cookie(&headers, SESSION_COOKIE) {
        let hash = token_hash(c);
        state
            .store
            .write_synced(move |tx| capstan_store::access::end_session(tx, &hash))
            .await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = session_cookie("", 0, state.secure_cookies).parse() {
        response.headers_mut().insert(SET_COOKIE, v);
    }
    Ok(response)
}

fn user(row: UserRow) -> User {
    User {
        role: Role::parse(&row.role).unwrap_or(Role::Viewer),
        name: row.name,
        created: nanos_to_datetime(row.created_nano),
        created_by: row.created_by,
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "access",
    responses(
        (status = 200, description = "OK", body = UserList)
    )
)]
pub(crate) async fn list_users(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<UserList>, ApiError> {
    params::only(&pairs, &[])?;
    let rows = state.store.read(capstan_store::access::users).await?;
    Ok(Json(UserList {
        users: rows.into_iter().map(user).collect(),
    }))
}

/// Adds a user, or gives one a new role and password (their sessions end).
#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "access",
    request_body = NewUser,
    responses(
        (status = 201, description = "a new user", body = User),
        (status = 200, description = "an existing user, with the new role and password (their sessions ended)", body = User)
    )
)]
pub(crate) async fn put_user(
    State(state): State<AppState>,
    Extension(by): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let new: NewUser = crate::params::json_object(&body).map_err(|e| {
        ApiError::new(
            Code::BadRequest,
            format!("user: {e} (send {{\"name\", \"role\", \"password\"}})"),
        )
    })?;
    crate::routes::access::check_name("user.name", &new.name, "@")?;
    if new.password.len() > MAX_PASSWORD {
        return Err(ApiError::new(
            Code::BadRequest,
            format!("user.password: at most {MAX_PASSWORD} bytes"),
        ));
    }
    if new.password.chars().count() < 12 {
        return Err(ApiError::new(
            Code::BadRequest,
            "user.password: at least 12 characters",
        ));
    }
    let salt = SaltString::encode_b64(random_hex(16)?.as_bytes())
        .map_err(|e| ApiError::new(Code::Internal, format!("cannot make a salt: {e}")))?;
    let password = new.password.clone();
    let hash = tokio::task::spawn_blocking(move || {
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?
    .map_err(|e| ApiError::new(Code::Internal, format!("cannot hash the password: {e}")))?;
    let row = UserRow {
        name: new.name,
        role: new.role.as_str().to_owned(),
        hash,
        created_nano: now_nanos(),
        created_by: by.name,
    };
    let stored = row.clone();
    let created = state
        .store
        .write_synced(move |tx| capstan_store::access::put_user(tx, &stored))
        .await?;
    Ok((super::created_or_ok(created), Json(user(row))))
}

#[utoipa::path(
    delete,
    path = "/api/v1/users/{name}",
    tag = "access",
    params(
        ("name" = String, Path, description = "the user's name")
    ),
    responses(
        (status = 204, description = "removed; their sessions end"),
        (status = 404, description = "no such user", body = capstan_model::ErrorBody)
    )
)]
pub(crate) async fn remove_user(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let lookup = name.clone();
    let removed = state
        .store
        .write_synced(move |tx| capstan_store::access::remove_user(tx, &lookup))
        .await?;
    if removed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            Code::NotFound,
            format!("no user {name:?}; `capstan users` lists them"),
        ))
    }
}

/// What `DELETE /api/v1/sessions` ended.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Ended {
    /// How many sessions ended.
    pub ended: usize,
}

/// `DELETE /api/v1/sessions[?who=NAME]`: ends every browser session, or those of one user or
/// token (by name). Tokens themselves stay valid: revoke one to end its use too.
#[utoipa::path(
    delete,
    path = "/api/v1/sessions",
    tag = "access",
    params(
        ("who" = Option<String>, Query, description = "a user's or token's name (default: everyone)")
    ),
    responses(
        (status = 200, description = "how many sessions ended", body = Ended)
    )
)]
pub(crate) async fn end_sessions(
    State(state): State<AppState>,
    Query(pairs): Query<Pairs>,
) -> Result<Json<Ended>, ApiError> {
    params::only(&pairs, &["who"])?;
    let who = params::last(&pairs, "who").map(str::to_owned);
    let ended = state
        .store
        .write_synced(move |tx| capstan_store::access::end_sessions(tx, who.as_deref()))
        .await?;
    Ok(Json(Ended { ended }))
}
