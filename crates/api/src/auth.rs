use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use capstan_model::Role;
use capstan_pipeline::signature::constant_time_eq;

use crate::{ApiError, AppState, Code};

/// Who a request comes from: the admin token, or a named token and its role. Routes find it in
/// the request's extensions (the release ledger's actor is its name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// `bytes` random bytes from the kernel, in hex.
pub(crate) fn random_hex(bytes: usize) -> Result<String, ApiError> {
    use std::io::Read as _;
    let mut buf = vec![0_u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| ApiError::new(Code::Internal, format!("cannot read /dev/urandom: {e}")))?;
    Ok(hex(&buf))
}

/// The browser session's cookie.
pub(crate) const SESSION_COOKIE: &str = "capstan_session";

/// A `Set-Cookie` value for the session: HttpOnly, SameSite=Strict, for the whole site,
/// `Secure` when capstan serves TLS; `max_age` 0 clears it.
pub(crate) fn session_cookie(value: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// A cookie's value from the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// The hex SHA-256 of a token: all that is kept of it.
pub(crate) fn token_hash(token: &str) -> String {
    use sha2::Digest as _;
    hex(&sha2::Sha256::digest(token.as_bytes()))
}

/// `cap_<id>_<secret>`: the id finds the row.
fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix("cap_")?;
    let (id, secret) = rest.split_once('_')?;
    (!id.is_empty() && !secret.is_empty()).then_some(id)
}

/// What a session signed in with `token` is made from (see [`capstan_store::SessionRow`]).
pub(crate) fn token_source(state: &AppState, token: &str) -> String {
    if constant_time_eq(token.as_bytes(), state.admin_token.as_bytes()) {
        return "admin".into();
    }
    format!("token:{}", token_id(token).unwrap_or_default())
}

/// Who presents `token`, or why no one.
pub(crate) async fn identify(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    if constant_time_eq(token.as_bytes(), state.admin_token.as_bytes()) {
        return Ok(Principal {
            name: "admin".into(),
            role: Role::Admin,
        });
    }
    let invalid = || {
        ApiError::new(
            Code::Unauthorized,
            "invalid token: check CAPSTAN_TOKEN or <data>/admin.token",
        )
    };
    let id = token_id(token).ok_or_else(invalid)?.to_owned();
    let lookup = id.clone();
    let row = state
        .store
        .read(move |c| capstan_store::access::token_by_id(c, &lookup))
        .await?
        .ok_or_else(invalid)?;
    if !constant_time_eq(token_hash(token).as_bytes(), row.hash.as_bytes()) {
        return Err(invalid());
    }
    if row.revoked_nano.is_some() {
        return Err(ApiError::new(
            Code::Unauthorized,
            format!(
                "token {:?} was revoked; ask an admin for a new one",
                row.name
            ),
        ));
    }
    let role = Role::parse(&row.role).ok_or_else(invalid)?;
    let now = crate::routes::now_nanos();
    if row.last_used_nano.is_none_or(|t| now - t > 60_000_000_000) {
        let _ = state
            .store
            .write(move |tx| capstan_store::access::touch_token(tx, &id, now))
            .await;
    }
    Ok(Principal {
        name: row.name,
        role,
    })
}

/// Writes one entry of the audit log (a failure to is logged: the request is answered).
pub(crate) async fn audit(
    state: &AppState,
    who: &Principal,
    method: &str,
    path: String,
    status: u16,
    remote: String,
) {
    let row = capstan_store::AuditRow {
        seq: 0,
        time_nano: crate::routes::now_nanos(),
        who: who.name.clone(),
        role: who.role.as_str().to_owned(),
        method: method.to_owned(),
        path,
        status,
        remote,
    };
    if let Err(e) = state
        .store
        .write(move |tx| capstan_store::access::audit(tx, &row))
        .await
    {
        tracing::error!(error = %e, "cannot write the audit log");
    }
}

/// The client's address, as [`crate::server::serve`] gives it to every request (over TCP or
/// TLS alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub std::net::SocketAddr);

