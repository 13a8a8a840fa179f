use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The object kinds the Docker engine reports events for.
pub type EventType = String;

/// One journaled engine event, as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// Journal sequence number (unique, increasing in insertion order).
    pub seq: i64,
    /// When the engine says the event happened, RFC 3339 UTC with nanoseconds.
    pub time: DateTime<Utc>,
    /// Nanoseconds since the Unix epoch (the engine's `timeNano`).
    pub time_nano: i64,
    /// `image`, `container`, `network`, `volume`, `daemon`, ...
    #[serde(rename = "type")]
    pub kind: EventType,
    /// `pull`, `tag`, `start`, `die`, ...
    pub action: String,
    /// The engine's actor id: an image id, a reference (pull, push) or a container id.
    pub actor: String,
    /// The image id this event is about, resolved by capstan (also for pull and push).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// The engine's actor attributes (name, image, exitCode, ...).
    pub attributes: BTreeMap<String, String>,
    /// `local` or `swarm`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// True when capstan did not see this event but inferred it from an inventory difference
    /// found after it could not watch the engine.
    pub inferred: bool,
}

/// One page of events, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventPage {
    /// The events of this page.
    pub events: Vec<Event>,
    /// Pass as `cursor` to get the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The actions of the journal's `capstan` events: what capstan did or found by itself. Alert
/// rules, notification channels and the dashboard read them back by these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CapstanAction {
    /// The watcher found a newer image a service's update policy allows.
    UpdateAvailable,
    /// An automatic update's release succeeded.
    UpdateApplied,
    /// An automatic update's release failed (the candidate is not offered again).
    UpdateFailed,
    /// A release failed without rolling back.
    ReleaseFailed,
    /// A release failed and rolled back by itself.
    ReleaseRolledBack,
    /// Self-healing replaced a missing or exited replica.
    Heal,
    /// Self-healing could not replace a replica.
    HealFailed,
    /// Self-healing restarted an unhealthy replica.
    RestartUnhealthy,
    /// Self-healing stopped restarting a replica that stays unhealthy.
    HealGaveUp,
    /// An alert's condition holds, for less than its `for` yet.
    AlertPending,
    /// An alert fires.
    AlertFiring,
    /// A firing alert's condition ended.
    AlertResolved,
    /// An alert fires too often: its further moves are not notified until it settles.
    AlertFlapping,
    /// The engine rotated log lines away before capstan could read them (counted, estimated).
    LogsRotatedAway,
    /// An image was scanned for vulnerabilities as it was pulled.
    ImageScanned,
    /// A host security check found something new (`check`, `severity`, `object`).
    SecurityFinding,
    /// A host security check's finding is gone.
    SecurityResolved,
    /// A replica a rollout took out of rotation could not be stopped and removed in the
    /// background (`app`, `release`, `container`, `error`).
    RetireFailed,
    /// An image capstan deployed or built, used by none of its app's last releases nor any
    /// container, was removed (`capstan images prune`, or its schedule).
    ImagePruned,
    /// A certificate for an app's host names was issued or renewed (`app`, `names`,
    /// `challenge`, `not_after`).
    CertificateIssued,
    /// The ACME server did not issue an app's certificate (`app`, `names`, `challenge`,
    /// `error`): its names stay on plain HTTP, and it is tried again.
    CertificateFailed,
    /// An app's volumes were backed up (`app`, `volumes`, `snapshots`, `scheduled`).
    BackupTaken,
    /// An app's backup failed (`app`, `error`, `scheduled`).
    BackupFailed,
    /// A snapshot was restored into an app's volume (`app`, `volume`, `snapshot`).
    BackupRestored,
}

impl CapstanAction {
    /// Every action.
    pub const ALL: [Self; 24] = [
        Self::UpdateAvailable,
        Self::UpdateApplied,
        Self::UpdateFailed,
        Self::ReleaseFailed,
        Self::ReleaseRolledBack,
        Self::Heal,
        Self::HealFailed,
        Self::RestartUnhealthy,
        Self::HealGaveUp,
        Self::AlertPending,
        Self::AlertFiring,
        Self::AlertResolved,
        Self::AlertFlapping,
        Self::LogsRotatedAway,
        Self::ImageScanned,
        Self::SecurityFinding,
        Self::SecurityResolved,
        Self::RetireFailed,
        Self::ImagePruned,
        Self::CertificateIssued,
        Self::CertificateFailed,
        Self::BackupTaken,
        Self::BackupFailed,
        Self::BackupRestored,
    ];

    /// The alert actions, in the order an alert moves through them.
    pub const ALERTS: [Self; 4] = [
        Self::AlertPending,
        Self::AlertFiring,
        Self::AlertResolved,
        Self::AlertFlapping,
    ];

    /// The name the journal keeps.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpdateAvailable => "update_available",
            Self::UpdateApplied => "update_applied",
            Self::UpdateFailed => "update_failed",
            Self::ReleaseFailed => "release_failed",
            Self::ReleaseRolledBack => "release_rolled_back",
            Self::Heal => "heal",
            Self::HealFailed => "heal_failed",
            Self::RestartUnhealthy => "restart_unhealthy",
            Self::HealGaveUp => "heal_gave_up",
            Self::AlertPending => "alert_pending",
            Self::AlertFiring => "alert_firing",
            Self::AlertResolved => "alert_resolved",
            Self::AlertFlapping => "alert_flapping",
            Self::LogsRotatedAway => "logs_rotated_away",
            Self::ImageScanned => "image_scanned",
            Self::SecurityFinding => "security_finding",
            Self::SecurityResolved => "security_resolved",
            Self::RetireFailed => "retire_failed",
            Self::ImagePruned => "image_pruned",
            Self::CertificateIssued => "certificate_issued",
            Self::CertificateFailed => "certificate_failed",
            Self::BackupTaken => "backup_taken",
            Self::BackupFailed => "backup_failed",
            Self::BackupRestored => "backup_restored",
        }
    }

    /// One of an alert's moves ([`Self::ALERTS`]).
    pub fn is_alert(self) -> bool {
        Self::ALERTS.contains(&self)
    }

    /// The action a journaled name stands for; `None` for an engine action or a name no
    /// version wrote.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl std::fmt::Display for CapstanAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capstan_actions_keep_their_journal_names() {
        for a in CapstanAction::ALL {
            assert_eq!(CapstanAction::parse(a.as_str()), Some(a));
        }
        let names: std::collections::BTreeSet<_> =
            CapstanAction::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(names.len(), CapstanAction::ALL.len(), "names are unique");
        assert_eq!(CapstanAction::parse("die"), None);
    }
}
