//! The evaluation loop: every `evaluate_every`, each rule's condition now, per set of labels;
//! each alert moved along pending → firing → resolved, every move journaled as a `capstan`
//! event (`alert_pending`, `alert_firing`, `alert_resolved`) that the notification channels
//! send.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use capstan_model::{
    Alert, AlertRuleInfo, AlertState, CapstanAction, ConfigError, Event, RolloutLocks, RuleTest,
    RuleTestInstance,
};
use capstan_store::{EventFilter, Store};
use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Error;
use crate::rule::{Condition, EventKind, Rule, RuleConfig, Source, render};
use crate::seen::{EVENT_KEEP_MS, Seen};
use crate::transitions::{self, Holding, Instance, Key, Move, fingerprint, time};

/// A held alert waits this long after its app's rollout ends before it may fire: the events of
/// what the rollout removed may still be on their way.
const HOLD_AFTER_MS: i64 = 10_000;

/// Where the engine reads what rules look at.
pub struct Sources {
    pub store: Store,
    pub live: broadcast::Sender<Event>,
    pub history: Option<Arc<capstan_metrics::History>>,
    pub logs: Option<Arc<capstan_logs::Store>>,
    /// Apps being deployed, rolled back or taken down now (the deploy job's locks).
    pub rollouts: RolloutLocks,
    /// The host security checks' open findings, when they run.
    pub security: Option<watch::Receiver<Vec<capstan_model::SecurityFinding>>>,
}

