//! The agent's side of the hub's commands. Each is kept from the moment the agent takes it
//! (`taken/<id>.json`) until the hub has its end (`done/<id>.json` from its end until then),
//! so a command offered again (after a partition, or by a restarted hub) runs once, and one the
//! agent was running when it stopped runs again when it starts (once more at most: a command
//! the agent stopped during twice is reported failed).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::agent::{AgentError, Connection};
use crate::commands::{Command, Done, Op, Step};
use crate::hub::{NextCommand, Nothing};

/// How many times a command runs at most.
const ATTEMPTS: u32 = 2;

/// A command the agent took, and how many times it started it.
#[derive(Debug, Serialize, Deserialize)]
struct Taken {
    command: Command,
    attempt: u32,
}

/// Runs the hub's commands on this host through its [`crate::HostOps`].
#[derive(Clone)]
pub(crate) struct Runner {
    ops: Arc<dyn crate::HostOps>,
    taken: PathBuf,
    done: PathBuf,
}

/// Where the hub's connection is, for a command's steps and end (none: the agent runs a
/// command again at its start, before it has one).
type Link = Option<(Connection, String)>;

impl Runner {
    /// Keeps its commands under `dir` (`<data>/fleet/commands`).
    pub(crate) fn new(ops: Arc<dyn crate::HostOps>, dir: &Path) -> Self {
        Self {
            ops,
            taken: dir.join("taken"),
            done: dir.join("done"),
        }
    }

    /// Whether command `id` was taken already (running, or ended and not yet acknowledged).
    fn knows(&self, id: &str) -> bool {
        file(&self.taken, id).exists() || file(&self.done, id).exists()
    }

    /// Takes the hub's commands on `conn` until it ends; each runs on a task of its own, which
    /// outlives the connection.
    pub(crate) async fn poll(self, mut conn: Connection, url: String) {
        loop {
            let next: Result<NextCommand, _> = conn
                .call(&url, "/fleet/v1/commands/next", &Nothing {})
                .await;
            let Ok(NextCommand {
                command: Some(command),
            }) = next
            else {
                if next.is_err() {
                    return;
                }
                continue;
            };
            if let Op::Observe { app } = &command.op {
                // read only, answered at once, never kept
                let (runner, mut conn, url) = (self.clone(), conn.clone(), url.clone());
                let app = app.clone();
                tokio::spawn(async move {
                    let done = match runner.ops.observe(app).await {
                        Ok(replicas) => Done {
                            replicas,
                            ..ended(&command, capstan_model::Outcome::Succeeded, None)
                        },
                        Err(e) => failed(&command, e),
                    };
                    let _ = conn
                        .call::<_, Nothing>(&url, "/fleet/v1/commands/done", &done)
                        .await;
                });
                continue;
            }
            if !plain_id(&command.id) {
                warn!(id = %command.id, "the hub sent a command with an id that is no plain name; ignored");
                continue;
            }
            if self.knows(&command.id) {
                debug!(id = %command.id, "the hub offers a command again that this host took already");
                continue;
            }
            info!(id = %command.id, app = command.op.app(), release = command.release, "the hub asks for a command");
            let taken = Taken {
                command: command.clone(),
                attempt: 1,
            };
            if let Err(e) = write_json(&self.taken, &command.id, &taken) {
                warn!(error = %e, "cannot keep the command; it runs, but not again if this agent stops during it");
            }
            let link = Some((conn.clone(), url.clone()));
            tokio::spawn(self.clone().run(link, command));
        }
    }

