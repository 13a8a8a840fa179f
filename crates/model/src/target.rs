//! Targets: where apps run (the local engine, a Swarm cluster through one of its managers, a
//! Kubernetes cluster through its API server), and how each one is doing.

use serde::{Deserialize, Serialize};

/// What kind of place a target is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// The engine capstan serves from (`[docker]`): the default target, always there.
    #[default]
    Local,
    /// A Docker Swarm cluster, reached through one of its managers.
    Swarm,
    /// A Kubernetes cluster, reached through its API server (a kubeconfig context) in one
    /// namespace.
    Kubernetes,
    /// A Docker host of the fleet, whose agent dialed this hub (`capstan hosts`).
    Host,
}

impl TargetKind {
    /// As capstan.toml and the API spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Swarm => "swarm",
            Self::Kubernetes => "kubernetes",
            Self::Host => "host",
        }
    }
}

/// `GET /api/v1/targets`: one target and how it is doing now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TargetStatus {
    /// `local`, or the name `[[targets]]` gives it.
    pub name: String,
    pub kind: TargetKind,
    /// The engine address capstan talks to (a Swarm's: one of its managers; a Kubernetes
    /// cluster's: its API server, context and namespace).
    pub endpoint: String,
    /// Whether it answered, as its kind needs (a Swarm target: as a manager).
    pub healthy: bool,
    /// Why not, and what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The engine versions it runs, each once (a Kubernetes cluster: its API server's).
    #[serde(default)]
    pub engine_versions: Vec<String>,
    /// A Swarm's nodes (the local target lists none).
    #[serde(default)]
    pub nodes: Vec<TargetNode>,
    /// How many of the nodes are managers, workers, and ready.
    #[serde(default)]
    pub managers: usize,
    #[serde(default)]
    pub workers: usize,
    #[serde(default)]
    pub ready: usize,
    /// The managers' leader (its hostname).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
}

/// One node of a Swarm target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TargetNode {
    pub id: String,
    pub hostname: String,
    /// `manager` or `worker`.
    pub role: String,
    /// `ready`, `down`, `disconnected` or `unknown`.
    pub state: String,
    /// `active`, `pause` or `drain`.
    pub availability: String,
    pub leader: bool,
    pub engine_version: String,
    /// The address it is reached at.
    pub addr: String,
}
