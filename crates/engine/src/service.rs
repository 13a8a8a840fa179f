//! Swarm services and their tasks, in capstan's own terms: a service made from the same
//! [`ContainerSpec`] a replica on one engine is made from, created and updated through a
//! manager, its tasks read back with their node, state, error and host ports; and the digest a
//! registry names for an image, asked through the manager (its credentials and insecure
//! registries, as `docker stack deploy` pins images).

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum,
    HealthConfig, Limit, NetworkAttachmentConfig, ResourceObject, ResourcesUlimits,
    ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum, TaskSpec,
    TaskSpecContainerSpec, TaskSpecContainerSpecConfigs, TaskSpecContainerSpecDnsConfig,
    TaskSpecContainerSpecFile, TaskSpecContainerSpecFile1, TaskSpecContainerSpecSecrets,
    TaskSpecLogDriver, TaskSpecPlacement, TaskSpecPlacementPreferences, TaskSpecPlacementSpread,
    TaskSpecResources, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};

use crate::spec::{mount, opt_map, opt_vec};
use crate::{ContainerSpec, Engine, Error};

/// A Swarm service to create or update: one Compose service's replicas, which the cluster
/// places and replaces. What its tasks run is a [`ContainerSpec`]; the fields of it a task
/// cannot take are named by [`ContainerSpec::swarm_unhonoured`], which callers refuse first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SwarmServiceSpec {
    pub name: String,
    /// The service's own labels (which app, service and release it is).
    pub labels: BTreeMap<String, String>,
    /// What each task runs.
    pub container: ContainerSpec,
    /// `None`: one task on every node (`mode: global`).
    pub replicas: Option<u64>,
    pub update: UpdatePolicy,
    pub restart: TaskRestart,
    pub constraints: Vec<String>,
    /// Spread descriptors, in order (`node.labels.zone`).
    pub spread: Vec<String>,
    pub max_replicas_per_node: Option<i64>,
    pub reserved_nano_cpus: Option<i64>,
    pub reserved_memory_bytes: Option<i64>,
    /// Container ports each task publishes on a host port of its node that the node picks
    /// (`mode: host`, no routing mesh): port and `tcp` or `udp`.
    pub ports: Vec<(u16, String)>,
    /// Bumped to replace every task although nothing else changed.
    pub force: u64,
    /// Swarm configs each task gets as a file.
    pub configs: Vec<FileRef>,
    /// Swarm secrets each task gets as a file (on tmpfs, under `/run/secrets`).
    pub secrets: Vec<FileRef>,
}

/// A Swarm config or secret a task gets as a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// The object's id and name.
    pub id: String,
    pub name: String,
    /// Where the file is: a path (a secret's may be a name under `/run/secrets`).
    pub target: String,
    pub uid: String,
    pub gid: String,
    pub mode: u32,
}

/// How the cluster replaces a service's tasks on an update. It never rolls back by itself:
/// a failure pauses the update and the caller decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdatePolicy {
    pub parallelism: i64,
    pub delay_ns: i64,
    /// Start the new task before stopping the old one.
    pub start_first: bool,
    /// How long a new task must run before it counts.
    pub monitor_ns: i64,
}

impl Default for UpdatePolicy {
    fn default() -> Self {
        Self {
            parallelism: 1,
            delay_ns: 0,
            start_first: true,
            monitor_ns: 2_000_000_000,
        }
    }
}

/// When the cluster starts a task again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskRestart {
    /// `none`, `on-failure` or `any` (the cluster's default).
    pub condition: Option<String>,
    pub delay_ns: Option<i64>,
    pub max_attempts: Option<i64>,
    pub window_ns: Option<i64>,
}

