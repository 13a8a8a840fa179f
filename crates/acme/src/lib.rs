//! Certificates for the host names capstan's proxy serves on its shared HTTPS port.
//!
//! A certificate comes from a file capstan.toml names (`[[proxy.certificates]]`) when one
//! covers the name, else from an ACME server (RFC 8555) through `instant-acme`: one
//! certificate per app and challenge type, covering all its names, proven over HTTP-01 (the
//! proxy answers `/.well-known/acme-challenge/` on the HTTP port) or TLS-ALPN-01 (the proxy
//! serves the challenge certificate to a client that asks for `acme-tls/1`). Certificates and
//! keys are kept under `<data>/certs/` (0700, files 0600) and renewed `renew_before` their end.
//! Each issue and each failure is journaled (`certificate_issued`, `certificate_failed`); a
//! name ACME refuses stays served over plain HTTP.

mod files;
mod issue;
mod manager;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use files::{CertificateFile, Stored, read_file_certificate};
pub use manager::{Setup, start};

/// Let's Encrypt's production directory.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// `[acme]` in capstan.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// The ACME directory URL (Let's Encrypt's unless given).
    #[serde(default)]
    pub directory: Option<String>,
    /// A contact address the ACME server may write to about the certificates.
    #[serde(default)]
    pub email: Option<String>,
    /// `http-01` (default) or `tls-alpn-01`: how a name is proven unless its route says.
    #[serde(default)]
    pub challenge: Option<String>,
    /// How long before its end a certificate is renewed (default `30d`).
    #[serde(default)]
    pub renew_before: Option<String>,
    /// A CA certificate (PEM) the directory's own HTTPS is trusted by, besides the system's:
    /// for a private ACME server.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Whether certificates are asked for at all (default true; false: host names are
    /// served over HTTP, or with the certificate files given).
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// [`AcmeConfig`] checked.
#[derive(Debug, Clone)]
pub struct Acme {
    pub directory: String,
    pub email: Option<String>,
    pub challenge: Challenge,
    pub renew_before: Duration,
    pub ca_file: Option<PathBuf>,
    pub enabled: bool,
}

/// How the ACME server checks that a name is ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Challenge {
    Http01,
    TlsAlpn01,
}

impl Challenge {
    /// As routes and capstan.toml spell it.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "http-01" => Some(Self::Http01),
            "tls-alpn-01" => Some(Self::TlsAlpn01),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http01 => "http-01",
            Self::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// A setting of `[acme]` or `[[proxy.certificates]]` that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl AcmeConfig {
    /// The settings, checked.
    ///
    /// # Errors
    /// The first setting that cannot be used, by its key.
    pub fn check(&self) -> Result<Acme, ConfigError> {
        let bad = |key: &str, message: String| ConfigError {
            key: format!("acme.{key}"),
            message,
        };
        let directory = self
            .directory
            .clone()
            .unwrap_or_else(|| LETS_ENCRYPT.to_owned());
        if !directory.starts_with("https://") {
            return Err(bad(
                "directory",
                format!("{directory:?}: an ACME directory is an https:// URL"),
            ));
        }
        let challenge = match self.challenge.as_deref() {
            None => Challenge::Http01,
            Some(c) => Challenge::parse(c).ok_or_else(|| {
                bad(
                    "challenge",
                    format!("{c:?}: capstan answers http-01 and tls-alpn-01"),
                )
            })?,
        };
        let renew_before = match self.renew_before.as_deref() {
            None => Duration::from_hours(720),
            Some(text) => capstan_model::parse_duration(text)
                .map_err(|e| bad("renew_before", e.to_string()))?,
        };
        if let Some(path) = &self.ca_file
            && !path.is_file()
        {
            return Err(bad("ca_file", format!("{} is not a file", path.display())));
        }
        Ok(Acme {
            directory,
            email: self.email.clone(),
            challenge,
            renew_before,
            ca_file: self.ca_file.clone(),
            enabled: self.enabled.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_by_key() {
        let ok = AcmeConfig::default().check().unwrap();
        assert_eq!(ok.directory, LETS_ENCRYPT);
        assert_eq!(ok.challenge, Challenge::Http01);
        assert_eq!(ok.renew_before, Duration::from_hours(720));
        for (config, key) in [
            (
                AcmeConfig {
                    directory: Some("http://acme.example".into()),
                    ..AcmeConfig::default()
                },
                "acme.directory",
            ),
            (
                AcmeConfig {
                    challenge: Some("dns-01".into()),
                    ..AcmeConfig::default()
                },
                "acme.challenge",
            ),
            (
                AcmeConfig {
                    renew_before: Some("soon".into()),
                    ..AcmeConfig::default()
                },
                "acme.renew_before",
            ),
            (
                AcmeConfig {
                    ca_file: Some("/nonexistent/ca.pem".into()),
                    ..AcmeConfig::default()
                },
                "acme.ca_file",
            ),
        ] {
            assert_eq!(config.check().unwrap_err().key, key);
        }
    }
}
