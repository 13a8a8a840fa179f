//! What a container should be, in capstan's own terms, and its creation through the engine.
//! Callers (the deploy job) never see bollard's types.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, HostConfigLogConfig, Mount,
    MountBindOptions, MountBindOptionsPropagationEnum, MountTmpfsOptions, MountType,
    MountVolumeOptions, NetworkConnectRequest, NetworkCreateRequest, NetworkingConfig,
    ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::CreateContainerOptions;

use crate::{Engine, Error};

/// A container to create.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerSpec {
    pub image: String,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// `80/tcp`, ...
    pub exposed_ports: Vec<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub hostname: Option<String>,
    pub healthcheck: Option<Healthcheck>,
    pub stop_signal: Option<String>,
    pub stop_timeout_secs: Option<i64>,
    pub mounts: Vec<MountSpec>,
    /// Networks joined, the first one at creation.
    pub networks: Vec<Attachment>,
    /// `host`, `none`, `bridge` or `container:NAME` instead of `networks`.
    pub network_mode: Option<String>,
    pub pid_mode: Option<String>,
    pub ipc_mode: Option<String>,
    pub uts_mode: Option<String>,
    pub userns_mode: Option<String>,
    pub cgroup_parent: Option<String>,
    pub runtime: Option<String>,
    pub device_cgroup_rules: Vec<String>,
    pub restart: Option<(String, i64)>,
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub memory_bytes: Option<i64>,
    pub memory_reservation_bytes: Option<i64>,
    pub pids_limit: Option<i64>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub read_only: bool,
    pub security_opt: Vec<String>,
    pub privileged: bool,
    pub init: Option<bool>,
    /// Path → mount options.
    pub tmpfs: BTreeMap<String, String>,
    /// Name → (soft, hard).
    pub ulimits: BTreeMap<String, (i64, i64)>,
    pub sysctls: BTreeMap<String, String>,
    /// `host:ip`.
    pub extra_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub shm_size_bytes: Option<i64>,
    /// Driver and options.
    pub logging: Option<(String, BTreeMap<String, String>)>,
    /// Memory plus swap; -1 for unlimited swap.
    pub memory_swap_bytes: Option<i64>,
    pub memory_swappiness: Option<i64>,
    /// `0-3`, `0,2`.
    pub cpuset_cpus: Option<String>,
    /// CFS period and quota, and the real-time ones, in microseconds.
    pub cpu_period: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpu_realtime_period: Option<i64>,
    pub cpu_realtime_runtime: Option<i64>,
    pub oom_score_adj: Option<i64>,
    pub oom_kill_disable: Option<bool>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    pub group_add: Vec<String>,
    pub domainname: Option<String>,
    pub open_stdin: Option<bool>,
    pub tty: Option<bool>,
    pub storage_opt: BTreeMap<String, String>,
    pub blkio: Blkio,
    /// Ports the engine publishes itself: `53/udp` → (host address, host port).
    pub port_bindings: BTreeMap<String, (String, String)>,
    /// Host device, path in the container, cgroup permissions.
    pub devices: Vec<(String, String, String)>,
    pub device_requests: Vec<DeviceRequestSpec>,
}

/// Devices from the engine's drivers (GPUs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceRequestSpec {
    pub driver: Option<String>,
    /// -1 for all.
    pub count: Option<i64>,
    pub device_ids: Vec<String>,
    pub capabilities: Vec<String>,
    pub options: BTreeMap<String, String>,
}

/// Block IO weight and throttles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blkio {
    pub weight: Option<u16>,
    /// Device path → weight.
    pub weight_device: Vec<(String, u16)>,
    /// Device path → bytes per second.
    pub read_bps: Vec<(String, i64)>,
    pub write_bps: Vec<(String, i64)>,
    /// Device path → operations per second.
    pub read_iops: Vec<(String, i64)>,
    pub write_iops: Vec<(String, i64)>,
}

fn throttles(t: &[(String, i64)]) -> Option<Vec<bollard::models::ThrottleDevice>> {
    opt_vec(
        t.iter()
            .map(|(path, rate)| bollard::models::ThrottleDevice {
                path: Some(path.clone()),
                rate: Some(*rate),
            })
            .collect(),
    )
}

/// A container's place on a network: its aliases there, and a fixed address if it has one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attachment {
    pub network: String,
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
    pub ipv6_address: Option<String>,
}