/// A service as a manager shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmService {
    pub id: String,
    pub name: String,
    /// The version an update must name.
    pub version: u64,
    pub labels: BTreeMap<String, String>,
    /// `None` for a global service.
    pub replicas: Option<u64>,
    /// The force counter of its task template.
    pub force: u64,
    /// `updating`, `paused`, `completed`, `rollback_started`, ...: the state of the last update,
    /// `None` when it was never updated.
    pub update_state: Option<String>,
    pub update_message: Option<String>,
    /// The configs and secrets its tasks get now.
    pub configs: Vec<FileRef>,
    pub secrets: Vec<FileRef>,
}

/// One task of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmTask {
    pub id: String,
    pub service_id: String,
    /// The slot of a replicated service's task; `None` for a global one.
    pub slot: Option<u64>,
    pub node_id: String,
    /// `running` while the cluster wants it; `shutdown` once it is replaced.
    pub desired_state: String,
    /// `new`, `pending`, `assigned`, `preparing`, `starting` (a healthcheck not passed yet),
    /// `running`, `complete`, `failed`, `rejected`, `shutdown`, ...
    pub state: String,
    /// Why it failed or was rejected.
    pub error: Option<String>,
    pub exit_code: i64,
    /// The image reference it runs (pinned: `name:tag@sha256:...`).
    pub image: String,
    /// Its container's labels.
    pub labels: BTreeMap<String, String>,
    /// Since when it is in its state, nanoseconds since the epoch.
    pub since_nanos: i64,
    /// Published ports: container port, host port on its node, protocol.
    pub host_ports: Vec<(u16, u16, String)>,
}

impl ContainerSpec {
    /// The fields of this container specification that a Swarm task cannot take, by the
    /// Compose key that sets each: a service carrying one must be refused, never run without it.
    pub fn swarm_unhonoured(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut flag = |set: bool, key: &'static str| {
            if set {
                out.push(key);
            }
        };
        flag(self.network_mode.is_some(), "network_mode");
        flag(self.privileged, "privileged");
        flag(!self.devices.is_empty(), "devices");
        flag(!self.device_requests.is_empty(), "gpus");
        flag(!self.device_cgroup_rules.is_empty(), "device_cgroup_rules");
        flag(self.pid_mode.is_some(), "pid");
        flag(self.ipc_mode.is_some(), "ipc");
        flag(self.uts_mode.is_some(), "uts");
        flag(self.userns_mode.is_some(), "userns_mode");
        flag(self.cgroup_parent.is_some(), "cgroup_parent");
        flag(self.runtime.is_some(), "runtime");
        flag(self.cpu_shares.is_some(), "cpu_shares");
        flag(self.cpuset_cpus.is_some(), "cpuset");
        flag(
            self.cpu_period.is_some()
                || self.cpu_quota.is_some()
                || self.cpu_realtime_period.is_some()
                || self.cpu_realtime_runtime.is_some(),
            "cpu_period",
        );
        flag(self.memory_swap_bytes.is_some(), "memswap_limit");
        flag(self.memory_swappiness.is_some(), "mem_swappiness");
        flag(self.oom_kill_disable.is_some(), "oom_kill_disable");
        flag(!self.security_opt.is_empty(), "security_opt");
        flag(self.shm_size_bytes.is_some(), "shm_size");
        flag(!self.storage_opt.is_empty(), "storage_opt");
        flag(self.blkio != crate::Blkio::default(), "blkio_config");
        flag(!self.port_bindings.is_empty(), "ports");
        flag(self.domainname.is_some(), "domainname");
        flag(!self.tmpfs.is_empty(), "tmpfs");
        flag(!self.dns_options.is_empty(), "dns_opt");
        out
    }
}

fn restart_condition(s: &str) -> Option<TaskSpecRestartPolicyConditionEnum> {
    match s {
        "none" | "no" => Some(TaskSpecRestartPolicyConditionEnum::NONE),
        "on-failure" => Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE),
        "any" | "always" | "unless-stopped" => Some(TaskSpecRestartPolicyConditionEnum::ANY),
        _ => None,
    }
}

