//! Who sent a webhook, proven over the raw body before a byte of it is parsed. One secret per
//! app serves every provider: capstan makes it in the Standard Webhooks form (`whsec_` and 32
//! random bytes in base64), which GitLab's signing tokens require; the other providers take the
//! whole string as their HMAC key or token.
//!
//! | provider | proof |
//! |---|---|
//! | GitHub | `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>` |
//! | Gitea | `X-Gitea-Signature: <hex HMAC-SHA256 of the body>` |
//! | Forgejo | `X-Forgejo-Signature: <hex HMAC-SHA256 of the body>` |
//! | GitLab (token) | `X-Gitlab-Token: <the secret>` |
//! | GitLab (signed) | `webhook-signature: v1,<base64 HMAC-SHA256 of "<webhook-id>.<webhook-timestamp>.<body>">`, keyed by the secret's bytes after `whsec_` |
//! | generic | `X-Capstan-Signature: sha256=<hex HMAC-SHA256 of the body>` |
//!
//! Every comparison takes the same time whatever matches (HMAC verification, and a constant
//! time equality for the GitLab token).

use base64::Engine as _;
use hmac::Mac as _;

/// How far a signed GitLab delivery's timestamp may be from now, either way (Standard
/// Webhooks' advice), so a captured delivery cannot be sent again later.
pub const TOLERANCE_SECS: i64 = 300;

/// Who sent a delivery, by the proof it carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Github,
    Gitea,
    Forgejo,
    /// GitLab with a secret token (`X-Gitlab-Token`).
    GitlabToken,
    /// GitLab with a signing token (`webhook-signature`).
    GitlabSigned,
    /// Anything else that signs as capstan asks (`X-Capstan-Signature`).
    Generic,
}

impl Provider {
    /// Its name on the wire and in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::Gitea => "gitea",
            Self::Forgejo => "forgejo",
            Self::GitlabToken => "gitlab_token",
            Self::GitlabSigned => "gitlab_signed",
            Self::Generic => "generic",
        }
    }
}

/// Why a delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// None of the headers that carry a proof.
    #[error(
        "no signature: send X-Hub-Signature-256, X-Gitea-Signature, X-Forgejo-Signature, X-Gitlab-Token, webhook-signature or X-Capstan-Signature, made with the secret `capstan hooks APP` printed"
    )]
    Missing,
    /// A proof that does not match the body and the app's secret.
    #[error(
        "the {0} signature does not match the body: is the webhook's secret the one `capstan hooks APP` printed?"
    )]
    Mismatch(&'static str),
    /// A proof that is not in its provider's form.
    #[error("the {header} header is malformed: {why}")]
    Malformed { header: &'static str, why: String },
    /// A signed GitLab delivery too far from now.
    #[error(
        "the webhook-timestamp is {0} s away from capstan's clock (at most {TOLERANCE_SECS} s): an old delivery sent again, or a clock to fix"
    )]
    Stale(i64),
}

impl Refusal {
    /// The provider the refused proof named, when it named one.
    pub fn provider(&self) -> Option<&'static str> {
        match self {
            Self::Mismatch(p) => Some(p),
            _ => None,
        }
    }
}

