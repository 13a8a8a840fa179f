use std::time::Duration;

use crate::reference::BadReference;

/// Why a registry request failed; each message says what to check next.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    BadReference(#[from] BadReference),
    /// Credentials could not be read (a config file, a helper program).
    #[error("registry credentials: {0}")]
    Credentials(String),
    /// The registry refused the credentials, or wants some and none are known.
    #[error("{registry} refused access to {repository}{}: {detail}", if *.had_credentials { " with the credentials capstan has" } else { " (capstan has no credentials for it)" })]
    Unauthorized {
        registry: String,
        repository: String,
        had_credentials: bool,
        /// What to do about it.
        detail: String,
    },
    /// No such repository, tag or manifest.
    #[error("{reference} is not in its registry (404): check the name and the tag")]
    NotFound { reference: String },
    /// `429 Too Many Requests`: wait, as long as `retry_after` says when it says.
    #[error("{registry} is rate-limiting capstan (429){}", .retry_after.map(|d| format!("; it asks to wait {} s", d.as_secs())).unwrap_or_default())]
    RateLimited {
        registry: String,
        retry_after: Option<Duration>,
    },
    /// Another error status.
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    /// The registry cannot be reached.
    #[error("cannot reach {url}: {message} ({hint})")]
    Request {
        url: String,
        message: String,
        hint: &'static str,
    },
    /// An answer that breaks the distribution protocol.
    #[error("{url}: {message}")]
    Response { url: String, message: String },
}
