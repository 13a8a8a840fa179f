//! The resolved Compose model as Kubernetes objects.
//!
//! Per Compose service: a Deployment (a StatefulSet when it has one replica and a named
//! volume; a DaemonSet for `deploy.mode: global`), a Service named after the Compose service
//! (so its name resolves in the namespace as it does on a Compose network: ClusterIP on the
//! container ports, headless without ports or with `endpoint_mode: dnsrr`), and for published
//! ports a `<service>-public` Service (LoadBalancer or NodePort). Per config and secret a
//! ConfigMap or Secret whose name ends in a hash of its content (a change rolls only its
//! consumers); per named volume a PersistentVolumeClaim. Every object carries the
//! `app.kubernetes.io/*` labels and capstan's `io.capstan.app` / `io.capstan.service`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use capstan_compose::Project;
use capstan_compose::model::{Command, Healthcheck, Service};
use capstan_deploy::FileContent;
use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, Deployment, DeploymentSpec, DeploymentStrategy,
    RollingUpdateDeployment, StatefulSet, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvVar, ExecAction, HostAlias, KeyToPath, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodDNSConfig, PodDNSConfigOption, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, Secret,
    SecretVolumeSource, SecurityContext, Service as KService, ServicePort, ServiceSpec, Sysctl,
    TopologySpreadConstraint, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::Digest as _;

use crate::names::{MAX_LABEL, dns_label, object_name};

/// How published ports are offered outside the cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum Publish {
    /// A load balancer per service (the cluster's provider, or MetalLB, makes it).
    #[default]
    LoadBalancer,
    /// A port on every node (the cluster picks it from its NodePort range).
    NodePort,
}

/// What a target's settings add to the model.
#[derive(Debug, Clone)]
pub struct Options {
    /// The namespace every object goes in.
    pub namespace: String,
    /// How published ports are offered.
    pub publish: Publish,
    /// A named volume's claim, when the volume says no `size` of its own.
    pub volume_size: String,
    /// How long a Deployment may go without progress before the cluster marks it stalled
    /// (capstan then rolls back).
    pub progress_deadline_seconds: i32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            namespace: "default".into(),
            publish: Publish::LoadBalancer,
            volume_size: "1Gi".into(),
            progress_deadline_seconds: 600,
        }
    }
}

/// What is rendered.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub project: &'a Project,
    /// Config and secret contents by `configs/NAME` / `secrets/NAME`.
    pub files: &'a BTreeMap<String, FileContent>,
    /// Service → the reference to run (pinned by digest where it is known); a service not
    /// here runs its `image:` as written.
    pub images: &'a BTreeMap<String, String>,
    /// The release these objects are (an annotation on each workload).
    pub release: Option<i64>,
    /// Service → the hash of what it was rendered from, kept on its pods (capstan's identity
    /// of a replica).
    pub spec_hashes: &'a BTreeMap<String, String>,
    /// For showing (`capstan render`): Secrets are rendered without their values.
    pub redact: bool,
}

/// One rendered object.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    ConfigMap(ConfigMap),
    Secret(Secret),
    PersistentVolumeClaim(PersistentVolumeClaim),
    Service(KService),
    Deployment(Deployment),
    StatefulSet(StatefulSet),
    DaemonSet(DaemonSet),
}

impl Object {
    /// The object as the API takes it (with `apiVersion` and `kind`).
    pub fn to_value(&self) -> serde_json::Value {
        let v = match self {
            Self::ConfigMap(o) => serde_json::to_value(o),
            Self::Secret(o) => serde_json::to_value(o),
            Self::PersistentVolumeClaim(o) => serde_json::to_value(o),
            Self::Service(o) => serde_json::to_value(o),
            Self::Deployment(o) => serde_json::to_value(o),
            Self::StatefulSet(o) => serde_json::to_value(o),
            Self::DaemonSet(o) => serde_json::to_value(o),
        };
        // the API's types always serialise
        v.unwrap_or_default()
    }

    /// `Kind/name`.
    pub fn id(&self) -> String {
        let v = self.to_value();
        format!(
            "{}/{}",
            v["kind"].as_str().unwrap_or_default(),
            v["metadata"]["name"].as_str().unwrap_or_default()
        )
    }
}

/// A key a cluster cannot honour: `key` is its path in the model (`services.web.ports[0]`),
/// `why` says why and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {why}")]
pub struct Refusal {
    pub key: String,
    pub why: String,
}

fn refuse<T>(key: impl Into<String>, why: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal {
        key: key.into(),
        why: why.into(),
    })
}

/// The Service keys the renderer carries over; any other key a service sets is refused.
const HONOURED: &[&str] = &[
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "ports",
    "expose",
    "volumes",
    "networks",
    "depends_on",
    "healthcheck",
    "restart",
    "deploy",
    "labels",
    "user",
    "working_dir",
    "cap_add",
    "cap_drop",
    "read_only",
    "security_opt",
    "privileged",
    "init",
    "stop_grace_period",
    "tmpfs",
    "sysctls",
    "extra_hosts",
    "dns",
    "dns_search",
    "dns_opt",
    "hostname",
    "shm_size",
    "mem_limit",
    "mem_reservation",
    "cpus",
    "runtime",
    "pull_policy",
    "stdin_open",
    "tty",
    "scale",
    "configs",
    "secrets",
    "profiles",
    "attach",
];

