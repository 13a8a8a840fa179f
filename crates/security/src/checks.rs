//! The checks: one pure function each, over a [`Snapshot`] of the engine's documents, named by
//! its CIS Docker Benchmark id (v1.5.0 numbering, as Docker Bench for Security uses it).

use capstan_model::{ObjectKind, SecurityObject, Severity};

use crate::Snapshot;
use crate::docs::{self, Container};

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It does not apply here; says why.
    NotApplicable(String),
    /// It applied; each hit is a finding (none: it passes).
    Checked(Vec<Hit>),
}

/// One object a check found wanting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub object: SecurityObject,
    pub detail: String,
    /// Rates this finding above the check's own severity.
    pub severity: Option<Severity>,
}

/// One check.
#[derive(Debug)]
pub struct Check {
    /// The benchmark's id (`5.4`).
    pub id: &'static str,
    pub title: &'static str,
    pub severity: Severity,
    /// How to fix a finding.
    pub fix: &'static str,
    pub run: fn(&Snapshot) -> Outcome,
}

impl Check {
    /// The benchmark's section the id falls in.
    pub fn section(&self) -> &'static str {
        match self.id.split('.').next() {
            Some("1") => "Host Configuration",
            Some("2") => "Docker daemon configuration",
            Some("3") => "Docker daemon configuration files",
            Some("4") => "Container Images and Build File",
            Some("5") => "Container Runtime",
            Some("6") => "Docker Security Operations",
            Some("7") => "Docker Swarm Configuration",
            _ => "Other",
        }
    }
}

use Severity::{Critical, High, Low, Medium};

fn engine(s: &Snapshot) -> SecurityObject {
    SecurityObject {
        kind: ObjectKind::Engine,
        id: s.engine.clone(),
        name: s.engine.clone(),
    }
}

fn hit(object: SecurityObject, detail: impl Into<String>) -> Hit {
    Hit {
        object,
        detail: detail.into(),
        severity: None,
    }
}

/// An engine-level check: a finding on the engine when `found` says what is wrong.
fn on_engine(s: &Snapshot, found: Option<String>) -> Outcome {
    Outcome::Checked(found.map(|d| hit(engine(s), d)).into_iter().collect())
}

/// A check that needs the daemon's own setup (a local engine).
fn with_daemon(s: &Snapshot, f: impl FnOnce(&crate::DaemonSetup) -> Option<String>) -> Outcome {
    match &s.daemon {
        Some(d) => on_engine(s, f(d)),
        None => Outcome::NotApplicable(NO_DAEMON.into()),
    }
}

const NO_DAEMON: &str = "the engine's command line and files are not readable from here \
                         (a remote engine, or capstan runs elsewhere)";

/// A container is known by its service (`app/service`: every replica, every release, is one
/// object, and one fix in its Compose file) or else by its name (a container re-created under
/// its name is the same object).
fn container_object(c: &Container) -> SecurityObject {
    let id = c.service().unwrap_or_else(|| c.short_name().to_owned());
    SecurityObject {
        kind: ObjectKind::Container,
        name: id.clone(),
        id,
    }
}

/// A per-container check: `f` says what is wrong with one, and how bad when worse than usual.
fn each_container(
    s: &Snapshot,
    f: impl Fn(&Container) -> Option<(String, Option<Severity>)>,
) -> Outcome {
    Outcome::Checked(
        s.containers
            .iter()
            .filter_map(|c| {
                f(c).map(|(detail, severity)| Hit {
                    object: container_object(c),
                    detail,
                    severity,
                })
            })
            .collect(),
    )
}

/// [`each_container`] for checks whose findings all rate the same.
fn containers(s: &Snapshot, f: impl Fn(&Container) -> Option<String>) -> Outcome {
    each_container(s, |c| f(c).map(|d| (d, None)))
}

fn is_host(mode: &str) -> bool {
    mode == "host"
}

/// A security option as `key=value` or the older `key:value`.
fn security_opt<'a>(c: &'a Container, key: &str) -> Option<&'a str> {
    c.host_config.security_opt.iter().find_map(|o| {
        o.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix('=').or_else(|| rest.strip_prefix(':')))
            .or_else(|| (o == key).then_some(""))
    })
}

