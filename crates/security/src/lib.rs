//! Host security checks in the spirit of Docker Bench for Security (the CIS Docker Benchmark,
//! v1.5.0 numbering): each check is a pure function over a [`Snapshot`] of the engine's own
//! documents (`/info`, container and image inspect documents, networks) and, for a local engine,
//! how its daemon was set up ([`daemon`]). [`assess`] runs them all; [`monitor`] runs that
//! periodically and when containers change, keeps the open findings in the store, and journals
//! `security_finding` / `security_resolved` events.

pub mod checks;
pub mod daemon;
pub mod docs;
pub mod monitor;

use std::collections::BTreeSet;

use capstan_engine::Engine;
use capstan_model::{CheckStatus, SecurityCheck, SecurityFinding, SecurityReport};
use chrono::{DateTime, Utc};

pub use checks::{CHECKS, Check, Hit, Outcome};
pub use daemon::DaemonSetup;
pub use monitor::{Security, SecurityConfig};

/// What the checks read: the engine's documents at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The engine's address as capstan reaches it.
    pub engine: String,
    pub info: docs::Info,
    /// Every container, running or not.
    pub containers: Vec<docs::Container>,
    /// The images containers use.
    pub images: Vec<docs::Image>,
    /// Every image the engine holds.
    pub image_list: Vec<docs::ImageEntry>,
    pub networks: Vec<docs::Network>,
    /// How a local engine's daemon was set up; `None` for a remote one.
    pub daemon: Option<DaemonSetup>,
}

/// Why a snapshot could not be taken.
#[derive(Debug)]
pub enum Error {
    Engine(capstan_engine::Error),
    /// The engine answered a document the checks cannot read.
    Document {
        what: String,
        source: serde_json::Error,
    },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Engine(e) => write!(f, "{e}"),
            Self::Document { what, source } => {
                write!(f, "cannot read the engine's {what}: {source}")
            }
        }
    }
}

impl std::error::Error for Error {}

impl From<capstan_engine::Error> for Error {
    fn from(e: capstan_engine::Error) -> Self {
        Self::Engine(e)
    }
}

/// Reads one engine document into its checked shape.
pub fn read<T: serde::de::DeserializeOwned>(
    what: &str,
    value: serde_json::Value,
) -> Result<T, Error> {
    serde_json::from_value(value).map_err(|source| Error::Document {
        what: what.to_owned(),
        source,
    })
}

impl Snapshot {
    /// Takes one from `engine`: its info, every container's and used image's inspect document,
    /// its images and networks, and (for a local engine) how its daemon was set up.
    ///
    /// # Errors
    /// [`Error::Engine`] when the engine does not answer; [`Error::Document`].
    pub async fn take(engine: &Engine) -> Result<Self, Error> {
        let info: docs::Info = read("/info", engine.info_json().await?)?;
        let mut containers = Vec::new();
        for c in engine.list_containers(true).await? {
            match engine.inspect_container_json(&c.id).await {
                Ok(doc) => containers.push(read::<docs::Container>("container", doc)?),
                // removed since it was listed
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        let used: BTreeSet<&str> = containers.iter().map(|c| c.image.as_str()).collect();
        let mut images = Vec::new();
        for id in used {
            if let Some(doc) = engine.inspect_image_json(id).await? {
                images.push(read::<docs::Image>("image", doc)?);
            }
        }
        let image_list = engine
            .list_images()
            .await?
            .into_iter()
            .map(|i| docs::ImageEntry {
                tagged: !i.repo_tags.is_empty(),
                id: i.id,
                size: i.size,
            })
            .collect();
        let networks = engine
            .networks_json()
            .await?
            .into_iter()
            .map(|n| read("network", n))
            .collect::<Result<_, _>>()?;
        let host = engine.host().to_owned();
        let root = info.docker_root_dir.clone();
        let daemon = tokio::task::spawn_blocking(move || daemon::read_local(&host, &root))
            .await
            .ok()
            .flatten();
        Ok(Self {
            engine: engine.host().to_owned(),
            info,
            containers,
            images,
            image_list,
            networks,
            daemon,
        })
    }
}

/// Whether `id` names a check.
pub fn is_check(id: &str) -> bool {
    CHECKS.iter().any(|c| c.id == id)
}

/// Runs every check but those in `skip` over `snapshot`: the report, its findings first found
/// at `now`, worst first (then by check, then by object).
pub fn assess(snapshot: &Snapshot, skip: &[String], now: DateTime<Utc>) -> SecurityReport {
    let mut checks = Vec::with_capacity(CHECKS.len());
    let mut findings = Vec::new();
    for check in CHECKS {
        let outcome = if skip.iter().any(|s| s == check.id) {
            Outcome::NotApplicable("skipped by [security] skip".into())
        } else {
            (check.run)(snapshot)
        };
        let (status, note, hits) = match outcome {
            Outcome::NotApplicable(why) => (CheckStatus::NotApplicable, Some(why), Vec::new()),
            Outcome::Checked(hits) if hits.is_empty() => (CheckStatus::Pass, None, hits),
            Outcome::Checked(hits) => (CheckStatus::Fail, None, hits),
        };
        // replicas of one service are one object
        let mut seen = BTreeSet::new();
        let before = findings.len();
        for hit in hits {
            if !seen.insert(hit.object.key()) {
                continue;
            }
            findings.push(SecurityFinding {
                check: check.id.to_owned(),
                title: check.title.to_owned(),
                severity: hit.severity.unwrap_or(check.severity).max(check.severity),
                object: hit.object,
                detail: hit.detail,
                fix: check.fix.to_owned(),
                since: now,
            });
        }
        checks.push(SecurityCheck {
            id: check.id.to_owned(),
            title: check.title.to_owned(),
            section: check.section().to_owned(),
            severity: check.severity,
            status,
            findings: findings.len() - before,
            note,
        });
    }
    sort(&mut findings);
    SecurityReport {
        engine: snapshot.engine.clone(),
        checked_at: now,
        checks,
        findings,
    }
}

/// Worst first, then by check id (numerically), then by object.
pub fn sort(findings: &mut [SecurityFinding]) {
    let id_key = |id: &str| -> Vec<u32> { id.split('.').filter_map(|p| p.parse().ok()).collect() };
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| id_key(&a.check).cmp(&id_key(&b.check)))
            .then_with(|| a.object.cmp(&b.object))
    });
}