impl SwarmServiceSpec {
    fn body(&self) -> bollard::models::ServiceSpec {
        let c = &self.container;
        let container_spec = TaskSpecContainerSpec {
            image: Some(c.image.clone()),
            labels: opt_map(c.labels.clone()),
            // a Compose `entrypoint` replaces the image's; `command` its arguments
            command: c.entrypoint.clone(),
            args: c.cmd.clone(),
            hostname: c.hostname.clone(),
            env: opt_vec(c.env.clone()),
            dir: c.working_dir.clone(),
            user: c.user.clone(),
            groups: opt_vec(c.group_add.clone()),
            tty: c.tty,
            open_stdin: c.open_stdin,
            read_only: c.read_only.then_some(true),
            mounts: opt_vec(c.mounts.iter().map(mount).collect()),
            stop_signal: c.stop_signal.clone(),
            stop_grace_period: c.stop_timeout_secs.map(|s| s.saturating_mul(1_000_000_000)),
            health_check: c.healthcheck.as_ref().map(|h| HealthConfig {
                test: Some(h.test.clone()),
                interval: h.interval_ns,
                timeout: h.timeout_ns,
                retries: h.retries,
                start_period: h.start_period_ns,
                start_interval: h.start_interval_ns,
            }),
            hosts: opt_vec(
                c.extra_hosts
                    .iter()
                    .map(|h| match h.split_once(':') {
                        // `name:ip` as Compose writes it, `ip name` as a task takes it
                        Some((name, ip)) => format!("{ip} {name}"),
                        None => h.clone(),
                    })
                    .collect(),
            ),
            dns_config: (!c.dns.is_empty() || !c.dns_search.is_empty()).then(|| {
                TaskSpecContainerSpecDnsConfig {
                    nameservers: opt_vec(c.dns.clone()),
                    search: opt_vec(c.dns_search.clone()),
                    options: None,
                }
            }),
            oom_score_adj: c.oom_score_adj,
            init: c.init,
            sysctls: opt_map(c.sysctls.clone()),
            capability_add: opt_vec(c.cap_add.clone()),
            capability_drop: opt_vec(c.cap_drop.clone()),
            ulimits: opt_vec(
                c.ulimits
                    .iter()
                    .map(|(name, (soft, hard))| ResourcesUlimits {
                        name: Some(name.clone()),
                        soft: Some(*soft),
                        hard: Some(*hard),
                    })
                    .collect(),
            ),
            configs: opt_vec(
                self.configs
                    .iter()
                    .map(|f| TaskSpecContainerSpecConfigs {
                        file: Some(TaskSpecContainerSpecFile1 {
                            name: Some(f.target.clone()),
                            uid: Some(f.uid.clone()),
                            gid: Some(f.gid.clone()),
                            mode: Some(f.mode),
                        }),
                        runtime: None,
                        config_id: Some(f.id.clone()),
                        config_name: Some(f.name.clone()),
                    })
                    .collect(),
            ),
            secrets: opt_vec(
                self.secrets
                    .iter()
                    .map(|f| TaskSpecContainerSpecSecrets {
                        file: Some(TaskSpecContainerSpecFile {
                            name: Some(f.target.clone()),
                            uid: Some(f.uid.clone()),
                            gid: Some(f.gid.clone()),
                            mode: Some(f.mode),
                        }),
                        secret_id: Some(f.id.clone()),
                        secret_name: Some(f.name.clone()),
                    })
                    .collect(),
            ),
            ..Default::default()
        };
        let limits = (c.nano_cpus.is_some() || c.memory_bytes.is_some() || c.pids_limit.is_some())
            .then_some(Limit {
                nano_cpus: c.nano_cpus,
                memory_bytes: c.memory_bytes,
                pids: c.pids_limit,
            });
        let reserved_memory = self.reserved_memory_bytes.or(c.memory_reservation_bytes);
        let reservations = (self.reserved_nano_cpus.is_some() || reserved_memory.is_some())
            .then_some(ResourceObject {
                nano_cpus: self.reserved_nano_cpus,
                memory_bytes: reserved_memory,
                generic_resources: None,
            });
        let condition = self.restart.condition.clone().or_else(|| {
            c.restart
                .as_ref()
                .map(|(name, _)| name.clone())
                .filter(|n| !n.is_empty())
        });
        let max_attempts = self
            .restart
            .max_attempts
            .or_else(|| c.restart.as_ref().map(|(_, n)| *n).filter(|n| *n > 0));
        let update = ServiceSpecUpdateConfig {
            parallelism: Some(self.update.parallelism),
            delay: Some(self.update.delay_ns),
            // capstan, not the cluster, decides what a failed update becomes
            failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::PAUSE),
            monitor: Some(self.update.monitor_ns),
            max_failure_ratio: Some(0.0),
            order: Some(if self.update.start_first {
                ServiceSpecUpdateConfigOrderEnum::START_FIRST
            } else {
                ServiceSpecUpdateConfigOrderEnum::STOP_FIRST
            }),
        };
        bollard::models::ServiceSpec {
            name: Some(self.name.clone()),
            labels: opt_map(self.labels.clone()),
            task_template: Some(TaskSpec {
                container_spec: Some(container_spec),
                resources: (limits.is_some() || reservations.is_some()).then(|| {
                    TaskSpecResources {
                        limits,
                        reservations,
                        ..Default::default()
                    }
                }),
                restart_policy: Some(TaskSpecRestartPolicy {
                    condition: condition.as_deref().and_then(restart_condition),
                    delay: self.restart.delay_ns,
                    max_attempts,
                    window: self.restart.window_ns,
                }),
                placement: Some(TaskSpecPlacement {
                    constraints: opt_vec(self.constraints.clone()),
                    preferences: opt_vec(
                        self.spread
                            .iter()
                            .map(|d| TaskSpecPlacementPreferences {
                                spread: Some(TaskSpecPlacementSpread {
                                    spread_descriptor: Some(d.clone()),
                                }),
                            })
                            .collect(),
                    ),
                    max_replicas: self.max_replicas_per_node,
                    platforms: None,
                }),
                force_update: Some(self.force),
                networks: opt_vec(
                    c.networks
                        .iter()
                        .map(|a| NetworkAttachmentConfig {
                            target: Some(a.network.clone()),
                            aliases: opt_vec(a.aliases.clone()),
                            driver_opts: None,
                        })
                        .collect(),
                ),
                log_driver: c.logging.as_ref().map(|(name, options)| TaskSpecLogDriver {
                    name: Some(name.clone()),
                    options: opt_map(options.clone()),
                }),
                ..Default::default()
            }),
            mode: Some(match self.replicas {
                Some(n) => ServiceSpecMode {
                    replicated: Some(ServiceSpecModeReplicated {
                        replicas: Some(i64::try_from(n).unwrap_or(i64::MAX)),
                    }),
                    ..Default::default()
                },
                None => ServiceSpecMode {
                    global: Some(global_mode()),
                    ..Default::default()
                },
            }),
            update_config: Some(update.clone()),
            rollback_config: Some(bollard::models::ServiceSpecRollbackConfig {
                parallelism: update.parallelism,
                delay: update.delay,
                failure_action: Some(
                    bollard::models::ServiceSpecRollbackConfigFailureActionEnum::PAUSE,
                ),
                monitor: update.monitor,
                max_failure_ratio: update.max_failure_ratio,
                order: Some(if self.update.start_first {
                    bollard::models::ServiceSpecRollbackConfigOrderEnum::START_FIRST
                } else {
                    bollard::models::ServiceSpecRollbackConfigOrderEnum::STOP_FIRST
                }),
            }),
            // names resolve to each task's address (no virtual IP: this needs no IPVS)
            endpoint_spec: Some(EndpointSpec {
                mode: Some(EndpointSpecModeEnum::DNSRR),
                ports: opt_vec(
                    self.ports
                        .iter()
                        .map(|(port, protocol)| EndpointPortConfig {
                            protocol: protocol.parse().ok(),
                            target_port: Some(i64::from(*port)),
                            published_port: None,
                            publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
                            name: None,
                        })
                        .collect(),
                ),
            }),
            ..Default::default()
        }
    }
}

