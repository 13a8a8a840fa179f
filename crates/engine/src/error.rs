/// Everything that can go wrong talking to the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address has a scheme capstan does not speak.
    #[error(
        "unsupported docker host {host:?}: use unix:///path/to/docker.sock, tcp://host:port or ssh://[user@]host[:port]"
    )]
    BadHost {
        /// The address as given.
        host: String,
    },
    /// How an engine on another machine is reached does not fit its address.
    #[error("docker host {host:?}: {reason}")]
    BadRemote {
        /// The address as given.
        host: String,
        /// What is wrong, naming the setting.
        reason: String,
    },
    /// bollard rejected the address.
    #[error("invalid docker host {host:?}: {source}")]
    BadHostAddress {
        /// The address as given.
        host: String,
        /// bollard's reason.
        source: bollard::errors::Error,
    },
    /// The engine did not answer (socket missing, refused, timed out, stream cut).
    #[error(
        "cannot reach docker engine at {host}: {reason} (is dockerd running? is DOCKER_HOST right? does this user have access to the socket?)"
    )]
    Unreachable {
        /// The engine address.
        host: String,
        /// What the transport said.
        reason: String,
    },
    /// The object does not exist on the engine.
    #[error("not found on the engine: {message}")]
    NotFound {
        /// The engine's message.
        message: String,
    },
    /// An object exists with other settings than asked for; it is left as it is.
    #[error(
        "{what} exists with other settings: {differences}; remove it to have it made again as asked"
    )]
    Differs {
        /// `network shop_front`.
        what: String,
        /// What differs, for people.
        differences: String,
    },
    /// The engine answered with an error.
    #[error("docker engine error (status {status}): {message}")]
    Api {
        /// HTTP status from the engine (0 when the error came inside a stream).
        status: u16,
        /// The engine's message.
        message: String,
    },
}

/// An error's text with its causes' (a failed connection says why only down its chain: a
/// certificate refused, a connection refused).
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let said = c.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = c.source();
    }
    text
}

impl Error {
    pub(crate) fn from_bollard(host: &str, err: bollard::errors::Error) -> Self {
        use bollard::errors::Error as B;
        match err {
            B::DockerResponseServerError {
                status_code: 404,
                message,
            } => Self::NotFound { message },
            B::DockerResponseServerError {
                status_code,
                message,
            } => Self::Api {
                status: status_code,
                message,
            },
            B::DockerStreamError { error } => Self::Api {
                status: 0,
                message: error,
            },
            B::JsonDataError { message, .. } => Self::Api {
                status: 0,
                message: format!("unexpected payload: {message}"),
            },
            other => Self::Unreachable {
                host: host.to_owned(),
                reason: with_causes(&other),
            },
        }
    }

    /// True when the engine could not be reached at all (as opposed to answering with an error).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }

    /// True when the engine said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// True for the error dockerd 20.10 gives an image inspect that races the image's removal:
    /// the image is still in its store, its layers are already gone.
    pub(crate) fn is_image_being_removed(&self) -> bool {
        matches!(self, Self::Api { status: 500, message } if message.contains("layer does not exist"))
    }
}