/// Why a key a Kubernetes pod has no place for is refused.
fn unhonoured_why(key: &str) -> &'static str {
    match key {
        "build" => {
            "a cluster's nodes pull every image from a registry: build and push it, then name it in image"
        }
        "network_mode" | "pid" | "ipc" | "uts" | "userns_mode" => {
            "a pod has its own namespaces; it cannot join a host's or another container's"
        }
        "container_name" => "Kubernetes names a workload's pods itself",
        "devices" | "device_cgroup_rules" | "gpus" => {
            "a host's devices are a node's (a device plugin offers them as resources)"
        }
        "logging" => {
            "the kubelet keeps every container's log (capstan collects them on the nodes); take logging out"
        }
        "ulimits" => "a pod's limits are its node's; Kubernetes has no per-container ulimits",
        "pids_limit" => "a pod's process limit is its kubelet's (podPidsLimit)",
        "stop_signal" => "Kubernetes stops a container with SIGTERM; make the process stop on it",
        "cgroup_parent" | "cpu_shares" | "cpuset" | "cpu_period" | "cpu_quota"
        | "cpu_rt_period" | "cpu_rt_runtime" | "memswap_limit" | "mem_swappiness"
        | "oom_score_adj" | "oom_kill_disable" | "blkio_config" | "storage_opt" => {
            "it tunes one host's cgroups; a pod has cpu and memory requests and limits (deploy.resources)"
        }
        "group_add" => "a pod's supplemental groups are pod-wide: set user instead",
        "domainname" => "a pod's domain is its cluster's",
        _ => "Kubernetes has no equivalent",
    }
}

/// Labels every object of `service` (or of the app, for shared objects) carries.
fn labels(app: &str, service: Option<&str>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        ("app.kubernetes.io/instance".to_owned(), app.to_owned()),
        ("app.kubernetes.io/part-of".to_owned(), app.to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "capstan".to_owned(),
        ),
        ("io.capstan.app".to_owned(), app.to_owned()),
    ]);
    if let Some(s) = service {
        l.insert("app.kubernetes.io/name".into(), s.to_owned());
        l.insert("io.capstan.service".into(), s.to_owned());
    }
    l
}

/// The labels a service's pods are selected by.
fn selector(app: &str, service: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("io.capstan.app".to_owned(), app.to_owned()),
        ("io.capstan.service".to_owned(), service.to_owned()),
    ])
}

