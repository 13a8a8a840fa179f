//! A Compose service → the container specification of one of its replicas.

use std::path::PathBuf;

use capstan_compose::Project;
use capstan_compose::model::{Command, Service};
use capstan_engine::{ContainerSpec, Healthcheck, MountSpec};

use super::names::{Names, labels};
use crate::Error;
use crate::units::{nano_cpus, shell_split};

/// The labels that say which app, service, release and replica a container is, and what it
/// publishes: capstan's alone, so a Compose file's own are dropped. (Labels that configure
/// capstan, `io.capstan.update*` and `io.capstan.logs.*`, are the file's to set.)
const IDENTITY_LABELS: &[&str] = &[
    "io.capstan.app",
    "io.capstan.service",
    "io.capstan.release",
    "io.capstan.replica",
    "io.capstan.spec",
    "io.capstan.ports",
    "com.docker.compose.project",
    "com.docker.compose.service",
    "com.docker.compose.container-number",
];

/// Where the daemon materialised configs and secrets: `<dir>/configs/<name>`,
/// `<dir>/secrets/<name>`.
#[derive(Debug, Clone, Default)]
pub struct SecretPaths {
    /// The app's directory under the data dir.
    pub dir: PathBuf,
    /// The app's directory on the daemon's tmpfs, where secrets are placed (none: under
    /// `dir` as configs are).
    pub run: Option<PathBuf>,
    /// Content digests by `configs/NAME` / `secrets/NAME`: a changed file rolls the services
    /// that use it.
    pub digests: std::collections::BTreeMap<String, String>,
}

impl SecretPaths {
    /// Files under `dir`, no digests known.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            run: None,
            digests: std::collections::BTreeMap::new(),
        }
    }

    fn path(&self, kind: &str, name: &str) -> String {
        let base = match (&self.run, kind) {
            (Some(run), "secrets") => run,
            _ => &self.dir,
        };
        base.join(kind).join(name).display().to_string()
    }
}