/// Capabilities that amount to the host's root, or close.
const ROOT_CAPS: [&str; 8] = [
    "ALL",
    "SYS_ADMIN",
    "SYS_MODULE",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "DAC_READ_SEARCH",
    "BPF",
    "SYS_BOOT",
];

/// Host directories a container must not see (CIS 5.5): the root and what the system runs from.
const SENSITIVE: [&str; 8] = [
    "/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr",
];

/// Sockets that hand out control of the host's containers.
const ENGINE_SOCKETS: [&str; 4] = [
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
];

fn published(c: &Container) -> impl Iterator<Item = (&str, &docs::PortBinding)> {
    c.host_config
        .port_bindings
        .iter()
        .flat_map(|(port, bindings)| bindings.iter().flatten().map(move |b| (port.as_str(), b)))
}

fn image_object(i: &docs::Image) -> SecurityObject {
    SecurityObject {
        kind: ObjectKind::Image,
        id: i.id.clone(),
        name: i.display_name(),
    }
}

fn swarm(s: &Snapshot, f: impl FnOnce(&docs::SwarmInfo) -> Vec<Hit>) -> Outcome {
    if s.info.swarm.is_manager() {
        Outcome::Checked(f(&s.info.swarm))
    } else {
        Outcome::NotApplicable("the engine is not a Swarm manager".into())
    }
}

fn swarm_object(sw: &docs::SwarmInfo) -> SecurityObject {
    SecurityObject {
        kind: ObjectKind::Swarm,
        id: sw.cluster.id.clone(),
        name: "swarm".into(),
    }
}

/// Images no container uses above this many are sprawl (CIS 6.1).
pub const UNUSED_IMAGES_MAX: usize = 20;
/// Stopped containers above this many are sprawl (CIS 6.2).
pub const STOPPED_CONTAINERS_MAX: usize = 10;
/// The longest a Swarm node certificate should live (CIS 7.8): 90 days.
const NODE_CERT_MAX_NANOS: i64 = 90 * 24 * 3600 * 1_000_000_000;