fn meta(name: &str, namespace: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

fn hash8(bytes: &[u8]) -> String {
    let d = sha2::Sha256::digest(bytes);
    d.iter().take(4).fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Whole seconds, at least one, from a Compose duration (`1m30s`, `500ms`).
fn seconds(key: &str, text: &str) -> Result<i32, Refusal> {
    let d = capstan_model::parse_duration(text).or_else(|e| refuse(key, e.to_string()))?;
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(s.max(1)).or_else(|_| refuse(key, format!("{text} is too long")))
}

/// A memory size of Compose (`512m`, `1g`) as a quantity in bytes.
fn memory(key: &str, text: &str) -> Result<Quantity, Refusal> {
    let b = capstan_model::parse_size(text).or_else(|e| refuse(key, e.to_string()))?;
    Ok(Quantity(b.to_string()))
}

/// CPUs of Compose (`0.5`, `2`) as a quantity in millicores.
fn cpus(key: &str, text: &str) -> Result<Quantity, Refusal> {
    let nano = capstan_deploy::units::nano_cpus(text).or_else(|e| refuse(key, e))?;
    if nano <= 0 {
        return refuse(key, "a CPU limit is more than 0");
    }
    Ok(Quantity(format!("{}m", (nano + 999_999) / 1_000_000)))
}

fn command(key: &str, c: &Command) -> Result<Vec<String>, Refusal> {
    match c {
        Command::Exec(v) => Ok(v.clone()),
        Command::Shell(s) => capstan_deploy::units::shell_split(s).or_else(|e| refuse(key, e)),
    }
}

/// Renders `input` for a cluster with `options`: the objects in the order they are applied
/// (configs, secrets and claims before the workloads that use them, Services with them).
///
/// # Errors
/// The first key a cluster cannot honour, with why.
pub fn render(input: &Input<'_>, options: &Options) -> Result<Vec<Object>, Refusal> {
    let project = input.project;
    let Some(app) = project.name.as_deref() else {
        return refuse("name", "the app has no name");
    };
    dns_label(app).or_else(|e| refuse("name", e))?;
    dns_label(&options.namespace).or_else(|e| refuse("namespace", e))?;
    check_networks(project)?;
    let mut out = Vec::new();
    let files = files(input, app, options, &mut out)?;
    let claims = claims(project, app, options, &mut out)?;
    for (name, service) in &project.services {
        let at = format!("services.{name}");
        dns_label(name).or_else(|e| {
            refuse(
                &at,
                format!(
                    "its Service is named after it so that the name resolves as on a Compose network: {e}"
                ),
            )
        })?;
        render_service(
            input,
            options,
            &Scope {
                app,
                name,
                at: &at,
                files: &files,
                claims: &claims,
            },
            service,
            &mut out,
        )?;
    }
    Ok(out)
}

/// A network membership a flat pod network would widen is refused: every service of the app
/// must be on the same networks (which one namespace then is).
fn check_networks(project: &Project) -> Result<(), Refusal> {
    let mut seen: Option<(String, BTreeSet<String>)> = None;
    for (name, s) in &project.services {
        let mut on = BTreeSet::new();
        for (net, cfg) in s.networks.iter().flat_map(|n| n.0.iter()) {
            let at = format!("services.{name}.networks.{net}");
            if !cfg.aliases.is_empty() {
                return refuse(
                    format!("{at}.aliases"),
                    "a pod is reached through its Service, named after the Compose service; take the aliases out",
                );
            }
            if cfg.ipv4_address.is_some() || cfg.ipv6_address.is_some() {
                return refuse(
                    format!("{at}.ipv4_address"),
                    "the cluster gives each pod its address",
                );
            }
            on.insert(net.clone());
        }
        if on.is_empty() {
            on.insert("default".into());
        }
        match &seen {
            None => seen = Some((name.clone(), on)),
            Some((first, nets)) if *nets != on => {
                return refuse(
                    format!("services.{name}.networks"),
                    format!(
                        "{name} and {first} are on different networks, and every pod of a namespace \
                         reaches every other (capstan renders no NetworkPolicy yet): put the app's \
                         services on the same networks, or split it into apps"
                    ),
                );
            }
            Some(_) => {}
        }
    }
    for (net, def) in &project.networks {
        if def.as_ref().and_then(|d| d.external) == Some(true) {
            return refuse(
                format!("networks.{net}.external"),
                "a cluster has one pod network; there is no other to join",
            );
        }
    }
    Ok(())
}

/// The ConfigMaps and Secrets of the app: name in the model → the object's name.
fn files(
    input: &Input<'_>,
    app: &str,
    options: &Options,
    out: &mut Vec<Object>,
) -> Result<BTreeMap<String, String>, Refusal> {
    let mut names = BTreeMap::new();
    for (kind, objects) in [
        ("configs", &input.project.configs),
        ("secrets", &input.project.secrets),
    ] {
        for (name, obj) in objects {
            let at = format!("{kind}.{name}");
            if obj.external == Some(true) {
                // one the cluster has already, by its own name
                let own = obj.name.clone().unwrap_or_else(|| name.clone());
                crate::names::dns_label(&own.replace('.', "-")).or_else(|e| refuse(&at, e))?;
                names.insert(format!("{kind}/{name}"), own);
                continue;
            }
            let Some(content) = input.files.get(&format!("{kind}/{name}")) else {
                return refuse(&at, "its content was not sent with the request");
            };
            let bytes = content
                .bytes()
                .or_else(|e| refuse(&at, format!("its content does not decode: {e}")))?;
            let base = object_name(app, name, MAX_LABEL - 9).or_else(|e| refuse(&at, e))?;
            let object = format!("{base}-{}", hash8(&bytes));
            let key = file_key(name);
            let m = meta(&object, &options.namespace, labels(app, None));
            if kind == "configs" {
                let mut cm = ConfigMap {
                    metadata: m,
                    ..ConfigMap::default()
                };
                match String::from_utf8(bytes) {
                    Ok(text) => cm.data = Some(BTreeMap::from([(key, text)])),
                    Err(e) => {
                        cm.binary_data = Some(BTreeMap::from([(
                            key,
                            k8s_openapi::ByteString(e.into_bytes()),
                        )]));
                    }
                }
                cm.immutable = Some(true);
                out.push(Object::ConfigMap(cm));
            } else {
                let mut secret = Secret {
                    metadata: m,
                    type_: Some("Opaque".into()),
                    immutable: Some(true),
                    ..Secret::default()
                };
                if input.redact {
                    let mut a = BTreeMap::new();
                    a.insert(
                        "io.capstan.redacted".to_owned(),
                        format!("{key}: {} bytes, not shown", bytes.len()),
                    );
                    secret.metadata.annotations = Some(a);
                } else {
                    secret.data = Some(BTreeMap::from([(key, k8s_openapi::ByteString(bytes))]));
                }
                out.push(Object::Secret(secret));
            }
            names.insert(format!("{kind}/{name}"), object);
        }
    }
    Ok(names)
}

/// The key a config's or secret's content is kept under (a file name).
fn file_key(name: &str) -> String {
    let k: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if k.is_empty() { "content".into() } else { k }
}

/// The claims of the app's named volumes: name in the model → the claim's name.
fn claims(
    project: &Project,
    app: &str,
    options: &Options,
    out: &mut Vec<Object>,
) -> Result<BTreeMap<String, String>, Refusal> {
    let mut names = BTreeMap::new();
    for (name, def) in &project.volumes {
        let at = format!("volumes.{name}");
        let def = def.clone().unwrap_or_default();
        if def.external == Some(true) {
            let own = def.name.clone().unwrap_or_else(|| name.clone());
            dns_label(&own).or_else(|e| refuse(&at, format!("an existing claim's name: {e}")))?;
            names.insert(name.clone(), own);
            continue;
        }
        if def.driver.as_deref().is_some_and(|d| d != "local") {
            return refuse(
                format!("{at}.driver"),
                "a claim is made by the cluster's storage class; take the driver out",
            );
        }
        let mut size = options.volume_size.clone();
        for (k, v) in &def.driver_opts {
            if k == "size" {
                size.clone_from(v);
            } else {
                return refuse(
                    format!("{at}.driver_opts.{k}"),
                    "a claim takes only a size (driver_opts.size: 10Gi)",
                );
            }
        }
        let claim = object_name(app, name, MAX_LABEL).or_else(|e| refuse(&at, e))?;
        let mut l = labels(app, None);
        l.insert("io.capstan.volume".into(), file_key(name));
        out.push(Object::PersistentVolumeClaim(PersistentVolumeClaim {
            metadata: meta(&claim, &options.namespace, l),
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([("storage".to_owned(), Quantity(size))])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        }));
        names.insert(name.clone(), claim);
    }
    Ok(names)
}

/// What one service's rendering needs to know of the app.
struct Scope<'a> {
    app: &'a str,
    name: &'a str,
    /// `services.NAME`
    at: &'a str,
    files: &'a BTreeMap<String, String>,
    claims: &'a BTreeMap<String, String>,
}

fn render_service(
    input: &Input<'_>,
    options: &Options,
    scope: &Scope<'_>,
    s: &Service,
    out: &mut Vec<Object>,
) -> Result<(), Refusal> {
    let at = scope.at;
    let set = serde_json::to_value(s).unwrap_or_default();
    for key in set.as_object().into_iter().flat_map(|m| m.keys()) {
        if !HONOURED.contains(&key.as_str()) {
            return refuse(format!("{at}.{key}"), unhonoured_why(key));
        }
    }
    let mut pod = PodSpec::default();
    let mut container = Container {
        name: scope.name.to_owned(),
        ..Container::default()
    };
    container.image = Some(
        input
            .images
            .get(scope.name)
            .cloned()
            .or_else(|| s.image.clone())
            .map_or_else(
                || {
                    refuse(
                        format!("{at}.image"),
                        "a cluster runs an image from a registry: name it",
                    )
                },
                Ok,
            )?,
    );
    container.image_pull_policy = match s.pull_policy.as_deref() {
        None => None,
        Some("always") => Some("Always".into()),
        Some("never") => Some("Never".into()),
        Some("missing" | "if_not_present") => Some("IfNotPresent".into()),
        Some(other) => {
            return refuse(
                format!("{at}.pull_policy"),
                format!("{other}: a cluster pulls always, never or if missing"),
            );
        }
    };
    if let Some(e) = &s.entrypoint {
        container.command = Some(command(&format!("{at}.entrypoint"), e)?);
    }
    if let Some(c) = &s.command {
        container.args = Some(command(&format!("{at}.command"), c)?);
    }
    let env: Vec<EnvVar> = s
        .environment
        .iter()
        .filter_map(|(k, v)| {
            v.as_ref().map(|v| EnvVar {
                name: k.clone(),
                value: Some(v.clone()),
                ..EnvVar::default()
            })
        })
        .collect();
    if !env.is_empty() {
        container.env = Some(env);
    }
    container.working_dir.clone_from(&s.working_dir);
    container.stdin = s.stdin_open;
    container.tty = s.tty;
    let ports = container_ports(s, at)?;
    if !ports.is_empty() {
        container.ports = Some(
            ports
                .iter()
                .map(|(port, proto)| ContainerPort {
                    container_port: i32::from(*port),
                    protocol: Some(proto.clone()),
                    ..ContainerPort::default()
                })
                .collect(),
        );
    }
    probes(s, at, &mut container)?;
    container.resources = resources(s, at)?;
    container.security_context = security(s, at)?;
    if let Some(grace) = &s.stop_grace_period {
        pod.termination_grace_period_seconds = Some(i64::from(seconds(
            &format!("{at}.stop_grace_period"),
            grace,
        )?));
    }
    match s.restart.as_deref() {
        None | Some("always" | "unless-stopped") => {}
        Some(other) => {
            return refuse(
                format!("{at}.restart"),
                format!(
                    "{other}: a workload's pods are always restarted (a run-once job is no service)"
                ),
            );
        }
    }
    if s.init == Some(true) {
        // the pod's pause process is PID 1 then: it reaps orphans, and the service gets
        // SIGTERM as a process that is not PID 1, as under docker-init
        pod.share_process_namespace = Some(true);
    }
    pod.runtime_class_name.clone_from(&s.runtime);
    if let Some(h) = &s.hostname {
        dns_label(h).or_else(|e| refuse(format!("{at}.hostname"), e))?;
        pod.hostname = Some(h.clone());
    }
    if !s.extra_hosts.is_empty() {
        let mut by_ip: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (host, ip) in &s.extra_hosts {
            if ip == "host-gateway" {
                return refuse(
                    format!("{at}.extra_hosts"),
                    "host-gateway is one Docker host's address; a pod has no such host",
                );
            }
            by_ip.entry(ip.clone()).or_default().push(host.clone());
        }
        pod.host_aliases = Some(
            by_ip
                .into_iter()
                .map(|(ip, hostnames)| HostAlias {
                    ip,
                    hostnames: Some(hostnames),
                })
                .collect(),
        );
    }
    if !(s.dns.is_empty() && s.dns_search.is_empty() && s.dns_opt.is_empty()) {
        pod.dns_config = Some(PodDNSConfig {
            nameservers: (!s.dns.is_empty()).then(|| s.dns.clone()),
            searches: (!s.dns_search.is_empty()).then(|| s.dns_search.clone()),
            options: (!s.dns_opt.is_empty()).then(|| {
                s.dns_opt
                    .iter()
                    .map(|o| {
                        let (name, value) = o
                            .split_once(':')
                            .map_or((o.as_str(), None), |(n, v)| (n, Some(v.to_owned())));
                        PodDNSConfigOption {
                            name: Some(name.to_owned()),
                            value,
                        }
                    })
                    .collect()
            }),
        });
    }
    if !s.sysctls.is_empty() {
        pod.security_context = Some(PodSecurityContext {
            sysctls: Some(
                s.sysctls
                    .iter()
                    .map(|(name, value)| Sysctl {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
            ),
            ..PodSecurityContext::default()
        });
    }
    let named = mounts(input, scope, s, &mut pod, &mut container)?;
    placement(s, at, &mut pod)?;
    pod.containers = vec![container];

    // the workload
    let deploy = s.deploy.clone().unwrap_or_default();
    let global = match deploy.mode.as_deref() {
        None | Some("replicated") => false,
        Some("global") => true,
        Some(other) => {
            return refuse(
                format!("{at}.deploy.mode"),
                format!("{other}: replicated or global"),
            );
        }
    };
    let replicas = deploy.replicas.or(s.scale).unwrap_or(1);
    let replicas_i32 = i32::try_from(replicas)
        .ok()
        .filter(|r| *r >= 0)
        .map_or_else(
            || {
                refuse(
                    format!("{at}.deploy.replicas"),
                    format!("{replicas} replicas?"),
                )
            },
            Ok,
        )?;
    let (app, name) = (scope.app, scope.name);
    let mut pod_labels = labels(app, Some(name));
    let mut pod_annotations = BTreeMap::new();
    for (k, v) in &s.labels {
        // a container's Compose labels may not be valid Kubernetes labels: annotations take
        // any key and value
        pod_annotations.insert(k.clone(), v.clone());
    }
    if let Some(h) = input.spec_hashes.get(name) {
        pod_labels.insert("io.capstan.spec".into(), h.clone());
    }
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            annotations: (!pod_annotations.is_empty()).then_some(pod_annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(pod),
    };
    let selector = LabelSelector {
        match_labels: Some(selector(app, name)),
        ..LabelSelector::default()
    };
    let mut workload_meta = meta(
        &object_name(app, name, if named { 52 } else { MAX_LABEL }).or_else(|e| refuse(at, e))?,
        &options.namespace,
        labels(app, Some(name)),
    );
    let mut annotations: BTreeMap<String, String> = deploy.labels.clone().into_iter().collect();
    if let Some(r) = input.release {
        annotations.insert("io.capstan.release".into(), r.to_string());
    }
    if !annotations.is_empty() {
        workload_meta.annotations = Some(annotations);
    }
    let update = deploy.update_config.clone().unwrap_or_default();
    let parallelism = update.parallelism.unwrap_or(1).max(1);
    let parallelism = IntOrString::Int(i32::try_from(parallelism).unwrap_or(i32::MAX));
    let mut min_ready = 0;
    for (key, v) in [("monitor", &update.monitor), ("delay", &update.delay)] {
        if let Some(v) = v {
            min_ready += seconds(&format!("{at}.deploy.update_config.{key}"), v)?;
        }
    }
    let service_name = headless_or_not(s, &ports);
    if global {
        out.push(Object::DaemonSet(DaemonSet {
            metadata: workload_meta,
            spec: Some(DaemonSetSpec {
                selector,
                template,
                min_ready_seconds: (min_ready > 0).then_some(min_ready),
                ..DaemonSetSpec::default()
            }),
            ..DaemonSet::default()
        }));
    } else if named {
        if replicas > 1 {
            return refuse(
                format!("{at}.deploy.replicas"),
                "its named volume is one claim that one node mounts: give it one replica",
            );
        }
        out.push(Object::StatefulSet(StatefulSet {
            metadata: workload_meta,
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas_i32),
                selector,
                service_name: Some(name.to_owned()),
                template,
                min_ready_seconds: (min_ready > 0).then_some(min_ready),
                ..StatefulSetSpec::default()
            }),
            ..StatefulSet::default()
        }));
    } else {
        let stop_first = update.order.as_deref() == Some("stop-first");
        let zero = IntOrString::Int(0);
        out.push(Object::Deployment(Deployment {
            metadata: workload_meta,
            spec: Some(DeploymentSpec {
                replicas: Some(replicas_i32),
                selector,
                template,
                min_ready_seconds: (min_ready > 0).then_some(min_ready),
                progress_deadline_seconds: Some(options.progress_deadline_seconds),
                // capstan keeps every release in its ledger; the cluster keeps a few
                revision_history_limit: Some(3),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(if stop_first {
                        RollingUpdateDeployment {
                            max_surge: Some(zero),
                            max_unavailable: Some(parallelism),
                        }
                    } else {
                        RollingUpdateDeployment {
                            max_surge: Some(parallelism),
                            max_unavailable: Some(zero),
                        }
                    }),
                }),
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        }));
    }
    services(options, scope, s, &ports, service_name, out)
}

