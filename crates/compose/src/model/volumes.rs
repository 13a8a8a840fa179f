//! A service's volumes, bind mounts and tmpfs mounts (`volumes:`, `tmpfs:`), short and long syntax.

use serde::{Deserialize, Serialize};

use super::long;
use crate::de;

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

pub(super) enum VolumeInput {
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
pub(super) struct VolumeLong {
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