/// Checks that the delivery (its headers by lowercase name through `header`, its raw `body`)
/// was made with the app's `secret`; `now_secs` (Unix seconds) bounds a signed GitLab
/// delivery's age. The most specific proof present is the one checked (Gitea and Forgejo also
/// send GitHub's header, made with the same secret).
///
/// # Errors
/// A [`Refusal`] saying what was wrong, without a word about the secret.
pub fn verify(
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    secret: &str,
    now_secs: i64,
) -> Result<Provider, Refusal> {
    if let Some(signatures) = header("webhook-signature") {
        return gitlab_signed(header, &signatures, body, secret, now_secs)
            .map(|()| Provider::GitlabSigned);
    }
    if let Some(token) = header("x-gitlab-token") {
        return if constant_time_eq(token.trim().as_bytes(), secret.as_bytes()) {
            Ok(Provider::GitlabToken)
        } else {
            Err(Refusal::Mismatch("gitlab"))
        };
    }
    let hex_proofs: [(&'static str, Provider, Option<&str>); 4] = [
        ("x-forgejo-signature", Provider::Forgejo, None),
        ("x-gitea-signature", Provider::Gitea, None),
        ("x-hub-signature-256", Provider::Github, Some("sha256=")),
        ("x-capstan-signature", Provider::Generic, Some("sha256=")),
    ];
    for (name, provider, prefix) in hex_proofs {
        let Some(value) = header(name) else {
            continue;
        };
        let value = value.trim();
        let hex = match prefix {
            Some(p) => value.strip_prefix(p).ok_or_else(|| Refusal::Malformed {
                header: name,
                why: format!("it must start with {p}"),
            })?,
            None => value,
        };
        let proof = decode_hex(hex).ok_or_else(|| Refusal::Malformed {
            header: name,
            why: "not a hex HMAC-SHA256".into(),
        })?;
        return if hmac_sha256(secret.as_bytes(), &[body])
            .is_some_and(|m| constant_time_eq(&m, &proof))
        {
            Ok(provider)
        } else {
            Err(Refusal::Mismatch(provider.as_str()))
        };
    }
    Err(Refusal::Missing)
}

/// A Standard Webhooks signature: any of the space-separated `v1,<base64>` values over
/// `<id>.<timestamp>.<body>`, with the timestamp near now.
fn gitlab_signed(
    header: &dyn Fn(&str) -> Option<String>,
    signatures: &str,
    body: &[u8],
    secret: &str,
    now_secs: i64,
) -> Result<(), Refusal> {
    let missing = |h: &'static str| Refusal::Malformed {
        header: h,
        why: "it must come with webhook-signature".into(),
    };
    let id = header("webhook-id").ok_or_else(|| missing("webhook-id"))?;
    let timestamp = header("webhook-timestamp").ok_or_else(|| missing("webhook-timestamp"))?;
    let at: i64 = timestamp.trim().parse().map_err(|_| Refusal::Malformed {
        header: "webhook-timestamp",
        why: "not Unix seconds".into(),
    })?;
    let key = signing_key(secret);
    let mut matched = false;
    for candidate in signatures.split_whitespace() {
        let Some(b64) = candidate.strip_prefix("v1,") else {
            continue;
        };
        let Ok(proof) = base64::engine::general_purpose::STANDARD.decode(b64) else {
            continue;
        };
        let mac = hmac_sha256(
            &key,
            &[
                id.trim().as_bytes(),
                b".",
                timestamp.trim().as_bytes(),
                b".",
                body,
            ],
        );
        // every candidate is checked, so the time does not say which one matched
        matched |= mac.is_some_and(|m| constant_time_eq(&m, &proof));
    }
    if !matched {
        return Err(Refusal::Mismatch("gitlab_signed"));
    }
    let off = (now_secs - at).abs();
    if off > TOLERANCE_SECS {
        return Err(Refusal::Stale(off));
    }
    Ok(())
}

/// The HMAC key of a Standard Webhooks secret: the bytes after `whsec_`, else the whole
/// string's.
fn signing_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// The HMAC-SHA256 of `parts` under `key` (`None` never comes: HMAC takes a key of any
/// length; a caller takes it as no match).
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Option<[u8; 32]> {
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(key).ok()?;
    for p in parts {
        mac.update(p);
    }
    Some(mac.finalize().into_bytes().into())
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Compares without an early exit, so the time taken does not reveal a matching prefix.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The hex HMAC-SHA256 of `body` under `secret`, as GitHub, Gitea, Forgejo and the generic
/// form send it (without GitHub's `sha256=`): for senders, tests and `capstan hooks --test`.
pub fn sign_hex(secret: &str, body: &[u8]) -> String {
    hmac_sha256(secret.as_bytes(), &[body])
        .map(|m| hex(&m))
        .unwrap_or_default()
}

/// The Standard Webhooks `v1,<base64>` signature GitLab sends with a signing token.
pub fn sign_standard(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = hmac_sha256(
        &signing_key(secret),
        &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
    );
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.unwrap_or_default())
    )
}

