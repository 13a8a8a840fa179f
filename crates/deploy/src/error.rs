/// Why a service cannot be turned into containers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value is not usable (a size, a duration, a cpu count...).
    #[error("services.{service}.{key}: {message}")]
    Value {
        /// The service.
        service: String,
        /// The key path inside it.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The service is not in the project.
    #[error("no service named {0:?} in the project")]
    NoService(String),
}

/// A cause from a target's own client (the engine's, a cluster's).
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a target could not do a step.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The target does not answer (engine down, cluster unreachable); the cause says where it
    /// was looked for and what to check.
    #[error("{}{source}", context.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
    Unreachable {
        /// What was being done, when the cause does not say it.
        context: Option<String>,
        /// The target's own error.
        #[source]
        source: Cause,
    },
    /// A step failed on the target.
    #[error("{}{source}", context.as_deref().map(|c| format!("{c}: ")).unwrap_or_default())]
    Failed {
        /// What was being done (`cannot create shop-web-1`, `networks.front`), when the cause
        /// does not say it.
        context: Option<String>,
        /// The target's own error.
        #[source]
        source: Cause,
    },
    /// The model asks for something the target cannot do, or what it needs cannot be written;
    /// the message names the key and what to do.
    #[error("{0}")]
    Refused(String),
}

impl TargetError {
    /// Whether the target did not answer at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }
}

/// Why a release could not be run (its deploy's own failure is in the report).
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The ledger cannot be read or written.
    #[error(transparent)]
    Store(#[from] capstan_store::Error),
    /// The stored model of the running release does not parse.
    #[error("the stored release of {0} does not parse; see the daemon's log")]
    Model(String),
    /// The release asked for is not in the ledger (a rollback's target).
    #[error("{0}")]
    NotFound(String),
    /// The release cannot be deployed again as it was (a file it used is gone).
    #[error("{0}")]
    Unusable(String),
    /// The target cannot be asked (a rollback pins image digests it looks up there).
    #[error(transparent)]
    Target(#[from] TargetError),
}
