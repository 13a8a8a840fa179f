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
            "port {s:?}: a range of target ports is expanded by the list reader; this is a bug"
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

/// `START-END` as numbers, or one port as `(p, p)`.
fn range(text: &str, whole: &str) -> Result<(u16, u16), String> {
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (port_number(a), port_number(b));
            match (a, b) {
                (Ok(a), Ok(b)) if a <= b => Ok((a, b)),
                (Ok(_), Ok(_)) => Err(format!("port {whole:?}: the range runs backwards")),
                (Err(e), _) | (_, Err(e)) => Err(format!("port {whole:?}: {e}")),
            }
        }
        None => port_number(text)
            .map(|p| (p, p))
            .map_err(|e| format!("port {whole:?}: {e}")),
    }
}

/// A short-syntax port with a range of targets (`9000-9002`, `8000-8002:9000-9002/udp`)
/// as one port per target, each published on the matching host port; a range of host ports
/// for one target (`8000-8010:80`) stays one port. Anything else is itself.
fn expand(s: &str) -> Result<Vec<PortInput>, String> {
    let (spec, protocol) = s.rsplit_once('/').unwrap_or((s, ""));
    let (head, target) = match spec.rsplit_once(':') {
        Some((h, t)) => (Some(h), t),
        None => (None, spec),
    };
    if !target.contains('-') {
        return Ok(vec![PortInput::Short(s.to_owned())]);
    }
    let (t0, t1) = range(target, s)?;
    // the published part is what follows an optional host address
    let (host, published) = match head {
        None => (None, None),
        Some(h) => match h.rsplit_once(':') {
            Some((ip, p)) => (Some(ip), Some(p)),
            None if h.starts_with('[') => (Some(h), None),
            None => (None, Some(h)),
        },
    };
    let published = published
        .filter(|p| !p.is_empty())
        .map(|p| range(p, s))
        .transpose()?;
    if let Some((p0, p1)) = published
        && p1 - p0 != t1 - t0
    {
        return Err(format!(
            "port {s:?}: the published range and the target range differ in length"
        ));
    }
    let suffix = if protocol.is_empty() {
        String::new()
    } else {
        format!("/{protocol}")
    };
    Ok((0..=(t1 - t0))
        .map(|i| {
            let mut one = String::new();
            if let Some(h) = host {
                one.push_str(h);
                one.push(':');
            }
            if let Some((p0, _)) = published {
                one.push_str(&(p0 + i).to_string());
                one.push(':');
            } else if head.is_some() {
                one.push(':');
            }
            one.push_str(&(t0 + i).to_string());
            one.push_str(&suffix);
            PortInput::Short(one)
        })
        .collect())
}

/// One entry of `ports:`: the ports it stands for (several for a range of targets).
struct Entry(Vec<Port>);

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let item = serde_json::Value::deserialize(d)?;
        let inputs = match &item {
            serde_json::Value::String(s) => expand(s).map_err(serde::de::Error::custom)?,
            _ => vec![PortInput::deserialize(item).map_err(serde::de::Error::custom)?],
        };
        inputs
            .into_iter()
            .map(|i| Port::try_from(i).map_err(serde::de::Error::custom))
            .collect::<Result<_, _>>()
            .map(Entry)
    }
}

/// `ports:`: each entry as [`Port`], a short-syntax range of targets expanded to one port
/// each (an error names the entry by its index).
pub(super) fn list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Port>, D::Error> {
    Ok(Vec::<Entry>::deserialize(d)?
        .into_iter()
        .flat_map(|e| e.0)
        .collect())
}
