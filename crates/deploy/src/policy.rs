//! The deploy policy: what in a Compose model reaches past its containers into the host, and
//! who may deploy it. Being allowed to deploy must not make one root on the host: a bind
//! mount of `/`, `privileged`, `cap_add: [SYS_ADMIN]` or an unconfined seccomp profile would.
//!
//! Each such feature is a [`Feature`], written as an admin allows it (`privileged`,
//! `bind=/srv/www`, `cap_add=NET_ADMIN`, `security_opt=seccomp:unconfined`,
//! `sysctl=vm.overcommit_memory`, `low_port=80`). An operator's deploy may use a feature only
//! where an admin allowed it for that app; an admin's deploy may use them all, except the
//! binds that hand over the host whole (`/`, the Docker socket, capstan's data directory or
//! one of its parents), which need the explicit `bind=` allowance for that app from everyone.
//! A bind source that does not exist is refused for everyone: the engine would create it as
//! root. The check is pure: the caller says who deploys, what is allowed and what exists.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use capstan_compose::Project;
pub use capstan_model::Violation;
use serde::{Deserialize, Serialize};

/// Sysctls that live in a container's own namespaces (network, IPC): safe to set.
const NAMESPACED_SYSCTLS: &[&str] = &[
    "net.",
    "kernel.shm",
    "kernel.msg",
    "kernel.sem",
    "fs.mqueue.",
];

/// `security_opt` entries that take a confinement away.
const UNCONFINING: &[&str] = &["seccomp", "apparmor", "label", "systempaths"];

/// A host-level feature of a deploy, as an admin allows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Feature {
    /// Bind mounts from this host path or below it.
    Bind(PathBuf),
    /// `privileged: true`.
    Privileged,
    /// `cap_add` of a capability beyond Docker's defaults.
    CapAdd(String),
    /// A `security_opt` that disables seccomp, AppArmor or SELinux labelling.
    SecurityOpt(String),
    /// A sysctl outside the container's own namespaces.
    Sysctl(String),
    /// A host port below 1024 published on every interface.
    LowPort(u16),
    /// `oom_kill_disable: true`: the kernel kills host processes instead.
    OomKillDisable,
    /// A negative `oom_score_adj`: the container outlives host processes under memory pressure.
    OomScoreAdj,
    /// `cpu_rt_runtime`: real-time CPU time, which can starve the host.
    CpuRtRuntime,
    /// `network_mode: host` (the host's network stack) or `container:NAME` (another
    /// container's, outside the app).
    NetworkMode(String),
    /// A host namespace: `pid`, `ipc` or `uts` of the host, or no user namespace remapping
    /// (`userns_mode: host`); or joining another container's `pid` or `ipc` namespace.
    Namespace(String),
    /// `cgroup_parent`: a cgroup of the host's choosing, outside the engine's.
    CgroupParent,
    /// `runtime`: an OCI runtime other than the engine's default.
    Runtime(String),
    /// `device_cgroup_rules`: access to host devices by number.
    DeviceCgroupRules,
    /// A host device (`devices`).
    Device(PathBuf),
    /// Devices from the engine's drivers (`gpus`, device reservations).
    Gpus,
}

impl std::fmt::Display for Feature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bind(p) => write!(f, "bind={}", p.display()),
            Self::Privileged => f.write_str("privileged"),
            Self::CapAdd(c) => write!(f, "cap_add={c}"),
            Self::SecurityOpt(o) => write!(f, "security_opt={o}"),
            Self::Sysctl(s) => write!(f, "sysctl={s}"),
            Self::LowPort(p) => write!(f, "low_port={p}"),
            Self::OomKillDisable => f.write_str("oom_kill_disable"),
            Self::OomScoreAdj => f.write_str("oom_score_adj"),
            Self::CpuRtRuntime => f.write_str("cpu_rt_runtime"),
            Self::NetworkMode(m) => write!(f, "network_mode={m}"),
            Self::Device(p) => write!(f, "device={}", p.display()),
            Self::Gpus => f.write_str("gpus"),
            Self::Namespace(n) => write!(f, "namespace={n}"),
            Self::CgroupParent => f.write_str("cgroup_parent"),
            Self::Runtime(r) => write!(f, "runtime={r}"),
            Self::DeviceCgroupRules => f.write_str("device_cgroup_rules"),
        }
    }
}

