//! The pure part of an evaluation: how a rule's alerts move given what holds now (new →
//! pending, held long enough and not held by a rollout → firing, no longer holding → resolved
//! after `keep_firing_for`), and what each move is journaled as (flap detection, the event's
//! attributes). No I/O: the engine reads the sources before and journals after.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use capstan_model::{AlertState, CapstanAction, Event};
use chrono::{DateTime, Utc};

use crate::rule::{Rule, format_value, render};

/// An alert firing this many times within [`FLAP_WINDOW_MS`] is flapping: its further moves
/// are not notified until it settles.
const FLAP_FIRES: usize = 3;
pub(crate) const FLAP_WINDOW_MS: i64 = 15 * 60_000;

/// One set of labels a condition holds for: labels, figure, since when (when known).
pub(crate) type Holding = (BTreeMap<String, String>, Option<f64>, Option<i64>);

/// An alert's key: its rule and fingerprint.
pub(crate) type Key = (String, String);

/// One alert: a rule's condition holding for one set of labels.
#[derive(Debug, Clone)]
pub(crate) struct Instance {
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: Option<f64>,
    pub(crate) state: AlertState,
    pub(crate) active_since: i64,
    pub(crate) last_active: i64,
    pub(crate) fired_at: Option<i64>,
    pub(crate) held: bool,
    /// The event that made it fire (what Alertmanager is sent again while it fires).
    pub(crate) fired_event: Option<Event>,
    pub(crate) flapping: bool,
}

pub(crate) fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// An alert's identity within its rule: its labels, in order.
pub(crate) fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// One move of an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Move {
    pub(crate) rule: String,
    pub(crate) fingerprint: String,
    pub(crate) state: AlertState,
}

/// Moves `rule`'s alerts at `now` given what holds (`holding`); an alert of an app in
/// `rollouts` is held pending. Returns the moves, in the order they happened.
pub(crate) fn step(
    instances: &mut BTreeMap<Key, Instance>,
    rule: &Rule,
    holding: Vec<Holding>,
    rollouts: &BTreeSet<String>,
    now: i64,
) -> Vec<Move> {
    let mut moves = Vec::new();
    let mv = |fp: &str, state| Move {
        rule: rule.name.clone(),
        fingerprint: fp.to_owned(),
        state,
    };
    let mut active = BTreeSet::new();
    for (labels, value, since) in holding {
        let mut all = rule.labels.clone();
        all.extend(labels.clone());
        let fp = fingerprint(&labels);
        active.insert(fp.clone());
        let key = (rule.name.clone(), fp.clone());
        let held =
            rule.held_during_rollouts() && labels.get("app").is_some_and(|a| rollouts.contains(a));
        let i = instances.entry(key).or_insert_with(|| {
            moves.push(mv(&fp, AlertState::Pending));
            Instance {
                labels: all,
                value,
                state: AlertState::Pending,
                active_since: since.unwrap_or(now).min(now),
                last_active: now,
                fired_at: None,
                held,
                fired_event: None,
                flapping: false,
            }
        });
        i.value = value;
        i.last_active = now;
        i.held = held;
        if i.state == AlertState::Pending
            && !held
            && now - i.active_since >= rule.for_.as_millis() as i64
        {
            i.state = AlertState::Firing;
            i.fired_at = Some(now);
            moves.push(mv(&fp, AlertState::Firing));
        }
    }
    let keep = rule.keep_firing_for.as_millis() as i64;
    let gone: Vec<Key> = instances
        .iter()
        .filter(|((r, fp), i)| {
            r == &rule.name
                && !active.contains(fp)
                && (i.state == AlertState::Pending || now - i.last_active >= keep)
        })
        .map(|(k, _)| k.clone())
        .collect();
    for key in gone {
        if instances
            .get(&key)
            .is_some_and(|i| i.state == AlertState::Firing)
        {
            moves.push(mv(&key.1, AlertState::Resolved));
        } else {
            instances.remove(&key);
        }
    }
    moves
}

/// A pending alert that fires in the same evaluation is journaled once, as firing.
pub(crate) fn coalesce(moves: Vec<Move>) -> Vec<Move> {
    let firing: BTreeSet<(String, String)> = moves
        .iter()
        .filter(|m| m.state == AlertState::Firing)
        .map(|m| (m.rule.clone(), m.fingerprint.clone()))
        .collect();
    moves
        .into_iter()
        .filter(|m| {
            m.state != AlertState::Pending
                || !firing.contains(&(m.rule.clone(), m.fingerprint.clone()))
        })
        .collect()
}

/// What a move to `state` is journaled as, and whether it is kept quiet: an alert that fired
/// [`FLAP_FIRES`] times within the window (`fires`, this firing added) is said once to be
/// flapping, then kept quiet until it settles; a flapping alert's resolution is quiet too.
pub(crate) fn announcement(
    state: AlertState,
    fires: &mut VecDeque<i64>,
    flapping: bool,
    now: i64,
) -> (CapstanAction, bool) {
    match state {
        AlertState::Pending => (CapstanAction::AlertPending, false),
        AlertState::Firing => {
            fires.push_back(now);
            match fires.len().cmp(&FLAP_FIRES) {
                std::cmp::Ordering::Greater => (CapstanAction::AlertFiring, true),
                std::cmp::Ordering::Equal => (CapstanAction::AlertFlapping, false),
                std::cmp::Ordering::Less => (CapstanAction::AlertFiring, false),
            }
        }
        AlertState::Resolved => (CapstanAction::AlertResolved, flapping),
    }
}

