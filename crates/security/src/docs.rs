//! The engine's documents the checks read: the parts of `/info`, container and image inspect
//! documents and network listings they need, in the engine's own JSON shape. Every field is
//! optional in practice (older engines, `null` for empty lists), so every one reads `null` and
//! absence as its default.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// `null` (or absent) reads as the default.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `GET /info`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Info {
    #[serde(default, deserialize_with = "nullable")]
    pub driver: String,
    /// `name=seccomp,profile=default`, `name=apparmor`, `name=userns`, `name=rootless`, ...
    #[serde(default, deserialize_with = "nullable")]
    pub security_options: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub live_restore_enabled: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub experimental_build: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub debug: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub docker_root_dir: String,
    #[serde(default, deserialize_with = "nullable")]
    pub registry_config: RegistryConfig,
    #[serde(default, deserialize_with = "nullable")]
    pub plugins: Plugins,
    #[serde(default, deserialize_with = "nullable")]
    pub swarm: SwarmInfo,
}

impl Info {
    /// Whether `/info` lists the security option `name` (`apparmor`, `seccomp`, ...).
    pub fn has_security_option(&self, name: &str) -> bool {
        self.security_options.iter().any(|o| {
            o.split(',')
                .any(|part| part == format!("name={name}") || part == name)
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegistryConfig {
    #[serde(
        rename = "InsecureRegistryCIDRs",
        default,
        deserialize_with = "nullable"
    )]
    pub insecure_registry_cidrs: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub index_configs: BTreeMap<String, IndexConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IndexConfig {
    #[serde(default, deserialize_with = "nullable")]
    pub secure: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Plugins {
    #[serde(default, deserialize_with = "nullable")]
    pub authorization: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SwarmInfo {
    /// `inactive`, `active`, ...
    #[serde(default, deserialize_with = "nullable")]
    pub local_node_state: String,
    /// This node is a manager.
    #[serde(default, deserialize_with = "nullable")]
    pub control_available: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub managers: u32,
    #[serde(default, deserialize_with = "nullable")]
    pub cluster: Cluster,
}

impl SwarmInfo {
    /// The engine is a manager of an active Swarm.
    pub fn is_manager(&self) -> bool {
        self.local_node_state == "active" && self.control_available
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Cluster {
    #[serde(rename = "ID", default, deserialize_with = "nullable")]
    pub id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub spec: ClusterSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClusterSpec {
    #[serde(default, deserialize_with = "nullable")]
    pub encryption_config: EncryptionConfig,
    #[serde(rename = "CAConfig", default, deserialize_with = "nullable")]
    pub ca_config: CaConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptionConfig {
    #[serde(default, deserialize_with = "nullable")]
    pub auto_lock_managers: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CaConfig {
    /// Nanoseconds.
    #[serde(default, deserialize_with = "nullable")]
    pub node_cert_expiry: i64,
}

/// `GET /containers/{id}/json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Container {
    #[serde(default, deserialize_with = "nullable")]
    pub id: String,
    /// `/name`, as the engine keeps it.
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    /// The image id.
    #[serde(default, deserialize_with = "nullable")]
    pub image: String,
    #[serde(default, deserialize_with = "nullable")]
    pub state: State,
    #[serde(default, deserialize_with = "nullable")]
    pub config: ContainerConfig,
    #[serde(default, deserialize_with = "nullable")]
    pub host_config: HostConfig,
    #[serde(default, deserialize_with = "nullable")]
    pub mounts: Vec<Mount>,
    #[serde(default, deserialize_with = "nullable")]
    pub app_armor_profile: String,
}

impl Container {
    /// Its name without the engine's leading `/`.
    pub fn short_name(&self) -> &str {
        self.name.trim_start_matches('/')
    }

    /// The service it is a replica of (`app/service`), from capstan's or Compose's labels.
    pub fn service(&self) -> Option<String> {
        let label = |k: &str| self.config.labels.get(k).filter(|v| !v.is_empty());
        let app = label("io.capstan.app").or_else(|| label("com.docker.compose.project"))?;
        let service =
            label("io.capstan.service").or_else(|| label("com.docker.compose.service"))?;
        Some(format!("{app}/{service}"))
    }

    /// `exited`, `created` or `dead`: not running, not about to.
    pub fn is_stopped(&self) -> bool {
        matches!(self.state.status.as_str(), "exited" | "created" | "dead")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct State {
    #[serde(default, deserialize_with = "nullable")]
    pub status: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, deserialize_with = "nullable")]
    pub user: String,
    #[serde(default, deserialize_with = "nullable")]
    pub healthcheck: Option<Healthcheck>,
    /// The reference it was created from.
    #[serde(default, deserialize_with = "nullable")]
    pub image: String,
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    #[serde(default, deserialize_with = "nullable")]
    pub test: Vec<String>,
}

/// Whether a healthcheck (a container's or an image's) checks anything.
pub fn checks_health(h: Option<&Healthcheck>) -> bool {
    h.and_then(|h| h.test.first())
        .is_some_and(|first| first != "NONE")
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    #[serde(default, deserialize_with = "nullable")]
    pub privileged: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub cap_add: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub network_mode: String,
    #[serde(default, deserialize_with = "nullable")]
    pub pid_mode: String,
    #[serde(default, deserialize_with = "nullable")]
    pub ipc_mode: String,
    #[serde(rename = "UTSMode", default, deserialize_with = "nullable")]
    pub uts_mode: String,
    #[serde(default, deserialize_with = "nullable")]
    pub userns_mode: String,
    #[serde(default, deserialize_with = "nullable")]
    pub memory: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub cpu_shares: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub nano_cpus: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub cpu_quota: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub readonly_rootfs: bool,
    /// `8080/tcp` → where it is published.
    #[serde(default, deserialize_with = "nullable")]
    pub port_bindings: BTreeMap<String, Option<Vec<PortBinding>>>,
    #[serde(default, deserialize_with = "nullable")]
    pub restart_policy: RestartPolicy,
    #[serde(default, deserialize_with = "nullable")]
    pub devices: Vec<Device>,
    #[serde(default, deserialize_with = "nullable")]
    pub security_opt: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub cgroup_parent: String,
    #[serde(default, deserialize_with = "nullable")]
    pub pids_limit: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    #[serde(default, deserialize_with = "nullable")]
    pub host_ip: String,
    #[serde(default, deserialize_with = "nullable")]
    pub host_port: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub maximum_retry_count: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Device {
    #[serde(default, deserialize_with = "nullable")]
    pub path_on_host: String,
    #[serde(default, deserialize_with = "nullable")]
    pub path_in_container: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Mount {
    #[serde(default, deserialize_with = "nullable")]
    pub r#type: String,
    #[serde(default, deserialize_with = "nullable")]
    pub source: String,
    #[serde(default, deserialize_with = "nullable")]
    pub destination: String,
    #[serde(rename = "RW", default, deserialize_with = "nullable")]
    pub rw: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub propagation: String,
}

/// `GET /images/{id}/json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Image {
    #[serde(default, deserialize_with = "nullable")]
    pub id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub repo_tags: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub config: ImageConfig,
}

impl Image {
    /// Its first tag, else its short id.
    pub fn display_name(&self) -> String {
        self.repo_tags.first().cloned().unwrap_or_else(|| {
            let id = self.id.trim_start_matches("sha256:");
            id.get(..12).unwrap_or(id).to_owned()
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    #[serde(default, deserialize_with = "nullable")]
    pub user: String,
    #[serde(default, deserialize_with = "nullable")]
    pub healthcheck: Option<Healthcheck>,
}

/// One entry of `GET /networks`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Network {
    #[serde(default, deserialize_with = "nullable")]
    pub id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub driver: String,
    #[serde(default, deserialize_with = "nullable")]
    pub options: BTreeMap<String, String>,
}

/// One entry of `GET /images/json`: enough to tell sprawl.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageEntry {
    pub id: String,
    /// Tagged (not dangling).
    pub tagged: bool,
    pub size: i64,
}
