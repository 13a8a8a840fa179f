//! The Compose model: what a file may say (strictly: unknown keys are errors) and, after
//! normalisation, the resolved form capstan deploys and `capstan config` prints. Short and long
//! syntaxes are read; the long one is kept.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::de;

/// Deserializes a short-or-long input enum by the JSON kind of the value, so that errors say
/// what the long form got wrong instead of "did not match any variant".
macro_rules! by_kind {
    ($ty:ident { $($pat:pat => $body:expr),* $(,)? }) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                use serde_json::Value as J;
                let v = J::deserialize(d)?;
                let r: Result<Self, String> = match v { $($pat => $body),* };
                r.map_err(serde::de::Error::custom)
            }
        }
    };
}

fn long<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

// after `by_kind!`, which they use
mod links;
mod objects;
mod ports;
mod runtime;
mod volumes;

pub use links::{Dependency, DependsOn, ServiceNetwork, ServiceNetworks};
pub use objects::{FileObject, FileRef, Ipam, IpamPool, Network, Volume};
pub use ports::Port;
pub use runtime::{
    Blkio, BlkioRate, BlkioWeight, Deploy, Device, DeviceRequest, Gpus, Healthcheck, Logging,
    Placement, PlacementPreference, ResourceSet, Resources, RestartPolicy, Ulimit, UpdateConfig,
    micros,
};
pub use volumes::{BindOptions, ServiceVolume, TmpfsOptions, VolumeOptions};

/// A whole project after loading.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Project {
    /// Obsolete; accepted and ignored (with a warning).
    #[serde(default, skip_serializing)]
    pub version: Option<serde_json::Value>,
    /// Other Compose files whose services, networks, volumes, configs and secrets join this
    /// project (each loaded from its own directory); resolved away by the loader.
    #[serde(default, skip_serializing)]
    pub include: Vec<Include>,
    /// Project name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Services by name.
    #[serde(default)]
    pub services: BTreeMap<String, Service>,
    /// Networks by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, Option<Network>>,
    /// Named volumes by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, Option<Volume>>,
    /// Configs by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, FileObject>,
    /// Secrets by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, FileObject>,
    /// capstan's own settings of the app (`x-capstan`).
    #[serde(default, rename = "x-capstan", skip_serializing_if = "Option::is_none")]
    pub capstan: Option<CapstanExtension>,
}

/// `x-capstan`: what capstan does with the app besides running it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapstanExtension {
    /// Where its code is: a push there builds and deploys it (see docs/pipeline.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<capstan_model::GitSource>,
    /// Host names (and path prefixes) its services answer on, on the ports 80 and 443 that
    /// capstan's proxy shares among apps; see [`HttpRoute`] and docs/domains.md.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<HttpRoute>,
    /// What of its named volumes is backed up, when, and how long snapshots are kept; see
    /// [`BackupPolicy`] and docs/backups.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups: Option<BackupPolicy>,
}

/// `x-capstan.backups`: an app's volumes into the restic repository of `[backups]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupPolicy {
    /// The named volumes (every one the app declares unless given).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// How often a backup is taken by itself (`24h`); only when asked unless given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// Snapshots kept after each backup: the newest `keep_last`, one a day for `keep_daily`
    /// days, one a week for `keep_weekly` weeks (restic's `forget`); all unless one is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    /// Commands run in a replica of a service before the snapshot (a database's dump into its
    /// volume): a command that fails fails the backup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before: Vec<BackupHook>,
}

/// A command run in a service's replica 1 before a backup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupHook {
    pub service: String,
    pub command: Vec<String>,
}

/// One `x-capstan.routes` entry (or a service's `io.capstan.route.*` labels): requests for
/// `host` whose path starts with `path` go to `service`'s replicas in rotation, at `port`.
/// After loading, `service` and `port` are always set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRoute {
    /// The host name clients ask for (`shop.example.com`), without a port.
    pub host: String,
    /// The path prefix, `/` unless given; the longest prefix that matches a request wins.
    #[serde(default = "root_path")]
    pub path: String,
    /// Whether the prefix is cut off before the request goes on (`/api/items` reaches the
    /// service as `/items`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strip_prefix: bool,
    /// The service (the app's only service unless given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The container port (the service's only published or exposed port, else 80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `auto` (default): served over HTTPS with a certificate from the files capstan.toml
    /// names, else from ACME; `off`: HTTP only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// How ACME checks the name is ours: `http-01` or `tls-alpn-01` (default: `[acme]
    /// challenge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
    /// Whether plain HTTP answers with a redirect to HTTPS once a certificate is served
    /// (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<bool>,
}