/// The specification of replica `replica` (from 1) of `service` in release `release`.
///
/// # Errors
/// [`Error::Value`] naming the key whose value cannot be used; [`Error::NoService`].
pub fn container_spec(
    project: &Project,
    service: &str,
    replica: u32,
    release: i64,
    secrets: &SecretPaths,
) -> Result<ContainerSpec, Error> {
    let s = project
        .services
        .get(service)
        .ok_or_else(|| Error::NoService(service.to_owned()))?;
    let names = Names::of(project);
    let bad = |key: &str, message: String| Error::Value {
        service: service.to_owned(),
        key: key.to_owned(),
        message,
    };
    let command = |key: &str, c: &Option<Command>| -> Result<Option<Vec<String>>, Error> {
        match c {
            None => Ok(None),
            Some(Command::Exec(v)) => Ok(Some(v.clone())),
            Some(Command::Shell(line)) => shell_split(line).map(Some).map_err(|m| bad(key, m)),
        }
    };
    let duration = |key: &str, v: &Option<String>| -> Result<Option<i64>, Error> {
        v.as_deref()
            .map(|d| capstan_model::parse_duration_nanos(d).map_err(|e| bad(key, e.to_string())))
            .transpose()
    };
    let size = |key: &str, v: &Option<String>| -> Result<Option<i64>, Error> {
        v.as_deref()
            .map(|d| {
                capstan_model::parse_size(d)
                    .map_err(|e| e.to_string())
                    .and_then(|b| i64::try_from(b).map_err(|_| format!("{d:?} is out of range")))
                    .map_err(|m| bad(key, m))
            })
            .transpose()
    };

    let mut spec = ContainerSpec {
        image: image_of(project, service, s),
        cmd: command("command", &s.command)?,
        entrypoint: command("entrypoint", &s.entrypoint)?,
        env: s
            .environment
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
            .collect(),
        user: s.user.clone(),
        working_dir: s.working_dir.clone(),
        hostname: s.hostname.clone(),
        stop_signal: s.stop_signal.clone(),
        stop_timeout_secs: duration("stop_grace_period", &s.stop_grace_period)?
            .map(|ns| (ns + 999_999_999) / 1_000_000_000),
        cap_add: s.cap_add.clone(),
        cap_drop: s.cap_drop.clone(),
        read_only: s.read_only.unwrap_or(false),
        security_opt: s.security_opt.clone(),
        privileged: s.privileged.unwrap_or(false),
        init: s.init,
        sysctls: s.sysctls.clone(),
        extra_hosts: s
            .extra_hosts
            .iter()
            .map(|(h, ip)| format!("{h}:{ip}"))
            .collect(),
        dns: s.dns.clone(),
        shm_size_bytes: size("shm_size", &s.shm_size)?,
        logging: s.logging.as_ref().map(|l| {
            (
                l.driver.clone().unwrap_or_else(|| "json-file".into()),
                l.options.clone(),
            )
        }),
        ..ContainerSpec::default()
    };

    // labels: the service's, the deploy section's, then capstan's and Compose's (which win);
    // none that says which app a replica belongs to may come from the file
    spec.labels = s.labels.clone();
    if let Some(d) = &s.deploy {
        spec.labels.extend(d.labels.clone());
    }
    spec.labels
        .retain(|k, _| !IDENTITY_LABELS.contains(&k.as_str()));
    spec.labels.extend(labels(
        &names.project,
        Some(service),
        &[
            ("io.capstan.release", release.to_string()),
            (
                "io.capstan.spec",
                crate::plan::desired_hash(s, &secrets.digests),
            ),
            ("io.capstan.replica", replica.to_string()),
            ("com.docker.compose.container-number", replica.to_string()),
        ],
    ));

    // ports: the container only exposes them; capstan's proxy publishes them on the host
    let published = super::route::claims(s).map_err(|e| Error::Value {
        service: service.to_owned(),
        key: "ports".into(),
        message: e.to_string(),
    })?;
    if !published.is_empty() {
        spec.labels.insert(
            super::route::PORTS_LABEL.into(),
            serde_json::to_string(&published).unwrap_or_default(),
        );
    }
    let mut exposed: Vec<String> = s
        .ports
        .iter()
        .map(|p| format!("{}/{}", p.target, p.protocol))
        .collect();
    for e in &s.expose {
        let e = if e.contains('/') {
            e.clone()
        } else {
            format!("{e}/tcp")
        };
        if !exposed.contains(&e) {
            exposed.push(e);
        }
    }
    spec.exposed_ports = exposed;
    spec.port_bindings = udp_bindings(s);

    if let Some(h) = &s.healthcheck {
        spec.healthcheck = Some(if h.disable == Some(true) {
            Healthcheck {
                test: vec!["NONE".into()],
                ..Healthcheck::default()
            }
        } else {
            Healthcheck {
                test: h.test.clone(),
                interval_ns: duration("healthcheck.interval", &h.interval)?,
                timeout_ns: duration("healthcheck.timeout", &h.timeout)?,
                retries: h.retries,
                start_period_ns: duration("healthcheck.start_period", &h.start_period)?,
                start_interval_ns: duration("healthcheck.start_interval", &h.start_interval)?,
            }
        });
    }

    for (i, v) in s.volumes.iter().enumerate() {
        let key = format!("volumes[{i}]");
        spec.mounts.push(match v.kind.as_str() {
            "bind" => MountSpec::Bind {
                source: v.source.clone().unwrap_or_default(),
                target: v.target.clone(),
                read_only: v.read_only,
                propagation: v.bind.as_ref().and_then(|b| b.propagation.clone()),
                create_host_path: v
                    .bind
                    .as_ref()
                    .and_then(|b| b.create_host_path)
                    .unwrap_or(true),
            },
            "tmpfs" => MountSpec::Tmpfs {
                target: v.target.clone(),
                size_bytes: size(
                    &format!("{key}.tmpfs.size"),
                    &v.tmpfs.as_ref().and_then(|t| t.size.clone()),
                )?,
                mode: v.tmpfs.as_ref().and_then(|t| t.mode),
            },
            _ => MountSpec::Volume {
                source: v.source.as_deref().map(|src| names.volume(project, src)),
                target: v.target.clone(),
                read_only: v.read_only,
                no_copy: v.volume.as_ref().and_then(|o| o.nocopy).unwrap_or(false),
            },
        });
    }
    for (kind, refs, default_dir) in [
        ("configs", &s.configs, None),
        ("secrets", &s.secrets, Some("/run/secrets")),
    ] {
        for r in refs {
            let target = match (&r.target, default_dir) {
                (Some(t), _) if t.starts_with('/') => t.clone(),
                (Some(t), Some(dir)) => format!("{dir}/{t}"),
                (Some(t), None) => format!("/{t}"),
                (None, Some(dir)) => format!("{dir}/{}", r.source),
                (None, None) => format!("/{}", r.source),
            };
            spec.mounts.push(MountSpec::Bind {
                source: secrets.path(kind, &r.source),
                target,
                read_only: true,
                propagation: None,
                create_host_path: false,
            });
        }
    }
    for t in &s.tmpfs {
        let (path, options) = t.split_once(':').unwrap_or((t, ""));
        spec.tmpfs.insert(path.to_owned(), options.to_owned());
    }
    spec.ulimits = s
        .ulimits
        .iter()
        .map(|(k, u)| (k.clone(), (u.soft, u.hard)))
        .collect();

    // networks: the default one unless the service names its own; aliases include the name
    let networks: Vec<(String, capstan_compose::model::ServiceNetwork)> = match &s.networks {
        Some(n) if !n.0.is_empty() => {
            n.0.iter()
                .map(|(name, cfg)| (name.clone(), cfg.clone()))
                .collect()
        }
        _ => vec![(
            "default".to_owned(),
            capstan_compose::model::ServiceNetwork::default(),
        )],
    };
    match &s.network_mode {
        // another service's namespace is its first replica's; no network of the app's
        Some(mode) => {
            spec.network_mode = Some(match s.network_service() {
                Some(other) => format!("container:{}", names.replica(project, other, 1)),
                None => mode.clone(),
            });
        }
        None => {
            spec.networks = networks
                .into_iter()
                .map(|(name, cfg)| {
                    let mut aliases = cfg.aliases;
                    aliases.insert(0, service.to_owned());
                    capstan_engine::Attachment {
                        network: names.network(project, &name),
                        aliases,
                        ipv4_address: cfg.ipv4_address,
                        ipv6_address: cfg.ipv6_address,
                    }
                })
                .collect();
        }
    }

    // restart: deploy.restart_policy wins over restart
    let policy = s.deploy.as_ref().and_then(|d| d.restart_policy.as_ref());
    spec.restart = match (policy, &s.restart) {
        (Some(p), _) => {
            let name = match p.condition.as_deref().unwrap_or("any") {
                "none" => "no",
                "on-failure" => "on-failure",
                _ => "always",
            };
            Some((name.to_owned(), p.max_attempts.unwrap_or(0)))
        }
        (None, Some(r)) => Some(match r.split_once(':') {
            Some((name, n)) => (name.to_owned(), n.parse().unwrap_or(0)),
            None => (r.clone(), 0),
        }),
        (None, None) => None,
    };
    // the service's own resource keys (the loader checked that a key given in both places
    // says the same); deploy.resources fills what they leave out, below
    spec.memory_bytes = size("mem_limit", &s.mem_limit)?;
    spec.memory_reservation_bytes = size("mem_reservation", &s.mem_reservation)?;
    spec.memory_swap_bytes = match s.memswap_limit.as_deref() {
        Some("-1") => Some(-1),
        other => size("memswap_limit", &other.map(str::to_owned))?,
    };
    spec.memory_swappiness = s.mem_swappiness;
    spec.nano_cpus = s
        .cpus
        .as_deref()
        .map(nano_cpus)
        .transpose()
        .map_err(|m| bad("cpus", m))?;
    spec.cpu_shares = s.cpu_shares;
    spec.cpuset_cpus.clone_from(&s.cpuset);
    spec.cpu_period = s.cpu_period;
    spec.cpu_quota = s.cpu_quota;
    let micros = |key: &str, v: &Option<String>| {
        v.as_deref()
            .map(|t| capstan_compose::model::micros(t).map_err(|m| bad(key, m)))
            .transpose()
    };
    spec.cpu_realtime_period = micros("cpu_rt_period", &s.cpu_rt_period)?;
    spec.cpu_realtime_runtime = micros("cpu_rt_runtime", &s.cpu_rt_runtime)?;
    spec.pids_limit = s.pids_limit;
    spec.oom_score_adj = s.oom_score_adj;
    spec.oom_kill_disable = s.oom_kill_disable;
    spec.dns_search.clone_from(&s.dns_search);
    spec.dns_options.clone_from(&s.dns_opt);
    spec.group_add.clone_from(&s.group_add);
    spec.domainname.clone_from(&s.domainname);
    spec.open_stdin = s.stdin_open;
    spec.tty = s.tty;
    spec.storage_opt.clone_from(&s.storage_opt);
    spec.pid_mode.clone_from(&s.pid);
    spec.ipc_mode.clone_from(&s.ipc);
    spec.uts_mode.clone_from(&s.uts);
    spec.userns_mode.clone_from(&s.userns_mode);
    spec.cgroup_parent.clone_from(&s.cgroup_parent);
    spec.runtime.clone_from(&s.runtime);
    spec.device_cgroup_rules.clone_from(&s.device_cgroup_rules);
    spec.devices = s
        .devices
        .iter()
        .map(|d| {
            (
                d.source.clone(),
                d.target.clone().unwrap_or_else(|| d.source.clone()),
                d.permissions.clone().unwrap_or_else(|| "rwm".into()),
            )
        })
        .collect();
    spec.device_requests = s
        .device_requests()
        .into_iter()
        .map(|r| capstan_engine::DeviceRequestSpec {
            driver: r.driver.clone(),
            count: r.count.as_deref().map(|c| {
                if c == "all" {
                    -1
                } else {
                    c.parse().unwrap_or(1)
                }
            }),
            device_ids: r.device_ids.clone(),
            capabilities: r.capabilities.clone(),
            options: r.options.clone(),
        })
        .collect();
    if let Some(b) = &s.blkio_config {
        let weight = |w: i64| {
            u16::try_from(w).map_err(|_| bad("blkio_config", format!("{w} is not 10 to 1000")))
        };
        let rates = |list: &[capstan_compose::model::BlkioRate], sized: bool| {
            list.iter()
                .map(|r| {
                    let rate = if sized {
                        size("blkio_config", &Some(r.rate.clone()))?.unwrap_or_default()
                    } else {
                        r.rate.trim().parse::<i64>().map_err(|_| {
                            bad(
                                "blkio_config",
                                format!("{}: {:?} is not a number", r.path, r.rate),
                            )
                        })?
                    };
                    Ok((r.path.clone(), rate))
                })
                .collect::<Result<Vec<_>, Error>>()
        };
        spec.blkio = capstan_engine::Blkio {
            weight: b.weight.map(weight).transpose()?,
            weight_device: b
                .weight_device
                .iter()
                .map(|w| Ok((w.path.clone(), weight(w.weight)?)))
                .collect::<Result<_, Error>>()?,
            read_bps: rates(&b.device_read_bps, true)?,
            write_bps: rates(&b.device_write_bps, true)?,
            read_iops: rates(&b.device_read_iops, false)?,
            write_iops: rates(&b.device_write_iops, false)?,
        };
    }
    if let Some(res) = s.deploy.as_ref().and_then(|d| d.resources.as_ref()) {
        if let Some(l) = &res.limits {
            if spec.nano_cpus.is_none() {
                spec.nano_cpus = l
                    .cpus
                    .as_deref()
                    .map(nano_cpus)
                    .transpose()
                    .map_err(|m| bad("deploy.resources.limits.cpus", m))?;
            }
            if spec.memory_bytes.is_none() {
                spec.memory_bytes = size("deploy.resources.limits.memory", &l.memory)?;
            }
            spec.pids_limit = spec.pids_limit.or(l.pids);
        }
        if let Some(r) = &res.reservations {
            if spec.memory_reservation_bytes.is_none() {
                spec.memory_reservation_bytes =
                    size("deploy.resources.reservations.memory", &r.memory)?;
            }
            // plain Docker has no cpu reservation: a relative weight (1 cpu = 1024) stands in,
            // unless cpu_shares says its own
            if spec.cpu_shares.is_none() {
                spec.cpu_shares = r
                    .cpus
                    .as_deref()
                    .map(|c| nano_cpus(c).map(|n| (n * 1024 / 1_000_000_000).max(2)))
                    .transpose()
                    .map_err(|m| bad("deploy.resources.reservations.cpus", m))?;
            }
        }
    }
    Ok(spec)
}

