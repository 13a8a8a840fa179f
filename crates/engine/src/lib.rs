//! The engine layer: the only code in capstan that talks to a Docker engine.
//!
//! It owns the connection (`DOCKER_HOST` over unix sockets or tcp, API version negotiated with
//! the engine), turns the engine's payloads into capstan's plain types, and maps failures to
//! [`Error`] variants that say what to do next. It must never decide policy: what to record,
//! retry or alert on belongs to the callers.

mod buildkit;
mod documents;
mod error;
mod events;
mod images;
mod inventory;
mod logs;
mod service;
mod spec;
mod swarm;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bollard::Docker;

pub use buildkit::BuildKitOutcome;
pub use error::Error;
pub use events::{EVENT_BUFFER, RawEvent};
pub use images::BuildContext;
pub use inventory::ImageState;
pub use logs::LogChunk;
pub use service::{FileRef, SwarmService, SwarmServiceSpec, SwarmTask, TaskRestart, UpdatePolicy};
pub use spec::{
    Attachment, Blkio, ContainerSpec, DeviceRequestSpec, Healthcheck, IpamPoolSpec, IpamSpec,
    MountSpec, NetworkSpec, VolumeSpec,
};

/// Default engine address when `DOCKER_HOST` is not set.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// `[docker]` of capstan.toml: which engine.
#[derive(Debug, Clone, Default, serde::Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// `unix:///var/run/docker.sock` or `tcp://host:port`; default `DOCKER_HOST`, else the
    /// local socket.
    #[serde(default)]
    pub host: Option<String>,
    /// `false`: this host has no Docker engine (capstan as a Kubernetes node's agent, reading
    /// its pods' logs): nothing that asks an engine runs. Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// How long a single request may take before it is abandoned (streams are not limited).
const REQUEST_TIMEOUT: Duration = Duration::from_mins(2);

/// A handle on one Docker engine. Cheap to clone; clones share the negotiated API version.
#[derive(Clone)]
pub struct Engine {
    /// Made on first use: bollard refuses a unix socket that does not exist yet, and capstan
    /// must start (and wait) before the engine does.
    docker: Arc<OnceLock<Docker>>,
    host: String,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// What the engine says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineVersion {
    /// Engine version, e.g. `20.10.24`.
    pub version: String,
    /// API version the engine speaks at most, e.g. `1.41`.
    pub api_version: String,
}

impl Engine {
    /// Creates a client for `host` (`unix:///path`, `tcp://host:port` or `http://host:port`);
    /// `None` means `DOCKER_HOST`, else [`DEFAULT_HOST`]. Does not contact the engine; call
    /// [`Engine::negotiate`] before use.
    ///
    /// # Errors
    /// [`Error::BadHost`] when the address has a scheme capstan does not speak.
    pub fn new(host: Option<&str>) -> Result<Self, Error> {
        let host = host
            .map(str::to_owned)
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| DEFAULT_HOST.to_owned());
        if !["unix://", "tcp://", "http://"]
            .iter()
            .any(|scheme| host.starts_with(scheme))
        {
            return Err(Error::BadHost { host });
        }
        let engine = Self {
            docker: Arc::default(),
            host,
        };
        if !engine.host.starts_with("unix://") {
            // nothing to wait for: a bad tcp address is bad input now
            engine.client()?;
        }
        Ok(engine)
    }

    /// The bollard client, made on first use.
    fn client(&self) -> Result<&Docker, Error> {
        if let Some(docker) = self.docker.get() {
            return Ok(docker);
        }
        let docker = self.connect(bollard::API_DEFAULT_VERSION)?;
        Ok(self.docker.get_or_init(|| docker))
    }

    fn connect(&self, version: &bollard::ClientVersion) -> Result<Docker, Error> {
        let timeout = REQUEST_TIMEOUT.as_secs();
        let host = &self.host;
        if let Some(path) = host.strip_prefix("unix://") {
            if !std::path::Path::new(path).exists() {
                return Err(Error::Unreachable {
                    host: host.clone(),
                    reason: format!("socket {path} does not exist"),
                });
            }
            Docker::connect_with_unix(host, timeout, version)
        } else {
            let url = host.replacen("tcp://", "http://", 1);
            Docker::connect_with_http(&url, timeout, version)
        }
        .map_err(|source| Error::BadHostAddress {
            host: host.clone(),
            source,
        })
    }

    /// A handle with connections of its own (same engine, same negotiated version): its I/O is
    /// driven by whichever runtime uses it, so a long stream can live on a dedicated thread.
    ///
    /// # Errors
    /// [`Error::Unreachable`] when the socket is missing.
    pub fn detached(&self) -> Result<Self, Error> {
        let version = self.client()?.client_version();
        let docker = self.connect(&version)?;
        Ok(Self {
            docker: Arc::new(OnceLock::from(docker)),
            host: self.host.clone(),
        })
    }

    /// The engine address this handle talks to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Agrees on the API version with the engine (the lower of the engine's and bollard's).
    ///
    /// # Errors
    /// [`Error::Unreachable`] when the engine does not answer.
    pub async fn negotiate(&self) -> Result<(), Error> {
        self.client()?
            .clone()
            .negotiate_version()
            .await
            .map(drop)
            .map_err(|e| self.classify(e))
    }

    /// Pings the engine and reads its version.
    ///
    /// # Errors
    /// [`Error::Unreachable`] when the engine does not answer.
    pub async fn version(&self) -> Result<EngineVersion, Error> {
        let v = self
            .client()?
            .version()
            .await
            .map_err(|e| self.classify(e))?;
        Ok(EngineVersion {
            version: v.version.unwrap_or_default(),
            api_version: v.api_version.unwrap_or_default(),
        })
    }

    /// The engine host's memory, as `/info` reports it.
    ///
    /// # Errors
    /// [`Error::Unreachable`] when the engine does not answer.
    pub async fn memory_total(&self) -> Result<Option<u64>, Error> {
        let info = self.client()?.info().await.map_err(|e| self.classify(e))?;
        Ok(info.mem_total.and_then(|m| u64::try_from(m).ok()))
    }

    /// The engine's own clock, in nanoseconds since the epoch. Event times are stamped by this
    /// clock, so `since`/`until` bounds must come from it, not from ours.
    ///
    /// # Errors
    /// [`Error::Unreachable`] when the engine does not answer, [`Error::Api`] when it reports
    /// no usable time.
    pub async fn now_nanos(&self) -> Result<i64, Error> {
        let info = self.client()?.info().await.map_err(|e| self.classify(e))?;
        info.system_time
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .and_then(|t| t.timestamp_nanos_opt())
            .ok_or_else(|| Error::Api {
                status: 0,
                message: "the engine reported no system time in /info".to_owned(),
            })
    }

    /// Turns a bollard error into ours, naming the host.
    fn classify(&self, err: bollard::errors::Error) -> Error {
        Error::from_bollard(&self.host, err)
    }
}