/// The client's address, when the server knows it.
pub(crate) fn remote_of(extensions: &axum::http::Extensions) -> String {
    extensions
        .get::<axum::extract::ConnectInfo<Peer>>()
        .map_or_else(|| "-".to_owned(), |c| c.0.0.to_string())
}

/// How a signed-in page's WebSocket carries the session's CSRF token: a subprotocol it
/// offers, `capstan.csrf.<token>` (the server picks its own protocol, never this one).
pub(crate) const CSRF_PROTOCOL_PREFIX: &str = "capstan.csrf.";

/// Who a session cookie belongs to; a changing request must carry the session's CSRF token in
/// `X-CSRF-Token` (a cross-site form cannot read it).
async fn from_session(
    state: &AppState,
    cookie: &str,
    headers: &axum::http::HeaderMap,
    reads: bool,
) -> Result<(Principal, bool), ApiError> {
    let (hash, now) = (token_hash(cookie), crate::routes::now_nanos());
    let session = state
        .store
        .read(move |c| capstan_store::access::session(c, &hash, now))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                Code::Unauthorized,
                "the session has ended or is unknown; sign in again",
            )
        })?;
    // a session lives no longer than the token it was signed in with (revoking a token ends
    // its sessions too; this holds should one be left)
    if let Some(id) = session.source.strip_prefix("token:") {
        let lookup = id.to_owned();
        let live = state
            .store
            .read(move |c| capstan_store::access::token_by_id(c, &lookup))
            .await?
            .is_some_and(|t| t.revoked_nano.is_none());
        if !live {
            return Err(ApiError::new(
                Code::Unauthorized,
                "the token this session was signed in with was revoked; sign in again",
            ));
        }
    }
    // a browser cannot set headers on a WebSocket: it offers the token as a subprotocol
    let offered = headers
        .get(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .find_map(|p| p.trim().strip_prefix(CSRF_PROTOCOL_PREFIX))
        });
    let sent = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .or(offered)
        .unwrap_or_default();
    let csrf_ok = reads || constant_time_eq(sent.as_bytes(), session.csrf.as_bytes());
    Ok((
        Principal {
            name: session.who,
            role: Role::parse(&session.role).unwrap_or(Role::Viewer),
        },
        csrf_ok,
    ))
}

/// Lets the request through only with `Authorization: Bearer <token>` of a role that may do
/// what it asks; records every request that is not a read in the audit log.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .map(str::to_owned);
    let method = request.method().clone();
    // a WebSocket (a terminal) acts: it is checked and audited as a change
    let upgrade = request
        .headers()
        .get(axum::http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let reads =
        !upgrade && (method == Method::GET || method == Method::HEAD || method == Method::OPTIONS);
    let (principal, csrf_ok) = match presented {
        Some(token) => (identify(&state, &token).await?, true),
        None => match cookie(request.headers(), SESSION_COOKIE) {
            Some(c) => from_session(&state, c, request.headers(), reads).await?,
            None => {
                return Err(ApiError::new(
                    Code::Unauthorized,
                    "missing token: send Authorization: Bearer <token> (the admin token is in <data>/admin.token), or sign in",
                ));
            }
        },
    };
    let path = request.uri().path().to_owned();
    let asked = request
        .uri()
        .path_and_query()
        .map_or_else(|| path.clone(), |p| p.as_str().to_owned());
    let remote = remote_of(request.extensions());
    // the role registered for the route the request matched; none registered: admins only
    let needed = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|t| crate::route_role(&method, t.as_str()))
        .unwrap_or(Role::Admin);
    let audited = !reads;
    let response = if !csrf_ok {
        Err(ApiError::new(
            Code::Forbidden,
            "missing or wrong X-CSRF-Token: a signed-in change must carry the session's CSRF token",
        ))
    } else if principal.role < needed {
        Err(ApiError::new(
            Code::Forbidden,
            format!(
                "this needs the {} role; token {:?} is {}",
                needed.as_str(),
                principal.name,
                principal.role.as_str()
            ),
        ))
    } else {
        request.extensions_mut().insert(principal.clone());
        Ok(next.run(request).await)
    };
    if audited {
        let status = match &response {
            Ok(r) => r.status().as_u16(),
            Err(e) => e.status().as_u16(),
        };
        audit(&state, &principal, method.as_str(), asked, status, remote).await;
    }
    response
}

