//! The engine layer: the only code in capstan that talks to a Docker engine.
//!
//! It owns the connection (`DOCKER_HOST` over unix sockets, tcp, TLS or ssh, API version
//! negotiated with the engine), turns the engine's payloads into capstan's plain types, and maps failures to
//! [`Error`] variants that say what to do next. It must never decide policy: what to record,
//! retry or alert on belongs to the callers.

mod buildkit;
mod documents;
mod error;
mod events;
mod exec;
mod images;
mod inventory;
mod logs;
mod remote;
mod service;
mod spec;
mod swarm;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bollard::Docker;

pub use buildkit::BuildKitOutcome;
pub use error::Error;
pub use events::{EVENT_BUFFER, RawEvent};
pub use exec::{Exec, Frame, demux};
pub use images::BuildContext;
pub use inventory::ImageState;
pub use logs::LogChunk;
pub use remote::RemoteConfig;
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
    /// `tcp://` with TLS: the directory of `ca.pem`, `cert.pem` and `key.pem`.
    #[serde(default)]
    pub tls_dir: Option<std::path::PathBuf>,
    /// `ssh://`: the known-hosts file the host's key must be in (default: ssh's own).
    #[serde(default)]
    pub known_hosts: Option<std::path::PathBuf>,
    /// `ssh://`: the private key to sign in with (default: ssh's own and its agent's).
    #[serde(default)]
    pub identity: Option<std::path::PathBuf>,
}

impl EngineConfig {
    /// How the engine is reached when it is on another machine.
    pub fn remote(&self) -> RemoteConfig {
        RemoteConfig {
            tls_dir: self.tls_dir.clone(),
            known_hosts: self.known_hosts.clone(),
            identity: self.identity.clone(),
        }
    }
}

/// Held while an ssh engine's bridge is made (see [`Engine::bridge`]).
static BRIDGE_STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// How long a single request may take before it is abandoned (streams are not limited).
const REQUEST_TIMEOUT: Duration = Duration::from_mins(2);

/// A handle on one Docker engine. Cheap to clone; clones share the negotiated API version.
#[derive(Clone)]
pub struct Engine {
    /// Made on first use: bollard refuses a unix socket that does not exist yet, and capstan
    /// must start (and wait) before the engine does.
    docker: Arc<OnceLock<Docker>>,
    host: String,
    /// How an engine on another machine is reached (TLS files, ssh's known hosts and key).
    remote: Arc<RemoteConfig>,
    /// An ssh engine's socket on this machine, served from first use.
    bridge: Arc<OnceLock<remote::Bridge>>,
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
    /// Creates a client for `host` (`unix:///path`, `tcp://host:port`, `http://host:port` or
    /// `ssh://[user@]host[:port]`); `None` means `DOCKER_HOST`, else [`DEFAULT_HOST`]. Does not
    /// contact the engine; call [`Engine::negotiate`] before use.
    ///
    /// # Errors
    /// [`Error::BadHost`] when the address has a scheme capstan does not speak.
    pub fn new(host: Option<&str>) -> Result<Self, Error> {
        Self::with_remote(host, RemoteConfig::default())
    }

    /// As [`Engine::new`], for an engine on another machine reached as `remote` says (TLS
    /// files for `tcp://`; known hosts and key for `ssh://`).
    ///
    /// # Errors
    /// [`Error::BadHost`] when the address has a scheme capstan does not speak, or `remote`
    /// does not fit it.
    pub fn with_remote(host: Option<&str>, remote: RemoteConfig) -> Result<Self, Error> {
        let host = host
            .map(str::to_owned)
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| DEFAULT_HOST.to_owned());
        if !["unix://", "tcp://", "http://", "ssh://"]
            .iter()
            .any(|scheme| host.starts_with(scheme))
        {
            return Err(Error::BadHost { host });
        }
        if let Err(reason) = remote.check(&host) {
            return Err(Error::BadRemote { host, reason });
        }
        let engine = Self {
            docker: Arc::default(),
            host,
            remote: Arc::new(remote),
            bridge: Arc::default(),
        };
        if !engine.host.starts_with("unix://") && !engine.host.starts_with("ssh://") {
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
        } else if host.starts_with("ssh://") {
            let bridge = self.bridge()?;
            if !bridge.socket.exists() {
                return Err(Error::Unreachable {
                    host: host.clone(),
                    reason: bridge
                        .last_error()
                        .unwrap_or_else(|| "the ssh link to the host is not up yet".to_owned()),
                });
            }
            let socket = format!("unix://{}", bridge.socket.display());
            Docker::connect_with_unix(&socket, timeout, version)
        } else if let Some(dir) = &self.remote.tls_dir {
            // a process that links more than one crypto provider has none until one is chosen
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let [ca, cert, key] = remote::TLS_FILES.map(|f| dir.join(f));
            Docker::connect_with_ssl(host, &key, &cert, &ca, timeout, version)
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
            remote: Arc::clone(&self.remote),
            bridge: Arc::clone(&self.bridge),
        })
    }

    /// The engine address this handle talks to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether the engine runs on this machine (a unix socket or loopback): its files, cgroups
    /// and published ports are this machine's. An ssh or TLS engine is another machine's.
    pub fn is_local(&self) -> bool {
        let host = self.host.as_str();
        host.starts_with("unix://")
            || host.starts_with("npipe://")
            || [
                "tcp://127.",
                "tcp://localhost",
                "tcp://[::1]",
                "http://127.",
                "http://localhost",
            ]
            .iter()
            .any(|p| host.starts_with(p))
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

    /// Turns a bollard error into ours, naming the host (and, for an ssh engine, what ssh
    /// said when its last session failed: a host key refused, a login denied).
    fn classify(&self, err: bollard::errors::Error) -> Error {
        match (
            Error::from_bollard(&self.host, err),
            self.bridge.get().and_then(remote::Bridge::last_error),
        ) {
            (Error::Unreachable { host, reason }, Some(said)) => Error::Unreachable {
                host,
                reason: format!("{reason}; {said}"),
            },
            (e, _) => e,
        }
    }

    /// An ssh engine's socket here, served from the first call on (on the caller's runtime).
    fn bridge(&self) -> Result<&remote::Bridge, Error> {
        if let Some(b) = self.bridge.get() {
            return Ok(b);
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Unreachable {
                host: self.host.clone(),
                reason: "an ssh engine is reached from capstan's runtime only".to_owned(),
            });
        }
        // one bridge per engine: the first callers race for it at start, and a second one would
        // be one more ssh connection opening (sshd drops them past `MaxStartups`)
        let _one = BRIDGE_STARTING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(b) = self.bridge.get() {
            return Ok(b);
        }
        let bridge = remote::Bridge::start(&self.host, &self.remote)?;
        Ok(self.bridge.get_or_init(|| bridge))
    }
}