impl std::str::FromStr for Feature {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (kind, value) = text.split_once('=').unwrap_or((text, ""));
        let value = value.trim();
        let need = |what: &str| {
            if value.is_empty() {
                Err(format!("{kind}= needs {what}"))
            } else {
                Ok(value.to_owned())
            }
        };
        Ok(match kind.trim() {
            "privileged" if value.is_empty() => Self::Privileged,
            "oom_kill_disable" if value.is_empty() => Self::OomKillDisable,
            "oom_score_adj" if value.is_empty() => Self::OomScoreAdj,
            "cpu_rt_runtime" if value.is_empty() => Self::CpuRtRuntime,
            "gpus" if value.is_empty() => Self::Gpus,
            "cgroup_parent" if value.is_empty() => Self::CgroupParent,
            "device_cgroup_rules" if value.is_empty() => Self::DeviceCgroupRules,
            "runtime" => Self::Runtime(need("a runtime's name")?),
            "namespace" => match need("a namespace")?.as_str() {
                n @ ("pid=host" | "ipc=host" | "uts=host" | "userns_mode=host"
                | "pid=container" | "ipc=container") => Self::Namespace(n.to_owned()),
                n => {
                    return Err(format!(
                        "namespace={n}: give pid=host, ipc=host, uts=host, userns_mode=host, pid=container or ipc=container"
                    ));
                }
            },
            "device" => {
                let path = need("a host device path")?;
                if !path.starts_with('/') {
                    return Err(format!("device={path}: give the host path (/dev/...)"));
                }
                Self::Device(clean(Path::new(&path)))
            }
            "network_mode" => match need("host or container")?.as_str() {
                m @ ("host" | "container") => Self::NetworkMode(m.to_owned()),
                m => {
                    return Err(format!(
                        "network_mode={m}: give host, or container (joining a container outside the app)"
                    ));
                }
            },
            "bind" => {
                let path = need("an absolute host path")?;
                if !path.starts_with('/') {
                    return Err(format!("bind={path}: give an absolute host path"));
                }
                Self::Bind(clean(Path::new(&path)))
            }
            "cap_add" => Self::CapAdd(cap_name(&need("a capability")?)),
            "security_opt" => Self::SecurityOpt(need("an option")?),
            "sysctl" => Self::Sysctl(need("a sysctl name")?),
            "low_port" => Self::LowPort(
                need("a port")?
                    .parse()
                    .map_err(|_| format!("low_port={value}: not a port number"))?,
            ),
            _ => {
                return Err(format!(
                    "{text:?} is not a feature: give privileged, bind=PATH, cap_add=CAP, \
                     security_opt=OPT, sysctl=NAME, low_port=PORT, oom_kill_disable, \
                     oom_score_adj, cpu_rt_runtime, network_mode=host|container, \
                     device=PATH, gpus, namespace=KEY=host|container, cgroup_parent, \
                     runtime=NAME or device_cgroup_rules"
                ));
            }
        })
    }
}

impl TryFrom<String> for Feature {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<Feature> for String {
    fn from(f: Feature) -> Self {
        f.to_string()
    }
}

/// Who deploys, as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployer {
    /// An admin (or capstan itself, healing and updating a model an admin or an allowance let
    /// through): every feature but the binds that hand over the host.
    Admin,
    /// Anyone else: only what is allowed for the app.
    Restricted,
}

/// What the check needs of the host.
pub struct Host<'a> {
    /// capstan's data directory.
    pub data_dir: &'a Path,
    /// A host path with its symbolic links followed; `None` when it does not exist.
    pub resolve: &'a dyn Fn(&Path) -> Option<PathBuf>,
}

