//! Backups of apps' named volumes into a restic repository (`[backups] repository`: a path,
//! `sftp:user@host:/path`, or any other backend restic takes), with the password a capstan
//! credential (`vault:NAME`). An app says what and when in `x-capstan.backups`; commands it
//! names run in a replica first (a database's dump); each volume is one snapshot tagged with
//! the app and volume; retention is restic's `forget` after each backup. A restore stops the
//! services that mount the volume, puts the snapshot back in place of what is there, and starts
//! them again. Each backup, failure and restore is journaled; a failure raises `backup_failed`.

mod restic;
mod schedule;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use capstan_compose::Project;
use capstan_compose::model::BackupPolicy;
use capstan_engine::Engine;
use capstan_model::{BackupReport, CapstanAction, Event, Snapshot};
use capstan_store::Store;
use serde::Deserialize;
use tokio::sync::broadcast;
use tracing::{info, warn};

pub use restic::Restic;
pub use schedule::start_schedule;

/// `[backups]` in capstan.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupsConfig {
    /// The restic repository: `/var/backups/capstan`, `sftp:backup@nas:/srv/capstan`, …
    #[serde(default)]
    pub repository: Option<String>,
    /// Where its password is: `vault:NAME` (a capstan credential, `capstan secrets set NAME`)
    /// or a file readable by capstan alone.
    #[serde(default)]
    pub password_file: Option<String>,
    /// How restic reaches an SFTP repository (`ssh -i KEY -p PORT user@host -s sftp`).
    #[serde(default)]
    pub sftp_command: Option<String>,
    /// The restic program (default `restic` on the PATH).
    #[serde(default)]
    pub restic: Option<PathBuf>,
}

/// Why a backup, a listing or a restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// No repository configured.
    #[error(
        "no backup repository: set [backups] repository and password_file in capstan.toml (docs/backups.md)"
    )]
    NotConfigured,
    /// A setting that cannot be used.
    #[error("backups.{key}: {message}")]
    Config { key: String, message: String },
    /// The app, volume or snapshot asked for is not there.
    #[error("{0}")]
    NotFound(String),
    /// What was asked cannot be done (a volume the app does not have).
    #[error("{0}")]
    Refused(String),
    /// restic failed.
    #[error("restic {what}: {error}")]
    Restic { what: String, error: String },
    /// A pre-backup command failed.
    #[error("the command before the backup, in {service}, {why}")]
    Hook { service: String, why: String },
    #[error("the engine: {0}")]
    Engine(#[from] capstan_engine::Error),
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
}

impl BackupsConfig {
    /// The repository to use, with its password read (`vault:NAME` from the installed
    /// keyring): `None` when none is configured.
    ///
    /// # Errors
    /// A repository without a password, or a password that cannot be read.
    pub fn restic(&self, data: &Path) -> Result<Option<Restic>, BackupError> {
        let Some(repository) = self.repository.clone() else {
            return Ok(None);
        };
        let bad = |key: &str, message: String| BackupError::Config {
            key: key.to_owned(),
            message,
        };
        let Some(source) = &self.password_file else {
            return Err(bad(
                "password_file",
                "a repository needs a password: password_file = \"vault:NAME\" (capstan secrets set NAME)".into(),
            ));
        };
        let raw = match source.strip_prefix(capstan_vault::keyring::SCHEME) {
            Some(name) => capstan_vault::keyring::credential(name)
                .map_err(|e| bad("password_file", e.to_string()))?,
            None => std::fs::read(source)
                .map_err(|e| bad("password_file", format!("cannot read {source}: {e}")))?,
        };
        let password = String::from_utf8_lossy(&raw)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        if password.is_empty() {
            return Err(bad("password_file", format!("{source} is empty")));
        }
        Ok(Some(Restic {
            program: self
                .restic
                .clone()
                .unwrap_or_else(|| PathBuf::from("restic")),
            repository,
            password,
            sftp_command: self.sftp_command.clone(),
            cache_dir: data.join("restic-cache"),
        }))
    }
}

/// What backs apps up.
#[derive(Debug, Clone)]
pub struct Backups {
    pub restic: Option<Restic>,
    pub engine: Engine,
    pub store: Store,
    pub live: broadcast::Sender<Event>,
}

