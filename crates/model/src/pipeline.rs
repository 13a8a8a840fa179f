//! The pipeline's wire shapes: an app's git source, its webhook and what its deliveries came
//! to, and its builds.

use serde::{Deserialize, Serialize};

/// Where an app's code is, and what to build from it (`x-capstan.source` in its Compose file,
/// or `PUT /api/v1/apps/{app}/source`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GitSource {
    /// The repository to clone: `https://…`, `http://…`, `ssh://…`, `git@host:path` or a local
    /// path.
    pub repository: String,
    /// The branch whose pushes are built and deployed.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// Paths (globs, from the repository's root) a push must touch to be built; every push
    /// when empty. `web/**` and `Dockerfile`, say; a directory stands for what is under it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// The credential to fetch with: `vault:NAME`, a credential capstan keeps (`capstan
    /// secrets set NAME`) holding `user:token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<String>,
    /// The service built from it; the app's only service with `build:` when not said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The build context, a directory of the repository; its root when not said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The Dockerfile, in the context; `Dockerfile` when not said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// The scan gate: a built image with a finding at or above this severity (offline
    /// advisories, `capstan vulndb`) is stopped before it is pushed. No gate when not said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_on: Option<crate::Severity>,
    /// Previews: a push to another branch (or a pull request) deploys `<app>-<branch>`,
    /// removed after a while. Off when not said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previews: Option<Previews>,
}

/// `source.previews`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Previews {
    /// How long a preview runs after its last push (`24h` by default; at least `1s`).
    #[serde(default = "default_ttl")]
    pub ttl: String,
    /// Whether pull requests from forks get previews (they run the fork's code with the app's
    /// configs and secrets: off by default).
    #[serde(default)]
    pub forks: bool,
}

fn default_ttl() -> String {
    "24h".into()
}

fn default_branch() -> String {
    "main".into()
}

/// One webhook delivery and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HookDelivery {
    /// The provider's delivery id (empty when it sent none, and for a refusal: nothing of a
    /// refused delivery is read).
    pub delivery: String,
    /// `github`, `gitea`, `forgejo`, `gitlab_token`, `gitlab_signed`, `generic`, or `unknown`.
    pub provider: String,
    pub event: String,
    /// RFC 3339 UTC.
    pub received: String,
    /// `accepted` (a build was queued), `skipped`, `refused` (its proof did not hold),
    /// `failed` (its body did not read).
    pub outcome: String,
    /// Why it was skipped, refused or failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub commit: String,
    /// The build it queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<i64>,
}

/// `GET /api/v1/apps/{app}/hooks`: an app's webhook and its last deliveries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HookInfo {
    pub app: String,
    /// Where providers post (a path of capstan's URL).
    pub path: String,
    /// Whether the app has a secret yet (`POST /api/v1/apps/{app}/hooks` makes one).
    pub has_secret: bool,
    /// The app's git source, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<GitSource>,
    /// Newest first.
    pub deliveries: Vec<HookDelivery>,
}

/// `POST /api/v1/apps/{app}/hooks`: a new secret, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HookSecret {
    pub app: String,
    pub path: String,
    /// The secret: the HMAC key (GitHub, Gitea, Forgejo, generic), the token (GitLab's secret
    /// token) and the signing token (GitLab's, already in its `whsec_` form).
    pub secret: String,
}

/// `POST /api/v1/hooks/git/{app}`: what came of a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HookOutcome {
    /// `queued`, `skipped`, or `replay` (a delivery id seen before: ignored).
    pub outcome: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<i64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub commit: String,
}

/// A build of an app's pushed commit (`GET /api/v1/builds`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Build {
    pub id: i64,
    pub app: String,
    /// The service built (said once the build knows it).
    pub service: String,
    pub branch: String,
    pub commit: String,
    pub author: String,
    pub message: String,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled`, `superseded`.
    pub status: String,
    /// `classic` or `buildkit`, once it built.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub builder: String,
    /// RFC 3339 UTC.
    pub queued: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// The image built (`repo:<commit>`), and its digest once pushed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// The release it became.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<i64>,
    /// Why it failed, or was cancelled or superseded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// Its steps (`fetch`, `build`, `push`, `deploy`) with their outcomes, the step the
    /// builder failed at, the last lines of its log on a failure.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}