/// Whether the service's Service is headless (no ports to balance, or `endpoint_mode: dnsrr`).
fn headless_or_not(s: &Service, ports: &[(u16, String)]) -> bool {
    ports.is_empty() || s.deploy.as_ref().and_then(|d| d.endpoint_mode.as_deref()) == Some("dnsrr")
}

/// The container's ports: every `ports` target and `expose`, with its protocol.
fn container_ports(s: &Service, at: &str) -> Result<Vec<(u16, String)>, Refusal> {
    let mut ports: Vec<(u16, String)> = Vec::new();
    let mut add = |port: u16, proto: &str, key: &str| -> Result<(), Refusal> {
        let proto = match proto {
            "" | "tcp" => "TCP",
            "udp" => "UDP",
            "sctp" => "SCTP",
            other => return refuse(key, format!("{other}: tcp, udp or sctp")),
        };
        if !ports.iter().any(|(p, q)| *p == port && q == proto) {
            ports.push((port, proto.to_owned()));
        }
        Ok(())
    };
    for (i, p) in s.ports.iter().enumerate() {
        add(p.target, &p.protocol, &format!("{at}.ports[{i}]"))?;
    }
    for (i, e) in s.expose.iter().enumerate() {
        let key = format!("{at}.expose[{i}]");
        let (num, proto) = e.split_once('/').unwrap_or((e.as_str(), "tcp"));
        let port: u16 = num.parse().map_or_else(
            |_| refuse(&key, format!("{e}: one port (a range is not taken)")),
            Ok,
        )?;
        add(port, proto, &key)?;
    }
    Ok(ports)
}