/// Every use in `project` of a feature `who` may not deploy for it, given the features
/// `allowed` for the app.
pub fn violations(
    project: &Project,
    who: Deployer,
    allowed: &BTreeSet<Feature>,
    host: &Host<'_>,
) -> Vec<Violation> {
    let app = project.name.as_deref().unwrap_or_default();
    let own_dir = clean(&host.data_dir.join("apps").join(app));
    let data_dir = clean(host.data_dir);
    let mut out = Vec::new();
    let mut check = |key: String, feature: Feature, message: String| {
        if who == Deployer::Restricted && !permits(allowed, &feature) {
            out.push(Violation {
                at: None,
                key,
                message,
                allow: Some(feature.to_string()),
            });
        }
    };
    let mut hard = Vec::new();
    for (name, s) in &project.services {
        let key = |k: &str| format!("services.{name}.{k}");
        for v in s.volumes.iter().filter(|v| v.kind == "bind") {
            let Some(source) = v.source.as_deref() else {
                continue;
            };
            let written = clean(Path::new(source));
            if written.starts_with(&own_dir) && !written.starts_with(own_dir.join("secrets")) {
                continue;
            }
            // judged by where it leads: a link under an allowed path may point at `/`
            let Some(source) = (host.resolve)(&written) else {
                hard.push(Violation {
                    at: None,
                    key: key("volumes"),
                    message: format!(
                        "the bind source {} does not exist; create it (the engine would make it \
                         as root), or use a named volume",
                        written.display()
                    ),
                    allow: None,
                });
                continue;
            };
            let source = clean(&source);
            let feature = Feature::Bind(source.clone());
            if hands_over_the_host(&source, &data_dir) {
                // explicit, for that path, from everyone
                if !allowed.contains(&feature) {
                    hard.push(Violation {
                        at: None,
                        key: key("volumes"),
                        message: format!(
                            "a bind mount of {} hands the host over to the container",
                            source.display()
                        ),
                        allow: Some(feature.to_string()),
                    });
                }
                continue;
            }
            check(
                key("volumes"),
                feature,
                format!("a bind mount of the host path {}", source.display()),
            );
        }
        if s.privileged == Some(true) {
            check(
                key("privileged"),
                Feature::Privileged,
                "a privileged container is root on the host".into(),
            );
        }
        for cap in &s.cap_add {
            let cap = cap_name(cap);
            if !capstan_model::DEFAULT_CAPABILITIES.contains(&cap.as_str()) {
                check(
                    key("cap_add"),
                    Feature::CapAdd(cap.clone()),
                    format!("the capability {cap} reaches beyond the container"),
                );
            }
        }
        for opt in &s.security_opt {
            let (kind, value) = opt.split_once([':', '=']).unwrap_or((opt, ""));
            if UNCONFINING.contains(&kind) && matches!(value, "unconfined" | "disable") {
                check(
                    key("security_opt"),
                    Feature::SecurityOpt(opt.clone()),
                    format!("{opt} takes the container's confinement away"),
                );
            }
        }
        for name in s.sysctls.keys() {
            if !NAMESPACED_SYSCTLS.iter().any(|p| name.starts_with(p)) {
                check(
                    key("sysctls"),
                    Feature::Sysctl(name.clone()),
                    format!("the sysctl {name} is the host's, not the container's"),
                );
            }
        }
        if s.oom_kill_disable == Some(true) {
            check(
                key("oom_kill_disable"),
                Feature::OomKillDisable,
                "with the OOM killer off for the container, the kernel kills host processes \
                 instead"
                    .into(),
            );
        }
        if s.oom_score_adj.is_some_and(|n| n < 0) {
            check(
                key("oom_score_adj"),
                Feature::OomScoreAdj,
                "a negative OOM score makes the kernel kill host processes before the container"
                    .into(),
            );
        }
        for (k, v) in [
            ("pid", &s.pid),
            ("ipc", &s.ipc),
            ("uts", &s.uts),
            ("userns_mode", &s.userns_mode),
        ] {
            let which = match v.as_deref() {
                Some("host") => "host",
                Some(c) if c.starts_with("container:") => "container",
                _ => continue,
            };
            check(
                key(k),
                Feature::Namespace(format!("{k}={which}")),
                if which == "host" {
                    format!("{k}: host shares the host's namespace with the container")
                } else {
                    format!("{k}: joins the namespace of a container outside the app")
                },
            );
        }
        if s.cgroup_parent.is_some() {
            check(
                key("cgroup_parent"),
                Feature::CgroupParent,
                "cgroup_parent places the container outside the engine's cgroups".into(),
            );
        }
        if let Some(r) = s.runtime.as_deref().filter(|r| *r != "runc") {
            check(
                key("runtime"),
                Feature::Runtime(r.to_owned()),
                format!("the runtime {r} instead of the engine's runc"),
            );
        }
        if !s.device_cgroup_rules.is_empty() {
            check(
                key("device_cgroup_rules"),
                Feature::DeviceCgroupRules,
                "device cgroup rules open host devices to the container by number".into(),
            );
        }
        for d in &s.devices {
            let path = clean(Path::new(&d.source));
            check(
                key("devices"),
                Feature::Device(path.clone()),
                format!("the host device {} given to the container", path.display()),
            );
        }
        if !s.device_requests().is_empty() {
            let from_gpus = s.gpus.as_ref().is_some_and(|g| !g.0.is_empty());
            check(
                key(if from_gpus { "gpus" } else { "deploy" }),
                Feature::Gpus,
                "devices from the engine's drivers (GPUs) given to the container".into(),
            );
        }
        match s.network_mode.as_deref() {
            Some("host") => check(
                key("network_mode"),
                Feature::NetworkMode("host".into()),
                "network_mode: host gives the container the host's network stack".into(),
            ),
            Some(m) if m.starts_with("container:") => check(
                key("network_mode"),
                Feature::NetworkMode("container".into()),
                format!("network_mode: {m} joins a container outside the app"),
            ),
            _ => {}
        }
        if s.cpu_rt_runtime.is_some() {
            check(
                key("cpu_rt_runtime"),
                Feature::CpuRtRuntime,
                "real-time CPU time can starve the host's own processes".into(),
            );
        }
        for p in &s.ports {
            let every = p
                .host_ip
                .as_deref()
                .is_some_and(|ip| matches!(ip, "0.0.0.0" | "::" | "[::]"));
            let low = p
                .published
                .as_deref()
                .and_then(|p| p.split('-').next())
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|p| *p > 0 && *p < 1024);
            if let (true, Some(port)) = (every, low) {
                check(
                    key("ports"),
                    Feature::LowPort(port),
                    format!("port {port} on every interface of the host"),
                );
            }
        }
    }
    hard.extend(out);
    hard
}