/// The UDP ports of `s` the engine publishes itself (capstan's proxy carries TCP): container
/// port → (host address, host port), loopback unless the file names an address. A container
/// holds such a host port alone, so the service rolls stop-first ([`stops_first`]).
pub fn udp_bindings(s: &Service) -> std::collections::BTreeMap<String, (String, String)> {
    s.ports
        .iter()
        .filter(|p| p.protocol == "udp")
        .filter_map(|p| {
            let host = p.published.clone()?;
            let ip = p
                .host_ip
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "127.0.0.1".to_owned());
            Some((format!("{}/udp", p.target), (ip, host)))
        })
        .collect()
}

/// Why a rollout of `s` on one engine must stop an old replica before starting its
/// replacement, if it must: a host port the engine publishes is held by one container.
pub fn stops_first(s: &Service) -> Option<String> {
    let udp: Vec<String> = udp_bindings(s)
        .into_iter()
        .map(|(port, (_, host))| format!("{host}:{port}"))
        .collect();
    (!udp.is_empty()).then(|| {
        format!(
            "its UDP ports ({}) are published by the engine, which holds a host port for one container at a time: each replica is stopped before its replacement starts (a short gap)",
            udp.join(", ")
        )
    })
}

/// A network's or volume's labels: the file's, under capstan's and Compose's
/// (`com.docker.compose.network` / `.volume` naming it).
fn object_labels(
    own: &std::collections::BTreeMap<String, String>,
    names: &Names,
    kind: &str,
    name: &str,
) -> std::collections::BTreeMap<String, String> {
    let mut l = own.clone();
    l.extend(labels(
        &names.project,
        None,
        &[(&format!("com.docker.compose.{kind}"), name.to_owned())],
    ));
    l
}

