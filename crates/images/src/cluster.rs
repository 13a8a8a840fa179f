//! The journal of a Swarm cluster, read through one of its managers: what the cluster reports
//! about itself (the engine's `swarm`-scope events: services, nodes, secrets, configs, overlay
//! networks), and the failures of capstan's tasks, which Swarm reports by no event (they are
//! read from the tasks' status and journaled as `task` events).
//!
//! Both are deduplicated as engine events are: a (re)connect replays what the manager still
//! holds, and a task's failure is journaled once whatever the number of times it is seen.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use capstan_engine::{Engine, RawEvent, SwarmTask};
use capstan_model::Event;
use capstan_store::{NewEvent, Store, events};
use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::Error;
use crate::backoff::Backoff;

/// How often the tasks of capstan's services are read for failures.
const TASK_PERIOD: Duration = Duration::from_secs(2);

/// Most events stored in one transaction.
const BATCH_EVENTS: usize = 256;

/// The label capstan's services carry (their app).
const APP_LABEL: &str = "io.capstan.app";

/// Task states that are failures: the task's container exited on its own or could not start
/// (`failed`), or no node would take it (`rejected`).
const FAILED_STATES: &[&str] = &["failed", "rejected"];

/// Journals one cluster's events into the store; every stored event is also sent to `live`
/// (alert rules and live subscribers read them there).
#[derive(Debug, Clone)]
pub struct ClusterJournal {
    target: String,
    engine: Engine,
    store: Store,
    live: broadcast::Sender<Event>,
}

impl ClusterJournal {
    /// The journal of target `target`, whose manager is `engine`.
    pub fn new(target: &str, engine: Engine, store: Store, live: broadcast::Sender<Event>) -> Self {
        Self {
            target: target.to_owned(),
            engine,
            store,
            live,
        }
    }

