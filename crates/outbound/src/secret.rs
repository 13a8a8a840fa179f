use std::path::Path;

use serde::Deserialize;

use crate::Error;

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

    /// The first line of a file (as `docker secret`s and Kubernetes mount them).
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "cannot read the password file {}: {e}",
                path.display()
            ))
        })?;
        Ok(Self(text.lines().next().unwrap_or_default().to_owned()))
    }
}
