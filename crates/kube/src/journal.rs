//! The image journal of a Kubernetes target's pods: what each container actually runs (the
//! digest the kubelet reports) and each pull that fails, journaled as `pod` events
//! (`image_running`, `image_pull_failed`) with the target, namespace, pod, container, node and
//! image. An event's time is the container's start (a failure's: the pod's creation), so a
//! re-list after a reconnect or a restart of capstan journals nothing twice.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use capstan_deploy::targets::TargetConfig;
use capstan_model::Event;
use capstan_store::{NewEvent, Store, events};
use sha2::Digest as _;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::cluster::Cluster;
use crate::pods::{Ended, PodChange, PodImages, PodWatch};

/// Follows one Kubernetes target's pods into the journal.
#[derive(Debug)]
pub struct PodJournal {
    target: TargetConfig,
    store: Store,
    live: broadcast::Sender<Event>,
}

impl PodJournal {
    pub fn new(target: TargetConfig, store: Store, live: broadcast::Sender<Event>) -> Self {
        Self {
            target,
            store,
            live,
        }
    }

    /// Follows the target until `shutdown`, connecting again with backoff while its API
    /// server does not answer.
    pub async fn run(self, shutdown: CancellationToken) {
        // changes are journaled as they are seen, not when a watch (minutes long) ends
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PodChange>();
        let this = std::sync::Arc::new(self);
        let writer = std::sync::Arc::clone(&this);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut changes = vec![first];
                while let Ok(more) = rx.try_recv() {
                    changes.push(more);
                }
                writer.journal(changes).await;
            }
        });
        this.follow(tx, shutdown).await;
    }

    async fn follow(
        &self,
        tx: tokio::sync::mpsc::UnboundedSender<PodChange>,
        shutdown: CancellationToken,
    ) {
        let mut delay = Duration::from_millis(200);
        let mut images = PodImages::default();
        let mut watch: Option<PodWatch> = None;
        loop {
            let started = Instant::now();
            if watch.is_none() {
                match Cluster::connect(&self.target).await {
                    Ok(c) => watch = Some(PodWatch::new(&c)),
                    Err(e) => {
                        warn!(target = %self.target.name, error = %e, "cannot follow the cluster's pods");
                    }
                }
            }
            if let Some(w) = watch.as_mut() {
                let mut collect = |c| {
                    let _ = tx.send(c);
                };
                let followed = tokio::select! {
                    () = shutdown.cancelled() => return,
                    r = w.follow(&mut images, &mut collect) => r,
                };
                match followed {
                    Ok(Ended::Closed) => {
                        debug!(target = %self.target.name, "the pods' watch ended; watching again");
                    }
                    Ok(Ended::Gone) => {
                        info!(target = %self.target.name, "the pods' watch was too old; listing again");
                    }
                    Err(e) => {
                        warn!(target = %self.target.name, error = %e, "lost the cluster's pods; following again");
                    }
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                delay = Duration::from_millis(200);
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    async fn journal(&self, changes: Vec<PodChange>) {
        if changes.is_empty() {
            return;
        }
        let target = self.target.name.clone();
        let new: Vec<NewEvent> = changes.iter().map(|c| event(&target, c)).collect();
        let stored = self
            .store
            .write(move |tx| {
                let mut out = Vec::new();
                for e in &new {
                    out.extend(events::insert(tx, e)?);
                }
                Ok::<_, capstan_store::Error>(out)
            })
            .await;
        match stored {
            Ok(stored) => {
                for e in stored {
                    let _ = self.live.send(e);
                }
            }
            Err(e) => {
                warn!(target = %self.target.name, error = %e, "cannot journal the cluster's pods");
            }
        }
    }
}

/// A change as the journal keeps it: a `pod` event about `<namespace>/<pod>/<container>`.
fn event(target: &str, change: &PodChange) -> NewEvent {
    let mut attributes = BTreeMap::new();
    attributes.insert("target".to_owned(), target.to_owned());
    let (action, time, image_id, c) = match change {
        PodChange::Running {
            image_id,
            started,
            common,
        } => {
            attributes.insert("image_id".into(), image_id.clone());
            ("image_running", started, Some(image_id.clone()), common)
        }
        PodChange::PullFailed {
            reason,
            message,
            created,
            common,
        } => {
            attributes.insert("reason".into(), reason.clone());
            attributes.insert("message".into(), message.clone());
            ("image_pull_failed", created, None, common)
        }
    };
    attributes.insert("namespace".into(), c.namespace.clone());
    attributes.insert("pod".into(), c.pod.clone());
    attributes.insert("container".into(), c.container.clone());
    attributes.insert("node".into(), c.node.clone());
    attributes.insert("image".into(), c.image.clone());
    let actor = format!("{}/{}/{}", c.namespace, c.pod, c.container);
    // the same change seen again (a re-list, a restart of capstan) is the same event
    let mut h = sha2::Sha256::new();
    for part in [target, action, &c.uid, &c.container, &c.image] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    if let Some(id) = &image_id {
        h.update(id.as_bytes());
    }
    let digest = h.finalize();
    let mut first = [0_u8; 8];
    first.copy_from_slice(&digest[..8]);
    NewEvent {
        time_nano: *time,
        identity: i64::from_le_bytes(first),
        kind: "pod".into(),
        action: action.into(),
        actor,
        attributes,
        scope: Some("kubernetes".into()),
        image_id,
        inferred: false,
    }
}
