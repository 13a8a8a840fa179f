//! Join tokens: `capstan-join-1.<hub fingerprint hex>.<id>.<secret>`. The hub keeps the id and
//! the SHA-256 of the secret; the agent reads the hub's fingerprint from the token and accepts
//! no other key.

use sha2::Digest as _;

const PREFIX: &str = "capstan-join-1";

/// A join token, parsed.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// `sha256:<hex>` of the hub's certificate.
    pub hub: String,
    pub id: String,
    secret: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken")
            .field("hub", &self.hub)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Why a token does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "the join token is malformed ({0}): copy it whole from `capstan hosts join-token` on the hub"
)]
pub struct TokenError(&'static str);

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl JoinToken {
    /// A new token for the hub of `fingerprint`, from random `id` (16 hex) and `secret` (64 hex).
    pub fn new(fingerprint: &str, id: String, secret: String) -> Self {
        Self {
            hub: fingerprint.to_owned(),
            id,
            secret,
        }
    }

    /// Parses `text`.
    ///
    /// # Errors
    /// [`TokenError`] naming what is wrong.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let mut parts = text.trim().split('.');
        if parts.next() != Some(PREFIX) {
            return Err(TokenError("it does not start with capstan-join-1"));
        }
        let (Some(hub), Some(id), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError("it has not four parts"));
        };
        if !is_hex(hub, 64) {
            return Err(TokenError("the hub's fingerprint is not 64 hex digits"));
        }
        if !is_hex(id, 16) || !is_hex(secret, 64) {
            return Err(TokenError(
                "its id or secret is not hex of the right length",
            ));
        }
        Ok(Self {
            hub: format!("sha256:{hub}"),
            id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// Hex SHA-256 of the secret: what the hub keeps.
    pub fn hash(&self) -> String {
        let digest = sha2::Sha256::digest(self.secret.as_bytes());
        digest.iter().fold(String::with_capacity(64), |mut out, b| {
            use std::fmt::Write as _;
            let _ = write!(out, "{b:02x}");
            out
        })
    }

    /// The token as the hub hands it out.
    pub fn to_text(&self) -> String {
        format!(
            "{PREFIX}.{}.{}.{}",
            self.hub.trim_start_matches("sha256:"),
            self.id,
            self.secret
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_token_round_trips_and_a_bad_one_says_what_is_wrong() {
        let fp = format!("sha256:{}", "ab".repeat(32));
        let t = JoinToken::new(&fp, "0123456789abcdef".into(), "cd".repeat(32));
        let parsed = JoinToken::parse(&t.to_text()).unwrap();
        assert_eq!(parsed, t);
        assert_eq!(parsed.hub, fp);
        assert_eq!(parsed.hash().len(), 64);
        assert!(
            !format!("{parsed:?}").contains(&"cd".repeat(32)),
            "the secret stays out of logs"
        );
        for (bad, says) in [
            ("", "capstan-join-1"),
            ("capstan-join-1.ab.cd", "four parts"),
            (
                &t.to_text()
                    .replace("capstan-join-1.ab", "capstan-join-1.zz"),
                "fingerprint",
            ),
            (&format!("{}0", t.to_text()), "secret"),
        ] {
            let e = JoinToken::parse(bad).unwrap_err();
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
    }
}
