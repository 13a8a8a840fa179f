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
    /// A scale the app cannot take (a service it does not have); nothing changed.
    #[error("{0}")]
    BadScale(String),
    /// The release cannot be deployed again as it was (a file it used is gone).
    #[error("release {release}: {source}; deploy its Compose file instead")]
    Unusable {
        /// The release.
        release: i64,
        #[source]
        source: FileGone,
    },
    /// The target cannot be asked (a rollback pins image digests it looks up there).
    #[error(transparent)]
    Target(#[from] TargetError),
    /// A secret cannot be kept sealed in the vault.
    #[error("cannot keep the sealed {0}")]
    Keep(String),
}

/// Why a request cannot be deployed on any target; nothing has changed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// A name capstan would make a path or a container name of is not allowed.
    #[error("{key}: {source}")]
    BadName {
        /// Where the name is (`name`, `services.web`, `secrets.key`).
        key: String,
        #[source]
        source: capstan_model::NameError,
    },
    /// A config's or secret's content does not decode.
    #[error("files.{key}: not valid base64: {source}")]
    BadFile {
        /// `configs/NAME` or `secrets/NAME`.
        key: String,
        #[source]
        source: base64::DecodeError,
    },
    /// A service has no image (the CLI builds `build:` services first).
    #[error(
        "services.{service}: no image to run; deploy with the capstan CLI, which builds `build:` services first, or give it an `image`"
    )]
    NoImage {
        /// The service.
        service: String,
    },
    /// A service uses a config or secret whose content the request lacks.
    #[error("services.{service}.{kind}: the content of {kind}.{name} was not sent")]
    FileNotSent {
        /// The service.
        service: String,
        /// `configs` or `secrets`.
        kind: &'static str,
        /// The config's or secret's name.
        name: String,
    },
}

/// A config or secret a release used that is no longer kept on this host.
#[derive(Debug, thiserror::Error)]
#[error("{kind}.{name} is no longer on this host ({source})")]
pub struct FileGone {
    /// `configs` or `secrets`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// Why it cannot be read.
    #[source]
    pub source: std::io::Error,
}

/// Why a new replica did not pass its health gate.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// It was removed while it started.
    #[error("{name} disappeared while starting")]
    Vanished { name: String },
    /// It stopped.
    #[error("{name} exited with code {code}")]
    Exited { name: String, code: i64 },
    /// Its healthcheck failed.
    #[error("{name} is unhealthy: {output}")]
    Unhealthy { name: String, output: String },
    /// Its healthcheck did not pass in time.
    #[error("{name} did not become healthy in time; last healthcheck: {output}")]
    NotHealthyInTime { name: String, output: String },
    /// It did not run steadily in time.
    #[error("{name} did not become ready in time")]
    NotReadyInTime { name: String },
    /// The target could not be asked.
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// Why a new replica could not be put to work; it was removed, and `logs` are its last lines.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The target could not create it.
    #[error(transparent)]
    Create(TargetError),
    /// The target could not start it.
    #[error("cannot start {name}: {source}\n{logs}")]
    Start {
        name: String,
        #[source]
        source: TargetError,
        logs: String,
    },
    /// It did not pass its health gate.
    #[error("{source}{}", last_lines(name, logs))]
    Gate {
        name: String,
        #[source]
        source: GateError,
        logs: String,
    },
    /// It passed, but could not take its slot's place.
    #[error(transparent)]
    Promote(TargetError),
}

fn last_lines(name: &str, logs: &str) -> String {
    if logs.is_empty() {
        String::new()
    } else {
        format!("\nlast log lines of {name}:\n{logs}")
    }
}

/// Why a self-healing pass stopped early (it tries again on the next one).
#[derive(Debug, thiserror::Error)]
pub enum HealError {
    /// The ledger cannot be read.
    #[error(transparent)]
    Store(#[from] capstan_store::Error),
    /// The target cannot be asked.
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// Why a request is refused before anything changes.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// No target could deploy it.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// This target cannot.
    #[error(transparent)]
    Target(#[from] TargetError),
}
