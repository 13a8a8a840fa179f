use std::path::PathBuf;
use std::time::Duration;

/// Why a sink could not deliver a batch.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file sink cannot write its file.
    #[error("cannot write {}: {source} (is the directory writable and the disk not full?)", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The server cannot be reached, or the request did not complete in time.
    #[error("cannot reach {url}: {message} ({hint})")]
    Request {
        url: String,
        /// The error and its causes (`connection refused`), one after the other.
        message: String,
        /// What to check next.
        hint: &'static str,
    },
    /// The server answered with an error status.
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        /// The start of the answer's body, for the operator.
        body: String,
        /// What the server's `Retry-After` asked for.
        retry_after: Option<Duration>,
        /// The request can never succeed as it is (the server rejects the data itself, say a
        /// Loki `400 entry out of order`): the batch is counted as rejected, not retried.
        permanent: bool,
    },
    /// The server said yes with a body its protocol does not allow.
    #[error("{url} answered with a body capstan cannot read: {message}")]
    Response { url: String, message: String },
    /// A line cannot be encoded for the wire.
    #[error("cannot encode a line as JSON: {0}")]
    Encode(#[from] serde_json::Error),
    /// The sink cannot be set up as configured.
    #[error("{0}")]
    Config(String),
}

impl From<capstan_model::ConfigError> for Error {
    fn from(e: capstan_model::ConfigError) -> Self {
        Self::Config(e.to_string())
    }
}

impl Error {
    /// The batch is rejected for good: count it, say so, go on with the next one.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::Status {
                permanent: true,
                ..
            }
        )
    }

    /// The server takes smaller batches only (`413 Payload Too Large`).
    pub fn is_too_large(&self) -> bool {
        matches!(self, Self::Status { status: 413, .. })
    }

    /// How long the server asked to wait before the next try.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