/// healthcheck → readinessProbe (exec); a liveness probe too where the service asks for it
/// (`io.capstan.liveness: "true"` among its labels).
fn probes(s: &Service, at: &str, c: &mut Container) -> Result<(), Refusal> {
    let Some(h) = &s.healthcheck else {
        return Ok(());
    };
    let key = format!("{at}.healthcheck");
    if h.disable == Some(true) || h.test.first().map(String::as_str) == Some("NONE") {
        return Ok(());
    }
    let exec = match h.test.first().map(String::as_str) {
        Some("CMD") if h.test.len() > 1 => h.test[1..].to_vec(),
        Some("CMD-SHELL") if h.test.len() == 2 => {
            vec!["/bin/sh".into(), "-c".into(), h.test[1].clone()]
        }
        _ => {
            return refuse(
                format!("{key}.test"),
                "a probe runs [\"CMD\", ...] or [\"CMD-SHELL\", \"...\"]",
            );
        }
    };
    let probe = |start: Option<i32>| -> Result<Probe, Refusal> {
        let h: &Healthcheck = h;
        Ok(Probe {
            exec: Some(ExecAction {
                command: Some(exec.clone()),
            }),
            period_seconds: h
                .interval
                .as_deref()
                .map(|v| seconds(&format!("{key}.interval"), v))
                .transpose()?,
            timeout_seconds: h
                .timeout
                .as_deref()
                .map(|v| seconds(&format!("{key}.timeout"), v))
                .transpose()?,
            failure_threshold: h
                .retries
                .map(|r| i32::try_from(r.max(1)).unwrap_or(i32::MAX)),
            initial_delay_seconds: start,
            ..Probe::default()
        })
    };
    if h.start_interval.is_some() {
        return refuse(
            format!("{key}.start_interval"),
            "a probe has one period; take start_interval out",
        );
    }
    c.readiness_probe = Some(probe(None)?);
    if s.labels.get("io.capstan.liveness").map(String::as_str) == Some("true") {
        let start = h
            .start_period
            .as_deref()
            .map(|v| seconds(&format!("{key}.start_period"), v))
            .transpose()?;
        c.liveness_probe = Some(probe(start)?);
    }
    Ok(())
}

