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

/// A whole project after loading.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Project {
    /// Obsolete; accepted and ignored (with a warning).
    #[serde(default, skip_serializing)]
    pub version: Option<serde_json::Value>,
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
}

/// One service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
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

/// A published or exposed port, long form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "PortInput")]
pub struct Port {
    pub target: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// A name for the port (documentation only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The application protocol; capstan's proxy forwards `http` request by request and any
    /// other named protocol as raw TCP (unset: sniffed per connection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

enum PortInput {
    Number(u16),
    Short(String),
    Long(PortLong),
}

by_kind!(PortInput {
    J::Number(n) => n
        .as_u64()
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| *n > 0)
        .map(PortInput::Number)
        .ok_or_else(|| format!("{n} is not a port number (1-65535)")),
    J::String(s) => Ok(PortInput::Short(s)),
    v @ J::Object(_) => long(v).map(PortInput::Long),
    other => Err(format!("expected a port (\"8080:80\" or a mapping), found {other}")),
});

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PortLong {
    #[serde(deserialize_with = "de::int_opt", default)]
    target: Option<i64>,
    #[serde(deserialize_with = "de::text_opt", default)]
    published: Option<String>,
    #[serde(default)]
    host_ip: Option<String>,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    app_protocol: Option<String>,
}

fn port_number(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{s:?} is not a port number (1-65535)"))
}

impl TryFrom<PortInput> for Port {
    type Error = String;
    fn try_from(p: PortInput) -> Result<Self, String> {
        match p {
            PortInput::Number(target) => Ok(Port {
                target,
                protocol: "tcp".into(),
                ..Port::default()
            }),
            PortInput::Long(l) => {
                let target = l.target.ok_or("a long-form port needs `target`")?;
                let target = u16::try_from(target)
                    .ok()
                    .filter(|t| *t > 0)
                    .ok_or_else(|| format!("{target} is not a port number (1-65535)"))?;
                let protocol = l.protocol.unwrap_or_else(|| "tcp".into());
                if !matches!(protocol.as_str(), "tcp" | "udp") {
                    return Err(format!("protocol {protocol:?} is not tcp or udp"));
                }
                if let Some(p) = &l.published {
                    port_number(p.split('-').next().unwrap_or(p))?;
                }
                Ok(Port {
                    target,
                    published: l.published,
                    host_ip: l.host_ip,
                    protocol,
                    mode: l.mode,
                    name: l.name,
                    app_protocol: l.app_protocol,
                })
            }
            PortInput::Short(s) => parse_short_port(&s),
        }
    }
}

/// `[[HOST_IP:]PUBLISHED:]TARGET[/PROTOCOL]`; IPv6 host addresses in brackets.
fn parse_short_port(s: &str) -> Result<Port, String> {
    let (spec, protocol) = match s.rsplit_once('/') {
        Some((spec, proto)) => (spec, proto.to_owned()),
        None => (s, "tcp".to_owned()),
    };
    if !matches!(protocol.as_str(), "tcp" | "udp") {
        return Err(format!(
            "port {s:?}: protocol {protocol:?} is not tcp or udp"
        ));
    }
    let (host_ip, rest) = if let Some(stripped) = spec.strip_prefix('[') {
        let (ip, rest) = stripped
            .split_once("]:")
            .ok_or_else(|| format!("port {s:?}: unclosed [ in the host address"))?;
        (Some(ip.to_owned()), rest)
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.len() {
            1 | 2 => (None, spec),
            3 => (Some(parts[0].to_owned()), &spec[parts[0].len() + 1..]),
            _ => {
                return Err(format!(
                    "port {s:?} is not [[HOST_IP:]PUBLISHED:]TARGET[/PROTOCOL]"
                ));
            }
        }
    };
    let (published, target) = match rest.split_once(':') {
        Some((p, t)) => (Some(p.to_owned()).filter(|p| !p.is_empty()), t),
        None => (None, rest),
    };
    if target.contains('-') {
        return Err(format!(
            "port {s:?}: port ranges are not supported by capstan yet; list the ports one by one"
        ));
    }
    let target = port_number(target).map_err(|e| format!("port {s:?}: {e}"))?;
    if let Some(p) = &published {
        port_number(p.split('-').next().unwrap_or(p)).map_err(|e| format!("port {s:?}: {e}"))?;
    }
    Ok(Port {
        target,
        published,
        host_ip: host_ip.filter(|h| !h.is_empty()),
        protocol,
        ..Port::default()
    })
}

/// A volume, bind mount or tmpfs of a service, long form.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "VolumeInput")]
pub struct ServiceVolume {
    /// `volume`, `bind` or `tmpfs`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub target: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<BindOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<TmpfsOptions>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeOptions {
    #[serde(
        default,
        deserialize_with = "de::bool_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub nocopy: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::bool_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub create_host_path: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TmpfsOptions {
    #[serde(
        default,
        deserialize_with = "de::text_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub size: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::int_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub mode: Option<i64>,
}

