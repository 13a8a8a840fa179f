//! Published and exposed ports of a service (`ports:`, `expose:`), short and long syntax.

use serde::{Deserialize, Serialize};

use super::long;
use crate::de;

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

pub(super) enum PortInput {
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
pub(super) struct PortLong {
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
