use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One image of the inventory (present, or deleted and kept with its history).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Image {
    /// Full image id (`sha256:...`).
    pub id: String,
    /// `repo:tag` references pointing at it now (last known, for deleted images).
    pub repo_tags: Vec<String>,
    /// `repo@sha256:...` digests it is known by in registries.
    pub repo_digests: Vec<String>,
    /// Size in bytes.
    pub size: i64,
    /// When the image was created (from its config).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
    /// Number of layers in its root filesystem.
    pub layers: i64,
    /// Containers (existing, any state) using it.
    pub containers: i64,
    /// When capstan first saw it.
    pub first_seen: DateTime<Utc>,
    /// When capstan last saw it present.
    pub last_seen: DateTime<Utc>,
    /// When it was deleted, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<DateTime<Utc>>,
}

/// `GET /api/v1/images`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImageList {
    /// Images, newest first-seen first.
    pub images: Vec<Image>,
}

/// A step of an image's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// Pulled from a registry.
    Pulled,
    /// Built here (inferred: a tag pointing at a new id that was not pulled, loaded or imported).
    Built,
    /// Committed from a container.
    Committed,
    /// A reference now points at it.
    Tagged,
    /// A reference stopped pointing at it.
    Untagged,
    /// Pushed to a registry.
    Pushed,
    /// Created from a filesystem tarball (`docker import`).
    Imported,
    /// Loaded from an image archive (`docker load`).
    Loaded,
    /// Saved to an image archive (`docker save`).
    Saved,
    /// Removed from the engine.
    Deleted,
    /// Found on the engine without an event explaining how it got there.
    Discovered,
}

impl Lifecycle {
    /// The lifecycle step for an engine image action, when there is one.
    pub fn from_action(action: &str) -> Option<Self> {
        Some(match action {
            "pull" => Self::Pulled,
            "tag" => Self::Tagged,
            "untag" => Self::Untagged,
            "push" => Self::Pushed,
            "import" => Self::Imported,
            "load" => Self::Loaded,
            "save" => Self::Saved,
            "delete" => Self::Deleted,
            "appear" => Self::Discovered,
            _ => return None,
        })
    }

    /// Stable snake-case name, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pulled => "pulled",
            Self::Built => "built",
            Self::Committed => "committed",
            Self::Tagged => "tagged",
            Self::Untagged => "untagged",
            Self::Pushed => "pushed",
            Self::Imported => "imported",
            Self::Loaded => "loaded",
            Self::Saved => "saved",
            Self::Deleted => "deleted",
            Self::Discovered => "discovered",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pulled,
            Self::Built,
            Self::Committed,
            Self::Tagged,
            Self::Untagged,
            Self::Pushed,
            Self::Imported,
            Self::Loaded,
            Self::Saved,
            Self::Deleted,
            Self::Discovered,
        ]
        .into_iter()
        .find(|l| l.as_str() == s)
    }
}

/// One entry of an image's lifecycle history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    /// When it happened (engine time; capstan's time of discovery when inferred).
    pub time: DateTime<Utc>,
    /// What happened.
    pub action: Lifecycle,
    /// The reference involved (`repo:tag`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// True when capstan inferred it rather than saw an engine event for it.
    pub inferred: bool,
    /// The journal event it comes from, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_seq: Option<i64>,
}

/// `GET /api/v1/images/{id-or-reference}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImageDetail {
    /// The inventory record.
    pub image: Image,
    /// Its lifecycle, oldest first.
    pub history: Vec<HistoryEntry>,
    /// Ids of the containers using it now.
    pub container_ids: Vec<String>,
}

/// One container known to the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Container {
    /// Full container id.
    pub id: String,
    /// Name without the leading slash.
    pub name: String,
    /// Image as the user asked for it.
    pub image: String,
    /// Resolved image id.
    pub image_id: String,
    /// `created`, `running`, `exited`, ...
    pub state: String,
    /// Human status from the engine (`Up 3 minutes (healthy)`).
    pub status: String,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// Labels.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// `GET /api/v1/containers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContainerList {
    /// Containers, newest first.
    pub containers: Vec<Container>,
}

/// A newer tag an update policy allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UpdateCandidate {
    pub tag: String,
    /// What an update would pull.
    pub digest: String,
}