fn root_path() -> String {
    "/".to_owned()
}

/// One entry of top-level `include:`: a path, or `{path, env_file, project_directory}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Include {
    /// The files, merged in order.
    pub path: Vec<String>,
    /// Its `.env` files instead of the one in its directory.
    pub env_file: Vec<String>,
    /// Where its relative paths start (default: the first file's directory).
    pub project_directory: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IncludeLong {
    #[serde(deserialize_with = "de::list")]
    path: Vec<String>,
    #[serde(default, deserialize_with = "de::list")]
    env_file: Vec<String>,
    #[serde(default)]
    project_directory: Option<String>,
}

by_kind!(Include {
    J::String(s) => Ok(Include { path: vec![s], ..Include::default() }),
    v @ J::Object(_) => long::<IncludeLong>(v).map(|l| Include {
        path: l.path,
        env_file: l.env_file,
        project_directory: l.project_directory,
    }),
    other => Err(format!("expected a file path or {{path, env_file, project_directory}}, found {other}")),
});

/// One service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    /// `host`, `none`, `bridge`, `service:NAME` (replica 1 of that service's network
    /// namespace) or `container:NAME`, instead of the app's networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// `host` (the host's process namespace) or `container:NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    /// `private`, `shareable`, `none`, `host` or `container:NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    /// `host`: the host's hostname and domain name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uts: Option<String>,
    /// `host`: no user namespace remapping for this container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns_mode: Option<String>,
    /// The cgroup the container's is made under (instead of the engine's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
    /// The OCI runtime (`runc`, `runsc`, ...), one the engine knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Device cgroup rules (`c 1:3 mr`).
    #[serde(
        default,
        deserialize_with = "de::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub device_cgroup_rules: Vec<String>,
    /// Host devices given to the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<runtime::Device>,
    /// GPUs from the engine's drivers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<runtime::Gpus>,
    /// The one replica's container name (instead of `<project>-<service>-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    /// When a deploy pulls the image: see [`PullPolicy`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Command>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Command>,
    #[serde(
        default,
        deserialize_with = "de::kv",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub environment: BTreeMap<String, Option<String>>,
    /// Read by the CLI into `environment`; empty in the resolved model.
    #[serde(
        default,
        deserialize_with = "de::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env_file: Vec<String>,
    #[serde(
        default,
        deserialize_with = "ports::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ports: Vec<Port>,
    #[serde(
        default,
        deserialize_with = "de::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub expose: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<ServiceVolume>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<ServiceNetworks>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<DependsOn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<Deploy>,
    #[serde(
        default,
        deserialize_with = "de::kv_strict",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub cap_add: Vec<String>,
    #[serde(
        default,
        deserialize_with = "de::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub cap_drop: Vec<String>,
    #[serde(
        default,
        deserialize_with = "de::bool_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub read_only: Option<bool>,
    #[serde(
        default,
        deserialize_with = "de::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub security_opt: Vec<String>,
    #[serde(
        default,
        deserialize_with = "de::bool_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub privileged: Option<bool>,
    #[serde(
        default,
        deserialize_with = "de::bool_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub init: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::text_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub stop_grace_period: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tmpfs: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ulimits: BTreeMap<String, Ulimit>,
    #[serde(
        default,
        deserialize_with = "de::kv_strict",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub sysctls: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "de::hosts",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub extra_hosts: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "de::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dns: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::text_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub shm_size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    /// `mem_limit`: a size; the same as `deploy.resources.limits.memory` (both given, they
    /// must agree).
    #[serde(
        default,
        deserialize_with = "de::text_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub mem_limit: Option<String>,
    /// Memory plus swap, a size; `-1` for unlimited swap.
    #[serde(
        default,
        deserialize_with = "de::text_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub memswap_limit: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::text_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub mem_reservation: Option<String>,
    /// 0 to 100.
    #[serde(
        default,
        deserialize_with = "de::int_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub mem_swappiness: Option<i64>,
    /// CPUs (`0.5`); the same as `deploy.resources.limits.cpus`.
    #[serde(
        default,
        deserialize_with = "de::text_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpus: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::int_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_shares: Option<i64>,
    /// CPUs allowed (`0-3`, `0,1`).
    #[serde(
        default,
        deserialize_with = "de::text_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpuset: Option<String>,
    /// CFS period and quota, in microseconds.
    #[serde(
        default,
        deserialize_with = "de::int_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_period: Option<i64>,
    #[serde(
        default,
        deserialize_with = "de::int_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_quota: Option<i64>,
    /// Real-time period and runtime: microseconds, or a duration (`400ms`).
    #[serde(
        default,
        deserialize_with = "de::text_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_rt_period: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::text_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_rt_runtime: Option<String>,
    /// The same as `deploy.resources.limits.pids`.
    #[serde(
        default,
        deserialize_with = "de::int_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub pids_limit: Option<i64>,
    /// -1000 to 1000.
    #[serde(
        default,
        deserialize_with = "de::int_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub oom_score_adj: Option<i64>,
    #[serde(
        default,
        deserialize_with = "de::bool_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub oom_kill_disable: Option<bool>,
    #[serde(
        default,
        deserialize_with = "de::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dns_search: Vec<String>,
    #[serde(
        default,
        deserialize_with = "de::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dns_opt: Vec<String>,
    /// Supplementary groups, by name or id.
    #[serde(
        default,
        deserialize_with = "de::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub group_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domainname: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::bool_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub stdin_open: Option<bool>,
    #[serde(
        default,
        deserialize_with = "de::bool_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub tty: Option<bool>,
    /// Storage driver options (`size: 1G`).
    #[serde(
        default,
        deserialize_with = "de::kv_strict",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub storage_opt: BTreeMap<String, String>,
    /// Replicas, as `deploy.replicas` (both given, they must agree).
    #[serde(
        default,
        deserialize_with = "de::int_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub scale: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blkio_config: Option<runtime::Blkio>,
    /// Whether `docker compose up` attaches to its output: nothing to a daemon's deploy.
    #[serde(
        default,
        deserialize_with = "de::bool_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub attach: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<FileRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<FileRef>,
    #[serde(
        default,
        deserialize_with = "de::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub profiles: Vec<String>,
}

