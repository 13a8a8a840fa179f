use std::path::Path;

use capstan_model::ConfigError;
use serde::Deserialize;

/// A password or token: never printed, not even in debug output.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The first line of a file (as `docker secret`s and Kubernetes mount them), or of the
    /// credential a path `vault:NAME` names (kept sealed by `capstan secrets set NAME`); `key`
    /// is the config key that names it.
    ///
    /// # Errors
    /// The file or the credential cannot be read, under `key`.
    pub fn from_file(key: &str, path: &Path) -> Result<Self, ConfigError> {
        let text = match path
            .to_str()
            .and_then(|p| p.strip_prefix(capstan_vault::keyring::SCHEME))
        {
            Some(name) => capstan_vault::keyring::credential(name)
                .map_err(|e| ConfigError::new(key, e.to_string()))
                .and_then(|bytes| {
                    String::from_utf8(bytes).map_err(|_| {
                        ConfigError::new(key, format!("the credential {name:?} is not UTF-8 text"))
                    })
                })?,
            None => std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(
                    key,
                    format!(
                        "cannot read {}: {e} (is it there, and readable by capstan?)",
                        path.display()
                    ),
                )
            })?,
        };
        Ok(Self(text.lines().next().unwrap_or_default().to_owned()))
    }
}
