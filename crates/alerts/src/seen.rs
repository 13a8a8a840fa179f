//! What happened to containers and to capstan's own releases, as event rules need it: OOM
//! kills, exits no one asked for, unhealthy containers, failed updates and rolled-back
//! releases, each kept for the longest window a rule may use. Pure: the engine feeds it the
//! journal's events.

use std::collections::{BTreeMap, HashMap, VecDeque};

use capstan_model::{CapstanAction, Event};

use crate::transitions::{FLAP_WINDOW_MS, Holding};

/// Event history kept for event rules: the longest window a rule may use.
pub(crate) const EVENT_KEEP_MS: i64 = 24 * 3_600_000;
/// An exit this soon after capstan or someone asked the engine to stop or kill the container
/// was planned, not a crash.
const PLANNED_EXIT_MS: i64 = 60_000;

/// What happened to containers, as event rules need it.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// `(ms, labels)` of OOM kills.
    pub(crate) ooms: VecDeque<(i64, BTreeMap<String, String>)>,
    /// `(ms, group labels)` of exits no one asked for.
    pub(crate) exits: VecDeque<(i64, BTreeMap<String, String>)>,
    /// The last time the engine was asked to stop or kill each container.
    pub(crate) asked: HashMap<String, i64>,
    /// Unhealthy containers: since when, and their labels.
    pub(crate) unhealthy: HashMap<String, (i64, BTreeMap<String, String>)>,
    /// Swarm nodes down, by id: since when, and their labels.
    pub(crate) nodes_down: HashMap<String, (i64, BTreeMap<String, String>)>,
    /// Work that fails until it succeeds again (an app's certificate), by kind and what it is
    /// for: since when, and its labels.
    pub(crate) still_failing: HashMap<(CapstanAction, String), (i64, BTreeMap<String, String>)>,
    /// `(ms, labels)` of failed automatic updates.
    pub(crate) update_failed: VecDeque<(i64, BTreeMap<String, String>)>,
    /// `(ms, labels)` of deploys that rolled back.
    pub(crate) rolled_back: VecDeque<(i64, BTreeMap<String, String>)>,
    /// Fire times per alert, for flap detection.
    pub(crate) fires: HashMap<String, VecDeque<i64>>,
    /// Why each rule could not be evaluated last time (said once, not every evaluation).
    pub(crate) failing: HashMap<String, String>,
}

/// What a container event says the container is part of.
pub(crate) fn container_labels(e: &Event) -> BTreeMap<String, String> {
    let a = |k: &str| e.attributes.get(k).cloned();
    let mut out = BTreeMap::new();
    if let Some(n) = a("name") {
        out.insert("name".into(), n);
    }
    if let Some(i) = a("image") {
        out.insert("image".into(), i);
    }
    if let Some(app) = a("io.capstan.app").or_else(|| a("com.docker.compose.project")) {
        out.insert("app".into(), app);
    }
    if let Some(s) = a("io.capstan.service").or_else(|| a("com.docker.compose.service")) {
        out.insert("service".into(), s);
    }
    out
}

/// Which certificate an event is about: its app and challenge.
fn certificate_of(e: &Event) -> String {
    let a = |k: &str| e.attributes.get(k).map_or("", String::as_str);
    format!("{}/{}", a("app"), a("challenge"))
}