/// `pull_policy`: when a deploy pulls a service's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    /// When the engine lacks it (the default; also written `if_not_present`).
    Missing,
    /// At every deploy: a tag pushed again is deployed.
    Always,
    /// Never: the image must be on the engine.
    Never,
    /// Built from `build:` by the CLI, never pulled.
    Build,
    /// When the engine's copy was last pulled longer ago than this (`daily`, `weekly`,
    /// `every_<duration>`), or it lacks one.
    Every(std::time::Duration),
}

impl PullPolicy {
    /// Reads a policy as the Compose specification writes it.
    ///
    /// # Errors
    /// What is accepted, for a value that is none of it.
    pub fn parse(text: &str) -> Result<Self, String> {
        const DAY: u64 = 24 * 60 * 60;
        Ok(match text {
            "missing" | "if_not_present" => Self::Missing,
            "always" => Self::Always,
            "never" => Self::Never,
            "build" => Self::Build,
            "daily" => Self::Every(std::time::Duration::from_secs(DAY)),
            "weekly" => Self::Every(std::time::Duration::from_secs(7 * DAY)),
            other => {
                let every = other
                    .strip_prefix("every_")
                    .and_then(|d| capstan_model::parse_duration(d).ok())
                    .filter(|d| !d.is_zero());
                match every {
                    Some(d) => Self::Every(d),
                    None => {
                        return Err(format!(
                            "{other:?} is not always, missing, never, build, daily, weekly or every_<duration> (every_12h)"
                        ));
                    }
                }
            }
        })
    }
}

impl Service {
    /// The replicas it asks for: `deploy.replicas`, else `scale`, else 1 (the loader refused
    /// the two saying otherwise).
    pub fn declared_replicas(&self) -> i64 {
        if self.is_global() {
            return 1;
        }
        self.deploy
            .as_ref()
            .and_then(|d| d.replicas)
            .or(self.scale)
            .unwrap_or(1)
    }