/// The engine's network for Compose network `network` of `project` (declared or the implicit
/// `default`): its name, driver and options, internal, attachable, IPv6, address pools, and
/// the file's labels under capstan's and Compose's.
pub fn network_spec(project: &Project, network: &str) -> capstan_engine::NetworkSpec {
    let names = Names::of(project);
    let def = project
        .networks
        .get(network)
        .cloned()
        .flatten()
        .unwrap_or_default();
    let l = object_labels(&def.labels, &names, "network", network);
    capstan_engine::NetworkSpec {
        name: names.network(project, network),
        driver: def.driver.clone(),
        driver_opts: def.driver_opts.clone(),
        internal: def.internal.unwrap_or(false),
        attachable: def.attachable.unwrap_or(false),
        enable_ipv6: def.enable_ipv6.unwrap_or(false),
        ipam: def.ipam.as_ref().map(|i| capstan_engine::IpamSpec {
            driver: i.driver.clone(),
            pools: i
                .config
                .iter()
                .map(|p| capstan_engine::IpamPoolSpec {
                    subnet: p.subnet.clone(),
                    ip_range: p.ip_range.clone(),
                    gateway: p.gateway.clone(),
                    aux_addresses: p.aux_addresses.clone(),
                })
                .collect(),
            options: i.options.clone(),
        }),
        labels: l,
    }
}

/// The engine's volume for Compose volume `volume` of `project`: its name, driver and
/// options, and the file's labels under capstan's and Compose's.
pub fn volume_spec(project: &Project, volume: &str) -> capstan_engine::VolumeSpec {
    let names = Names::of(project);
    let def = project
        .volumes
        .get(volume)
        .cloned()
        .flatten()
        .unwrap_or_default();
    let l = object_labels(&def.labels, &names, "volume", volume);
    capstan_engine::VolumeSpec {
        name: names.volume(project, volume),
        driver: def.driver.clone(),
        driver_opts: def.driver_opts.clone(),
        labels: l,
    }
}

/// The image a service runs: its `image`, or for a build without one, `<project>-<service>`.
fn image_of(project: &Project, service: &str, s: &Service) -> String {
    s.image
        .clone()
        .unwrap_or_else(|| format!("{}-{service}", project.name.as_deref().unwrap_or_default()))
}
