//! `[images]` of capstan.toml: registry watching (how often, which images beside the running
//! ones, which registries over plain HTTP, credentials) and scans on pull. Durations are parsed
//! when the file is read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use capstan_model::{ConfigDuration, ConfigError};
use serde::Deserialize;

use crate::WatchConfig;

/// Between check cycles by default.
const DEFAULT_EVERY: Duration = Duration::from_hours(1);
/// The shortest time between check cycles (registries limit how often they may be asked).
const SHORTEST_EVERY: Duration = Duration::from_mins(1);
/// The first cycle after start, by default.
const DEFAULT_FIRST_AFTER: Duration = Duration::from_secs(30);

/// `[images]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ImagesConfig {
    /// Whether to check registries for updates at all (default true).
    #[serde(default)]
    pub watch: Option<bool>,
    /// Between check cycles (`1h` by default; each starts up to a tenth later).
    #[serde(default)]
    pub check_every: Option<ConfigDuration>,
    /// The first cycle after start (`30s` by default).
    #[serde(default)]
    pub first_check_after: Option<ConfigDuration>,
    /// Only containers whose name matches one of these (a trailing `*` matches a prefix);
    /// empty: every running container.
    #[serde(default)]
    pub containers: Vec<String>,
    /// References watched besides the running containers' images, as `ref` or
    /// `ref policy` (`ghcr.io/acme/api:1.4 minor`).
    #[serde(default)]
    pub refs: Vec<String>,
    /// Registries spoken to over plain HTTP besides loopback ones (`host:port`).
    #[serde(default)]
    pub insecure: Vec<String>,
    /// Credentials per registry (else Docker's config: `docker login`).
    #[serde(default)]
    pub registries: Vec<RegistryAuth>,
    /// Scan every image the engine pulls against the advisory database (default false).
    #[serde(default)]
    pub scan_on_pull: Option<bool>,
    /// Remove the images capstan deployed or built that no app's last `prune_keep` releases
    /// and no container use, every `prune_every` (default true).
    #[serde(default)]
    pub prune: Option<bool>,
    /// Each app's latest releases whose images a prune keeps (default 3, at least 1).
    #[serde(default)]
    pub prune_keep: Option<u32>,
    /// Between scheduled prunes (default `24h`, at least `1m`).
    #[serde(default)]
    pub prune_every: Option<ConfigDuration>,
    /// The most the engine's build cache may keep; a prune removes the least recently used
    /// beyond it (default `10GiB`).
    #[serde(default)]
    pub build_cache: Option<capstan_model::ConfigSize>,
}

/// Each app's latest releases whose images a prune keeps, by default.
pub const DEFAULT_PRUNE_KEEP: u32 = 3;
/// Between scheduled prunes, by default.
const DEFAULT_PRUNE_EVERY: Duration = Duration::from_hours(24);
/// The build cache's bound, by default.
const DEFAULT_BUILD_CACHE: u64 = 10 * 1024 * 1024 * 1024;

/// How scheduled prunes run (`[images] prune…`, `build_cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneSchedule {
    /// `None`: no scheduled prune.
    pub every: Option<Duration>,
    pub keep: u32,
    pub build_cache: u64,
}

impl ImagesConfig {
    /// The prune schedule, checked.
    ///
    /// # Errors
    /// A keep of 0 or a period under a minute, naming the key.
    pub fn prune_schedule(&self) -> Result<PruneSchedule, ConfigError> {
        let keep = self.prune_keep.unwrap_or(DEFAULT_PRUNE_KEEP);
        if keep == 0 {
            return Err(ConfigError::new(
                "images.prune_keep",
                "at least 1: the running release's images always stay",
            ));
        }
        let every = self.prune_every.map_or(DEFAULT_PRUNE_EVERY, |d| d.0);
        if every < SHORTEST_EVERY {
            return Err(ConfigError::new("images.prune_every", "at least 1m"));
        }
        Ok(PruneSchedule {
            every: self.prune.unwrap_or(true).then_some(every),
            keep,
            build_cache: self.build_cache.map_or(DEFAULT_BUILD_CACHE, |s| s.0),
        })
    }
}

/// `[[images.registries]]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistryAuth {
    /// `docker.io`, `ghcr.io`, `127.0.0.1:5000`.
    pub registry: String,
    pub user: String,
    /// A file whose first line is the password or token (keep it readable by capstan only),
    /// or `vault:NAME` for a credential kept sealed by `capstan secrets set NAME`.
    pub password_file: PathBuf,
}

impl ImagesConfig {
    /// The watcher's settings; `data` holds its state.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key.
    pub fn watch_config(&self, data: &Path) -> Result<WatchConfig, ConfigError> {
        let every = self.check_every.map_or(DEFAULT_EVERY, |d| d.0);
        if every < SHORTEST_EVERY {
            return Err(ConfigError::new(
                "images.check_every",
                "at least 1m (registries limit how often they may be asked)",
            ));
        }
        let mut refs = Vec::new();
        for (i, r) in self.refs.iter().enumerate() {
            let (reference, policy) = r.trim().split_once(' ').unwrap_or((r.trim(), "digest"));
            capstan_registry::Reference::parse(reference)
                .map_err(|e| ConfigError::new(format!("images.refs[{i}]"), e))?;
            let policy = policy
                .trim()
                .parse()
                .map_err(|e| ConfigError::new(format!("images.refs[{i}]"), e))?;
            refs.push((reference.to_owned(), policy));
        }
        Ok(WatchConfig {
            every,
            first_after: self.first_check_after.map_or(DEFAULT_FIRST_AFTER, |d| d.0),
            refs,
            containers: self.containers.clone(),
            state_file: data.join("images").join("updates.json"),
            platform: capstan_registry::Platform::host(),
        })
    }

    /// Where registry credentials come from (every pull, build, scan and check uses it):
    /// `logins` (`capstan registries login`), then `[[images.registries]]` (passwords read from
    /// their files), then Docker's config.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the key.
    pub fn credential_source(
        &self,
        logins: Option<std::sync::Arc<capstan_registry::Logins>>,
    ) -> Result<capstan_registry::CredentialSource, ConfigError> {
        let mut configured = std::collections::HashMap::new();
        for (i, r) in self.registries.iter().enumerate() {
            let password = capstan_outbound::Secret::from_file(
                &format!("images.registries[{i}].password_file"),
                &r.password_file,
            )?
            .expose()
            .to_owned();
            let registry = capstan_registry::registry_name(&r.registry)
                .map_err(|e| ConfigError::new(format!("images.registries[{i}].registry"), e))?;
            configured.insert(
                registry,
                capstan_registry::Credentials::new(r.user.clone(), password),
            );
        }
        Ok(capstan_registry::CredentialSource {
            logins,
            configured,
            docker_config: capstan_registry::CredentialSource::default_docker_config(),
            helper_dirs: None,
        })
    }

    /// The registry client's settings.
    pub fn registry_options(
        &self,
        credentials: std::sync::Arc<capstan_registry::CredentialSource>,
    ) -> capstan_registry::Options {
        capstan_registry::Options {
            insecure: self.insecure.clone(),
            credentials,
            page_size: None,
        }
    }
}