/// The violations of `req` by `who`: the app's allowances read from `store`, bind sources
/// resolved on this host, each violation placed where the request's source says the key is
/// written (`source.positions`, which the CLI and the API's upload fill in).
///
/// # Errors
/// The allowances cannot be read.
pub async fn check(
    store: &capstan_store::Store,
    data_dir: &Path,
    req: &crate::DeployRequest,
    who: Deployer,
) -> Result<Vec<Violation>, capstan_store::Error> {
    let app = req.project.name.clone().unwrap_or_default();
    let allowed: BTreeSet<Feature> = store
        .allowances(Some(app))
        .await?
        .into_iter()
        .filter_map(|a| a.feature.parse().ok())
        .collect();
    let resolve = |p: &Path| std::fs::canonicalize(p).ok();
    let host = Host {
        data_dir,
        resolve: &resolve,
    };
    let mut found = violations(&req.project, who, &allowed, &host);
    for v in &mut found {
        v.at = req.source["positions"][&v.key].as_str().map(str::to_owned);
    }
    Ok(found)
}

/// The refusal of a deploy, every violation on its own line with what would allow it.
pub fn refusal(app: &str, found: &[Violation]) -> String {
    use std::fmt::Write as _;
    let mut text = format!(
        "the deploy policy refuses this deploy of {app}: it reaches into the host where it may \
         not. An admin can allow a feature for the app (capstan policy allow {app} FEATURE):"
    );
    for v in found {
        let at = v.at.as_deref().map(|a| format!("{a} ")).unwrap_or_default();
        let allow = v.allow.as_deref().map_or_else(
            || "no allowance permits this".to_owned(),
            |f| format!("allow: {f}"),
        );
        let _ = write!(text, "\n  {at}{}: {} ({allow})", v.key, v.message);
    }
    text
}

/// Whether `allowed` covers `feature` (a `bind=` allowance covers the paths below it).
fn permits(allowed: &BTreeSet<Feature>, feature: &Feature) -> bool {
    match feature {
        Feature::Bind(path) => allowed
            .iter()
            .any(|a| matches!(a, Feature::Bind(root) if path.starts_with(root))),
        other => allowed.contains(other),
    }
}

/// `/`, a Docker socket, capstan's data directory (or inside it) or one of its parents.
fn hands_over_the_host(source: &Path, data_dir: &Path) -> bool {
    source == Path::new("/")
        || source.file_name().is_some_and(|n| n == "docker.sock")
        || source.starts_with(data_dir)
        || data_dir.starts_with(source)
        || source.starts_with("/var/run/docker")
        || source.starts_with("/run/docker")
        || source.starts_with("/var/lib/docker")
        || source.starts_with("/proc")
        || source.starts_with("/sys")
        || source.starts_with("/dev")
        || source.starts_with("/boot")
        || source.starts_with("/etc")
        || source.starts_with("/root")
}

