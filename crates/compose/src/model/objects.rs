//! The project's top-level networks, volumes, configs and secrets, and a service's use of a config or secret.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::long;
use crate::de;

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
    #[serde(
        default,
        deserialize_with = "de::kv_strict",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub driver_opts: BTreeMap<String, String>,
    /// Containers other than the app's may join it.
    #[serde(
        default,
        deserialize_with = "de::bool_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub attachable: Option<bool>,
    #[serde(
        default,
        deserialize_with = "de::bool_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_ipv6: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Ipam>,
}

/// A network's address management: its driver, address pools and driver options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ipam {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<IpamPool>,
    #[serde(
        default,
        deserialize_with = "de::kv_strict",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub options: BTreeMap<String, String>,
}

/// One address pool of a network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpamPool {
    /// `10.5.0.0/16`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// Where container addresses are taken from, within the subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Addresses the driver must not hand out, by name.
    #[serde(
        default,
        deserialize_with = "de::kv_strict",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub aux_addresses: BTreeMap<String, String>,
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