enum VolumeInput {
    Short(String),
    Long(VolumeLong),
}

by_kind!(VolumeInput {
    J::String(s) => Ok(VolumeInput::Short(s)),
    v @ J::Object(_) => long(v).map(VolumeInput::Long),
    other => Err(format!("expected a volume (\"name:/path\" or a mapping), found {other}")),
});

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VolumeLong {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    source: Option<String>,
    target: String,
    #[serde(default, deserialize_with = "de::bool_opt")]
    read_only: Option<bool>,
    #[serde(default)]
    volume: Option<VolumeOptions>,
    #[serde(default)]
    bind: Option<BindOptions>,
    #[serde(default)]
    tmpfs: Option<TmpfsOptions>,
}

impl TryFrom<VolumeInput> for ServiceVolume {
    type Error = String;
    fn try_from(v: VolumeInput) -> Result<Self, String> {
        match v {
            VolumeInput::Long(l) => {
                if !matches!(l.kind.as_str(), "volume" | "bind" | "tmpfs") {
                    return Err(format!(
                        "volume type {:?} is not volume, bind or tmpfs",
                        l.kind
                    ));
                }
                if l.kind == "bind" && l.source.is_none() {
                    return Err("a bind mount needs `source`".into());
                }
                Ok(ServiceVolume {
                    kind: l.kind,
                    source: l.source,
                    target: l.target,
                    read_only: l.read_only.unwrap_or(false),
                    volume: l.volume,
                    bind: l.bind,
                    tmpfs: l.tmpfs,
                })
            }
            VolumeInput::Short(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                let (source, target, mode) = match parts.as_slice() {
                    [target] => (None, *target, None),
                    [source, target] => (Some(*source), *target, None),
                    [source, target, mode] => (Some(*source), *target, Some(*mode)),
                    _ => return Err(format!("volume {s:?} is not [SOURCE:]TARGET[:MODE]")),
                };
                if !target.starts_with('/') {
                    return Err(format!(
                        "volume {s:?}: the target {target:?} must be an absolute path"
                    ));
                }
                let mut read_only = false;
                for m in mode
                    .unwrap_or_default()
                    .split(',')
                    .filter(|m| !m.is_empty())
                {
                    match m {
                        "ro" => read_only = true,
                        "rw" | "z" | "Z" | "nocopy" => {}
                        other => {
                            return Err(format!("volume {s:?}: unknown mode {other:?} (ro, rw)"));
                        }
                    }
                }
                let is_path = |src: &str| {
                    src.starts_with('/') || src.starts_with('.') || src.starts_with('~')
                };
                let kind = if source.is_some_and(is_path) {
                    "bind"
                } else {
                    "volume"
                };
                Ok(ServiceVolume {
                    kind: kind.to_owned(),
                    source: source.map(str::to_owned),
                    target: target.to_owned(),
                    read_only,
                    ..ServiceVolume::default()
                })
            }
        }
    }
}

/// `networks:` of a service: a list of names, or names with aliases.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "NetworksInput")]
pub struct ServiceNetworks(pub BTreeMap<String, ServiceNetwork>);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceNetwork {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
}

enum NetworksInput {
    List(Vec<String>),
    Map(BTreeMap<String, Option<ServiceNetwork>>),
}

by_kind!(NetworksInput {
    v @ J::Array(_) => long(v).map(NetworksInput::List),
    v @ J::Object(_) => long(v).map(NetworksInput::Map),
    other => Err(format!("expected a list of networks or a mapping, found {other}")),
});

impl TryFrom<NetworksInput> for ServiceNetworks {
    type Error = String;
    fn try_from(n: NetworksInput) -> Result<Self, String> {
        Ok(ServiceNetworks(match n {
            NetworksInput::List(names) => names
                .into_iter()
                .map(|n| (n, ServiceNetwork::default()))
                .collect(),
            NetworksInput::Map(m) => m
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect(),
        }))
    }
}

/// `depends_on:` a list of names, or names with a condition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "DependsInput")]
pub struct DependsOn(pub BTreeMap<String, Dependency>);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    /// `service_started`, `service_healthy` or `service_completed_successfully`.
    pub condition: String,
    #[serde(
        default,
        deserialize_with = "de::bool_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub restart: Option<bool>,
    #[serde(
        default,
        deserialize_with = "de::bool_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub required: Option<bool>,
}

enum DependsInput {
    List(Vec<String>),
    Map(BTreeMap<String, Dependency>),
}

by_kind!(DependsInput {
    v @ J::Array(_) => long(v).map(DependsInput::List),
    v @ J::Object(_) => long(v).map(DependsInput::Map),
    other => Err(format!("expected a list of services or a mapping, found {other}")),
});