    /// Follows the cluster until `shutdown`, reconnecting with backoff while its manager does
    /// not answer.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        // failures already journaled (or found journaled): not written again every period
        let mut journaled = HashSet::new();
        loop {
            let started = Instant::now();
            let result = self.session(&shutdown, &mut journaled).await;
            if shutdown.is_cancelled() {
                return;
            }
            match result {
                Ok(()) | Err(Error::StreamEnded) => info!(
                    target = %self.target,
                    "cluster event stream ended; reconnecting"
                ),
                Err(err) => warn!(
                    target = %self.target,
                    error = %err,
                    "cluster journal lost the manager; reconnecting"
                ),
            }
            if started.elapsed() > Duration::from_secs(30) {
                backoff.reset();
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// One connection: what the manager still holds (its last 256 events; those already
    /// journaled are skipped), then live events, reading the tasks every [`TASK_PERIOD`].
    async fn session(
        &self,
        shutdown: &CancellationToken,
        journaled: &mut HashSet<(String, String)>,
    ) -> Result<(), Error> {
        self.engine.negotiate().await?;
        let mut stream = self.engine.swarm_events(Some(0)).ready_chunks(BATCH_EVENTS);
        let mut tick = tokio::time::interval(TASK_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        debug!(target = %self.target, "following the cluster's events");
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                _ = tick.tick() => self.task_failures(journaled).await?,
                batch = stream.next() => {
                    let Some(batch) = batch else {
                        return Err(Error::StreamEnded);
                    };
                    let mut events = Vec::with_capacity(batch.len());
                    let mut failure = None;
                    for item in batch {
                        match item {
                            Ok(e) => events.push(e),
                            Err(err) => {
                                failure = Some(err);
                                break;
                            }
                        }
                    }
                    self.store_events(events).await?;
                    if let Some(err) = failure {
                        return Err(err.into());
                    }
                }
            }
        }
    }

    /// Journals the failed tasks of capstan's services not journaled yet.
    async fn task_failures(&self, journaled: &mut HashSet<(String, String)>) -> Result<(), Error> {
        let services = self.engine.swarm_services(APP_LABEL, None).await?;
        let names: HashMap<String, String> = services
            .iter()
            .map(|s| (s.id.clone(), s.name.clone()))
            .collect();
        let ids: Vec<String> = names.keys().cloned().collect();
        let tasks = self.engine.swarm_tasks(&ids).await?;
        // what Swarm no longer keeps (its task history is short) cannot be seen again
        let present: HashSet<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
        journaled.retain(|(id, _)| present.contains(id.as_str()));
        let failed: Vec<SwarmTask> = tasks
            .iter()
            .filter(|t| FAILED_STATES.contains(&t.state.as_str()))
            .filter(|t| !journaled.contains(&(t.id.clone(), t.state.clone())))
            .cloned()
            .collect();
        if failed.is_empty() {
            return Ok(());
        }
        let hostnames = self.engine.swarm_hostnames().await?;
        let events = failed
            .iter()
            .map(|t| task_event(t, names.get(&t.service_id), hostnames.get(&t.node_id)))
            .collect();
        self.store_events(events).await?;
        journaled.extend(failed.into_iter().map(|t| (t.id, t.state)));
        Ok(())
    }

    /// Stores what is not journaled yet, in one transaction, and hands it to live subscribers.
    async fn store_events(&self, batch: Vec<RawEvent>) -> Result<(), Error> {
        if batch.is_empty() {
            return Ok(());
        }
        let stored = self
            .store
            .write(move |tx| {
                let mut out = Vec::new();
                for e in &batch {
                    let new = NewEvent {
                        scope: Some("swarm".to_owned()),
                        ..crate::apply::reported(e, None)
                    };
                    out.extend(events::insert(tx, &new)?);
                }
                Ok(out)
            })
            .await?;
        for event in stored {
            let _ = self.live.send(event);
        }
        Ok(())
    }
}

/// A failed task as an event: `task` `failed` (or `rejected`), about the task, at the time
/// Swarm gave it that state, with what the rules and people need (its app, service, slot,
/// node, exit code and error).
fn task_event(task: &SwarmTask, service: Option<&String>, node: Option<&String>) -> RawEvent {
    let mut attributes = BTreeMap::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            attributes.insert(k.to_owned(), v);
        }
    };
    let service = service.cloned().unwrap_or_else(|| task.service_id.clone());
    put(
        "name",
        Some(match task.slot {
            Some(slot) => format!("{service}.{slot}"),
            None => format!("{service}.{}", task.node_id),
        }),
    );
    put("service.name", Some(service));
    put(
        "node",
        Some(node.cloned().unwrap_or_else(|| task.node_id.clone())),
    );
    put("node.id", Some(task.node_id.clone()));
    put("exitCode", Some(task.exit_code.to_string()));
    put("error", task.error.clone());
    put("image", Some(task.image.clone()));
    for key in [APP_LABEL, "io.capstan.service", "io.capstan.release"] {
        put(key, task.labels.get(key).cloned());
    }
    RawEvent {
        time_nano: task.since_nanos,
        kind: "task".to_owned(),
        action: task.state.clone(),
        actor: task.id.clone(),
        attributes,
        scope: Some("swarm".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed_task() -> SwarmTask {
        SwarmTask {
            id: "t1".into(),
            service_id: "s1".into(),
            slot: Some(2),
            node_id: "n1".into(),
            desired_state: "shutdown".into(),
            state: "failed".into(),
            error: Some("task: non-zero exit (3)".into()),
            exit_code: 3,
            image: "reg/app:1@sha256:aa".into(),
            labels: BTreeMap::from([
                (APP_LABEL.to_owned(), "shop".to_owned()),
                ("io.capstan.service".to_owned(), "web".to_owned()),
                ("other".to_owned(), "x".to_owned()),
            ]),
            since_nanos: 1_700_000_000_000_000_000,
            host_ports: Vec::new(),
        }
    }

    #[test]
    fn a_failed_task_is_an_event_named_by_service_slot_and_node() {
        let e = task_event(
            &failed_task(),
            Some(&"shop_web".to_owned()),
            Some(&"node2".to_owned()),
        );
        assert_eq!((e.kind.as_str(), e.action.as_str()), ("task", "failed"));
        assert_eq!(e.actor, "t1");
        assert_eq!(e.time_nano, 1_700_000_000_000_000_000);
        let a = |k: &str| e.attributes.get(k).map(String::as_str);
        assert_eq!(a("name"), Some("shop_web.2"));
        assert_eq!(a("node"), Some("node2"));
        assert_eq!(a("exitCode"), Some("3"));
        assert_eq!(a("error"), Some("task: non-zero exit (3)"));
        assert_eq!(a(APP_LABEL), Some("shop"));
        assert_eq!(a("io.capstan.service"), Some("web"));
        assert_eq!(a("other"), None);
        // seen again (every period, or after a restart): the same event, so stored once
        let again = task_event(
            &failed_task(),
            Some(&"shop_web".to_owned()),
            Some(&"node2".to_owned()),
        );
        assert_eq!(
            (again.time_nano, again.identity()),
            (e.time_nano, e.identity())
        );
    }

    #[test]
    fn a_task_whose_service_or_node_is_gone_is_named_by_their_ids() {
        let e = task_event(&failed_task(), None, None);
        assert_eq!(e.attributes.get("name").map(String::as_str), Some("s1.2"));
        assert_eq!(e.attributes.get("node").map(String::as_str), Some("n1"));
    }
}