/// A new secret for an app's hooks: `whsec_` and 32 bytes from `random` in base64.
pub fn new_secret(random: [u8; 32]) -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(random)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const NOW: i64 = 1_700_000_000;

    fn headers(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> + use<> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    fn flip(body: &[u8]) -> Vec<u8> {
        let mut b = body.to_vec();
        b[3] ^= 1;
        b
    }

    #[test]
    fn each_provider_is_known_by_its_proof_and_one_byte_changed_is_refused() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let hex = sign_hex(SECRET, body);
        let cases = [
            (
                vec![("X-Hub-Signature-256", format!("sha256={hex}"))],
                Provider::Github,
            ),
            // Gitea and Forgejo also send GitHub's header
            (
                vec![
                    ("X-Gitea-Signature", hex.clone()),
                    ("X-Hub-Signature-256", format!("sha256={hex}")),
                ],
                Provider::Gitea,
            ),
            (
                vec![("X-Forgejo-Signature", hex.clone())],
                Provider::Forgejo,
            ),
            (
                vec![("X-Gitlab-Token", SECRET.to_owned())],
                Provider::GitlabToken,
            ),
            (
                vec![("X-Capstan-Signature", format!("sha256={hex}"))],
                Provider::Generic,
            ),
            (
                vec![
                    ("webhook-id", "msg_1".to_owned()),
                    ("webhook-timestamp", NOW.to_string()),
                    (
                        "webhook-signature",
                        sign_standard(SECRET, "msg_1", NOW, body),
                    ),
                ],
                Provider::GitlabSigned,
            ),
        ];
        for (pairs, provider) in cases {
            let h = headers(&pairs);
            assert_eq!(verify(&h, body, SECRET, NOW), Ok(provider), "{pairs:?}");
            if provider != Provider::GitlabToken {
                assert!(
                    matches!(
                        verify(&h, &flip(body), SECRET, NOW),
                        Err(Refusal::Mismatch(_))
                    ),
                    "{pairs:?}"
                );
            }
            assert!(verify(&h, body, "whsec_another", NOW).is_err(), "{pairs:?}");
        }
    }

    #[test]
    fn missing_malformed_and_stale_proofs_are_refused_with_their_reason() {
        let body = b"{}";
        assert_eq!(
            verify(&headers(&[]), body, SECRET, NOW),
            Err(Refusal::Missing)
        );
        let h = headers(&[("X-Hub-Signature-256", sign_hex(SECRET, body))]);
        assert!(matches!(
            verify(&h, body, SECRET, NOW),
            Err(Refusal::Malformed {
                header: "x-hub-signature-256",
                ..
            })
        ));
        let h = headers(&[("X-Gitea-Signature", "zz".into())]);
        assert!(matches!(
            verify(&h, body, SECRET, NOW),
            Err(Refusal::Malformed { .. })
        ));
        let old = NOW - TOLERANCE_SECS - 1;
        let h = headers(&[
            ("webhook-id", "msg_1".to_owned()),
            ("webhook-timestamp", old.to_string()),
            (
                "webhook-signature",
                sign_standard(SECRET, "msg_1", old, body),
            ),
        ]);
        assert_eq!(
            verify(&h, body, SECRET, NOW),
            Err(Refusal::Stale(TOLERANCE_SECS + 1))
        );
        // a signature over another id does not hold
        let h = headers(&[
            ("webhook-id", "msg_2".to_owned()),
            ("webhook-timestamp", NOW.to_string()),
            (
                "webhook-signature",
                sign_standard(SECRET, "msg_1", NOW, body),
            ),
        ]);
        assert_eq!(
            verify(&h, body, SECRET, NOW),
            Err(Refusal::Mismatch("gitlab_signed"))
        );
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    // the example of the Standard Webhooks specification (its published secret, id, timestamp,
    // body and signature), as GitLab signs
    #[test]
    fn the_standard_webhooks_example_verifies() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let sig = sign_standard(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
