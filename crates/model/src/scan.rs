//! Vulnerability scans of images: findings, reports, the advisory database's state.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How bad a finding is. `Unknown` is what an advisory without a usable severity gets; it
/// ranks lowest, so `--fail-on unknown` fails on any finding.
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
pub enum Severity {
    Unknown,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Reads the words advisories use: CVSS ratings, Debian urgencies, vendors' scales.
    pub fn from_word(word: &str) -> Option<Self> {
        Some(match word.trim().to_ascii_lowercase().as_str() {
            "critical" => Self::Critical,
            "high" | "important" => Self::High,
            "medium" | "moderate" => Self::Medium,
            "low" | "negligible" | "unimportant" | "minor" => Self::Low,
            "unknown" | "none" => Self::Unknown,
            _ => return None,
        })
    }

    /// The rating of a CVSS score (`7.5` is high).
    pub fn from_score(score: f64) -> Self {
        match score {
            s if s >= 9.0 => Self::Critical,
            s if s >= 7.0 => Self::High,
            s if s >= 4.0 => Self::Medium,
            s if s > 0.0 => Self::Low,
            _ => Self::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::from_word(s).ok_or_else(|| {
            format!("{s:?} is not a severity: unknown, low, medium, high or critical")
        })
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One advisory that applies to one installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Finding {
    /// The installed (binary) package.
    pub package: String,
    /// The source package the advisory names, when it names that one.
    pub source: String,
    pub installed: String,
    /// The version that fixes it; `None`: no fix yet.
    pub fixed: Option<String>,
    /// `DSA-5678-1`, `CVE-2024-1234`, ...
    pub advisory: String,
    pub aliases: Vec<String>,
    pub severity: Severity,
    pub summary: String,
}

/// `POST /api/v1/images/scan`: what an image carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScanReport {
    /// What was asked for (`debian:12`, an id).
    pub image: String,
    /// The image id.
    pub id: String,
    /// The advisories' ecosystem the image's `os-release` names (`Debian:12`), if any.
    pub os: Option<String>,
    /// Installed OS packages found.
    pub packages: usize,
    pub findings: Vec<Finding>,
    /// Layers in the image, and how many were read from the engine now (the rest from the
    /// per-layer cache).
    pub layers: usize,
    pub layers_read: usize,
    /// Advisories in the database for the image's ecosystem.
    pub advisories: u64,
    pub scanned_at: DateTime<Utc>,
}

impl ScanReport {
    /// The worst finding's severity.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

/// `POST /api/v1/vulndb`: what an import did; `GET /api/v1/vulndb`: what the database holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VulnDbStatus {
    /// Advisories added or replaced by this import (0 for a status).
    pub imported: u64,
    /// Advisories held, and affected-package entries, by ecosystem.
    pub advisories: u64,
    pub ecosystems: std::collections::BTreeMap<String, u64>,
    pub last_import: Option<DateTime<Utc>>,
}

/// One running container's image and what its scan found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContainerFindings {
    pub container: String,
    pub image: String,
    pub id: String,
    /// Findings by severity.
    pub counts: std::collections::BTreeMap<Severity, u64>,
    /// The scan failed: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