impl TryFrom<DependsInput> for DependsOn {
    type Error = String;
    fn try_from(d: DependsInput) -> Result<Self, String> {
        let map: BTreeMap<String, Dependency> = match d {
            DependsInput::List(names) => names
                .into_iter()
                .map(|n| {
                    (
                        n,
                        Dependency {
                            condition: "service_started".into(),
                            restart: None,
                            required: None,
                        },
                    )
                })
                .collect(),
            DependsInput::Map(m) => m,
        };
        for (name, dep) in &map {
            if !matches!(
                dep.condition.as_str(),
                "service_started" | "service_healthy" | "service_completed_successfully"
            ) {
                return Err(format!(
                    "{name}: condition {:?} is not service_started, service_healthy or service_completed_successfully",
                    dep.condition
                ));
            }
        }
        Ok(DependsOn(map))
    }
}

/// `healthcheck:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    /// `["CMD", ...]`, `["CMD-SHELL", "..."]` or `["NONE"]`; a string means CMD-SHELL.
    #[serde(
        default,
        deserialize_with = "health_test",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::int_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub retries: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::bool_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub disable: Option<bool>,
}

fn health_test<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    match v {
        serde_json::Value::String(s) => Ok(vec!["CMD-SHELL".into(), s]),
        other => Vec::<String>::deserialize(other).map_err(serde::de::Error::custom),
    }
}

/// `deploy:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    #[serde(
        default,
        deserialize_with = "de::int_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub replicas: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_config: Option<UpdateConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_config: Option<UpdateConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    #[serde(
        default,
        deserialize_with = "de::kv_strict",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
}

/// `update_config:` / `rollback_config:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    #[serde(
        default,
        deserialize_with = "de::int_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub parallelism: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    /// `rollback`, `pause` or `continue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failure_ratio: Option<f64>,
    /// `start-first` or `stop-first`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
}

/// `resources:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservations: Option<ResourceSet>,
}

/// Limits or reservations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSet {
    #[serde(
        default,
        deserialize_with = "de::text_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpus: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::text_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub memory: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::int_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub pids: Option<i64>,
}

/// `restart_policy:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    /// `none`, `on-failure` or `any`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::int_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_attempts: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
}

/// An ulimit: one number for both, or soft and hard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "UlimitInput")]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

enum UlimitInput {
    Single(i64),
    Pair(UlimitPair),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UlimitPair {
    soft: i64,
    hard: i64,
}

by_kind!(UlimitInput {
    J::Number(n) => n.as_i64().map(UlimitInput::Single).ok_or_else(|| format!("{n} is not an integer")),
    v @ J::Object(_) => long(v).map(UlimitInput::Pair),
    other => Err(format!("expected a number or soft/hard, found {other}")),
});

impl TryFrom<UlimitInput> for Ulimit {
    type Error = String;
    fn try_from(u: UlimitInput) -> Result<Self, String> {
        Ok(match u {
            UlimitInput::Single(n) => Ulimit { soft: n, hard: n },
            UlimitInput::Pair(UlimitPair { soft, hard }) => Ulimit { soft, hard },
        })
    }
}

/// `logging:`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::kv_strict",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub options: BTreeMap<String, String>,
}

/// A service's use of a config or secret, long form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "FileRefInput")]
pub struct FileRef {
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

enum FileRefInput {
    Short(String),
    Long(FileRefLong),
}

by_kind!(FileRefInput {
    J::String(s) => Ok(FileRefInput::Short(s)),
    v @ J::Object(_) => long(v).map(FileRefInput::Long),
    other => Err(format!("expected a name or a mapping with source, found {other}")),
});

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRefLong {
    source: String,
    #[serde(default)]
    target: Option<String>,
    #[serde(default, deserialize_with = "de::text_opt")]
    uid: Option<String>,
    #[serde(default, deserialize_with = "de::text_opt")]
    gid: Option<String>,
    #[serde(default, deserialize_with = "de::int_opt")]
    mode: Option<i64>,
}

impl TryFrom<FileRefInput> for FileRef {
    type Error = String;
    fn try_from(f: FileRefInput) -> Result<Self, String> {
        Ok(match f {
            FileRefInput::Short(source) => FileRef {
                source,
                ..FileRef::default()
            },
            FileRefInput::Long(l) => FileRef {
                source: l.source,
                target: l.target,
                uid: l.uid,
                gid: l.gid,
                mode: l
                    .mode
                    .map(|m| {
                        u32::try_from(m)
                            .ok()
                            .filter(|m| *m <= 0o7777)
                            .ok_or_else(|| format!("mode {m} is not a file mode (0-0o7777)"))
                    })
                    .transpose()?,
            },
        })
    }
}

/// A top-level network.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::bool_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub external: Option<bool>,
    #[serde(
        default,
        deserialize_with = "de::bool_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub internal: Option<bool>,
    #[serde(
        default,
        deserialize_with = "de::kv_strict",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
}

/// A top-level named volume.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::bool_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub external: Option<bool>,
    #[serde(
        default,
        deserialize_with = "de::kv_strict",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub driver_opts: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "de::kv_strict",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
}

/// A top-level config or secret: from a file, an environment variable or inline content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileObject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(
        default,
        deserialize_with = "de::bool_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub external: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[cfg(test)]
mod tests {
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