impl Seen {
    pub(crate) fn take(&mut self, e: &Event) {
        let t = e.time_nano / 1_000_000;
        match (e.kind.as_str(), e.action.as_str()) {
            ("container", "oom") => self.ooms.push_back((t, container_labels(e))),
            ("container", "kill" | "stop") => {
                self.asked.insert(e.actor.clone(), t);
            }
            ("container", "die") => {
                self.unhealthy.remove(&e.actor);
                let planned = self
                    .asked
                    .get(&e.actor)
                    .is_some_and(|asked| t - asked <= PLANNED_EXIT_MS);
                if !planned {
                    // a service's replicas count together; a lone container by its name
                    let mut labels = container_labels(e);
                    if labels.contains_key("service") {
                        labels.remove("name");
                    }
                    labels.remove("image");
                    self.exits.push_back((t, labels));
                }
            }
            ("container", "destroy") => {
                self.unhealthy.remove(&e.actor);
                self.asked.remove(&e.actor);
            }
            ("container", a) if a.starts_with("health_status") => {
                if a.ends_with("unhealthy") {
                    self.unhealthy
                        .entry(e.actor.clone())
                        .or_insert_with(|| (t, container_labels(e)));
                } else {
                    self.unhealthy.remove(&e.actor);
                }
            }
            // a Swarm task that failed or was rejected is a replica's exit no one asked for
            ("task", "failed" | "rejected") => {
                let mut labels = BTreeMap::new();
                let a = |k: &str| e.attributes.get(k).cloned();
                if let Some(app) = a("io.capstan.app") {
                    labels.insert("app".to_owned(), app);
                }
                match a("io.capstan.service") {
                    Some(service) => labels.insert("service".to_owned(), service),
                    None => labels.insert("name".to_owned(), a("name").unwrap_or_default()),
                };
                self.exits.push_back((t, labels));
            }
            ("node", _) => match e.attributes.get("state.new").map(String::as_str) {
                Some("down" | "disconnected") => {
                    let mut labels = BTreeMap::new();
                    if let Some(name) = e.attributes.get("name") {
                        labels.insert("node".to_owned(), name.clone());
                    }
                    self.nodes_down
                        .entry(e.actor.clone())
                        .or_insert_with(|| (t, labels));
                }
                Some("ready") => {
                    self.nodes_down.remove(&e.actor);
                }
                None if e.action == "remove" => {
                    self.nodes_down.remove(&e.actor);
                }
                _ => {}
            },
            ("capstan", a) => match CapstanAction::parse(a) {
                Some(CapstanAction::UpdateFailed) => {
                    let mut labels = BTreeMap::new();
                    for k in ["reference", "app", "service"] {
                        if let Some(v) = e.attributes.get(k) {
                            labels.insert(k.to_owned(), v.clone());
                        }
                    }
                    self.update_failed.push_back((t, labels));
                }
                Some(CapstanAction::CertificateFailed) => {
                    let mut labels = BTreeMap::new();
                    for k in ["app", "names", "challenge"] {
                        if let Some(v) = e.attributes.get(k) {
                            labels.insert(k.to_owned(), v.clone());
                        }
                    }
                    let of = certificate_of(e);
                    self.still_failing
                        .entry((CapstanAction::CertificateFailed, of))
                        .or_insert_with(|| (t, labels));
                }
                Some(CapstanAction::BackupFailed) => {
                    let app = e.attributes.get("app").cloned().unwrap_or_default();
                    self.still_failing
                        .entry((CapstanAction::BackupFailed, app.clone()))
                        .or_insert_with(|| (t, BTreeMap::from([("app".to_owned(), app)])));
                }
                Some(CapstanAction::BackupTaken) => {
                    let app = e.attributes.get("app").cloned().unwrap_or_default();
                    self.still_failing
                        .remove(&(CapstanAction::BackupFailed, app));
                }
                Some(CapstanAction::CertificateIssued) => {
                    self.still_failing
                        .remove(&(CapstanAction::CertificateFailed, certificate_of(e)));
                }
                Some(CapstanAction::ReleaseRolledBack) => {
                    let app = e.attributes.get("app").cloned().unwrap_or_default();
                    self.rolled_back
                        .push_back((t, BTreeMap::from([("app".to_owned(), app)])));
                }
                _ => {}
            },
            _ => {}
        }
    }

    pub(crate) fn prune(&mut self, now: i64) {
        let cutoff = now - EVENT_KEEP_MS;
        for q in [
            &mut self.ooms,
            &mut self.exits,
            &mut self.update_failed,
            &mut self.rolled_back,
        ] {
            while q.front().is_some_and(|(t, _)| *t < cutoff) {
                q.pop_front();
            }
        }
        self.asked.retain(|_, t| now - *t <= PLANNED_EXIT_MS);
        for fires in self.fires.values_mut() {
            while fires.front().is_some_and(|t| now - t > FLAP_WINDOW_MS) {
                fires.pop_front();
            }
        }
        self.fires.retain(|_, f| !f.is_empty());
    }

    /// `(labels, count, since)` of events in `window` (per distinct labels).
    pub(crate) fn counted(
        q: &VecDeque<(i64, BTreeMap<String, String>)>,
        from: i64,
    ) -> Vec<Holding> {
        let mut by: BTreeMap<&BTreeMap<String, String>, (usize, i64)> = BTreeMap::new();
        for (t, labels) in q.iter().filter(|(t, _)| *t >= from) {
            let e = by.entry(labels).or_insert((0, *t));
            e.0 += 1;
        }
        by.into_iter()
            .map(|(l, (n, first))| (l.clone(), Some(n as f64), Some(first)))
            .collect()
    }
}