/// Answers only requests addressed to a name capstan is known by: an IP address, `localhost`,
/// or one of `allowed_hosts`. A page on another site whose name an attacker points at
/// 127.0.0.1 (DNS rebinding) sends its own name as `Host`, and is refused before any route.
pub(crate) async fn known_host(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let host = request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().host());
    if let Some(host) = host
        && !host_allowed(host, &state.allowed_hosts)
    {
        return Err(ApiError::new(
            Code::Forbidden,
            format!(
                "capstan does not answer to the host name {host:?}; add it to allowed_hosts in \
                 capstan.toml if that is how you reach it"
            ),
        ));
    }
    Ok(next.run(request).await)
}

/// Whether `host` (as in a `Host` header, with or without a port) names this daemon.
pub(crate) fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        // [::1]:7878
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::IpAddr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
        || allowed
            .iter()
            .any(|a| a == "*" || a.trim_end_matches('.').eq_ignore_ascii_case(&name))
}

/// Whether a webhook request proves it knows `secret`: `?secret=<secret>` in the URL (registries
/// that cannot sign, such as Docker Hub and the distribution registry), or an
/// `X-Capstan-Signature: sha256=<hex>` (or `X-Hub-Signature-256`) HMAC-SHA256 of the body.
pub(crate) fn hook_authorized(
    secret: &str,
    query_secret: Option<&str>,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> bool {
    if query_secret.is_some_and(|q| constant_time_eq(q.as_bytes(), secret.as_bytes())) {
        return true;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    // an HMAC of the body, in GitHub's or capstan's header (the other forms are git hooks')
    let signed = ["x-capstan-signature", "x-hub-signature-256"]
        .iter()
        .any(|h| headers.contains_key(*h));
    signed
        && capstan_pipeline::verify(&header, body, secret, chrono::Utc::now().timestamp()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::{constant_time_eq, hook_authorized, host_allowed};

    #[test]
    fn only_addresses_localhost_and_allowed_names_are_answered() {
        let allowed = ["capstan.example.com".to_owned()];
        for ok in [
            "127.0.0.1:7878",
            "127.0.0.1",
            "[::1]:7878",
            "10.1.2.3:80",
            "localhost:7878",
            "LOCALHOST",
            "app.localhost",
            "capstan.example.com",
            "Capstan.Example.com.:443",
        ] {
            assert!(host_allowed(ok, &allowed), "{ok}");
        }
        for refused in [
            "evil.example:7878",
            "127.0.0.1.evil.example",
            "example.com",
            "",
        ] {
            assert!(!host_allowed(refused, &allowed), "{refused}");
        }
        assert!(host_allowed("anything.example", &["*".to_owned()]));
    }

    #[test]
    fn compares_tokens() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn hooks_prove_their_secret_in_the_url_or_by_hmac() {
        use hmac::Mac as _;
        let body = br#"{"events":[]}"#;
        let none = axum::http::HeaderMap::new();
        assert!(hook_authorized("s3cret", Some("s3cret"), &none, body));
        assert!(!hook_authorized("s3cret", Some("s3cre"), &none, body));
        assert!(!hook_authorized("s3cret", None, &none, body));
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        let hex = mac
            .finalize()
            .into_bytes()
            .iter()
            .fold(String::new(), |mut s, b| {
                use std::fmt::Write as _;
                let _ = write!(s, "{b:02x}");
                s
            });
        let mut signed = axum::http::HeaderMap::new();
        signed.insert(
            "x-capstan-signature",
            format!("sha256={hex}").parse().unwrap(),
        );
        assert!(hook_authorized("s3cret", None, &signed, body));
        assert!(
            !hook_authorized("s3cret", None, &signed, b"{}"),
            "another body"
        );
        assert!(
            !hook_authorized("other", None, &signed, body),
            "another secret"
        );
    }
}