/// `global: {}`, as bollard types the empty object.
#[expect(
    clippy::zero_sized_map_values,
    reason = "bollard's type for the API's empty object"
)]
fn global_mode() -> HashMap<(), ()> {
    HashMap::new()
}

/// A task file's name, uid, gid and mode, as the API answers them.
type FileTarget = (Option<String>, Option<String>, Option<String>, Option<u32>);

fn nanos(date: Option<&String>) -> i64 {
    date.and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
        .and_then(|t| t.timestamp_nanos_opt())
        .unwrap_or_default()
}

impl Engine {
    /// The services carrying label `key` (with `value`, when given).
    ///
    /// # Errors
    /// [`Error::Api`] when this engine manages no Swarm, [`Error::Unreachable`].
    pub async fn swarm_services(
        &self,
        key: &str,
        value: Option<&str>,
    ) -> Result<Vec<SwarmService>, Error> {
        let label = value.map_or_else(|| key.to_owned(), |v| format!("{key}={v}"));
        let options = bollard::query_parameters::ListServicesOptions {
            filters: Some(HashMap::from([("label".to_owned(), vec![label])])),
            status: None,
        };
        let services = self
            .client()?
            .list_services(Some(options))
            .await
            .map_err(|e| self.classify(e))?;
        Ok(services
            .into_iter()
            .map(|s| {
                let spec = s.spec.unwrap_or_default();
                let status = s.update_status.unwrap_or_default();
                let container = spec
                    .task_template
                    .as_ref()
                    .and_then(|t| t.container_spec.clone())
                    .unwrap_or_default();
                let file_ref = |id: Option<String>, name: Option<String>, f: FileTarget| FileRef {
                    id: id.unwrap_or_default(),
                    name: name.unwrap_or_default(),
                    target: f.0.unwrap_or_default(),
                    uid: f.1.unwrap_or_default(),
                    gid: f.2.unwrap_or_default(),
                    mode: f.3.unwrap_or(0o444),
                };
                let configs = container
                    .configs
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| {
                        let f = c.file.unwrap_or_default();
                        file_ref(c.config_id, c.config_name, (f.name, f.uid, f.gid, f.mode))
                    })
                    .collect();
                let secrets = container
                    .secrets
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| {
                        let f = c.file.unwrap_or_default();
                        file_ref(c.secret_id, c.secret_name, (f.name, f.uid, f.gid, f.mode))
                    })
                    .collect();
                SwarmService {
                    id: s.id.unwrap_or_default(),
                    name: spec.name.unwrap_or_default(),
                    version: s.version.and_then(|v| v.index).unwrap_or_default(),
                    labels: spec.labels.unwrap_or_default().into_iter().collect(),
                    replicas: spec.mode.as_ref().and_then(|m| {
                        m.replicated
                            .as_ref()
                            .map(|r| u64::try_from(r.replicas.unwrap_or(1)).unwrap_or(0))
                    }),
                    force: spec
                        .task_template
                        .and_then(|t| t.force_update)
                        .unwrap_or_default(),
                    update_state: status
                        .state
                        .map(|s| s.to_string())
                        .filter(|s| !s.is_empty()),
                    update_message: status.message,
                    configs,
                    secrets,
                }
            })
            .collect())
    }

    /// Creates a service; returns its id.
    ///
    /// # Errors
    /// [`Error::Api`] when the manager refuses the specification (its message names the
    /// setting) or the name is taken, [`Error::Unreachable`].
    pub async fn create_swarm_service(&self, spec: &SwarmServiceSpec) -> Result<String, Error> {
        let created = self
            .client()?
            .create_service(spec.body(), None)
            .await
            .map_err(|e| self.classify(e))?;
        Ok(created.id.unwrap_or_default())
    }

    /// Updates service `id`, at `version`, to `spec`: the cluster replaces its tasks as
    /// `spec.update` says.
    ///
    /// # Errors
    /// [`Error::Api`] (a stale version: someone else updated it meanwhile),
    /// [`Error::Unreachable`].
    pub async fn update_swarm_service(
        &self,
        id: &str,
        version: u64,
        spec: &SwarmServiceSpec,
    ) -> Result<(), Error> {
        let options = bollard::query_parameters::UpdateServiceOptions {
            version: i32::try_from(version).unwrap_or(i32::MAX),
            ..Default::default()
        };
        let answer = self
            .client()?
            .update_service(id, spec.body(), options, None)
            .await
            .map_err(|e| self.classify(e))?;
        for warning in answer.warnings.unwrap_or_default() {
            tracing::warn!(service = %spec.name, warning, "the Swarm manager warns about an update");
        }
        Ok(())
    }

    /// Removes a service (its tasks stop on their nodes).
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Unreachable`].
    pub async fn remove_swarm_service(&self, id: &str) -> Result<(), Error> {
        self.client()?
            .delete_service(id)
            .await
            .map_err(|e| self.classify(e))
    }

    /// Every task of the given services (by id or name), old ones included.
    ///
    /// # Errors
    /// [`Error::Unreachable`], [`Error::Api`].
    pub async fn swarm_tasks(&self, services: &[String]) -> Result<Vec<SwarmTask>, Error> {
        if services.is_empty() {
            return Ok(Vec::new());
        }
        let options = bollard::query_parameters::ListTasksOptions {
            filters: Some(HashMap::from([("service".to_owned(), services.to_vec())])),
        };
        let tasks = self
            .client()?
            .list_tasks(Some(options))
            .await
            .map_err(|e| self.classify(e))?;
        Ok(tasks
            .into_iter()
            .map(|t| {
                let status = t.status.unwrap_or_default();
                let container = t.spec.and_then(|s| s.container_spec).unwrap_or_default();
                SwarmTask {
                    id: t.id.unwrap_or_default(),
                    service_id: t.service_id.unwrap_or_default(),
                    slot: t.slot.and_then(|s| u64::try_from(s).ok()),
                    node_id: t.node_id.unwrap_or_default(),
                    desired_state: t.desired_state.map(|s| s.to_string()).unwrap_or_default(),
                    state: status.state.map(|s| s.to_string()).unwrap_or_default(),
                    error: status.err.filter(|e| !e.is_empty()),
                    exit_code: status
                        .container_status
                        .and_then(|c| c.exit_code)
                        .unwrap_or_default(),
                    image: container.image.unwrap_or_default(),
                    labels: container.labels.unwrap_or_default().into_iter().collect(),
                    since_nanos: nanos(status.timestamp.as_ref()),
                    host_ports: status
                        .port_status
                        .and_then(|p| p.ports)
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|p| {
                            Some((
                                u16::try_from(p.target_port?).ok()?,
                                u16::try_from(p.published_port?).ok()?,
                                p.protocol
                                    .map_or_else(|| "tcp".to_owned(), |p| p.to_string()),
                            ))
                        })
                        .collect(),
                }
            })
            .collect())
    }

    /// The last `lines` lines a task wrote, for a failure's message.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Unreachable`].
    pub async fn swarm_task_logs(&self, task: &str, lines: usize) -> Result<String, Error> {
        let docker = self.client()?;
        self.collect_tail(docker.task_logs(task, Some(crate::spec::tail_options(lines))))
            .await
    }

    /// The id of the Swarm config (`secret` false) or secret named `name`, made with `data`
    /// and `labels` unless one of that name exists: objects named by their content's hash are
    /// never changed, only made and removed.
    ///
    /// # Errors
    /// [`Error::Api`] (the manager refuses the object), [`Error::Unreachable`].
    pub async fn ensure_swarm_object(
        &self,
        secret: bool,
        name: &str,
        labels: &BTreeMap<String, String>,
        data: &[u8],
    ) -> Result<String, Error> {
        use base64::Engine as _;
        if let Some(id) = self.swarm_object_id(secret, name).await? {
            return Ok(id);
        }
        let docker = self.client()?;
        let data = Some(base64::engine::general_purpose::STANDARD.encode(data));
        let created = if secret {
            docker
                .create_secret(bollard::models::SecretSpec {
                    name: Some(name.to_owned()),
                    labels: opt_map(labels.clone()),
                    data,
                    ..Default::default()
                })
                .await
        } else {
            docker
                .create_config(bollard::models::ConfigSpec {
                    name: Some(name.to_owned()),
                    labels: opt_map(labels.clone()),
                    data,
                    ..Default::default()
                })
                .await
        };
        match created {
            Ok(id) => Ok(id.id),
            // made meanwhile by another deploy of the same content
            Err(e) => match self.swarm_object_id(secret, name).await? {
                Some(id) => Ok(id),
                None => Err(self.classify(e)),
            },
        }
    }

    /// The Swarm configs (`secret` false) or secrets carrying label `key=value`: id and name.
    ///
    /// # Errors
    /// [`Error::Api`], [`Error::Unreachable`].
    pub async fn swarm_objects(
        &self,
        secret: bool,
        key: &str,
        value: &str,
    ) -> Result<Vec<(String, String)>, Error> {
        let filter = ("label".to_owned(), vec![format!("{key}={value}")]);
        self.list_objects(secret, filter).await
    }

    /// The configs or secrets matching `filter`: id and name.
    async fn list_objects(
        &self,
        secret: bool,
        filter: (String, Vec<String>),
    ) -> Result<Vec<(String, String)>, Error> {
        let filters = Some(HashMap::from([filter]));
        let docker = self.client()?;
        let named = |id: Option<String>, name: Option<String>| {
            (id.unwrap_or_default(), name.unwrap_or_default())
        };
        Ok(if secret {
            docker
                .list_secrets(Some(bollard::query_parameters::ListSecretsOptions {
                    filters,
                }))
                .await
                .map_err(|e| self.classify(e))?
                .into_iter()
                .map(|s| named(s.id, s.spec.and_then(|s| s.name)))
                .collect()
        } else {
            docker
                .list_configs(Some(bollard::query_parameters::ListConfigsOptions {
                    filters,
                }))
                .await
                .map_err(|e| self.classify(e))?
                .into_iter()
                .map(|s| named(s.id, s.spec.and_then(|s| s.name)))
                .collect()
        })
    }

    /// Removes a Swarm config or secret (the manager refuses one a service uses).
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Api`] (in use), [`Error::Unreachable`].
    pub async fn remove_swarm_object(&self, secret: bool, id: &str) -> Result<(), Error> {
        let docker = self.client()?;
        let removed = if secret {
            docker.delete_secret(id).await
        } else {
            docker.delete_config(id).await
        };
        removed.map_err(|e| self.classify(e))
    }

    /// The id of the Swarm config or secret named exactly `name`, if there is one.
    ///
    /// # Errors
    /// [`Error::Api`], [`Error::Unreachable`].
    pub async fn swarm_object_id(&self, secret: bool, name: &str) -> Result<Option<String>, Error> {
        // the name filter matches prefixes: keep the exact one
        let found = self
            .list_objects(secret, ("name".to_owned(), vec![name.to_owned()]))
            .await?;
        Ok(found.into_iter().find(|(_, n)| n == name).map(|(id, _)| id))
    }

    /// The digest the registry names for `image` now, asked by this engine (with its
    /// credentials and registry settings).
    ///
    /// # Errors
    /// [`Error::NotFound`] when the registry has no such image, [`Error::Api`] when it cannot
    /// be asked, [`Error::Unreachable`].
    pub async fn registry_digest(&self, image: &str) -> Result<String, Error> {
        let found = self
            .client()?
            .inspect_registry_image(image, None)
            .await
            .map_err(|e| self.classify(e))?;
        Ok(found.descriptor.digest.unwrap_or_default())
    }
}