fn resources(s: &Service, at: &str) -> Result<Option<ResourceRequirements>, Refusal> {
    let mut limits = BTreeMap::new();
    let mut requests = BTreeMap::new();
    let r = s
        .deploy
        .as_ref()
        .and_then(|d| d.resources.clone())
        .unwrap_or_default();
    let key = format!("{at}.deploy.resources");
    for (set, into, name) in [
        (&r.limits, &mut limits, "limits"),
        (&r.reservations, &mut requests, "reservations"),
    ] {
        let Some(set) = set else { continue };
        if let Some(c) = &set.cpus {
            into.insert("cpu".to_owned(), cpus(&format!("{key}.{name}.cpus"), c)?);
        }
        if let Some(m) = &set.memory {
            into.insert(
                "memory".to_owned(),
                memory(&format!("{key}.{name}.memory"), m)?,
            );
        }
        if set.pids.is_some() {
            return refuse(
                format!("{key}.{name}.pids"),
                "a pod's process limit is its kubelet's (podPidsLimit)",
            );
        }
        if !set.devices.is_empty() {
            return refuse(
                format!("{key}.{name}.devices"),
                "devices are a node's (a device plugin offers them as resources)",
            );
        }
    }
    if let Some(m) = &s.mem_limit {
        limits.insert("memory".to_owned(), memory(&format!("{at}.mem_limit"), m)?);
    }
    if let Some(m) = &s.mem_reservation {
        requests.insert(
            "memory".to_owned(),
            memory(&format!("{at}.mem_reservation"), m)?,
        );
    }
    if let Some(c) = &s.cpus {
        limits.insert("cpu".to_owned(), cpus(&format!("{at}.cpus"), c)?);
    }
    if limits.is_empty() && requests.is_empty() {
        return Ok(None);
    }
    Ok(Some(ResourceRequirements {
        limits: (!limits.is_empty()).then_some(limits),
        requests: (!requests.is_empty()).then_some(requests),
        ..ResourceRequirements::default()
    }))
}

fn security(s: &Service, at: &str) -> Result<Option<SecurityContext>, Refusal> {
    let mut sc = SecurityContext::default();
    if let Some(user) = &s.user {
        let (u, g) = user.split_once(':').unwrap_or((user.as_str(), ""));
        sc.run_as_user = Some(u.parse().map_or_else(
            |_| {
                refuse(
                    format!("{at}.user"),
                    format!(
                        "{u}: a pod runs as a user id (a name is looked up nowhere): user: \"1000\" or \"1000:1000\""
                    ),
                )
            },
            Ok,
        )?);
        if !g.is_empty() {
            sc.run_as_group = Some(g.parse().map_or_else(
                |_| refuse(format!("{at}.user"), format!("{g}: a group id")),
                Ok,
            )?);
        }
    }
    let caps = |v: &[String]| -> Option<Vec<String>> {
        (!v.is_empty()).then(|| {
            v.iter()
                .map(|c| c.trim_start_matches("CAP_").to_owned())
                .collect()
        })
    };
    if !(s.cap_add.is_empty() && s.cap_drop.is_empty()) {
        sc.capabilities = Some(Capabilities {
            add: caps(&s.cap_add),
            drop: caps(&s.cap_drop),
        });
    }
    sc.read_only_root_filesystem = s.read_only;
    sc.privileged = s.privileged;
    for (i, o) in s.security_opt.iter().enumerate() {
        let key = format!("{at}.security_opt[{i}]");
        let (name, value) = o.split_once([':', '=']).unwrap_or((o.as_str(), "true"));
        match (name, value) {
            ("no-new-privileges", "true") => sc.allow_privilege_escalation = Some(false),
            ("no-new-privileges", "false") => {}
            ("seccomp", "unconfined") => {
                sc.seccomp_profile = Some(SeccompProfile {
                    type_: "Unconfined".into(),
                    ..SeccompProfile::default()
                });
            }
            _ => {
                return refuse(
                    key,
                    format!(
                        "{o}: a pod takes no-new-privileges and seccomp=unconfined here; other profiles are a node's files"
                    ),
                );
            }
        }
    }
    Ok((sc != SecurityContext::default()).then_some(sc))
}