    /// Runs again each command this agent was running when it stopped (once more at most);
    /// reports as failed one it stopped during twice.
    pub(crate) fn resume(&self) {
        let Ok(entries) = std::fs::read_dir(&self.taken) else {
            return;
        };
        for path in entries.flatten().map(|e| e.path()) {
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let mut taken = match read_json::<Taken>(&path) {
                Ok(t) => t,
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "a kept command does not read; left there");
                    continue;
                }
            };
            let id = taken.command.id.clone();
            if file(&self.done, &id).exists() {
                // it ended: its end waits for the hub
                continue;
            }
            if taken.attempt >= ATTEMPTS {
                warn!(%id, "this agent stopped during a command of the hub twice; reporting it failed");
                let error = format!(
                    "the agent on this host stopped during this command {ATTEMPTS} times; it is not run again: look at the host (capstan ps, capstan events there), then deploy again"
                );
                let done = failed(&taken.command, error);
                if let Err(e) = write_json(&self.done, &id, &done) {
                    warn!(error = %e, "cannot keep the command's report until the hub has it");
                }
                continue;
            }
            taken.attempt += 1;
            if let Err(e) = write_json(&self.taken, &id, &taken) {
                warn!(error = %e, "cannot count the command's start; it runs again");
            }
            info!(%id, app = taken.command.op.app(), attempt = taken.attempt, "this agent stopped during a command of the hub; running it again");
            tokio::spawn(self.clone().run(None, taken.command));
        }
    }

    /// Runs `command` here, its steps sent to the hub while the link lasts; its end kept until
    /// the hub has it.
    async fn run(self, link: Link, command: Command) {
        let done = match command.op {
            Op::Down { ref app, volumes } => {
                let (outcome, error, removed) = match self.ops.down(app.clone(), volumes).await {
                    Ok(removed) => (capstan_model::Outcome::Succeeded, None, removed),
                    Err(e) => (capstan_model::Outcome::Failed, Some(e), Vec::new()),
                };
                Done {
                    removed,
                    ..ended(&command, outcome, error)
                }
            }
            Op::Deploy { ref request, pull } => {
                self.deploy(&link, &command, (**request).clone(), pull)
                    .await
            }
            Op::Observe { .. } => failed(&command, "an observation is not kept".to_owned()),
        };
        info!(id = %done.id, outcome = ?done.report.outcome, "a command ended; reporting it to the hub");
        if let Err(e) = write_json(&self.done, &done.id, &done) {
            warn!(error = %e, "cannot keep the command's report until the hub has it");
        }
        if let Some((conn, url)) = &link {
            let _ = self.deliver(conn, url).await;
        }
    }

    /// A release through the host's rollout engine, its steps forwarded to the hub (best
    /// effort: a step the hub does not get is only a line less on its screen).
    async fn deploy(
        &self,
        link: &Link,
        command: &Command,
        request: capstan_deploy::DeployRequest,
        pull: bool,
    ) -> Done {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<capstan_model::Progress>(64);
        let id = command.id.clone();
        let mut link = link.clone();
        let forward = tokio::spawn(async move {
            while let Some(progress) = rx.recv().await {
                let Some((conn, url)) = &mut link else {
                    continue;
                };
                let step = Step {
                    id: id.clone(),
                    progress,
                };
                if conn
                    .call::<_, Nothing>(url, "/fleet/v1/commands/step", &step)
                    .await
                    .is_err()
                {
                    link = None;
                }
            }
        });
        let done = match self.ops.deploy(request, pull, tx).await {
            Ok((report, images)) => Done {
                images,
                report: capstan_model::Report {
                    // the hub's number, not this host's own ledger's
                    release: command.release,
                    ..report
                },
                ..ended(command, capstan_model::Outcome::Succeeded, None)
            },
            Err(e) => failed(command, e),
        };
        let _ = forward.await;
        done
    }

    /// Sends every end kept to the hub, forgetting each command the hub took the end of.
    ///
    /// # Errors
    /// The link's: the ends stay kept.
    pub(crate) async fn deliver(&self, conn: &Connection, url: &str) -> Result<(), AgentError> {
        let Ok(entries) = std::fs::read_dir(&self.done) else {
            return Ok(());
        };
        let mut conn = conn.clone();
        for path in entries.flatten().map(|e| e.path()) {
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let done = match read_json::<Done>(&path) {
                Ok(d) => d,
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "a kept report does not read; left there");
                    continue;
                }
            };
            conn.call::<_, Nothing>(url, "/fleet/v1/commands/done", &done)
                .await?;
            let _ = std::fs::remove_file(file(&self.taken, &done.id));
            let _ = std::fs::remove_file(&path);
        }
        Ok(())
    }
}

/// A command's end with `outcome`, the report otherwise empty.
fn ended(command: &Command, outcome: capstan_model::Outcome, error: Option<String>) -> Done {
    Done {
        id: command.id.clone(),
        release: command.release,
        report: capstan_model::Report {
            app: command.op.app().to_owned(),
            release: command.release,
            outcome,
            services: Vec::new(),
            error,
        },
        images: std::collections::BTreeMap::new(),
        removed: Vec::new(),
        replicas: Vec::new(),
    }
}

fn failed(command: &Command, error: String) -> Done {
    ended(command, capstan_model::Outcome::Failed, Some(error))
}

/// A command id as the hub makes them: nothing that could name another file.
fn plain_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn file(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// Writes `value` whole as `<dir>/<id>.json` (a temporary file renamed over it), durably.
fn write_json<T: Serialize>(dir: &Path, id: &str, value: &T) -> Result<(), String> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = file(dir, id);
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(&bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::plain_id;

    #[test]
    fn only_plain_ids_name_files() {
        assert!(plain_id("18c2f0a1b2-7"));
        for bad in ["", "../x", "a/b", "a.json", &"x".repeat(65)] {
            assert!(!plain_id(bad), "{bad:?}");
        }
    }
}