    /// Whether it runs one replica on every node (`deploy.mode: global`).
    pub fn is_global(&self) -> bool {
        self.deploy.as_ref().and_then(|d| d.mode.as_deref()) == Some("global")
    }

    /// What it asks of the engine's device drivers: `gpus`, then
    /// `deploy.resources.reservations.devices`.
    pub fn device_requests(&self) -> Vec<&runtime::DeviceRequest> {
        let reserved = self
            .deploy
            .as_ref()
            .and_then(|d| d.resources.as_ref())
            .and_then(|r| r.reservations.as_ref())
            .map(|r| r.devices.as_slice())
            .unwrap_or_default();
        self.gpus
            .iter()
            .flat_map(|g| &g.0)
            .chain(reserved)
            .collect()
    }

    /// The service whose network namespace this one joins (`network_mode: service:NAME`).
    pub fn network_service(&self) -> Option<&str> {
        self.network_mode.as_deref()?.strip_prefix("service:")
    }

    /// The service's pull policy (`missing` when it names none; the loader refused bad ones).
    pub fn pull_policy(&self) -> PullPolicy {
        self.pull_policy
            .as_deref()
            .and_then(|p| PullPolicy::parse(p).ok())
            .unwrap_or(PullPolicy::Missing)
    }
}

/// `build:` (a context path, or the long form).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "BuildInput")]
pub struct Build {
    pub context: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

enum BuildInput {
    Context(String),
    Long(BuildLong),
}

by_kind!(BuildInput {
    J::String(s) => Ok(BuildInput::Context(s)),
    v @ J::Object(_) => long(v).map(BuildInput::Long),
    other => Err(format!("expected a build context path or a mapping, found {other}")),
});

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildLong {
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    dockerfile: Option<String>,
    #[serde(default, deserialize_with = "de::kv")]
    args: BTreeMap<String, Option<String>>,
    #[serde(default)]
    target: Option<String>,
}

impl TryFrom<BuildInput> for Build {
    type Error = String;
    fn try_from(b: BuildInput) -> Result<Self, String> {
        Ok(match b {
            BuildInput::Context(context) => Build {
                context,
                ..Build::default()
            },
            BuildInput::Long(l) => Build {
                context: l.context.unwrap_or_else(|| ".".to_owned()),
                dockerfile: l.dockerfile,
                args: l.args,
                target: l.target,
            },
        })
    }
}

/// `command:` / `entrypoint:`: a shell string or an exec list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Command {
    /// Split like a shell would when the container is created.
    Shell(String),
    /// Passed as is.
    Exec(Vec<String>),
}

#[cfg(test)]
mod tests {
    use super::ports::PortInput;
    use super::volumes::VolumeInput;
    use super::*;

    fn port(s: &str) -> Result<Port, String> {
        Port::try_from(PortInput::Short(s.to_owned()))
    }

    #[test]
    fn short_ports() {
        let p = port("8080:80").unwrap();
        assert_eq!(
            (p.target, p.published.as_deref(), p.host_ip.as_deref()),
            (80, Some("8080"), None)
        );
        let p = port("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(
            (p.host_ip.as_deref(), p.protocol.as_str()),
            (Some("127.0.0.1"), "udp")
        );
        let p = port("[::1]:8080:80").unwrap();
        assert_eq!(p.host_ip.as_deref(), Some("::1"));
        assert_eq!(port("80").unwrap().published, None);
        assert_eq!(port("127.0.0.1::80").unwrap().published, None);
        for bad in [
            "80/sctp",
            "0",
            "99999:80",
            "a:b",
            "1:2:3:4",
            "8000-8001:80-81",
        ] {
            assert!(port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn short_volumes() {
        let v = |s: &str| ServiceVolume::try_from(VolumeInput::Short(s.to_owned()));
        let x = v("data:/var/lib/x:ro").unwrap();
        assert_eq!(
            (x.kind.as_str(), x.source.as_deref(), x.read_only),
            ("volume", Some("data"), true)
        );
        assert_eq!(v("./conf:/etc/conf").unwrap().kind, "bind");
        assert_eq!(v("/anon").unwrap().source, None);
        assert!(v("relative").is_err());
        assert!(v("a:/b:rx").is_err());
    }
}