/// The volumes `policy` backs up of `project` (every one it declares unless it names some).
///
/// # Errors
/// A volume the app does not declare.
pub fn volumes_of(
    project: &Project,
    policy: Option<&BackupPolicy>,
    only: Option<&str>,
) -> Result<Vec<String>, BackupError> {
    let declared: Vec<String> = project
        .volumes
        .iter()
        .filter(|(_, v)| v.as_ref().and_then(|v| v.external) != Some(true))
        .map(|(n, _)| n.clone())
        .collect();
    let chosen: Vec<String> = match policy.filter(|p| !p.volumes.is_empty()) {
        Some(p) => p.volumes.clone(),
        None => declared.clone(),
    };
    if let Some(v) = only {
        if !declared.iter().any(|d| d == v) {
            return Err(BackupError::NotFound(format!(
                "app {} has no volume {v:?} (it has: {})",
                project.name.as_deref().unwrap_or_default(),
                declared.join(", ")
            )));
        }
        return Ok(vec![v.to_owned()]);
    }
    if chosen.is_empty() {
        return Err(BackupError::Refused(format!(
            "app {} has no named volume to back up",
            project.name.as_deref().unwrap_or_default()
        )));
    }
    Ok(chosen)
}

fn tags(app: &str, volume: Option<&str>) -> Vec<String> {
    let mut t = vec!["capstan".to_owned(), format!("app={app}")];
    if let Some(v) = volume {
        t.push(format!("volume={v}"));
    }
    t
}

impl Backups {
    fn restic(&self) -> Result<&Restic, BackupError> {
        self.restic.as_ref().ok_or(BackupError::NotConfigured)
    }

    /// Where the engine keeps volume `name`'s files.
    async fn mountpoint(&self, name: &str) -> Result<PathBuf, BackupError> {
        self.engine
            .volumes_json()
            .await?
            .into_iter()
            .find(|v| v["Name"] == name)
            .and_then(|v| v["Mountpoint"].as_str().map(PathBuf::from))
            .ok_or_else(|| {
                BackupError::NotFound(format!(
                    "the engine has no volume {name} (was the app deployed with it?)"
                ))
            })
    }

    /// Runs the app's pre-backup commands in replica 1 of their services.
    async fn hooks(&self, app: &str, policy: &BackupPolicy) -> Result<(), BackupError> {
        for hook in &policy.before {
            let containers = self.engine.list_containers(false).await?;
            let replica = containers
                .iter()
                .filter(|c| {
                    c.labels.get("io.capstan.app").map(String::as_str) == Some(app)
                        && c.labels.get("io.capstan.service") == Some(&hook.service)
                        && !capstan_model::is_retiring(&c.name)
                })
                .min_by_key(|c| {
                    c.labels
                        .get("io.capstan.replica")
                        .and_then(|r| r.parse::<u32>().ok())
                        .unwrap_or(u32::MAX)
                })
                .ok_or_else(|| BackupError::Hook {
                    service: hook.service.clone(),
                    why: "found no running replica".into(),
                })?;
            let (code, output) = self.engine.exec_to_end(&replica.id, &hook.command).await?;
            if code != 0 {
                return Err(BackupError::Hook {
                    service: hook.service.clone(),
                    why: format!("exited {code}: {}", output.trim()),
                });
            }
        }
        Ok(())
    }

    /// Backs up `project`'s volumes (or `only` that one) and applies its retention; journals
    /// the backup or its failure.
    ///
    /// # Errors
    /// Why nothing (or not everything) was backed up.
    pub async fn backup(
        &self,
        project: &Project,
        only: Option<&str>,
        scheduled: bool,
    ) -> Result<BackupReport, BackupError> {
        let app = project.name.clone().unwrap_or_default();
        let result = self.backup_inner(project, only).await;
        let mut attributes = BTreeMap::from([
            ("app".to_owned(), app.clone()),
            ("scheduled".to_owned(), scheduled.to_string()),
        ]);
        match &result {
            Ok(report) => {
                let volumes: Vec<&str> =
                    report.snapshots.iter().map(|s| s.volume.as_str()).collect();
                let ids: Vec<&str> = report
                    .snapshots
                    .iter()
                    .map(|s| s.short_id.as_str())
                    .collect();
                attributes.insert("volumes".into(), volumes.join(","));
                attributes.insert("snapshots".into(), ids.join(","));
                info!(app = %app, snapshots = ?ids, forgotten = report.forgotten, "backed up");
                self.record(CapstanAction::BackupTaken, attributes).await;
            }
            Err(BackupError::NotConfigured) => {}
            Err(e) => {
                warn!(app = %app, error = %e, "backup failed");
                attributes.insert("error".into(), e.to_string());
                self.record(CapstanAction::BackupFailed, attributes).await;
            }
        }
        result
    }

