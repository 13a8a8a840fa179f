//! How a service joins networks and waits for others (`networks:`, `depends_on:`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::long;
use crate::de;

/// `networks:` of a service: a list of names, or names with aliases.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "NetworksInput")]
pub struct ServiceNetworks(pub BTreeMap<String, ServiceNetwork>);

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceNetwork {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// A fixed address on the network: held by one container at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
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
