use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

use crate::{ApiError, AppState, Code};

/// Lets the request through only with `Authorization: Bearer <admin token>`.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    request: Request,
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
        .map(str::trim);
    match presented {
        None => Err(ApiError::new(
            Code::Unauthorized,
            "missing token: send Authorization: Bearer <token> (the admin token is in <data>/admin.token)",
        )),
        Some(t) if constant_time_eq(t.as_bytes(), state.admin_token.as_bytes()) => {
            Ok(next.run(request).await)
        }
        Some(_) => Err(ApiError::new(
            Code::Unauthorized,
            "invalid token: check CAPSTAN_TOKEN or <data>/admin.token",
        )),
    }
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
    use hmac::Mac as _;
    if query_secret.is_some_and(|q| constant_time_eq(q.as_bytes(), secret.as_bytes())) {
        return true;
    }
    let signature = ["x-capstan-signature", "x-hub-signature-256"]
        .iter()
        .find_map(|h| headers.get(*h)?.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("sha256="))
        .and_then(|hex| {
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()
        });
    let Some(signature) = signature else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// Compares without an early exit, so timing does not reveal a prefix match.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::{constant_time_eq, hook_authorized};

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
