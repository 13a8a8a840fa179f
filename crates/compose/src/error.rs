use std::path::PathBuf;

use crate::node::Pos;

/// Why a Compose project cannot be loaded. Every variant about a file's content names the file,
/// line and column, and the key path inside the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// The text is not valid YAML.
    #[error("{pos}: invalid YAML: {message}")]
    Yaml {
        /// Where.
        pos: Pos,
        /// The parser's message.
        message: String,
    },
    /// A key is unknown, a value has the wrong type or is out of range.
    #[error("{pos}: {path}: {message}")]
    Invalid {
        /// Where.
        pos: Pos,
        /// Key path, e.g. `services.web.ports[0]`.
        path: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A problem across the project (no position in one file).
    #[error("{0}")]
    Project(String),
}

/// Something capstan accepted but will not act on, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Where.
    pub pos: Pos,
    /// Key path.
    pub path: String,
    /// What happens instead.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.pos, self.path, self.message)
    }
}