/// Volumes, configs, secrets, tmpfs and shm as the pod's volumes and the container's mounts;
/// whether the service mounts a named volume.
fn mounts(
    input: &Input<'_>,
    scope: &Scope<'_>,
    s: &Service,
    pod: &mut PodSpec,
    c: &mut Container,
) -> Result<bool, Refusal> {
    let at = scope.at;
    let mut volumes: Vec<Volume> = Vec::new();
    let mut mounts: Vec<VolumeMount> = Vec::new();
    let mut named = false;
    let mut n = 0;
    let mut next = |prefix: &str| {
        n += 1;
        format!("{prefix}-{n}")
    };
    for (i, v) in s.volumes.iter().enumerate() {
        let key = format!("{at}.volumes[{i}]");
        let name = match v.kind.as_str() {
            "volume" => match &v.source {
                Some(src) => {
                    let Some(claim) = scope.claims.get(src) else {
                        return refuse(&key, format!("{src} is no volume of the app"));
                    };
                    named = true;
                    let name = next("data");
                    volumes.push(Volume {
                        name: name.clone(),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name: claim.clone(),
                            read_only: v.read_only.then_some(true),
                        }),
                        ..Volume::default()
                    });
                    name
                }
                None => {
                    let name = next("scratch");
                    volumes.push(Volume {
                        name: name.clone(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Volume::default()
                    });
                    name
                }
            },
            "tmpfs" => {
                let name = next("tmpfs");
                volumes.push(Volume {
                    name: name.clone(),
                    empty_dir: Some(EmptyDirVolumeSource {
                        medium: Some("Memory".into()),
                        size_limit: v
                            .tmpfs
                            .as_ref()
                            .and_then(|t| t.size.clone())
                            .map(|sz| memory(&format!("{key}.tmpfs.size"), &sz))
                            .transpose()?,
                    }),
                    ..Volume::default()
                });
                name
            }
            "bind" => {
                return refuse(
                    &key,
                    "a bind mount reaches into one host's files, and a pod may run on any node: \
                     use a named volume, or a config or secret for a file",
                );
            }
            other => return refuse(&key, format!("{other} volumes are not taken")),
        };
        mounts.push(VolumeMount {
            name,
            mount_path: v.target.clone(),
            read_only: v.read_only.then_some(true),
            ..VolumeMount::default()
        });
    }
    for (i, t) in s.tmpfs.iter().enumerate() {
        let path = t.split(':').next().unwrap_or_default().to_owned();
        let name = next("tmpfs");
        volumes.push(Volume {
            name: name.clone(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        });
        if path.is_empty() {
            return refuse(format!("{at}.tmpfs[{i}]"), "a tmpfs needs a path");
        }
        mounts.push(VolumeMount {
            name,
            mount_path: path,
            ..VolumeMount::default()
        });
    }
    if let Some(shm) = &s.shm_size {
        let name = next("shm");
        volumes.push(Volume {
            name: name.clone(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: Some(memory(&format!("{at}.shm_size"), shm)?),
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name,
            mount_path: "/dev/shm".into(),
            ..VolumeMount::default()
        });
    }
    for (kind, refs) in [("configs", &s.configs), ("secrets", &s.secrets)] {
        for (i, r) in refs.iter().enumerate() {
            let key = format!("{at}.{kind}[{i}]");
            let Some(object) = scope.files.get(&format!("{kind}/{}", r.source)) else {
                return refuse(&key, format!("{} is no {kind} entry of the app", r.source));
            };
            if r.uid.is_some() || r.gid.is_some() {
                return refuse(
                    format!("{key}.uid"),
                    "a pod's files belong to its fsGroup; take uid and gid out",
                );
            }
            let file = file_key(&r.source);
            let target = r.target.clone().unwrap_or_else(|| {
                if kind == "secrets" {
                    format!("/run/secrets/{}", r.source)
                } else {
                    format!("/{}", r.source)
                }
            });
            let target = if kind == "secrets" && !target.starts_with('/') {
                format!("/run/secrets/{target}")
            } else {
                target
            };
            let mode = r.mode.and_then(|m| i32::try_from(m).ok());
            let items = Some(vec![KeyToPath {
                key: file.clone(),
                path: file.clone(),
                mode,
            }]);
            let name = next(if kind == "secrets" {
                "secret"
            } else {
                "config"
            });
            let external = input
                .project
                .configs
                .get(&r.source)
                .or_else(|| input.project.secrets.get(&r.source))
                .and_then(|o| o.external)
                == Some(true);
            volumes.push(if kind == "secrets" {
                Volume {
                    name: name.clone(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(object.clone()),
                        items: if external { None } else { items },
                        ..SecretVolumeSource::default()
                    }),
                    ..Volume::default()
                }
            } else {
                Volume {
                    name: name.clone(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: object.clone(),
                        items: if external { None } else { items },
                        ..ConfigMapVolumeSource::default()
                    }),
                    ..Volume::default()
                }
            });
            mounts.push(VolumeMount {
                name,
                mount_path: target,
                sub_path: (!external).then_some(file),
                read_only: Some(true),
                ..VolumeMount::default()
            });
        }
    }
    if !volumes.is_empty() {
        pod.volumes = Some(volumes);
        c.volume_mounts = Some(mounts);
    }
    Ok(named)
}

