//! What can go wrong in the pipeline's own machinery (a delivery's or a build's own failures
//! are outcomes, recorded, not errors).

/// The pipeline's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state store.
    #[error(transparent)]
    Store(#[from] capstan_store::Error),
    /// The keyring, where hook secrets are kept.
    #[error(transparent)]
    Keyring(#[from] capstan_vault::keyring::KeyringError),
    /// Reading the kernel's randomness or a file.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A blocking task that did not finish.
    #[error("a blocking task failed: {0}")]
    Task(String),
    /// What the store keeps is not what this capstan writes.
    #[error("a stored pipeline record does not read: {0}")]
    Stored(String),
    /// A source whose settings do not hold.
    #[error("{0}")]
    BadSource(String),
}