/// `SYS_ADMIN` for `cap_sys_admin` or `CAP_SYS_ADMIN`.
fn cap_name(text: &str) -> String {
    let upper = text.trim().to_ascii_uppercase();
    upper
        .strip_prefix("CAP_")
        .map(str::to_owned)
        .unwrap_or(upper)
}

/// A path with `.` and `..` resolved lexically (the path may not exist).
fn clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(service: &serde_json::Value) -> Project {
        serde_json::from_value(serde_json::json!({
            "name": "shop",
            "services": {"web": service},
        }))
        .unwrap()
    }

    fn check(service: &serde_json::Value, who: Deployer, allowed: &[&str]) -> Vec<Violation> {
        let allowed = allowed.iter().map(|a| a.parse().unwrap()).collect();
        let resolve = |p: &Path| {
            if p.starts_with("/nonexistent") {
                None
            } else if p == Path::new("/srv/link") {
                Some(PathBuf::from("/"))
            } else {
                Some(p.to_owned())
            }
        };
        let host = Host {
            data_dir: Path::new("/var/lib/capstan"),
            resolve: &resolve,
        };
        violations(&project(service), who, &allowed, &host)
    }

    fn bind(source: &str) -> serde_json::Value {
        serde_json::json!({"image": "x", "volumes": [{"type": "bind", "source": source, "target": "/x"}]})
    }

    #[test]
    fn an_operator_may_use_a_host_feature_only_where_an_admin_allowed_it() {
        let cases = [
            (bind("/srv/www"), "bind=/srv/www", "services.web.volumes"),
            (
                serde_json::json!({"image": "x", "privileged": true}),
                "privileged",
                "services.web.privileged",
            ),
            (
                serde_json::json!({"image": "x", "cap_add": ["cap_sys_admin"]}),
                "cap_add=SYS_ADMIN",
                "services.web.cap_add",
            ),
            (
                serde_json::json!({"image": "x", "security_opt": ["seccomp:unconfined"]}),
                "security_opt=seccomp:unconfined",
                "services.web.security_opt",
            ),
            (
                serde_json::json!({"image": "x", "sysctls": {"vm.swappiness": "1"}}),
                "sysctl=vm.swappiness",
                "services.web.sysctls",
            ),
            (
                serde_json::json!({"image": "x", "ports": [{"target": 80, "published": "80", "host_ip": "0.0.0.0", "protocol": "tcp"}]}),
                "low_port=80",
                "services.web.ports",
            ),
            (
                serde_json::json!({"image": "x", "oom_kill_disable": true}),
                "oom_kill_disable",
                "services.web.oom_kill_disable",
            ),
            (
                serde_json::json!({"image": "x", "oom_score_adj": -500}),
                "oom_score_adj",
                "services.web.oom_score_adj",
            ),
            (
                serde_json::json!({"image": "x", "cpu_rt_runtime": "400ms"}),
                "cpu_rt_runtime",
                "services.web.cpu_rt_runtime",
            ),
            (
                serde_json::json!({"image": "x", "devices": ["/dev/ttyUSB0:/dev/ttyUSB0:rw"]}),
                "device=/dev/ttyUSB0",
                "services.web.devices",
            ),
            (
                serde_json::json!({"image": "x", "gpus": "all"}),
                "gpus",
                "services.web.gpus",
            ),
            (
                serde_json::json!({"image": "x", "pid": "host"}),
                "namespace=pid=host",
                "services.web.pid",
            ),
            (
                serde_json::json!({"image": "x", "ipc": "container:db-1"}),
                "namespace=ipc=container",
                "services.web.ipc",
            ),
            (
                serde_json::json!({"image": "x", "runtime": "runsc"}),
                "runtime=runsc",
                "services.web.runtime",
            ),
            (
                serde_json::json!({"image": "x", "cgroup_parent": "/custom"}),
                "cgroup_parent",
                "services.web.cgroup_parent",
            ),
            (
                serde_json::json!({"image": "x", "device_cgroup_rules": ["c 1:3 mr"]}),
                "device_cgroup_rules",
                "services.web.device_cgroup_rules",
            ),
            (
                serde_json::json!({"image": "x", "userns_mode": "host"}),
                "namespace=userns_mode=host",
                "services.web.userns_mode",
            ),
            (
                serde_json::json!({"image": "x", "network_mode": "host"}),
                "network_mode=host",
                "services.web.network_mode",
            ),
            (
                serde_json::json!({"image": "x", "network_mode": "container:other-app-db-1"}),
                "network_mode=container",
                "services.web.network_mode",
            ),
        ];
        for (service, feature, key) in cases {
            let refused = check(&service, Deployer::Restricted, &[]);
            assert_eq!(refused.len(), 1, "{service}: {refused:?}");
            assert_eq!(refused[0].key, key);
            assert_eq!(refused[0].allow.as_deref(), Some(feature));
            assert!(check(&service, Deployer::Restricted, &[feature]).is_empty());
            assert!(
                check(&service, Deployer::Admin, &[]).is_empty(),
                "{feature}"
            );
        }
        // what needs nothing: default capabilities, namespaced sysctls, loopback and high ports,
        // the app's own directory, confinement kept
        let fine = serde_json::json!({
            "image": "x",
            "cap_add": ["NET_BIND_SERVICE", "CAP_CHOWN"],
            "sysctls": {"net.core.somaxconn": "1024", "kernel.shmmax": "1"},
            "security_opt": ["no-new-privileges:true"],
            "oom_score_adj": 500,
            "ipc": "shareable",
            "oom_kill_disable": false,
            "mem_limit": "64m",
            "cpus": "0.5",
            "ports": [
                {"target": 80, "published": "80", "protocol": "tcp"},
                {"target": 80, "published": "8080", "host_ip": "0.0.0.0", "protocol": "tcp"},
            ],
            "volumes": [{"type": "bind", "source": "/var/lib/capstan/apps/shop/data", "target": "/d"}],
        });
        assert_eq!(check(&fine, Deployer::Restricted, &[]), []);
        // an allowance covers the paths below it, not beside it
        assert!(
            check(
                &bind("/srv/www/site"),
                Deployer::Restricted,
                &["bind=/srv/www"]
            )
            .is_empty()
        );
        assert_eq!(
            check(&bind("/srv/wwwx"), Deployer::Restricted, &["bind=/srv/www"]).len(),
            1
        );
    }

    #[test]
    fn binds_that_hand_over_the_host_need_the_explicit_allowance_even_for_admins() {
        for source in [
            "/",
            "/var/run/docker.sock",
            "/run/docker.sock",
            "/var/lib/capstan",
            "/var/lib/capstan/admin.token",
            "/var/lib/capstan/apps/other/secrets",
            "/var/lib",
            "/etc",
            "/srv/../etc/shadow",
            "/srv/link",
        ] {
            let refused = check(&bind(source), Deployer::Admin, &[]);
            assert_eq!(refused.len(), 1, "{source}: {refused:?}");
            assert!(
                refused[0].message.contains("hands the host over"),
                "{source}"
            );
            let real = if source == "/srv/link" { "/" } else { source };
            let exact = format!("bind={}", clean(Path::new(real)).display());
            assert!(
                check(&bind(source), Deployer::Admin, &[&exact]).is_empty(),
                "{source}"
            );
        }
        // a broad allowance does not reach them
        assert_eq!(
            check(&bind("/etc"), Deployer::Restricted, &["bind=/"]).len(),
            1
        );
    }

    #[test]
    fn a_missing_bind_source_is_refused_for_everyone() {
        let refused = check(
            &bind("/nonexistent/dir"),
            Deployer::Admin,
            &["bind=/nonexistent"],
        );
        assert_eq!(refused.len(), 1);
        assert!(refused[0].message.contains("does not exist"));
        assert_eq!(refused[0].allow, None);
    }

    #[test]
    fn features_read_back_as_written() {
        for text in [
            "privileged",
            "bind=/srv/www",
            "cap_add=NET_ADMIN",
            "security_opt=apparmor=unconfined",
            "sysctl=vm.swappiness",
            "low_port=443",
            "oom_kill_disable",
            "oom_score_adj",
            "cpu_rt_runtime",
            "network_mode=host",
            "network_mode=container",
            "device=/dev/ttyUSB0",
            "gpus",
            "namespace=uts=host",
            "cgroup_parent",
            "runtime=runsc",
            "device_cgroup_rules",
        ] {
            assert_eq!(text.parse::<Feature>().unwrap().to_string(), text);
        }
        assert_eq!(
            "cap_add=cap_net_admin"
                .parse::<Feature>()
                .unwrap()
                .to_string(),
            "cap_add=NET_ADMIN"
        );
        for bad in [
            "root",
            "bind=relative/path",
            "bind=",
            "low_port=http",
            "privileged=yes",
        ] {
            assert!(bad.parse::<Feature>().is_err(), "{bad}");
        }
    }
}
