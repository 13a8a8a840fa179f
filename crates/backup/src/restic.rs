//! restic, run as a process: the repository and its options from `[backups]`, the password
//! in its environment (never on a command line or in a file).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::process::Command;

use crate::BackupError;

/// How long one restic run may take before it is stopped.
const RUN_TIMEOUT: Duration = Duration::from_hours(6);

/// A repository and how to reach it.
#[derive(Clone)]
pub struct Restic {
    pub program: PathBuf,
    pub repository: String,
    pub password: String,
    /// `-o sftp.command=…`.
    pub sftp_command: Option<String>,
    pub cache_dir: PathBuf,
}

impl std::fmt::Debug for Restic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restic")
            .field("repository", &self.repository)
            .finish_non_exhaustive()
    }
}

/// A snapshot as `restic snapshots --json` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Listed {
    pub id: String,
    pub short_id: String,
    pub time: DateTime<Utc>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
}

impl Listed {
    /// The value of its tag `key=…`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find_map(|t| t.strip_prefix(key)?.strip_prefix('='))
    }
}

impl Restic {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.program);
        c.arg("--repo")
            .arg(&self.repository)
            .arg("--cache-dir")
            .arg(&self.cache_dir);
        if let Some(sftp) = &self.sftp_command {
            c.arg("--option").arg(format!("sftp.command={sftp}"));
        }
        c.args(args)
            .env("RESTIC_PASSWORD", &self.password)
            .env_remove("RESTIC_PASSWORD_FILE")
            .env_remove("RESTIC_PASSWORD_COMMAND")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// Runs restic with `args`: its standard output, or why it failed (its last words).
    async fn run(&self, args: &[&str]) -> Result<String, BackupError> {
        let child = self
            .command(args)
            .spawn()
            .map_err(|e| BackupError::Restic {
                what: args.first().copied().unwrap_or_default().to_owned(),
                error: format!(
                    "cannot run {}: {e} (install restic: apt-get install restic)",
                    self.program.display()
                ),
            })?;
        let out = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| BackupError::Restic {
                what: args.first().copied().unwrap_or_default().to_owned(),
                error: format!("still running after {RUN_TIMEOUT:?}; stopped"),
            })?
            .map_err(|e| BackupError::Restic {
                what: args.first().copied().unwrap_or_default().to_owned(),
                error: e.to_string(),
            })?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .rev()
            .take(3)
            .collect();
        Err(BackupError::Restic {
            what: args.first().copied().unwrap_or_default().to_owned(),
            error: last.into_iter().rev().collect::<Vec<_>>().join(" / "),
        })
    }

    /// Makes the repository unless it is there.
    pub async fn ensure(&self) -> Result<(), BackupError> {
        match self.run(&["cat", "config"]).await {
            Ok(_) => Ok(()),
            Err(BackupError::Restic { error, .. })
                if error.contains("Is there a repository")
                    || error.contains("does not exist")
                    || error.contains("no such file") =>
            {
                self.run(&["init"]).await.map(drop)
            }
            Err(e) => Err(e),
        }
    }

    /// Snapshots `path` with `tags`: the new snapshot's id.
    pub async fn backup(&self, path: &Path, tags: &[String]) -> Result<String, BackupError> {
        let path = path.display().to_string();
        let mut args = vec!["backup", "--json", "--host", "capstan"];
        for t in tags {
            args.extend(["--tag", t.as_str()]);
        }
        args.push(&path);
        let out = self.run(&args).await?;
        out.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["message_type"] == "summary")
            .and_then(|v| v["snapshot_id"].as_str().map(str::to_owned))
            .ok_or_else(|| BackupError::Restic {
                what: "backup".into(),
                error: "restic said no snapshot id".into(),
            })
    }

    /// The snapshots tagged with every one of `tags`.
    pub async fn snapshots(&self, tags: &[String]) -> Result<Vec<Listed>, BackupError> {
        let joined = tags.join(",");
        let out = self
            .run(&["snapshots", "--json", "--host", "capstan", "--tag", &joined])
            .await?;
        serde_json::from_str(out.trim()).map_err(|e| BackupError::Restic {
            what: "snapshots".into(),
            error: format!("cannot read its list: {e}"),
        })
    }

    /// Restores snapshot `id` where it was taken (its paths are absolute).
    pub async fn restore(&self, id: &str) -> Result<(), BackupError> {
        self.run(&["restore", id, "--target", "/"]).await.map(drop)
    }

    /// Forgets the snapshots of `tags` that the policy does not keep, and prunes their data.
    pub async fn forget(&self, tags: &[String], keep: &[(&str, u32)]) -> Result<u64, BackupError> {
        let joined = tags.join(",");
        let counts: Vec<String> = keep.iter().map(|(_, n)| n.to_string()).collect();
        let mut args = vec![
            "forget",
            "--json",
            "--prune",
            "--host",
            "capstan",
            "--tag",
            &joined,
            "--group-by",
            "host,tags",
        ];
        for ((flag, _), n) in keep.iter().zip(&counts) {
            args.extend([*flag, n.as_str()]);
        }
        let out = self.run(&args).await?;
        // the JSON list of groups comes first; prune's words follow
        let removed = out
            .lines()
            .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .and_then(|v| {
                v.as_array().map(|groups| {
                    groups
                        .iter()
                        .map(|g| g["remove"].as_array().map_or(0, Vec::len) as u64)
                        .sum()
                })
            })
            .unwrap_or(0);
        Ok(removed)
    }
}
