use std::path::PathBuf;

use capstan_model::ConfigError;

/// Why alert rules cannot be loaded or changed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rule is not valid, or clashes with another; the key is named.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// The rules posted through the API cannot be read back at start.
    #[error("{}: {source}; fix or remove the file", path.display())]
    Unreadable {
        /// `<data>/alert-rules.json`.
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A built-in or configured rule cannot be removed through the API.
    #[error("{name:?} is a {origin} rule; change it in capstan.toml")]
    NotPosted {
        /// The rule.
        name: String,
        /// `config` or `builtin`.
        origin: &'static str,
    },
    /// The rules posted through the API cannot be written.
    #[error("cannot keep the rule in {}: {source}", path.display())]
    Keep {
        /// `<data>/alert-rules.json`.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