/// The alert engine, shared with the API.
pub struct Alerts {
    rules: RwLock<Vec<Arc<Rule>>>,
    instances: Mutex<BTreeMap<Key, Instance>>,
    seen: Mutex<Seen>,
    sources: Sources,
    evaluate_every: Duration,
    /// Where rules posted to the API are kept.
    api_rules: PathBuf,
    firing: watch::Sender<Vec<Event>>,
    evaluations: watch::Sender<u64>,
    /// When each app was last seen rolling out.
    rolled: Mutex<HashMap<String, i64>>,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl Alerts {
    /// The engine with `rules` (built-ins, config, and those posted to the API earlier, kept in
    /// `api_rules`).
    pub fn new(
        rules: Vec<Rule>,
        sources: Sources,
        evaluate_every: Duration,
        api_rules: PathBuf,
    ) -> Result<Self, Error> {
        let mut all: Vec<Arc<Rule>> = rules.into_iter().map(Arc::new).collect();
        if let Ok(text) = std::fs::read_to_string(&api_rules) {
            let posted: Vec<RuleConfig> =
                serde_json::from_str(&text).map_err(|source| Error::Unreadable {
                    path: api_rules.clone(),
                    source,
                })?;
            for (i, c) in posted.iter().enumerate() {
                let rule = c.check(&format!("{}[{i}]", api_rules.display()), Source::Api)?;
                all.retain(|r| r.name != rule.name);
                all.push(Arc::new(rule));
            }
        }
        Ok(Self {
            rules: RwLock::new(all),
            instances: Mutex::new(BTreeMap::new()),
            seen: Mutex::new(Seen::default()),
            sources,
            evaluate_every,
            api_rules,
            firing: watch::channel(Vec::new()).0,
            evaluations: watch::channel(0).0,
            rolled: Mutex::new(HashMap::new()),
        })
    }

    /// The `alert_firing` events of the alerts firing now (Alertmanager gets them again).
    pub fn firing(&self) -> watch::Receiver<Vec<Event>> {
        self.firing.subscribe()
    }

    /// Changes after each evaluation that moved an alert (notification channels send then).
    pub fn evaluations(&self) -> watch::Receiver<u64> {
        self.evaluations.subscribe()
    }

    fn rules(&self) -> Vec<Arc<Rule>> {
        self.rules
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The rules, with how many alerts each has firing.
    pub fn rule_list(&self) -> Vec<AlertRuleInfo> {
        let instances = self
            .instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.rules()
            .iter()
            .map(|r| AlertRuleInfo {
                name: r.name.clone(),
                kind: r.kind().into(),
                condition: r.describe(),
                for_: capstan_model::format_duration(r.for_),
                keep_firing_for: capstan_model::format_duration(r.keep_firing_for),
                labels: r.labels.clone(),
                annotations: r.annotations.clone(),
                source: r.source.as_str().into(),
                firing: instances
                    .iter()
                    .filter(|((rule, _), i)| rule == &r.name && i.state == AlertState::Firing)
                    .count(),
            })
            .collect()
    }

    /// Adds (or replaces) a rule from the API; kept across restarts. Built-in and configured
    /// rules are not replaced this way.
    ///
    /// # Errors
    /// [`Error::Invalid`] (a bad rule, or one named like a built-in or configured rule),
    /// [`Error::Keep`].
    pub fn add_rule(&self, config: &RuleConfig) -> Result<(), Error> {
        let rule = config.check("rule", Source::Api)?;
        let mut rules = self.rules.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(other) = rules
            .iter()
            .find(|r| r.name == rule.name && r.source != Source::Api)
        {
            return Err(Error::Invalid(ConfigError::new(
                "rule.name",
                format!(
                    "{:?} is a {} rule; change it in capstan.toml (or pick another name)",
                    rule.name,
                    other.source.as_str()
                ),
            )));
        }
        let mut next: Vec<Arc<Rule>> = rules
            .iter()
            .filter(|r| r.name != rule.name)
            .cloned()
            .collect();
        next.push(Arc::new(rule));
        self.save_api_rules(&next)?;
        *rules = next;
        Ok(())
    }

    /// Removes a rule added through the API; `Ok(false)` when there is none by that name.
    ///
    /// # Errors
    /// [`Error::NotPosted`] for a built-in or configured rule, [`Error::Keep`].
    pub fn remove_rule(&self, name: &str) -> Result<bool, Error> {
        let mut rules = self.rules.write().unwrap_or_else(PoisonError::into_inner);
        match rules.iter().find(|r| r.name == name) {
            None => return Ok(false),
            Some(r) if r.source != Source::Api => {
                return Err(Error::NotPosted {
                    name: name.to_owned(),
                    origin: r.source.as_str(),
                });
            }
            Some(_) => {}
        }
        let next: Vec<Arc<Rule>> = rules.iter().filter(|r| r.name != name).cloned().collect();
        self.save_api_rules(&next)?;
        *rules = next;
        Ok(true)
    }

    fn save_api_rules(&self, rules: &[Arc<Rule>]) -> Result<(), Error> {
        let posted: Vec<&RuleConfig> = rules
            .iter()
            .filter(|r| r.source == Source::Api)
            .map(|r| &r.config)
            .collect();
        serde_json::to_string_pretty(&posted)
            .map_err(std::io::Error::other)
            .and_then(|text| capstan_store::files::replace(&self.api_rules, text.as_bytes()))
            .map_err(|source| Error::Keep {
                path: self.api_rules.clone(),
                source,
            })
    }

    /// Firing and pending alerts, firing first.
    pub fn alerts(&self) -> Vec<Alert> {
        let rules = self.rules();
        let instances = self
            .instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<Alert> = instances
            .iter()
            .map(|((rule, _), i)| {
                let annotations = rules
                    .iter()
                    .find(|r| &r.name == rule)
                    .map(|r| {
                        r.annotations
                            .iter()
                            .map(|(k, v)| (k.clone(), render(v, &i.labels, i.value)))
                            .collect()
                    })
                    .unwrap_or_default();
                Alert {
                    rule: rule.clone(),
                    state: i.state,
                    labels: i.labels.clone(),
                    annotations,
                    value: i.value,
                    active_since: time(i.active_since),
                    fired_at: i.fired_at.map(time),
                    held: i.held,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.state
                .cmp(&a.state)
                .reverse()
                .then_with(|| a.rule.cmp(&b.rule))
        });
        out
    }

    /// Evaluates `name` now and says why it would or would not fire.
    pub async fn test(&self, name: &str) -> Result<Option<RuleTest>, String> {
        let Some(rule) = self.rules().into_iter().find(|r| r.name == name) else {
            return Ok(None);
        };
        let now = now_ms();
        let holding = self.holding(&rule, now).await?;
        let instances = self
            .instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let rollouts = self.rollouts(now);
        let mut would_fire = false;
        let mut out = Vec::new();
        let mut reasons = Vec::new();
        for (labels, value, since) in &holding {
            let tracked = instances.get(&(rule.name.clone(), fingerprint(labels)));
            let since = tracked.map(|i| i.active_since).or(*since).unwrap_or(now);
            let held = rule.held_during_rollouts()
                && labels.get("app").is_some_and(|a| rollouts.contains(a));
            let long_enough = now - since >= rule.for_.as_millis() as i64;
            if long_enough && !held {
                would_fire = true;
            } else if held {
                reasons.push(format!(
                    "{} is held: its app is rolling out",
                    fingerprint(labels)
                ));
            } else {
                reasons.push(format!(
                    "{} holds for {}s of the {} `for` asks",
                    fingerprint(labels),
                    (now - since) / 1000,
                    capstan_model::format_duration(rule.for_)
                ));
            }
            out.push(RuleTestInstance {
                labels: labels.clone(),
                value: *value,
                state: tracked.map_or("none", |i| i.state.as_str()).into(),
            });
        }
        let reason = if holding.is_empty() {
            format!("the condition does not hold now: {}", rule.describe())
        } else if would_fire {
            format!(
                "the condition holds for {} set(s) of labels: {}",
                holding.len(),
                rule.describe()
            )
        } else {
            reasons.join("; ")
        };
        Ok(Some(RuleTest {
            rule: rule.name.clone(),
            holds: !holding.is_empty(),
            would_fire,
            reason,
            instances: out,
        }))
    }

    /// Apps rolling out now, or that ended a rollout less than [`HOLD_AFTER_MS`] ago.
    fn rollouts(&self, now: i64) -> BTreeSet<String> {
        let rolling = self.sources.rollouts.held();
        let mut rolled = self.rolled.lock().unwrap_or_else(PoisonError::into_inner);
        for app in &rolling {
            rolled.insert(app.clone(), now);
        }
        rolled.retain(|_, t| now - *t < HOLD_AFTER_MS);
        rolled.keys().cloned().collect()
    }

    /// Where `rule`'s condition holds at `now`.
    async fn holding(&self, rule: &Rule, now: i64) -> Result<Vec<Holding>, String> {
        let window = rule.window.as_millis() as i64;
        match &rule.condition {
            Condition::Metric(query) => {
                let Some(history) = self.sources.history.clone() else {
                    return Err("metric rules need the metrics history ([metrics] collect)".into());
                };
                let query = query.clone();
                let found = tokio::task::spawn_blocking(move || query.instant(&history, now))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                Ok(found
                    .into_iter()
                    .map(|(mut labels, v)| {
                        labels.remove("__name__");
                        (labels, Some(v), None)
                    })
                    .collect())
            }
            Condition::Logs { query, above, .. } => {
                let Some(logs) = self.sources.logs.clone() else {
                    return Err("log rules need log collection ([logs] collect)".into());
                };
                let query = query.clone();
                let (since, until) = ((now - window) * 1_000_000, now * 1_000_000);
                let (_, count) = tokio::task::spawn_blocking(move || {
                    logs.search(&query, Some(since), Some(until), 0)
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
                Ok(if count > *above {
                    vec![(BTreeMap::new(), Some(count as f64), None)]
                } else {
                    Vec::new()
                })
            }
            Condition::Security(at_least) => {
                let Some(findings) = &self.sources.security else {
                    return Err("security rules need the host security checks".into());
                };
                let findings = findings.borrow();
                Ok(findings
                    .iter()
                    .filter(|f| f.severity >= *at_least)
                    .map(|f| {
                        let labels = BTreeMap::from([
                            ("check".to_owned(), f.check.clone()),
                            ("object".to_owned(), f.object.name.clone()),
                            ("object_kind".to_owned(), f.object.kind.as_str().to_owned()),
                            (
                                "finding_severity".to_owned(),
                                f.severity.as_str().to_owned(),
                            ),
                        ]);
                        (labels, None, Some(f.since.timestamp_millis()))
                    })
                    .collect())
            }
            Condition::Event(kind) => {
                let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
                let from = now - window;
                Ok(match kind {
                    EventKind::Oom => Seen::counted(&seen.ooms, from),
                    EventKind::RestartLoop { restarts } => Seen::counted(&seen.exits, from)
                        .into_iter()
                        .filter(|(_, n, _)| n.is_some_and(|n| n >= f64::from(*restarts)))
                        .collect(),
                    EventKind::Unhealthy => seen
                        .unhealthy
                        .values()
                        .map(|(since, labels)| (labels.clone(), None, Some(*since)))
                        .collect(),
                    EventKind::NodeDown => seen
                        .nodes_down
                        .values()
                        .map(|(since, labels)| (labels.clone(), None, Some(*since)))
                        .collect(),
                    EventKind::CertificateFailed | EventKind::BackupFailed => {
                        let action = if *kind == EventKind::BackupFailed {
                            CapstanAction::BackupFailed
                        } else {
                            CapstanAction::CertificateFailed
                        };
                        seen.still_failing
                            .iter()
                            .filter(|((a, _), _)| *a == action)
                            .map(|(_, (since, labels))| (labels.clone(), None, Some(*since)))
                            .collect()
                    }
                    EventKind::UpdateFailed => Seen::counted(&seen.update_failed, from),
                    EventKind::RolledBack => Seen::counted(&seen.rolled_back, from),
                })
            }
        }
    }

    /// Evaluates every rule at `now` and journals each move: the sources are read, the alerts
    /// moved ([`transitions::step`], pure), the moves journaled.
    async fn evaluate(&self, now: i64) {
        let rules = self.rules();
        let rollouts = self.rollouts(now);
        let mut moves = Vec::new();
        for rule in &rules {
            let Some(holding) = self.read_holding(rule, now).await else {
                continue;
            };
            let mut instances = self
                .instances
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            moves.extend(transitions::step(
                &mut instances,
                rule,
                holding,
                &rollouts,
                now,
            ));
        }
        let mut journaled = false;
        for m in transitions::coalesce(moves) {
            if let Some(rule) = rules.iter().find(|r| r.name == m.rule) {
                journaled |= self.journal(rule, &m, now).await;
            }
        }
        if journaled {
            self.evaluations.send_modify(|n| *n += 1);
        }
        let firing = transitions::fired_events(
            self.instances
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .values(),
        );
        self.firing.send_if_modified(|old| {
            let changed = old.iter().map(|e| e.seq).ne(firing.iter().map(|e| e.seq));
            if changed {
                *old = firing;
            }
            changed
        });
    }

    /// What holds for `rule` now; `None` when its sources cannot be read (said once, until it
    /// can be evaluated again; its alerts stay as they are meanwhile).
    async fn read_holding(&self, rule: &Rule, now: i64) -> Option<Vec<Holding>> {
        let result = self.holding(rule, now).await;
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(h) => {
                if seen.failing.remove(&rule.name).is_some() {
                    info!(rule = %rule.name, "the alert rule is evaluated again");
                }
                Some(h)
            }
            Err(e) => {
                if seen.failing.get(&rule.name) != Some(&e) {
                    warn!(rule = %rule.name, error = %e, "cannot evaluate the alert rule; its alerts stay as they are");
                    seen.failing.insert(rule.name.clone(), e);
                }
                None
            }
        }
    }

    /// Journals one move (unless the alert flaps and is kept quiet); true when it was.
    async fn journal(&self, rule: &Rule, m: &Move, now: i64) -> bool {
        let key = (m.rule.clone(), m.fingerprint.clone());
        let Some(instance) = self
            .instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned()
        else {
            return false;
        };
        let (action, quiet) = {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            let fires = seen
                .fires
                .entry(format!("{}/{}", m.rule, m.fingerprint))
                .or_default();
            transitions::announcement(m.state, fires, instance.flapping, now)
        };
        let flapping = action == CapstanAction::AlertFlapping || quiet;
        if quiet {
            // flapping: the list shows it, the channels hear of it again once it settles
            self.update(&key, m.state, None, true);
            return false;
        }
        let attributes = transitions::attributes(rule, &instance, &m.fingerprint, m.state);
        info!(rule = %m.rule, alert = %m.fingerprint, action = %action, "alert");
        let event = self
            .sources
            .store
            .record(&self.sources.live, action, m.rule.clone(), attributes)
            .await;
        self.update(&key, m.state, event, flapping);
        true
    }

    fn update(
        &self,
        key: &(String, String),
        state: AlertState,
        event: Option<Event>,
        flapping: bool,
    ) {
        let mut instances = self
            .instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match state {
            AlertState::Resolved => {
                instances.remove(key);
            }
            AlertState::Firing => {
                if let Some(i) = instances.get_mut(key) {
                    i.flapping = flapping;
                    if event.is_some() {
                        i.fired_event = event;
                    }
                }
            }
            AlertState::Pending => {}
        }
    }

    /// Reads back what the journal holds: the events event rules look at, and the alerts that
    /// were pending or firing when capstan stopped.
    async fn restore(&self, now: i64) {
        let since = (now - EVENT_KEEP_MS) * 1_000_000;
        let actions = [
            "oom",
            "kill",
            "stop",
            "die",
            "destroy",
            "health_status: healthy",
            "health_status: unhealthy",
            "update_failed",
            "release_rolled_back",
            "alert_pending",
            "alert_firing",
            "alert_resolved",
            "alert_flapping",
            // Swarm: nodes changing state, tasks failing
            "update",
            "remove",
            "failed",
            "rejected",
        ];
        let filter = EventFilter {
            kinds: vec![
                "container".into(),
                "capstan".into(),
                "node".into(),
                "task".into(),
            ],
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
            since_nano: Some(since),
            ..EventFilter::default()
        };
        let events = match self.sources.store.events(filter, 1_000_000).await {
            Ok(events) => events,
            Err(e) => {
                warn!(error = %e, "cannot read the journal back for alert rules");
                return;
            }
        };
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let mut last: BTreeMap<(String, String), Event> = BTreeMap::new();
        // the journal lists newest first
        for e in events.iter().rev() {
            seen.take(e);
            if e.kind == "capstan"
                && CapstanAction::parse(&e.action).is_some_and(CapstanAction::is_alert)
                && let Some(fp) = e.attributes.get("fingerprint")
            {
                last.insert((e.actor.clone(), fp.clone()), e.clone());
            }
        }
        drop(seen);
        let mut instances = self
            .instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (key, e) in last {
            let state = match e.action.as_str() {
                "alert_firing" | "alert_flapping" => AlertState::Firing,
                "alert_pending" => AlertState::Pending,
                _ => continue,
            };
            let since = e
                .attributes
                .get("active_since")
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map_or(now, |t| t.timestamp_millis());
            let reserved = ["rule", "state", "fingerprint", "active_since", "value"];
            let labels = e
                .attributes
                .iter()
                .filter(|(k, _)| !reserved.contains(&k.as_str()) && !k.starts_with("annotation."))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            instances.insert(
                key,
                Instance {
                    labels,
                    value: e.attributes.get("value").and_then(|v| v.parse().ok()),
                    state,
                    active_since: since,
                    last_active: now,
                    fired_at: (state == AlertState::Firing).then_some(e.time_nano / 1_000_000),
                    held: false,
                    fired_event: (state == AlertState::Firing).then_some(e),
                    flapping: false,
                },
            );
        }
    }

    /// Evaluates until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut live = self.sources.live.subscribe();
        self.restore(now_ms()).await;
        let mut tick = tokio::time::interval(self.evaluate_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    let now = now_ms();
                    self.seen.lock().unwrap_or_else(PoisonError::into_inner).prune(now);
                    self.evaluate(now).await;
                }
                e = live.recv() => match e {
                    Ok(e) => self.seen.lock().unwrap_or_else(PoisonError::into_inner).take(&e),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        warn!(missed = n, "the alert engine fell behind the live events");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(id: &str, action: &str, at_ms: i64, app: &str) -> Event {
        Event {
            seq: 0,
            time: time(at_ms),
            time_nano: at_ms * 1_000_000,
            kind: "container".into(),
            action: action.into(),
            actor: id.into(),
            image_id: None,
            attributes: BTreeMap::from([
                ("name".to_owned(), format!("{id}-name")),
                ("com.docker.compose.project".to_owned(), app.to_owned()),
            ]),
            scope: None,
            inferred: false,
        }
    }

    fn engine(dir: &std::path::Path) -> (Alerts, RolloutLocks) {
        let store = Store::open(&dir.join("state.db")).unwrap();
        let rollouts = RolloutLocks::default();
        let rule = RuleConfig {
            name: "sick".into(),
            event: Some("unhealthy".into()),
            ..RuleConfig::default()
        }
        .check("test", Source::Config)
        .unwrap();
        let alerts = Alerts::new(
            vec![rule],
            Sources {
                store,
                live: broadcast::channel(16).0,
                history: None,
                logs: None,
                rollouts: rollouts.clone(),
                security: None,
            },
            Duration::from_secs(1),
            dir.join("alert-rules.json"),
        )
        .unwrap();
        (alerts, rollouts)
    }

    async fn journaled(alerts: &Alerts) -> Vec<String> {
        let filter = EventFilter {
            kinds: vec!["capstan".into()],
            ..EventFilter::default()
        };
        let mut events = alerts.sources.store.events(filter, 100).await.unwrap();
        events.reverse();
        events.into_iter().map(|e| e.action).collect()
    }

    fn see(alerts: &Alerts, e: &Event) {
        alerts.seen.lock().unwrap().take(e);
    }

    #[tokio::test]
    async fn a_security_rule_fires_per_open_finding_at_its_severity_and_resolves_with_it() {
        use capstan_model::{ObjectKind, SecurityFinding, SecurityObject, Severity};
        let dir = tempfile::tempdir().unwrap();
        let (mut alerts, _) = engine(dir.path());
        let finding = |check: &str, name: &str, severity| SecurityFinding {
            check: check.into(),
            title: "t".into(),
            severity,
            object: SecurityObject {
                kind: ObjectKind::Container,
                id: name.into(),
                name: name.into(),
            },
            detail: "d".into(),
            fix: "f".into(),
            since: chrono::Utc::now(),
        };
        let (tx, rx) = watch::channel(vec![
            finding("5.4", "root-shell", Severity::Critical),
            finding("5.12", "root-shell", Severity::Low),
        ]);
        alerts.sources.security = Some(rx);
        alerts
            .add_rule(&RuleConfig {
                name: "host-risk".into(),
                security: Some("high".into()),
                ..RuleConfig::default()
            })
            .unwrap();
        let t0 = now_ms();
        alerts.evaluate(t0).await;
        let firing: Vec<_> = alerts
            .alerts()
            .into_iter()
            .filter(|a| a.labels.get("alertname").map(String::as_str) == Some("host-risk"))
            .collect();
        assert_eq!(
            firing.len(),
            1,
            "the low finding is below the rule: {firing:?}"
        );
        assert_eq!(firing[0].state, AlertState::Firing);
        assert_eq!(firing[0].labels["check"], "5.4");
        assert_eq!(firing[0].labels["object"], "root-shell");
        tx.send_replace(vec![finding("5.12", "root-shell", Severity::Low)]);
        alerts.evaluate(t0 + 1_000).await;
        assert_eq!(journaled(&alerts).await, ["alert_firing", "alert_resolved"]);
    }

    #[tokio::test]
    async fn a_flapping_alert_is_said_once_then_kept_quiet() {
        let dir = tempfile::tempdir().unwrap();
        let (alerts, _) = engine(dir.path());
        let t0 = now_ms();
        for i in 0..5 {
            let t = t0 + i * 2_000;
            see(
                &alerts,
                &health("c1", "health_status: unhealthy", t, "shop"),
            );
            alerts.evaluate(t).await;
            see(
                &alerts,
                &health("c1", "health_status: healthy", t + 1_000, "shop"),
            );
            alerts.evaluate(t + 1_000).await;
        }
        assert_eq!(
            journaled(&alerts).await,
            [
                "alert_firing",
                "alert_resolved",
                "alert_firing",
                "alert_resolved",
                "alert_flapping",
            ],
            "the third firing says flapping; later moves are not sent"
        );
    }

    #[tokio::test]
    async fn a_rollout_holds_an_alert_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let (alerts, rollouts) = engine(dir.path());
        let t0 = now_ms();
        let lock = rollouts.hold("shop").unwrap();
        see(
            &alerts,
            &health("c1", "health_status: unhealthy", t0, "shop"),
        );
        see(
            &alerts,
            &health("c2", "health_status: unhealthy", t0, "other"),
        );
        alerts.evaluate(t0).await;
        let list = alerts.alerts();
        let held: Vec<_> = list.iter().filter(|a| a.held).collect();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].state, AlertState::Pending);
        assert_eq!(held[0].labels.get("app").map(String::as_str), Some("shop"));
        let mut moved = journaled(&alerts).await;
        moved.sort();
        assert_eq!(
            moved,
            ["alert_firing", "alert_pending"],
            "one fired, one held"
        );
        // the rollout ends with the condition still there: held a little longer (the events of
        // what the rollout removed may be on their way), then it fires
        drop(lock);
        alerts.evaluate(t0 + 1_000).await;
        assert!(alerts.alerts().iter().any(|a| a.held));
        alerts.evaluate(t0 + 1_000 + HOLD_AFTER_MS).await;
        assert!(
            alerts
                .alerts()
                .iter()
                .all(|a| a.state == AlertState::Firing)
        );
        let test = alerts.test("sick").await.unwrap().unwrap();
        assert!(test.would_fire && test.instances.len() == 2, "{test:?}");
    }

    fn swarm(
        kind: &str,
        action: &str,
        actor: &str,
        at_ms: i64,
        attributes: &[(&str, &str)],
    ) -> Event {
        Event {
            kind: kind.into(),
            action: action.into(),
            actor: actor.into(),
            attributes: attributes
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            scope: Some("swarm".into()),
            ..health(actor, action, at_ms, "")
        }
    }

    #[tokio::test]
    async fn a_swarm_node_down_fires_until_it_is_ready_and_failed_tasks_count_as_exits() {
        let dir = tempfile::tempdir().unwrap();
        let (alerts, _) = engine(dir.path());
        for c in crate::builtin() {
            if c.name == "node_down" || c.name == "restart_loop" {
                alerts
                    .add_rule(&RuleConfig {
                        name: format!("my_{}", c.name),
                        ..c
                    })
                    .unwrap();
            }
        }
        let firing = |alerts: &Alerts| -> Vec<(String, String)> {
            let mut out: Vec<_> = alerts
                .alerts()
                .into_iter()
                .filter(|a| a.state == AlertState::Firing)
                .map(|a| {
                    let who = a.labels.get("node").or(a.labels.get("service")).cloned();
                    (a.rule, who.unwrap_or_default())
                })
                .collect();
            out.sort();
            out
        };
        let t0 = now_ms();
        let node = |state: &str, t| {
            swarm(
                "node",
                "update",
                "n3",
                t,
                &[("name", "capt-node3"), ("state.new", state)],
            )
        };
        // an availability change says nothing of the node's state
        see(
            &alerts,
            &swarm(
                "node",
                "update",
                "n3",
                t0,
                &[("name", "capt-node3"), ("availability.new", "drain")],
            ),
        );
        see(&alerts, &node("unknown", t0));
        alerts.evaluate(t0).await;
        assert_eq!(firing(&alerts), []);
        see(&alerts, &node("down", t0 + 1_000));
        alerts.evaluate(t0 + 1_000).await;
        assert_eq!(
            firing(&alerts),
            [("my_node_down".to_owned(), "capt-node3".to_owned())]
        );
        see(&alerts, &node("ready", t0 + 2_000));
        alerts.evaluate(t0 + 2_000).await;
        assert_eq!(firing(&alerts), []);

        // five failed (or rejected) tasks of one service: a restart loop, as five exits
        for i in 0..5 {
            let action = if i == 4 { "rejected" } else { "failed" };
            see(
                &alerts,
                &swarm(
                    "task",
                    action,
                    &format!("t{i}"),
                    t0 + 3_000 + i,
                    &[
                        ("name", &format!("shop_web.{i}")),
                        ("io.capstan.app", "shop"),
                        ("io.capstan.service", "web"),
                    ],
                ),
            );
        }
        alerts.evaluate(t0 + 4_000).await;
        assert_eq!(
            firing(&alerts),
            [("my_restart_loop".to_owned(), "web".to_owned())]
        );
    }
}