    async fn backup_inner(
        &self,
        project: &Project,
        only: Option<&str>,
    ) -> Result<BackupReport, BackupError> {
        let restic = self.restic()?;
        let app = project.name.clone().unwrap_or_default();
        let policy = project.capstan.as_ref().and_then(|c| c.backups.clone());
        let volumes = volumes_of(project, policy.as_ref(), only)?;
        let names = capstan_deploy::Names::of(project);
        let mut paths = Vec::new();
        for v in &volumes {
            paths.push((v.clone(), self.mountpoint(&names.volume(project, v)).await?));
        }
        if let Some(p) = &policy {
            self.hooks(&app, p).await?;
        }
        restic.ensure().await?;
        let mut snapshots = Vec::new();
        for (volume, path) in paths {
            let id = restic.backup(&path, &tags(&app, Some(&volume))).await?;
            snapshots.push(Snapshot {
                short_id: id.chars().take(8).collect(),
                id,
                time: chrono::Utc::now(),
                app: app.clone(),
                volume,
            });
        }
        let keep: Vec<(&str, u32)> = policy
            .as_ref()
            .map(|p| {
                [
                    ("--keep-last", p.keep_last),
                    ("--keep-daily", p.keep_daily),
                    ("--keep-weekly", p.keep_weekly),
                ]
                .into_iter()
                .filter_map(|(flag, n)| Some((flag, n?)))
                .collect()
            })
            .unwrap_or_default();
        let forgotten = if keep.is_empty() {
            0
        } else {
            restic.forget(&tags(&app, None), &keep).await?
        };
        Ok(BackupReport {
            app,
            snapshots,
            forgotten,
        })
    }

    /// `app`'s snapshots, newest first.
    ///
    /// # Errors
    /// No repository, or restic's.
    pub async fn snapshots(&self, app: &str) -> Result<Vec<Snapshot>, BackupError> {
        let restic = self.restic()?;
        restic.ensure().await?;
        let mut out: Vec<Snapshot> = restic
            .snapshots(&tags(app, None))
            .await?
            .into_iter()
            .map(|l| Snapshot {
                volume: l.tag("volume").unwrap_or_default().to_owned(),
                app: app.to_owned(),
                id: l.id,
                short_id: l.short_id,
                time: l.time,
            })
            .collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.time));
        Ok(out)
    }

    /// The snapshot of `app` that `asked` names (its id or a prefix of 8 or more).
    ///
    /// # Errors
    /// [`BackupError::NotFound`] for none (or a prefix too short, or one of two).
    pub async fn find(&self, app: &str, asked: &str) -> Result<Snapshot, BackupError> {
        if asked.len() < 8 || !asked.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BackupError::Refused(format!(
                "{asked:?}: name a snapshot by its id or its first 8 characters (capstan backups {app})"
            )));
        }
        let all = self.snapshots(app).await?;
        let mut matching = all.into_iter().filter(|s| s.id.starts_with(asked));
        match (matching.next(), matching.next()) {
            (Some(s), None) => Ok(s),
            (Some(_), Some(_)) => Err(BackupError::Refused(format!(
                "{asked} names several snapshots of {app}: give more of its id"
            ))),
            (None, _) => Err(BackupError::NotFound(format!(
                "app {app} has no snapshot {asked} (capstan backups {app} lists them)"
            ))),
        }
    }

    /// Puts `snapshot` back into its volume of `project`, in place of what is there (the
    /// services that mount it must be stopped by the caller).
    ///
    /// # Errors
    /// The volume is gone, or restic's.
    pub async fn restore_volume(
        &self,
        project: &Project,
        snapshot: &Snapshot,
    ) -> Result<(), BackupError> {
        let restic = self.restic()?;
        let names = capstan_deploy::Names::of(project);
        let path = self
            .mountpoint(&names.volume(project, &snapshot.volume))
            .await?;
        empty(&path).map_err(|error| BackupError::Io {
            what: format!("cannot empty {}", path.display()),
            error,
        })?;
        restic.restore(&snapshot.id).await?;
        let mut attributes = BTreeMap::from([
            ("app".to_owned(), snapshot.app.clone()),
            ("volume".to_owned(), snapshot.volume.clone()),
            ("snapshot".to_owned(), snapshot.short_id.clone()),
        ]);
        attributes.insert("time".into(), snapshot.time.to_rfc3339());
        self.record(CapstanAction::BackupRestored, attributes).await;
        Ok(())
    }

    async fn record(&self, action: CapstanAction, attributes: BTreeMap<String, String>) {
        self.store
            .record(&self.live, action, "backup".to_owned(), attributes)
            .await;
    }
}

/// Removes everything in `dir`, keeping `dir`.
fn empty(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// The services of `project` that mount `volume`.
pub fn services_mounting(project: &Project, volume: &str) -> Vec<String> {
    project
        .services
        .iter()
        .filter(|(_, s)| {
            s.volumes
                .iter()
                .any(|v| v.source.as_deref() == Some(volume) && v.kind == "volume")
        })
        .map(|(n, _)| n.clone())
        .collect()
}