impl Attachment {
    fn endpoint(&self) -> EndpointSettings {
        let fixed = self.ipv4_address.is_some() || self.ipv6_address.is_some();
        EndpointSettings {
            aliases: opt_vec(self.aliases.clone()),
            ipam_config: fixed.then(|| bollard::models::EndpointIpamConfig {
                ipv4_address: self.ipv4_address.clone(),
                ipv6_address: self.ipv6_address.clone(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// A network to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkSpec {
    pub name: String,
    /// `bridge` when `None`.
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub internal: bool,
    pub attachable: bool,
    pub enable_ipv6: bool,
    /// Address management; the engine's own pools when `None`.
    pub ipam: Option<IpamSpec>,
    pub labels: BTreeMap<String, String>,
}

/// A network's address management.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpamSpec {
    pub driver: Option<String>,
    pub pools: Vec<IpamPoolSpec>,
    pub options: BTreeMap<String, String>,
}

/// One address pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct IpamPoolSpec {
    pub subnet: Option<String>,
    pub ip_range: Option<String>,
    pub gateway: Option<String>,
    pub aux_addresses: BTreeMap<String, String>,
}

/// A named volume to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeSpec {
    pub name: String,
    /// `local` when `None`.
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

impl NetworkSpec {
    fn request(&self) -> NetworkCreateRequest {
        NetworkCreateRequest {
            name: self.name.clone(),
            driver: self.driver.clone(),
            internal: self.internal.then_some(true),
            attachable: self.attachable.then_some(true),
            enable_ipv6: self.enable_ipv6.then_some(true),
            options: opt_map(self.driver_opts.clone()),
            labels: opt_map(self.labels.clone()),
            ipam: self.ipam.as_ref().map(|i| bollard::models::Ipam {
                driver: i.driver.clone(),
                config: opt_vec(
                    i.pools
                        .iter()
                        .map(|p| bollard::models::IpamConfig {
                            subnet: p.subnet.clone(),
                            ip_range: p.ip_range.clone(),
                            gateway: p.gateway.clone(),
                            auxiliary_addresses: opt_map(p.aux_addresses.clone()),
                        })
                        .collect(),
                ),
                options: opt_map(i.options.clone()),
            }),
            ..Default::default()
        }
    }

    /// What an existing network has otherwise than this spec asks, for people.
    fn differences(&self, have: &bollard::models::NetworkInspect) -> Vec<String> {
        let mut out = Vec::new();
        let want_driver = self.driver.as_deref().unwrap_or("bridge");
        let have_driver = have.driver.as_deref().unwrap_or("bridge");
        if want_driver != have_driver {
            out.push(format!("driver {have_driver} (wants {want_driver})"));
        }
        for (name, want, got) in [
            ("internal", self.internal, have.internal.unwrap_or(false)),
            (
                "attachable",
                self.attachable,
                have.attachable.unwrap_or(false),
            ),
            (
                "enable_ipv6",
                self.enable_ipv6,
                have.enable_ipv6.unwrap_or(false),
            ),
        ] {
            if want != got {
                out.push(format!("{name} {got} (wants {want})"));
            }
        }
        for (k, v) in &self.driver_opts {
            let got = have.options.as_ref().and_then(|o| o.get(k));
            if got != Some(v) {
                out.push(format!(
                    "driver option {k} {} (wants {v})",
                    got.map_or("unset", String::as_str)
                ));
            }
        }
        if let Some(ipam) = self.ipam.as_ref().filter(|i| !i.pools.is_empty()) {
            let pools = |list: Vec<(Option<String>, Option<String>, Option<String>)>| {
                let mut list = list;
                list.sort();
                list
            };
            let want = pools(
                ipam.pools
                    .iter()
                    .map(|p| (p.subnet.clone(), p.ip_range.clone(), p.gateway.clone()))
                    .collect(),
            );
            let got = pools(
                have.ipam
                    .as_ref()
                    .and_then(|i| i.config.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| (c.subnet, c.ip_range.filter(|r| !r.is_empty()), c.gateway))
                    .collect(),
            );
            // a gateway the spec leaves to the engine is whatever the engine chose
            let matches = want.len() == got.len()
                && want
                    .iter()
                    .zip(&got)
                    .all(|(w, g)| w.0 == g.0 && w.1 == g.1 && (w.2.is_none() || w.2 == g.2));
            if !matches {
                let show = |l: &[(Option<String>, Option<String>, Option<String>)]| {
                    l.iter()
                        .map(|(s, _, _)| s.clone().unwrap_or_else(|| "-".into()))
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                out.push(format!("subnets {} (wants {})", show(&got), show(&want)));
            }
        }
        out
    }
}

/// A healthcheck; durations in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Healthcheck {
    pub test: Vec<String>,
    pub interval_ns: Option<i64>,
    pub timeout_ns: Option<i64>,
    pub retries: Option<i64>,
    pub start_period_ns: Option<i64>,
    /// Engine API 1.44 and later; an older engine ignores it (the caller refuses it there).
    pub start_interval_ns: Option<i64>,
}

/// A mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSpec {
    /// A named (or anonymous, with no source) volume.
    Volume {
        source: Option<String>,
        target: String,
        read_only: bool,
        no_copy: bool,
    },
    /// A host path.
    Bind {
        source: String,
        target: String,
        read_only: bool,
        propagation: Option<String>,
        create_host_path: bool,
    },
    /// A tmpfs.
    Tmpfs {
        target: String,
        size_bytes: Option<i64>,
        mode: Option<i64>,
    },
}

/// Stdout and stderr, the last `lines` lines.
pub(crate) fn tail_options(lines: usize) -> bollard::query_parameters::LogsOptions {
    bollard::query_parameters::LogsOptions {
        stdout: true,
        stderr: true,
        tail: lines.to_string(),
        ..Default::default()
    }
}

pub(crate) fn opt_vec<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

pub(crate) fn opt_map<K: std::hash::Hash + Eq, V>(
    m: impl IntoIterator<Item = (K, V)>,
) -> Option<HashMap<K, V>> {
    let m: HashMap<K, V> = m.into_iter().collect();
    (!m.is_empty()).then_some(m)
}

pub(crate) fn mount(m: &MountSpec) -> Mount {
    match m {
        MountSpec::Volume {
            source,
            target,
            read_only,
            no_copy,
        } => Mount {
            typ: Some(MountType::VOLUME),
            source: source.clone(),
            target: Some(target.clone()),
            read_only: Some(*read_only),
            volume_options: no_copy.then(|| MountVolumeOptions {
                no_copy: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        },
        MountSpec::Bind {
            source,
            target,
            read_only,
            propagation,
            ..
        } => Mount {
            typ: Some(MountType::BIND),
            source: Some(source.clone()),
            target: Some(target.clone()),
            read_only: Some(*read_only),
            // create_host_path is the caller's job (API 1.41 has no create_mountpoint)
            bind_options: propagation.as_deref().map(|p| MountBindOptions {
                propagation: p.parse::<MountBindOptionsPropagationEnum>().ok(),
                ..Default::default()
            }),
            ..Default::default()
        },
        MountSpec::Tmpfs {
            target,
            size_bytes,
            mode,
        } => Mount {
            typ: Some(MountType::TMPFS),
            target: Some(target.clone()),
            tmpfs_options: Some(MountTmpfsOptions {
                size_bytes: *size_bytes,
                mode: *mode,
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

impl ContainerSpec {
    fn body(&self) -> ContainerCreateBody {
        let first_network = self
            .networks
            .first()
            .map(|a| HashMap::from([(a.network.clone(), a.endpoint())]));
        ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: self.cmd.clone(),
            entrypoint: self.entrypoint.clone(),
            env: opt_vec(self.env.clone()),
            labels: opt_map(self.labels.clone()),
            exposed_ports: opt_vec(self.exposed_ports.clone()),
            user: self.user.clone(),
            working_dir: self.working_dir.clone(),
            hostname: self.hostname.clone(),
            healthcheck: self.healthcheck.as_ref().map(|h| HealthConfig {
                test: Some(h.test.clone()),
                interval: h.interval_ns,
                timeout: h.timeout_ns,
                retries: h.retries,
                start_period: h.start_period_ns,
                start_interval: h.start_interval_ns,
            }),
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout_secs,
            domainname: self.domainname.clone(),
            open_stdin: self.open_stdin,
            tty: self.tty,
            networking_config: first_network.map(|endpoints| NetworkingConfig {
                endpoints_config: Some(endpoints),
            }),
            host_config: Some(HostConfig {
                mounts: opt_vec(self.mounts.iter().map(mount).collect()),
                port_bindings: opt_map(self.port_bindings.iter().map(|(port, (ip, host))| {
                    (
                        port.clone(),
                        Some(vec![bollard::models::PortBinding {
                            host_ip: Some(ip.clone()),
                            host_port: Some(host.clone()),
                        }]),
                    )
                })),
                network_mode: self
                    .network_mode
                    .clone()
                    .or_else(|| self.networks.first().map(|a| a.network.clone())),
                restart_policy: self.restart.as_ref().map(|(name, count)| RestartPolicy {
                    name: name.parse::<RestartPolicyNameEnum>().ok(),
                    maximum_retry_count: (*count > 0).then_some(*count),
                }),
                nano_cpus: self.nano_cpus,
                cpu_shares: self.cpu_shares,
                memory: self.memory_bytes,
                memory_reservation: self.memory_reservation_bytes,
                pids_limit: self.pids_limit,
                cap_add: opt_vec(self.cap_add.clone()),
                cap_drop: opt_vec(self.cap_drop.clone()),
                readonly_rootfs: self.read_only.then_some(true),
                security_opt: opt_vec(self.security_opt.clone()),
                privileged: self.privileged.then_some(true),
                init: self.init,
                tmpfs: opt_map(self.tmpfs.clone()),
                ulimits: opt_vec(
                    self.ulimits
                        .iter()
                        .map(|(name, (soft, hard))| ResourcesUlimits {
                            name: Some(name.clone()),
                            soft: Some(*soft),
                            hard: Some(*hard),
                        })
                        .collect(),
                ),
                sysctls: opt_map(self.sysctls.clone()),
                extra_hosts: opt_vec(self.extra_hosts.clone()),
                dns: opt_vec(self.dns.clone()),
                shm_size: self.shm_size_bytes,
                pid_mode: self.pid_mode.clone(),
                ipc_mode: self.ipc_mode.clone(),
                uts_mode: self.uts_mode.clone(),
                userns_mode: self.userns_mode.clone(),
                cgroup_parent: self.cgroup_parent.clone(),
                runtime: self.runtime.clone(),
                device_cgroup_rules: opt_vec(self.device_cgroup_rules.clone()),
                memory_swap: self.memory_swap_bytes,
                memory_swappiness: self.memory_swappiness,
                cpuset_cpus: self.cpuset_cpus.clone(),
                cpu_period: self.cpu_period,
                cpu_quota: self.cpu_quota,
                cpu_realtime_period: self.cpu_realtime_period,
                cpu_realtime_runtime: self.cpu_realtime_runtime,
                oom_score_adj: self.oom_score_adj,
                oom_kill_disable: self.oom_kill_disable,
                dns_search: opt_vec(self.dns_search.clone()),
                dns_options: opt_vec(self.dns_options.clone()),
                group_add: opt_vec(self.group_add.clone()),
                storage_opt: opt_map(self.storage_opt.clone()),
                blkio_weight: self.blkio.weight,
                blkio_weight_device: opt_vec(
                    self.blkio
                        .weight_device
                        .iter()
                        .map(|(path, w)| bollard::models::ResourcesBlkioWeightDevice {
                            path: Some(path.clone()),
                            weight: Some(usize::from(*w)),
                        })
                        .collect(),
                ),
                devices: opt_vec(
                    self.devices
                        .iter()
                        .map(|(host, container, perms)| bollard::models::DeviceMapping {
                            path_on_host: Some(host.clone()),
                            path_in_container: Some(container.clone()),
                            cgroup_permissions: Some(perms.clone()),
                        })
                        .collect(),
                ),
                device_requests: opt_vec(
                    self.device_requests
                        .iter()
                        .map(|r| bollard::models::DeviceRequest {
                            driver: r.driver.clone(),
                            count: r.count,
                            device_ids: opt_vec(r.device_ids.clone()),
                            capabilities: Some(vec![r.capabilities.clone()]),
                            options: opt_map(r.options.clone()),
                        })
                        .collect(),
                ),
                blkio_device_read_bps: throttles(&self.blkio.read_bps),
                blkio_device_write_bps: throttles(&self.blkio.write_bps),
                blkio_device_read_iops: throttles(&self.blkio.read_iops),
                blkio_device_write_iops: throttles(&self.blkio.write_iops),
                log_config: self
                    .logging
                    .as_ref()
                    .map(|(driver, options)| HostConfigLogConfig {
                        typ: Some(driver.clone()),
                        config: opt_map(options.clone()),
                    }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

impl Engine {
    /// Creates (does not start) a container from `spec` named `name`, joined to every network
    /// of the spec (the engine takes one at creation; the others are connected right after).
    /// Returns its id.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the image or a network is missing, [`Error::Api`] when the
    /// engine rejects a setting (its message names it), [`Error::Unreachable`].
    pub async fn create_from_spec(
        &self,
        name: &str,
        spec: &ContainerSpec,
    ) -> Result<String, Error> {
        let options = CreateContainerOptions {
            name: Some(name.to_owned()),
            ..Default::default()
        };
        let created = self
            .client()?
            .create_container(Some(options), spec.body())
            .await
            .map_err(|e| self.classify(e))?;
        // settings this engine's kernel cannot honour are discarded with a warning: said
        for warning in &created.warnings {
            tracing::warn!(container = name, engine_said = %warning, "the engine discarded a setting");
        }
        let id = created.id;
        for a in spec.networks.iter().skip(1) {
            let request = NetworkConnectRequest {
                container: id.clone(),
                endpoint_config: Some(a.endpoint()),
            };
            if let Err(e) = self.client()?.connect_network(&a.network, request).await {
                // half-made containers are not left behind
                let _ = self.remove_container(&id, true).await;
                return Err(self.classify(e));
            }
        }
        Ok(id)
    }

    /// One reading of the engine's stats API for a container (`stream=false&one-shot=true`),
    /// as JSON: what tools without cgroup access poll, and the baseline capstan's collector is
    /// measured against.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Unreachable`].
    pub async fn stats_once(&self, id: &str) -> Result<serde_json::Value, Error> {
        use futures_util::StreamExt;
        let options = bollard::query_parameters::StatsOptions {
            stream: false,
            one_shot: true,
        };
        let mut stream = self.client()?.stats(id, Some(options));
        let first = stream
            .next()
            .await
            .ok_or_else(|| Error::Api {
                status: 0,
                message: format!("the engine sent no stats for {id}"),
            })?
            .map_err(|e| self.classify(e))?;
        serde_json::to_value(first).map_err(|e| Error::Api {
            status: 0,
            message: format!("cannot encode stats: {e}"),
        })
    }

    /// The engine's own inspect document of a container, as JSON (for checks and diffs).
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Unreachable`].
    pub async fn inspect_container_json(&self, id: &str) -> Result<serde_json::Value, Error> {
        let c = self
            .client()?
            .inspect_container(id, None)
            .await
            .map_err(|e| self.classify(e))?;
        serde_json::to_value(c).map_err(|e| Error::Api {
            status: 0,
            message: format!("cannot encode inspect document: {e}"),
        })
    }

    /// Creates the network `spec` describes unless it exists. An existing one whose
    /// settings differ from the spec's (driver, internal, attachable, IPv6, address pools,
    /// driver options) is not changed: [`Error::Differs`] says what differs.
    ///
    /// # Errors
    /// [`Error::Differs`], [`Error::Api`] (a subnet that overlaps another network, ...),
    /// [`Error::Unreachable`].
    pub async fn ensure_network(&self, spec: &NetworkSpec) -> Result<(), Error> {
        let docker = self.client()?;
        match docker
            .inspect_network(
                &spec.name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            Ok(existing) => {
                let differs = spec.differences(&existing);
                if differs.is_empty() {
                    return Ok(());
                }
                return Err(Error::Differs {
                    what: format!("network {}", spec.name),
                    differences: differs.join(", "),
                });
            }
            Err(e) => {
                let e = self.classify(e);
                if !e.is_not_found() {
                    return Err(e);
                }
            }
        }
        let request = spec.request();
        // another engine on the host starting up rebuilds the shared iptables chains; a create
        // that lands in that moment fails with "Chain 'DOCKER' does not exist": try again
        let mut attempt = 0;
        loop {
            match docker.create_network(request.clone()).await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    let e = self.classify(e);
                    attempt += 1;
                    if attempt >= 5 || !e.to_string().contains("iptables") {
                        return Err(e);
                    }
                    tracing::warn!(network = %spec.name, error = %e, "the engine could not program iptables; trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
                }
            }
        }
    }

    /// Creates the named volume `spec` describes unless it exists (the engine refuses one that
    /// exists with another driver).
    ///
    /// # Errors
    /// [`Error::Api`], [`Error::Unreachable`].
    pub async fn ensure_volume(&self, spec: &VolumeSpec) -> Result<(), Error> {
        let request = VolumeCreateRequest {
            name: Some(spec.name.clone()),
            driver: spec.driver.clone(),
            driver_opts: opt_map(spec.driver_opts.clone()),
            labels: opt_map(spec.labels.clone()),
            ..Default::default()
        };
        // creating an existing volume is a no-op for the engine
        self.client()?
            .create_volume(request)
            .await
            .map(drop)
            .map_err(|e| self.classify(e))
    }

    /// Removes a network (test and `down` clean-up).
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Api`], [`Error::Unreachable`].
    pub async fn remove_network(&self, name: &str) -> Result<(), Error> {
        self.client()?
            .remove_network(name)
            .await
            .map_err(|e| self.classify(e))
    }

    /// Force-disconnects every endpoint still attached to a network (`docker network disconnect
    /// -f`): a busy engine keeps a removed container's endpoint for a while, sometimes for good.
    /// Such a stale endpoint may no longer be listed on the network: `also` names containers
    /// (removed ones included) to disconnect by name too. Answers how many it disconnected.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Api`], [`Error::Unreachable`].
    pub async fn disconnect_all(&self, network: &str, also: &[String]) -> Result<usize, Error> {
        let docker = self.client()?;
        let inspected = docker
            .inspect_network(
                network,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .map_err(|e| self.classify(e))?;
        let mut endpoints: Vec<String> = inspected
            .containers
            .unwrap_or_default()
            .into_keys()
            .collect();
        endpoints.extend(also.iter().cloned());
        let mut done = 0;
        for container in endpoints {
            let request = bollard::models::NetworkDisconnectRequest {
                container,
                force: Some(true),
            };
            match docker.disconnect_network(network, request).await {
                Ok(()) => done += 1,
                Err(e) => {
                    // a name with no endpoint left is refused: nothing to do for it
                    let e = self.classify(e);
                    if e.is_unreachable() {
                        return Err(e);
                    }
                }
            }
        }
        Ok(done)
    }

    /// Removes container `id` (stopped or not) after disconnecting it from each of its
    /// networks. The engine drops a removed container's endpoints a moment later, on its own,
    /// and a busy 20.10 engine sometimes never does: the network then has an endpoint of a
    /// container that is gone, and cannot be removed. A disconnect drops the endpoint before
    /// the answer. A container already gone is no error.
    ///
    /// # Errors
    /// [`Error::Api`], [`Error::Unreachable`].
    pub async fn remove_container_detached(&self, id: &str) -> Result<(), Error> {
        let docker = self.client()?;
        let networks = match docker.inspect_container(id, None).await {
            Ok(c) => c
                .network_settings
                .and_then(|n| n.networks)
                .map(|n| n.into_keys().collect::<Vec<_>>())
                .unwrap_or_default(),
            Err(e) => match self.classify(e) {
                Error::NotFound { .. } => return Ok(()),
                e => return Err(e),
            },
        };
        for network in networks {
            let request = bollard::models::NetworkDisconnectRequest {
                container: id.to_owned(),
                force: Some(true),
            };
            // a network removed meanwhile, or an endpoint gone already: nothing left to drop
            if let Err(e) = docker.disconnect_network(&network, request).await {
                let e = self.classify(e);
                if e.is_unreachable() {
                    return Err(e);
                }
            }
        }
        match self.remove_container(id, true).await {
            Err(Error::NotFound { .. }) | Ok(()) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes a volume.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Api`] (in use), [`Error::Unreachable`].
    pub async fn remove_volume(&self, name: &str) -> Result<(), Error> {
        self.client()?
            .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
            .map_err(|e| self.classify(e))
    }
}

/// A container's state as rollouts need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatus {
    /// `created`, `running`, `exited`, ...
    pub state: String,
    /// `starting`, `healthy`, `unhealthy`; `None` without a healthcheck.
    pub health: Option<String>,
    /// Exit code once exited.
    pub exit_code: i64,
    /// The last healthcheck output, when there is one.
    pub health_output: Option<String>,
    /// Its IPv4 address on each network it is attached to, by network name.
    pub addresses: BTreeMap<String, String>,
}

impl Engine {
    /// State, health and exit code of a container; `Ok(None)` when it is gone.
    ///
    /// # Errors
    /// [`Error::Unreachable`], [`Error::Api`].
    pub async fn container_status(&self, id: &str) -> Result<Option<ContainerStatus>, Error> {
        let c = match self.client()?.inspect_container(id, None).await {
            Ok(c) => c,
            Err(e) => {
                let e = self.classify(e);
                return if e.is_not_found() { Ok(None) } else { Err(e) };
            }
        };
        let addresses = c
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(net, ep)| Some((net, ep.ip_address.filter(|ip| !ip.is_empty())?)))
            .collect();
        let state = c.state.unwrap_or_default();
        let health = state.health.as_ref();
        Ok(Some(ContainerStatus {
            addresses,
            state: state.status.map(|s| s.to_string()).unwrap_or_default(),
            health: health
                .and_then(|h| h.status)
                .map(|s| s.to_string())
                .filter(|s| !s.is_empty() && s != "none"),
            exit_code: state.exit_code.unwrap_or_default(),
            health_output: health
                .and_then(|h| h.log.as_ref())
                .and_then(|log| log.last())
                .and_then(|l| l.output.clone())
                .map(|o| o.trim().to_owned()),
        }))
    }

    /// Stops a container, waiting up to `grace_secs` before killing it.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Api`], [`Error::Unreachable`].
    pub async fn stop_container(&self, id: &str, grace_secs: i64) -> Result<(), Error> {
        let options = bollard::query_parameters::StopContainerOptions {
            t: Some(grace_secs.clamp(0, i64::from(i32::MAX)) as i32),
            ..Default::default()
        };
        match self.client()?.stop_container(id, Some(options)).await {
            // 304: already stopped
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(self.classify(e)),
        }
    }

    /// Renames a container.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Api`] (name taken), [`Error::Unreachable`].
    pub async fn rename_container(&self, id: &str, name: &str) -> Result<(), Error> {
        let options = bollard::query_parameters::RenameContainerOptions {
            name: name.to_owned(),
        };
        self.client()?
            .rename_container(id, options)
            .await
            .map_err(|e| self.classify(e))
    }

    /// The last `lines` lines of a container's output (stdout and stderr), for error reports.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Unreachable`].
    pub async fn tail_logs(&self, id: &str, lines: usize) -> Result<String, Error> {
        let docker = self.client()?;
        self.collect_tail(docker.logs(id, Some(tail_options(lines))))
            .await
    }

    /// A log stream's chunks as one text, trailing blank lines cut.
    pub(crate) async fn collect_tail(
        &self,
        stream: impl futures_util::Stream<
            Item = Result<bollard::container::LogOutput, bollard::errors::Error>,
        >,
    ) -> Result<String, Error> {
        use futures_util::TryStreamExt;
        let chunks: Vec<bollard::container::LogOutput> =
            stream.try_collect().await.map_err(|e| self.classify(e))?;
        Ok(chunks
            .iter()
            .map(ToString::to_string)
            .collect::<String>()
            .trim_end()
            .to_owned())
    }

    /// Names of networks and volumes carrying `label=value`.
    ///
    /// # Errors
    /// [`Error::Unreachable`], [`Error::Api`].
    pub async fn labeled_networks_and_volumes(
        &self,
        label: &str,
        value: &str,
    ) -> Result<(Vec<String>, Vec<String>), Error> {
        let filter = HashMap::from([("label".to_owned(), vec![format!("{label}={value}")])]);
        let networks = self
            .client()?
            .list_networks(Some(bollard::query_parameters::ListNetworksOptions {
                filters: Some(filter.clone()),
            }))
            .await
            .map_err(|e| self.classify(e))?
            .into_iter()
            .filter_map(|n| n.name)
            .collect();
        let volumes = self
            .client()?
            .list_volumes(Some(bollard::query_parameters::ListVolumesOptions {
                filters: Some(filter),
            }))
            .await
            .map_err(|e| self.classify(e))?
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect();
        Ok((networks, volumes))
    }
}