/// Every check, by id.
pub static CHECKS: &[Check] = &[
    Check {
        id: "1.1.1",
        title: "Ensure a separate partition for containers has been created",
        severity: Low,
        fix: "put the engine's data root (`docker info -f '{{.DockerRootDir}}'`) on a \
              partition of its own, so that images and logs cannot fill the host's root",
        run: |s| {
            with_daemon(s, |d| {
                (d.data_on_root_fs == Some(true)).then(|| {
                    format!(
                        "the engine's data root {} is on the host's root filesystem",
                        s.info.docker_root_dir
                    )
                })
            })
        },
    },
    Check {
        id: "2.2",
        title: "Ensure network traffic is restricted between containers on the default bridge",
        severity: Medium,
        fix: "set `\"icc\": false` in daemon.json (and give apps their own networks, which \
              capstan does)",
        run: |s| {
            Outcome::Checked(
                s.networks
                    .iter()
                    .filter(|n| {
                        n.options.get("com.docker.network.bridge.default_bridge")
                            == Some(&"true".to_owned())
                            && n.options.get("com.docker.network.bridge.enable_icc")
                                != Some(&"false".to_owned())
                    })
                    .map(|n| {
                        hit(
                            SecurityObject {
                                kind: ObjectKind::Network,
                                id: n.id.clone(),
                                name: n.name.clone(),
                            },
                            "containers on the default bridge can reach each other",
                        )
                    })
                    .collect(),
            )
        },
    },
    Check {
        id: "2.3",
        title: "Ensure the logging level is set to 'info'",
        severity: Low,
        fix: "remove `\"debug\": true` / `--debug` and set `\"log-level\": \"info\"` in daemon.json",
        run: |s| {
            let level = s.daemon.as_ref().and_then(|d| {
                d.setting("--log-level", "log-level")
                    .or(d.setting("-l", ""))
            });
            on_engine(
                s,
                if s.info.debug {
                    Some("the engine runs in debug mode".into())
                } else {
                    level
                        .filter(|l| l == "debug")
                        .map(|l| format!("the engine logs at level {l}"))
                },
            )
        },
    },
    Check {
        id: "2.4",
        title: "Ensure Docker is allowed to make changes to iptables",
        severity: Medium,
        fix: "remove `--iptables=false` / `\"iptables\": false`: the engine must manage the \
              firewall rules of published ports itself",
        run: |s| {
            with_daemon(s, |d| {
                (!d.switch("--iptables", "iptables", true))
                    .then(|| "the engine may not change iptables".into())
            })
        },
    },
    Check {
        id: "2.5",
        title: "Ensure insecure registries are not used",
        severity: High,
        fix: "remove `insecure-registries` from daemon.json and serve the registry over TLS",
        run: |s| {
            let rc = &s.info.registry_config;
            let mut insecure: Vec<String> = rc
                .index_configs
                .iter()
                .filter(|(_, c)| !c.secure)
                .map(|(name, _)| name.clone())
                .collect();
            insecure.extend(
                rc.insecure_registry_cidrs
                    .iter()
                    .filter(|c| !matches!(c.as_str(), "127.0.0.0/8" | "::1/128"))
                    .cloned(),
            );
            on_engine(
                s,
                (!insecure.is_empty()).then(|| {
                    format!(
                        "the engine talks to {} without TLS checks",
                        insecure.join(", ")
                    )
                }),
            )
        },
    },
    Check {
        id: "2.6",
        title: "Ensure aufs storage driver is not used",
        severity: Medium,
        fix: "move the engine to the overlay2 storage driver (`\"storage-driver\": \"overlay2\"`)",
        run: |s| {
            on_engine(
                s,
                (s.info.driver == "aufs").then(|| "the engine stores images with aufs".into()),
            )
        },
    },
    Check {
        id: "2.7",
        title: "Ensure TLS authentication for the Docker daemon is configured",
        severity: High,
        fix: "listen on TCP only with `--tlsverify` and certificates (or reach a remote engine \
              over SSH); a plain TCP socket is root on the host for anyone who reaches it",
        run: |s| {
            let mut plain: Vec<String> = Vec::new();
            if let Some(d) = &s.daemon
                && !d.switch("--tlsverify", "tlsverify", false)
            {
                plain.extend(d.hosts().into_iter().filter(|h| h.starts_with("tcp://")));
            }
            if (s.engine.starts_with("tcp://") || s.engine.starts_with("http://"))
                && !plain.iter().any(|p| {
                    p.replacen("tcp://", "", 1)
                        == s.engine
                            .replacen("tcp://", "", 1)
                            .replacen("http://", "", 1)
                })
            {
                plain.push(s.engine.clone());
            }
            let loopback = |h: &str| {
                let addr = h.trim_start_matches("tcp://").trim_start_matches("http://");
                addr.starts_with("127.")
                    || addr.starts_with("localhost")
                    || addr.starts_with("[::1]")
            };
            let severity = plain.iter().any(|h| !loopback(h)).then_some(Critical);
            Outcome::Checked(
                (!plain.is_empty())
                    .then(|| Hit {
                        object: engine(s),
                        detail: format!("the engine answers plain TCP at {}", plain.join(", ")),
                        severity,
                    })
                    .into_iter()
                    .collect(),
            )
        },
    },
    Check {
        id: "2.9",
        title: "Enable user namespace support",
        severity: Low,
        fix: "set `\"userns-remap\": \"default\"` in daemon.json, so that root in a container is \
              not root on the host",
        run: |s| {
            on_engine(
                s,
                (!s.info.has_security_option("userns") && !s.info.has_security_option("rootless"))
                    .then(|| "root in a container is root on the host (no userns-remap)".into()),
            )
        },
    },
    Check {
        id: "2.12",
        title: "Ensure that authorization for Docker client commands is enabled",
        severity: Low,
        fix: "add an authorization plugin (`--authorization-plugin`), or reach the engine only \
              through capstan's API, whose tokens carry roles",
        run: |s| {
            on_engine(
                s,
                s.info
                    .plugins
                    .authorization
                    .is_empty()
                    .then(|| "anyone who reaches the socket may do anything".into()),
            )
        },
    },
    Check {
        id: "2.14",
        title: "Ensure containers are restricted from acquiring new privileges",
        severity: Low,
        fix: "set `\"no-new-privileges\": true` in daemon.json",
        run: |s| {
            with_daemon(s, |d| {
                (!d.switch("--no-new-privileges", "no-new-privileges", false)).then(|| {
                    "containers may gain privileges through setuid binaries unless each opts out"
                        .into()
                })
            })
        },
    },
    Check {
        id: "2.15",
        title: "Ensure live restore is enabled",
        severity: Low,
        fix: "set `\"live-restore\": true` in daemon.json, so that containers keep running while \
              the engine restarts or upgrades",
        run: |s| {
            if s.info.swarm.local_node_state == "active" {
                return Outcome::NotApplicable("live restore does not work in Swarm mode".into());
            }
            on_engine(
                s,
                (!s.info.live_restore_enabled)
                    .then(|| "containers stop when the engine restarts".into()),
            )
        },
    },
    Check {
        id: "2.16",
        title: "Ensure Userland Proxy is Disabled",
        severity: Low,
        fix: "set `\"userland-proxy\": false` in daemon.json (published ports then use iptables \
              hairpin NAT, not one proxy process per port)",
        run: |s| {
            with_daemon(s, |d| {
                d.switch("--userland-proxy", "userland-proxy", true)
                    .then(|| "every published port runs a docker-proxy process".into())
            })
        },
    },
    Check {
        id: "2.18",
        title: "Ensure that experimental features are not implemented in production",
        severity: Medium,
        fix: "remove `\"experimental\": true` from daemon.json",
        run: |s| {
            on_engine(
                s,
                s.info
                    .experimental_build
                    .then(|| "the engine runs with experimental features".into()),
            )
        },
    },
    Check {
        id: "3.15",
        title: "Ensure that Docker socket file ownership is set to root:docker",
        severity: High,
        fix: "`chown root:docker` the engine's socket (set the group with `--group` / `\"group\"`)",
        run: |s| {
            with_daemon(s, |d| {
                let f = d.socket.as_ref()?;
                let group_ok = f.gid == 0 || Some(f.gid) == d.docker_gid;
                (f.uid != 0 || !group_ok)
                    .then(|| format!("{} is owned by {}:{}", f.path, f.uid, f.gid))
            })
        },
    },
    Check {
        id: "3.16",
        title: "Ensure that Docker socket file permissions are set to 660 or more restrictively",
        severity: High,
        fix: "`chmod 660` the engine's socket: whoever can write to it is root on the host",
        run: |s| {
            with_daemon(s, |d| {
                let f = d.socket.as_ref()?;
                (f.mode & 0o117 != 0).then(|| format!("{} has mode {:o}", f.path, f.mode))
            })
        },
    },
    Check {
        id: "3.17",
        title: "Ensure that the daemon.json file ownership is set to root:root",
        severity: Medium,
        fix: "`chown root:root` the engine's daemon.json",
        run: |s| match &s.daemon {
            Some(d) if d.config_file.is_none() => {
                Outcome::NotApplicable("the engine has no daemon.json".into())
            }
            _ => with_daemon(s, |d| {
                let f = d.config_file.as_ref()?;
                (f.uid != 0 || f.gid != 0)
                    .then(|| format!("{} is owned by {}:{}", f.path, f.uid, f.gid))
            }),
        },
    },
    Check {
        id: "3.18",
        title: "Ensure that daemon.json file permissions are set to 644 or more restrictive",
        severity: Medium,
        fix: "`chmod 644` the engine's daemon.json",
        run: |s| match &s.daemon {
            Some(d) if d.config_file.is_none() => {
                Outcome::NotApplicable("the engine has no daemon.json".into())
            }
            _ => with_daemon(s, |d| {
                let f = d.config_file.as_ref()?;
                (f.mode & 0o133 != 0).then(|| format!("{} has mode {:o}", f.path, f.mode))
            }),
        },
    },
    Check {
        id: "4.1",
        title: "Ensure that a user for the container has been created",
        severity: Medium,
        fix: "run as an unprivileged user: `user: \"1000:1000\"` in Compose, or `USER` in the \
              image",
        run: |s| {
            containers(s, |c| {
                let user = c.config.user.as_str();
                let name = user.split(':').next().unwrap_or_default();
                matches!(name, "" | "root" | "0").then(|| "runs as root".into())
            })
        },
    },
    Check {
        id: "4.6",
        title: "Ensure that HEALTHCHECK instructions have been added to container images",
        severity: Low,
        fix: "add a `HEALTHCHECK` to the image (or a `healthcheck:` to each service that runs it)",
        run: |s| {
            Outcome::Checked(
                s.images
                    .iter()
                    .filter(|i| !docs::checks_health(i.config.healthcheck.as_ref()))
                    .map(|i| hit(image_object(i), "the image has no HEALTHCHECK"))
                    .collect(),
            )
        },
    },
    Check {
        id: "5.1",
        title: "Ensure that, if applicable, an AppArmor Profile is enabled",
        severity: Medium,
        fix: "drop `security_opt: [apparmor=unconfined]` (the engine's default profile applies)",
        run: |s| {
            if !s.info.has_security_option("apparmor") {
                return Outcome::NotApplicable(
                    "AppArmor is not enabled on the engine's host".into(),
                );
            }
            containers(s, |c| {
                (matches!(c.app_armor_profile.as_str(), "" | "unconfined")
                    || security_opt(c, "apparmor") == Some("unconfined"))
                .then(|| "runs without an AppArmor profile".into())
            })
        },
    },
    Check {
        id: "5.2",
        title: "Ensure that, if applicable, SELinux security options are set",
        severity: Medium,
        fix: "run the engine with `--selinux-enabled` and give containers a label \
              (`security_opt: [label=type:container_t]`)",
        run: |s| {
            if !s.info.has_security_option("selinux") {
                return Outcome::NotApplicable("SELinux is not enabled on the engine".into());
            }
            containers(s, |c| {
                matches!(security_opt(c, "label"), None | Some("disable"))
                    .then(|| "runs without an SELinux label".into())
            })
        },
    },
    Check {
        id: "5.3",
        title: "Ensure that Linux kernel capabilities are restricted within containers",
        severity: High,
        fix: "remove the capability from `cap_add` (and `cap_drop: [ALL]`, adding back only \
              what the process needs)",
        run: |s| {
            each_container(s, |c| {
                let added: Vec<String> = c
                    .host_config
                    .cap_add
                    .iter()
                    .map(|cap| {
                        cap.to_ascii_uppercase()
                            .trim_start_matches("CAP_")
                            .to_owned()
                    })
                    .filter(|cap| !capstan_model::DEFAULT_CAPABILITIES.contains(&cap.as_str()))
                    .collect();
                if added.is_empty() {
                    return None;
                }
                let rooty = added.iter().any(|c| ROOT_CAPS.contains(&c.as_str()));
                Some((
                    format!("adds {}", added.join(", ")),
                    rooty.then_some(Critical),
                ))
            })
        },
    },
    Check {
        id: "5.4",
        title: "Ensure that privileged containers are not used",
        severity: Critical,
        fix: "remove `privileged: true`; add only the capabilities (`cap_add`) and devices \
              (`devices`) it needs",
        run: |s| {
            containers(s, |c| {
                c.host_config
                    .privileged
                    .then(|| "runs privileged: every device, every capability".into())
            })
        },
    },
    Check {
        id: "5.5",
        title: "Ensure sensitive host system directories are not mounted on containers",
        severity: High,
        fix: "mount only the directory the service needs, read-only where it can (`:ro`), \
              never the host's root or system directories",
        run: |s| {
            each_container(s, |c| {
                let mut worst = None;
                let mut found = Vec::new();
                for m in c.mounts.iter().filter(|m| m.r#type == "bind") {
                    let source = std::path::Path::new(&m.source);
                    let Some(dir) = SENSITIVE.iter().find(|d| {
                        if **d == "/" {
                            m.source == "/"
                        } else {
                            source.starts_with(d)
                        }
                    }) else {
                        continue;
                    };
                    let severity = if m.rw || *dir == "/" { Critical } else { High };
                    worst = worst.max(Some(severity));
                    found.push(format!(
                        "{} at {} ({})",
                        m.source,
                        m.destination,
                        if m.rw { "read-write" } else { "read-only" }
                    ));
                }
                (!found.is_empty()).then(|| {
                    (
                        format!("mounts {}", found.join(", ")),
                        worst.filter(|w| *w > High),
                    )
                })
            })
        },
    },
    Check {
        id: "5.7",
        title: "Ensure privileged ports are not mapped within containers",
        severity: Low,
        fix: "publish a port of 1024 or above (capstan's proxy serves 80 and 443 for apps)",
        run: |s| {
            containers(s, |c| {
                let low: Vec<String> = published(c)
                    .filter(|(_, b)| b.host_port.parse::<u16>().is_ok_and(|p| p > 0 && p < 1024))
                    .map(|(port, b)| format!("{} → {port}", b.host_port))
                    .collect();
                (!low.is_empty()).then(|| format!("publishes host port {}", low.join(", ")))
            })
        },
    },
    Check {
        id: "5.9",
        title: "Ensure that the host's network namespace is not shared",
        severity: High,
        fix: "remove `network_mode: host`; publish the ports it serves instead",
        run: |s| {
            containers(s, |c| {
                is_host(&c.host_config.network_mode)
                    .then(|| "shares the host's network namespace".into())
            })
        },
    },
    Check {
        id: "5.10",
        title: "Ensure that the memory usage for containers is limited",
        severity: Medium,
        fix: "set a memory limit (`deploy.resources.limits.memory` or `mem_limit`)",
        run: |s| {
            containers(s, |c| {
                (c.host_config.memory == 0).then(|| "has no memory limit".into())
            })
        },
    },
    Check {
        id: "5.11",
        title: "Ensure that CPU priority is set appropriately on containers",
        severity: Low,
        fix: "set `cpu_shares` or a CPU limit (`deploy.resources.limits.cpus`)",
        run: |s| {
            containers(s, |c| {
                let h = &c.host_config;
                (h.cpu_shares == 0 && h.nano_cpus == 0 && h.cpu_quota == 0)
                    .then(|| "has no CPU shares or limit".into())
            })
        },
    },
    Check {
        id: "5.12",
        title: "Ensure that the container's root filesystem is mounted as read only",
        severity: Low,
        fix: "set `read_only: true` and mount a volume or tmpfs where it writes",
        run: |s| {
            containers(s, |c| {
                (!c.host_config.readonly_rootfs).then(|| "its root filesystem is writable".into())
            })
        },
    },
    Check {
        id: "5.13",
        title: "Ensure that incoming container traffic is bound to a specific host interface",
        severity: Medium,
        fix: "publish on one address (`127.0.0.1:8080:80`), or let capstan's proxy publish it",
        run: |s| {
            containers(s, |c| {
                let open: Vec<String> = published(c)
                    .filter(|(_, b)| matches!(b.host_ip.as_str(), "" | "0.0.0.0" | "::"))
                    .map(|(port, b)| format!("{} → {port}", b.host_port))
                    .collect();
                (!open.is_empty())
                    .then(|| format!("publishes {} on every interface", open.join(", ")))
            })
        },
    },
    Check {
        id: "5.14",
        title: "Ensure that the 'on-failure' container restart policy is set to '5'",
        severity: Low,
        fix: "use `restart: on-failure:5` (capstan replaces failed replicas of its apps itself)",
        run: |s| {
            containers(s, |c| {
                let r = &c.host_config.restart_policy;
                match r.name.as_str() {
                    "always" | "unless-stopped" => {
                        Some(format!("restarts without limit ({})", r.name))
                    }
                    "on-failure" if r.maximum_retry_count == 0 || r.maximum_retry_count > 5 => {
                        Some(if r.maximum_retry_count == 0 {
                            "restarts on failure without limit".into()
                        } else {
                            format!("restarts on failure up to {} times", r.maximum_retry_count)
                        })
                    }
                    _ => None,
                }
            })
        },
    },
    Check {
        id: "5.15",
        title: "Ensure that the host's process namespace is not shared",
        severity: High,
        fix: "remove `pid: host`",
        run: |s| {
            containers(s, |c| {
                is_host(&c.host_config.pid_mode).then(|| "sees the host's processes".into())
            })
        },
    },
    Check {
        id: "5.16",
        title: "Ensure that the host's IPC namespace is not shared",
        severity: High,
        fix: "remove `ipc: host`",
        run: |s| {
            containers(s, |c| {
                is_host(&c.host_config.ipc_mode).then(|| "shares the host's IPC namespace".into())
            })
        },
    },
    Check {
        id: "5.17",
        title: "Ensure that host devices are not directly exposed to containers",
        severity: Medium,
        fix: "remove the device from `devices`, or give it read-only (`:r`) access",
        run: |s| {
            containers(s, |c| {
                let devices: Vec<&str> = c
                    .host_config
                    .devices
                    .iter()
                    .map(|d| d.path_on_host.as_str())
                    .collect();
                (!devices.is_empty()).then(|| format!("has host device {}", devices.join(", ")))
            })
        },
    },
    Check {
        id: "5.19",
        title: "Ensure mount propagation mode is not set to shared",
        severity: Medium,
        fix: "use `bind: {propagation: rprivate}` (the default)",
        run: |s| {
            containers(s, |c| {
                let shared: Vec<&str> = c
                    .mounts
                    .iter()
                    .filter(|m| matches!(m.propagation.as_str(), "shared" | "rshared"))
                    .map(|m| m.destination.as_str())
                    .collect();
                (!shared.is_empty())
                    .then(|| format!("shares mounts with the host at {}", shared.join(", ")))
            })
        },
    },
    Check {
        id: "5.20",
        title: "Ensure that the host's UTS namespace is not shared",
        severity: Medium,
        fix: "remove `uts: host`",
        run: |s| {
            containers(s, |c| {
                is_host(&c.host_config.uts_mode).then(|| "shares the host's hostname".into())
            })
        },
    },
    Check {
        id: "5.21",
        title: "Ensure the default seccomp profile is not Disabled",
        severity: High,
        fix: "remove `security_opt: [seccomp=unconfined]`",
        run: |s| {
            if !s.info.has_security_option("seccomp") {
                return Outcome::NotApplicable("the engine has no seccomp support".into());
            }
            containers(s, |c| {
                (security_opt(c, "seccomp") == Some("unconfined"))
                    .then(|| "runs without a seccomp profile".into())
            })
        },
    },
    Check {
        id: "5.24",
        title: "Ensure that cgroup usage is confirmed",
        severity: Low,
        fix: "remove `cgroup_parent` unless that cgroup is meant to hold it",
        run: |s| {
            containers(s, |c| {
                (!c.host_config.cgroup_parent.is_empty())
                    .then(|| format!("runs under cgroup {}", c.host_config.cgroup_parent))
            })
        },
    },
    Check {
        id: "5.25",
        title: "Ensure that the container is restricted from acquiring additional privileges",
        severity: Medium,
        fix: "set `security_opt: [no-new-privileges:true]` (or `\"no-new-privileges\": true` \
              for the engine)",
        run: |s| {
            let daemon_wide = s
                .daemon
                .as_ref()
                .is_some_and(|d| d.switch("--no-new-privileges", "no-new-privileges", false));
            containers(s, |c| {
                let set = match security_opt(c, "no-new-privileges") {
                    Some("" | "true") => true,
                    Some(_) => false,
                    None => daemon_wide,
                };
                (!set).then(|| "may gain privileges through setuid binaries".into())
            })
        },
    },
    Check {
        id: "5.26",
        title: "Ensure that container health is checked at runtime",
        severity: Low,
        fix: "add a `healthcheck:` (capstan's rollouts then wait for it)",
        run: |s| {
            containers(s, |c| {
                (!docs::checks_health(c.config.healthcheck.as_ref()))
                    .then(|| "has no health check".into())
            })
        },
    },
    Check {
        id: "5.28",
        title: "Ensure that the PIDs cgroup limit is used",
        severity: Medium,
        fix: "set `pids_limit` (a fork bomb then stays inside the container)",
        run: |s| {
            containers(s, |c| {
                c.host_config
                    .pids_limit
                    .is_none_or(|l| l <= 0)
                    .then(|| "has no PIDs limit".into())
            })
        },
    },
    Check {
        id: "5.29",
        title: "Ensure that Docker's default bridge 'docker0' is not used",
        severity: Low,
        fix: "put it on a network of its own (capstan gives each app one)",
        run: |s| {
            containers(s, |c| {
                matches!(c.host_config.network_mode.as_str(), "default" | "bridge")
                    .then(|| "is on the default bridge".into())
            })
        },
    },
    Check {
        id: "5.30",
        title: "Ensure that the host's user namespaces are not shared",
        severity: Medium,
        fix: "remove `userns_mode: host`",
        run: |s| {
            containers(s, |c| {
                is_host(&c.host_config.userns_mode)
                    .then(|| "shares the host's user namespace".into())
            })
        },
    },
    Check {
        id: "5.31",
        title: "Ensure that the Docker socket is not mounted inside any containers",
        severity: Critical,
        fix: "remove the socket's volume: whoever has it controls every container and the host \
              (give a tool a read-only proxy of the API instead)",
        run: |s| {
            let own = crate::daemon::socket_path(&s.engine);
            containers(s, |c| {
                let sockets: Vec<String> = c
                    .mounts
                    .iter()
                    .filter(|m| {
                        ENGINE_SOCKETS.contains(&m.source.as_str())
                            || own.is_some_and(|o| o == m.source)
                            || m.source.ends_with("/docker.sock")
                    })
                    .map(|m| format!("{} at {}", m.source, m.destination))
                    .collect();
                (!sockets.is_empty())
                    .then(|| format!("mounts the engine's socket {}", sockets.join(", ")))
            })
        },
    },
    Check {
        id: "6.1",
        title: "Ensure that image sprawl is avoided",
        severity: Low,
        fix: "remove what no container uses (`docker image prune -a`, after checking rollbacks \
              do not need them)",
        run: |s| {
            let used: std::collections::BTreeSet<&str> =
                s.containers.iter().map(|c| c.image.as_str()).collect();
            let unused: Vec<&docs::ImageEntry> = s
                .image_list
                .iter()
                .filter(|i| !used.contains(i.id.as_str()))
                .collect();
            let dangling = unused.iter().filter(|i| !i.tagged).count();
            let bytes: i64 = unused.iter().map(|i| i.size).sum();
            on_engine(
                s,
                (unused.len() > UNUSED_IMAGES_MAX).then(|| {
                    format!(
                        "{} images ({} MiB) no container uses, {dangling} of them untagged",
                        unused.len(),
                        bytes / (1024 * 1024)
                    )
                }),
            )
        },
    },
    Check {
        id: "6.2",
        title: "Ensure that container sprawl is avoided",
        severity: Low,
        fix: "remove stopped containers nothing needs (`docker container prune`)",
        run: |s| {
            let stopped = s.containers.iter().filter(|c| c.is_stopped()).count();
            on_engine(
                s,
                (stopped > STOPPED_CONTAINERS_MAX)
                    .then(|| format!("{stopped} of {} containers are stopped", s.containers.len())),
            )
        },
    },
    Check {
        id: "7.2",
        title: "Ensure that the minimum number of manager nodes have been created in a swarm",
        severity: Medium,
        fix: "run an odd number of managers (1, 3 or 5): an even one tolerates no more failures \
              than the odd number below it",
        run: |s| {
            swarm(s, |sw| {
                (sw.managers > 1 && sw.managers % 2 == 0)
                    .then(|| hit(swarm_object(sw), format!("{} managers", sw.managers)))
                    .into_iter()
                    .collect()
            })
        },
    },
    Check {
        id: "7.4",
        title: "Ensure that data exchanged between containers are encrypted on different nodes \
                on the overlay network",
        severity: Medium,
        fix: "create overlay networks with `--opt encrypted` (`driver_opts: {encrypted: \"\"}`)",
        run: |s| {
            swarm(s, |_| {
                s.networks
                    .iter()
                    .filter(|n| n.driver == "overlay" && !n.options.contains_key("encrypted"))
                    .map(|n| {
                        hit(
                            SecurityObject {
                                kind: ObjectKind::Network,
                                id: n.id.clone(),
                                name: n.name.clone(),
                            },
                            "overlay traffic between nodes is not encrypted",
                        )
                    })
                    .collect()
            })
        },
    },
    Check {
        id: "7.6",
        title: "Ensure that swarm manager is run in auto-lock mode",
        severity: Medium,
        fix: "`docker swarm update --autolock=true` and keep the unlock key safe",
        run: |s| {
            swarm(s, |sw| {
                (!sw.cluster.spec.encryption_config.auto_lock_managers)
                    .then(|| {
                        hit(
                            swarm_object(sw),
                            "managers' keys and the Raft log are readable from their disks",
                        )
                    })
                    .into_iter()
                    .collect()
            })
        },
    },
    Check {
        id: "7.8",
        title: "Ensure that node certificates are rotated as appropriate",
        severity: Low,
        fix: "`docker swarm update --cert-expiry 2160h` (90 days or less)",
        run: |s| {
            swarm(s, |sw| {
                let expiry = sw.cluster.spec.ca_config.node_cert_expiry;
                (expiry > NODE_CERT_MAX_NANOS)
                    .then(|| {
                        hit(
                            swarm_object(sw),
                            format!(
                                "node certificates live {} days",
                                expiry / (24 * 3600 * 1_000_000_000)
                            ),
                        )
                    })
                    .into_iter()
                    .collect()
            })
        },
    },
];
