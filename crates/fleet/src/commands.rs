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

/// The hub's queue of commands per host (by key) and the callers waiting for their ends.
#[derive(Default)]
pub(crate) struct Queue {
    queued: Mutex<HashMap<String, VecDeque<Command>>>,
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

    /// Queues `command` for the host of `key`; its end arrives on the receiver.
    pub(crate) fn push(
        &self,
        key: &str,
        command: Command,
        progress: Option<mpsc::Sender<Progress>>,
    ) -> oneshot::Receiver<Done> {
        let (done, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(command.id.clone(), Waiter { progress, done });
        }
        if let Ok(mut q) = self.queued.lock() {
            q.entry(key.to_owned()).or_default().push_back(command);
        }
        self.notify(key).notify_one();
        rx
    }

    /// The host's next command, waiting up to `wait` for one.
    pub(crate) async fn next(&self, key: &str, wait: std::time::Duration) -> Option<Command> {
        let notify = self.notify(key);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = notify.notified();
            if let Some(c) = self
                .queued
                .lock()
                .ok()
                .and_then(|mut q| q.get_mut(key).and_then(VecDeque::pop_front))
            {
                return Some(c);
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

    /// A command's end, to whoever waits for it (and records the release); back when no one
    /// does (the hub restarted meanwhile: the caller records it).
    pub(crate) fn done(&self, done: Done) -> Option<Done> {
        let waiter = self
            .waiting
            .lock()
            .ok()
            .and_then(|mut w| w.remove(&done.id));
        match waiter {
            Some(w) => w.done.send(done).err(),
            None => Some(done),
        }
    }

    /// Forgets a command no one waits for any more (its caller went away).
    pub(crate) fn forget(&self, id: &str) {
        if let Ok(mut w) = self.waiting.lock() {
            w.remove(id);
        }
    }
}