/// `deploy.placement`: constraints on node labels and hostnames as node affinity, spread
/// preferences as topology spread constraints.
fn placement(s: &Service, at: &str, pod: &mut PodSpec) -> Result<(), Refusal> {
    let Some(p) = s.deploy.as_ref().and_then(|d| d.placement.clone()) else {
        return Ok(());
    };
    let key = format!("{at}.deploy.placement");
    let mut terms = Vec::new();
    for (i, c) in p.constraints.iter().enumerate() {
        let (field, op, value) = if let Some((f, v)) = c.split_once("!=") {
            (f.trim(), "NotIn", v.trim())
        } else if let Some((f, v)) = c.split_once("==") {
            (f.trim(), "In", v.trim())
        } else {
            return refuse(
                format!("{key}.constraints[{i}]"),
                format!("{c}: a constraint is ATTRIBUTE==VALUE or ATTRIBUTE!=VALUE"),
            );
        };
        let label = if let Some(l) = field.strip_prefix("node.labels.") {
            l.to_owned()
        } else if field == "node.hostname" {
            "kubernetes.io/hostname".to_owned()
        } else {
            return refuse(
                format!("{key}.constraints[{i}]"),
                format!(
                    "{field}: a cluster places on node.labels.* and node.hostname (it has no Swarm roles or engine labels)"
                ),
            );
        };
        terms.push(NodeSelectorRequirement {
            key: label,
            operator: op.into(),
            values: Some(vec![value.to_owned()]),
        });
    }
    if !terms.is_empty() {
        pod.affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(terms),
                        ..NodeSelectorTerm::default()
                    }],
                }),
                ..NodeAffinity::default()
            }),
            ..Affinity::default()
        });
    }
    let mut spread = Vec::new();
    for (i, pref) in p.preferences.iter().enumerate() {
        let Some(label) = pref.spread.strip_prefix("node.labels.") else {
            return refuse(
                format!("{key}.preferences[{i}].spread"),
                format!("{}: a cluster spreads over node.labels.*", pref.spread),
            );
        };
        spread.push(TopologySpreadConstraint {
            max_skew: 1,
            topology_key: label.to_owned(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            ..TopologySpreadConstraint::default()
        });
    }
    if let Some(max) = p.max_replicas_per_node {
        return refuse(
            format!("{key}.max_replicas_per_node"),
            format!(
                "{max}: a cluster spreads replicas with topology constraints, not a per-node cap"
            ),
        );
    }
    if !spread.is_empty() {
        pod.topology_spread_constraints = Some(spread);
    }
    Ok(())
}

/// The service's Services: `<service>` (cluster-internal, on the container ports, as the
/// service's name resolves on a Compose network) and, for published ports, `<service>-public`.
fn services(
    options: &Options,
    scope: &Scope<'_>,
    s: &Service,
    ports: &[(u16, String)],
    headless: bool,
    out: &mut Vec<Object>,
) -> Result<(), Refusal> {
    let (app, name, at) = (scope.app, scope.name, scope.at);
    let port_name = |port: u16, proto: &str| format!("{}-{port}", proto.to_ascii_lowercase());
    out.push(Object::Service(KService {
        metadata: meta(name, &options.namespace, labels(app, Some(name))),
        spec: Some(ServiceSpec {
            selector: Some(selector(app, name)),
            cluster_ip: headless.then(|| "None".to_owned()),
            ports: (!ports.is_empty()).then(|| {
                ports
                    .iter()
                    .map(|(p, proto)| ServicePort {
                        name: Some(port_name(*p, proto)),
                        port: i32::from(*p),
                        protocol: Some(proto.clone()),
                        target_port: Some(IntOrString::Int(i32::from(*p))),
                        ..ServicePort::default()
                    })
                    .collect()
            }),
            ..ServiceSpec::default()
        }),
        ..KService::default()
    }));
    let mut public = Vec::new();
    for (i, p) in s.ports.iter().enumerate() {
        let key = format!("{at}.ports[{i}]");
        let Some(published) = &p.published else {
            continue;
        };
        if p.host_ip.is_some() {
            return refuse(
                format!("{key}.host_ip"),
                "a cluster publishes on its load balancer's or nodes' addresses: take the address out",
            );
        }
        let (first, last) = published.split_once('-').unwrap_or((published, published));
        let (Ok(first), Ok(last)) = (first.parse::<u16>(), last.parse::<u16>()) else {
            return refuse(&key, format!("{published} is no published port"));
        };
        if first != last {
            return refuse(&key, "a Service publishes single ports, not a range");
        }
        let proto = match p.protocol.as_str() {
            "udp" => "UDP",
            "sctp" => "SCTP",
            _ => "TCP",
        };
        public.push(ServicePort {
            name: Some(port_name(first, proto)),
            port: i32::from(first),
            protocol: Some(proto.to_owned()),
            target_port: Some(IntOrString::Int(i32::from(p.target))),
            ..ServicePort::default()
        });
    }
    if !public.is_empty() {
        let public_name = object_name(name, "public", MAX_LABEL).or_else(|e| refuse(at, e))?;
        out.push(Object::Service(KService {
            metadata: meta(&public_name, &options.namespace, labels(app, Some(name))),
            spec: Some(ServiceSpec {
                type_: Some(
                    match options.publish {
                        Publish::LoadBalancer => "LoadBalancer",
                        Publish::NodePort => "NodePort",
                    }
                    .into(),
                ),
                selector: Some(selector(app, name)),
                ports: Some(public),
                ..ServiceSpec::default()
            }),
            ..KService::default()
        }));
    }
    Ok(())
}
