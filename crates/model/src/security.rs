//! Host security checks (`capstan security`): what each check found on the engine's host, in
//! the spirit of the CIS Docker Benchmark (its ids, v1.5.0 numbering).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Severity;

/// The capabilities Docker grants every container anyway: adding one of them changes nothing
/// (the deploy policy and the host checks both look past them).
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// What a finding is about.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// The engine itself: its daemon's settings and files.
    Engine,
    Container,
    Image,
    Network,
    /// The Swarm cluster the engine manages.
    Swarm,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Engine => "engine",
            Self::Container => "container",
            Self::Image => "image",
            Self::Network => "network",
            Self::Swarm => "swarm",
        }
    }
}

/// One object a check found wanting.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct SecurityObject {
    pub kind: ObjectKind,
    /// The engine's id for it (a container or image id, a network id; the engine's address).
    pub id: String,
    /// What people call it: a container's name, an image's reference, a network's name.
    pub name: String,
}

impl SecurityObject {
    /// `kind:id`: what tells two findings of one check apart.
    pub fn key(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.id)
    }
}

/// One check's finding on one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecurityFinding {
    /// The CIS Docker Benchmark id (`5.4`).
    pub check: String,
    /// What the check wants, in the benchmark's words.
    pub title: String,
    pub severity: Severity,
    pub object: SecurityObject,
    /// What was found (`mounts the engine's socket /var/run/docker.sock at /var/run/docker.sock`).
    pub detail: String,
    /// How to fix it (a Compose key, a daemon setting, a command).
    pub fix: String,
    /// When capstan first found it (kept across restarts until it is resolved).
    pub since: DateTime<Utc>,
}

/// Whether a check holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Nothing found.
    Pass,
    /// At least one finding.
    Fail,
    /// Cannot apply here (no Swarm, AppArmor not on this host, a remote engine's files), or
    /// skipped by `[security] skip`: `note` says which.
    NotApplicable,
}

/// One check and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecurityCheck {
    /// The CIS Docker Benchmark id.
    pub id: String,
    pub title: String,
    /// The benchmark's section (`Container Runtime`).
    pub section: String,
    /// How much a finding of it matters (a finding may rate higher: a root bind mount written to).
    pub severity: Severity,
    pub status: CheckStatus,
    /// How many findings.
    pub findings: usize,
    /// Why it did not apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `GET /api/v1/security`: every check against the engine's host now, and what they found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecurityReport {
    /// The engine checked (`unix:///var/run/docker.sock`).
    pub engine: String,
    pub checked_at: DateTime<Utc>,
    /// Every check, by id.
    pub checks: Vec<SecurityCheck>,
    /// Every finding, worst first.
    pub findings: Vec<SecurityFinding>,
}

impl SecurityReport {
    /// The worst finding's severity.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}
