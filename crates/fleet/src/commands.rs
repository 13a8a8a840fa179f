//! What the hub asks of a host, and how the answers come back: the only operations an agent
//! takes from its hub (a release of an app, run by its own rollout engine; an app taken down),
//! never a proxy to its Docker API. The hub queues a command for the host; the agent takes it on its next long
//! poll, runs it by itself (a link that drops meanwhile does not stop it), sends its steps while
//! it can, and its report once it is done, also after a partition or a restart of either side.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use capstan_deploy::DeployRequest;
use capstan_model::{Progress, Report};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};

/// One operation for a host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Command {
    /// Unique, the hub's.
    pub id: String,
    /// The hub's release number: the report names it.
    pub release: i64,
    pub op: Op,
}

/// The operations an agent takes from its hub.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Op {
    /// A release of an app: the request as the hub's API took it (its files with it).
    Deploy {
        request: Box<DeployRequest>,
        /// Pull every image first.
        #[serde(default)]
        pull: bool,
    },
    /// An app taken down (its volumes too with `volumes`).
    Down { app: String, volumes: bool },
    /// The app's replicas here, as they are now (read only; not kept: asked again when lost).
    Observe { app: String },
}

impl Op {
    /// The app it is about.
    pub fn app(&self) -> &str {
        match self {
            Self::Deploy { request, .. } => request.project.name.as_deref().unwrap_or_default(),
            Self::Down { app, .. } | Self::Observe { app } => app,
        }
    }
}

/// A command's end, as the agent reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Done {
    pub id: String,
    pub release: i64,
    pub report: Report,
    /// Service → the image id it ran.
    #[serde(default)]
    pub images: BTreeMap<String, String>,
    /// What a `down` removed.
    #[serde(default)]
    pub removed: Vec<String>,
    /// What an `observe` found.
    #[serde(default)]
    pub replicas: Vec<capstan_deploy::Replica>,
}

/// A step of a command under way.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub id: String,
    pub progress: Progress,
}

/// Who waits for a command's end on the hub.
struct Waiter {
    progress: Option<mpsc::Sender<Progress>>,
    done: oneshot::Sender<Done>,
}

/// A command kept for a host until it reports the end: offered once on each of the host's
/// connections (at least once in all; the agent runs an id once).
struct Pending {
    command: Command,
    /// The connection it was last offered on.
    offered_on: Option<u64>,
}

/// The hub's commands per host (by key), as its store keeps them, and the callers waiting for
/// their ends.
#[derive(Default)]
pub(crate) struct Queue {
    queued: Mutex<HashMap<String, VecDeque<Pending>>>,
    /// Woken when a host's queue gets a command.
    ready: Mutex<HashMap<String, std::sync::Arc<Notify>>>,
    waiting: Mutex<HashMap<String, Waiter>>,
}

impl Queue {
    fn notify(&self, key: &str) -> std::sync::Arc<Notify> {
        let mut ready = self
            .ready
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::sync::Arc::clone(ready.entry(key.to_owned()).or_default())
    }

    /// Offers `command` (already kept in the store) to the host of `key`.
    pub(crate) fn offer(&self, key: &str, command: Command) {
        if let Ok(mut q) = self.queued.lock() {
            q.entry(key.to_owned()).or_default().push_back(Pending {
                command,
                offered_on: None,
            });
        }
        self.notify(key).notify_one();
    }

    /// Waits for the end of command `id`; its steps go to `progress` meanwhile.
    pub(crate) fn wait(
        &self,
        id: &str,
        progress: Option<mpsc::Sender<Progress>>,
    ) -> oneshot::Receiver<Done> {
        let (done, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(id.to_owned(), Waiter { progress, done });
        }
        rx
    }

    /// The host's next command not yet offered on its connection `conn`, waiting up to `wait`
    /// for one.
    pub(crate) async fn next(
        &self,
        key: &str,
        conn: u64,
        wait: std::time::Duration,
    ) -> Option<Command> {
        let notify = self.notify(key);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = notify.notified();
            let found = self.queued.lock().ok().and_then(|mut q| {
                let pending = q
                    .get_mut(key)?
                    .iter_mut()
                    .find(|p| p.offered_on != Some(conn))?;
                pending.offered_on = Some(conn);
                Some(pending.command.clone())
            });
            if found.is_some() {
                return found;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// A step of a command: to whoever waits, if anyone still does.
    pub(crate) async fn step(&self, step: Step) {
        let sender = self
            .waiting
            .lock()
            .ok()
            .and_then(|w| w.get(&step.id).and_then(|w| w.progress.clone()));
        if let Some(tx) = sender {
            let _ = tx.send(step.progress).await;
        }
    }

    /// A command's end (the store has recorded it): the command is no longer offered, and
    /// whoever waits for it hears of it.
    pub(crate) fn done(&self, done: Done) {
        if let Ok(mut q) = self.queued.lock() {
            for pending in q.values_mut() {
                pending.retain(|p| p.command.id != done.id);
            }
        }
        let waiter = self
            .waiting
            .lock()
            .ok()
            .and_then(|mut w| w.remove(&done.id));
        if let Some(w) = waiter {
            let _ = w.done.send(done);
        }
    }

    /// Forgets who waited for `id` (its caller went away); the command stays offered.
    pub(crate) fn forget(&self, id: &str) {
        if let Ok(mut w) = self.waiting.lock() {
            w.remove(id);
        }
    }

    /// Stops offering command `id` to the host of `key`.
    pub(crate) fn withdraw(&self, key: &str, id: &str) {
        if let Ok(mut q) = self.queued.lock()
            && let Some(pending) = q.get_mut(key)
        {
            pending.retain(|p| p.command.id != id);
        }
    }

    /// Stops offering the commands of the host of `key` (it was removed).
    pub(crate) fn drop_host(&self, key: &str) {
        let dropped = self
            .queued
            .lock()
            .ok()
            .and_then(|mut q| q.remove(key))
            .unwrap_or_default();
        // their callers hear that no end will come
        if let Ok(mut w) = self.waiting.lock() {
            for p in dropped {
                w.remove(&p.command.id);
            }
        }
    }
}