/// The journaled event's attributes: the alert's labels, the rule, its state, fingerprint,
/// since when, its figure, and the rule's annotations rendered (a summary at least).
pub(crate) fn attributes(
    rule: &Rule,
    instance: &Instance,
    fingerprint: &str,
    state: AlertState,
) -> BTreeMap<String, String> {
    let mut attributes = instance.labels.clone();
    attributes.insert("rule".into(), rule.name.clone());
    attributes.insert("state".into(), state.as_str().into());
    attributes.insert("fingerprint".into(), fingerprint.to_owned());
    attributes.insert(
        "active_since".into(),
        time(instance.active_since).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    );
    if let Some(v) = instance.value {
        attributes.insert("value".into(), format_value(v));
    }
    for (k, v) in &rule.annotations {
        attributes.insert(
            format!("annotation.{k}"),
            render(v, &instance.labels, instance.value),
        );
    }
    attributes
        .entry("annotation.summary".into())
        .or_insert_with(|| rule.describe());
    attributes
}

/// The events that made the firing alerts fire (what Alertmanager is sent again).
pub(crate) fn fired_events<'a>(instances: impl Iterator<Item = &'a Instance>) -> Vec<Event> {
    instances
        .filter(|i| i.state == AlertState::Firing)
        .filter_map(|i| i.fired_event.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::{RuleConfig, Source};

    fn rule(for_: &str, keep: &str) -> Rule {
        RuleConfig {
            name: "sick".into(),
            event: Some("unhealthy".into()),
            for_: Some(for_.into()),
            keep_firing_for: Some(keep.into()),
            ..RuleConfig::default()
        }
        .check("test", Source::Config)
        .unwrap()
    }

    fn holds(app: &str) -> Vec<Holding> {
        vec![(
            BTreeMap::from([("app".to_owned(), app.to_owned())]),
            Some(1.0),
            None,
        )]
    }

    fn states(moves: &[Move]) -> Vec<AlertState> {
        moves.iter().map(|m| m.state).collect()
    }

    #[test]
    fn an_alert_goes_pending_firing_resolved() {
        let rule = rule("10s", "0s");
        let mut instances = BTreeMap::new();
        let none = BTreeSet::new();
        let moves = step(&mut instances, &rule, holds("shop"), &none, 0);
        assert_eq!(states(&moves), [AlertState::Pending]);
        assert!(step(&mut instances, &rule, holds("shop"), &none, 5_000).is_empty());
        let moves = step(&mut instances, &rule, holds("shop"), &none, 10_000);
        assert_eq!(states(&moves), [AlertState::Firing], "after its `for`");
        let moves = step(&mut instances, &rule, Vec::new(), &none, 11_000);
        assert_eq!(states(&moves), [AlertState::Resolved]);
    }

    #[test]
    fn a_pending_alert_that_stops_holding_is_dropped_without_a_word() {
        let rule = rule("1m", "0s");
        let mut instances = BTreeMap::new();
        let none = BTreeSet::new();
        step(&mut instances, &rule, holds("shop"), &none, 0);
        assert!(step(&mut instances, &rule, Vec::new(), &none, 1_000).is_empty());
        assert!(instances.is_empty());
    }

    #[test]
    fn a_rollout_holds_an_alert_pending_and_keep_firing_for_delays_resolution() {
        let rule = rule("0s", "30s");
        let mut instances = BTreeMap::new();
        let rolling = BTreeSet::from(["shop".to_owned()]);
        let moves = step(&mut instances, &rule, holds("shop"), &rolling, 0);
        assert_eq!(states(&moves), [AlertState::Pending], "held by the rollout");
        let moves = step(
            &mut instances,
            &rule,
            holds("shop"),
            &BTreeSet::new(),
            1_000,
        );
        assert_eq!(states(&moves), [AlertState::Firing]);
        assert!(
            step(&mut instances, &rule, Vec::new(), &BTreeSet::new(), 20_000).is_empty(),
            "still firing for 30s after it stopped holding"
        );
        let moves = step(&mut instances, &rule, Vec::new(), &BTreeSet::new(), 31_000);
        assert_eq!(states(&moves), [AlertState::Resolved]);
    }

    #[test]
    fn a_pending_and_firing_move_of_one_evaluation_is_said_once() {
        let rule = rule("0s", "0s");
        let mut instances = BTreeMap::new();
        let moves = step(&mut instances, &rule, holds("shop"), &BTreeSet::new(), 0);
        assert_eq!(states(&moves), [AlertState::Pending, AlertState::Firing]);
        assert_eq!(states(&coalesce(moves)), [AlertState::Firing]);
    }

    #[test]
    fn the_third_firing_in_the_window_says_flapping_then_it_is_quiet() {
        let mut fires = VecDeque::new();
        let said: Vec<_> = (0..4)
            .map(|n| announcement(AlertState::Firing, &mut fires, false, n * 1_000))
            .collect();
        assert_eq!(
            said,
            [
                (CapstanAction::AlertFiring, false),
                (CapstanAction::AlertFiring, false),
                (CapstanAction::AlertFlapping, false),
                (CapstanAction::AlertFiring, true),
            ]
        );
        assert_eq!(
            announcement(AlertState::Resolved, &mut fires, true, 5_000),
            (CapstanAction::AlertResolved, true)
        );
    }
}