/// The last check of one watched image against its registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImageUpdate {
    /// The reference the containers run (`127.0.0.1:5000/shop/api:v1.0.1`).
    pub reference: String,
    /// `digest`, `patch`, `minor`, `major`, `semver:<range>`, `regex:<pattern>`, `none`.
    pub policy: String,
    /// The digest the running image was pulled as (a manifest or an index).
    pub running: Option<String>,
    /// What the tag names now.
    pub tag_digest: Option<String>,
    /// The host platform's image under the running digest and under the tag, once read.
    pub running_child: Option<String>,
    pub tag_child: Option<String>,
    /// The same tag holds new content for this platform.
    pub content_changed: bool,
    /// A newer tag the policy allows.
    pub candidate: Option<UpdateCandidate>,
    /// A newer tag the policy allows that is younger than the minimum age: not offered yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<UpdateCandidate>,
    /// When capstan first saw the candidate (or the waiting one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_seen: Option<DateTime<Utc>>,
    /// Why there is an update, or why not.
    pub reason: String,
    pub checked_at: DateTime<Utc>,
    /// The last check failed (the rest is from the last one that did not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Docker Hub's pull budget left, as its HEAD said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_remaining: Option<u64>,
    /// Names of the containers running it.
    #[serde(default)]
    pub containers: Vec<String>,
    /// What automatic updating (label `io.capstan.update.auto=true`) does with the update, or
    /// why it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto: Option<String>,
}

/// An update the watcher hands to the deploy engine for a service that asked for automatic
/// updates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AutoUpdate {
    pub app: String,
    pub service: String,
    /// The watched reference (`127.0.0.1:5000/shop/api:v1.0.0`).
    pub reference: String,
    /// What the service is to run, pinned: `127.0.0.1:5000/shop/api:v1.1.0@sha256:...`.
    pub image: String,
    pub tag: String,
    pub digest: String,
    /// Why the watcher offers it.
    pub reason: String,
}

impl ImageUpdate {
    /// Whether there is something to update to.
    pub fn has_update(&self) -> bool {
        self.content_changed || self.candidate.is_some()
    }
}

/// `GET /api/v1/images/updates`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImageUpdates {
    pub updates: Vec<ImageUpdate>,
    /// When the last check cycle ended.
    pub last_cycle: Option<DateTime<Utc>>,
    /// Registry requests made since start, by kind (`manifest_heads`, `manifest_gets`,
    /// `tag_pages`, `tokens`, `auth_retries`).
    #[serde(default)]
    pub requests: std::collections::BTreeMap<String, u64>,
    /// Containers still running an image their tag no longer names on this host (the new
    /// image was pulled, or built, and not applied): found on the engine at each request.
    #[serde(default)]
    pub stale: Vec<StaleImage>,
}

/// A tag that moved on this host while containers still run what it named before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StaleImage {
    /// The reference the containers were made from (`ghcr.io/acme/api:main`).
    pub reference: String,
    /// The containers running the older image.
    pub containers: Vec<String>,
    /// The image id they run.
    pub running_id: String,
    /// The digest it was pulled as from the reference's repository, when it was.
    pub running_digest: Option<String>,
    /// The image id the tag names on this host now.
    pub tag_id: String,
    /// The digest that image was pulled as, when it was.
    pub tag_digest: Option<String>,
}

/// `POST /api/v1/hooks/registry`: the repositories a registry said were pushed, checked now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HookAccepted {
    pub repositories: Vec<String>,
}

/// What `capstan images prune` removed, or would (a dry run), and what it left and why.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PruneReport {
    /// Nothing was removed: this is what would be.
    pub dry_run: bool,
    /// How many of each app's latest releases keep their images.
    pub keep: u32,
    /// Removed (or, in a dry run, to be).
    pub removed: Vec<PrunedImage>,
    /// capstan's images it left, each with why (tagged by someone else, a removal that failed).
    pub left: Vec<PrunedImage>,
    /// Bytes the removed images held.
    pub reclaimed: i64,
    /// Bytes the build cache gave back (`[images] build_cache`).
    pub build_cache_reclaimed: i64,
}

/// One image `capstan images prune` looked at.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PrunedImage {
    pub id: String,
    /// Its tags.
    pub tags: Vec<String>,
    pub size: i64,
    /// The apps whose releases (or builds) ran it.
    pub apps: Vec<String>,
    /// Why it was left (empty for a removed one).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}
