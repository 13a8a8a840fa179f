//! Registry credentials: what the engine sends with a pull or a build, and what capstan shows
//! of the credentials it knows (never their secrets).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Credentials for one registry, as the engine takes them with a pull (`X-Registry-Auth`) or a
/// build (`X-Registry-Config`). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    /// The registry as Docker names it (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

impl RegistryAuth {
    /// The server address Docker sends for the registry (`https://index.docker.io/v1/` for
    /// Docker Hub, the host itself for any other).
    pub fn server_address(&self) -> String {
        if self.registry == "docker.io" {
            "https://index.docker.io/v1/".to_owned()
        } else {
            self.registry.clone()
        }
    }
}

/// Where a registry's credentials come from, in the order capstan looks.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CredentialOrigin {
    /// `capstan registries login` (kept sealed in the data dir's vault).
    Capstan,
    /// `[[images.registries]]` in capstan.toml.
    Config,
    /// A `docker-credential-*` helper Docker's config names (`credHelpers`, `credsStore`).
    Helper,
    /// Docker's config file's `auths`.
    DockerConfig,
}

impl CredentialOrigin {
    /// How messages name it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Capstan => "capstan registries login",
            Self::Config => "capstan.toml's [[images.registries]]",
            Self::Helper => "the credential helper Docker's config names",
            Self::DockerConfig => "Docker's config (docker login)",
        }
    }
}

/// A registry capstan has credentials for (`GET /api/v1/registries`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegistryLogin {
    /// `docker.io`, `ghcr.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// The user name; `None` when a credential helper keeps it (it is asked only when used).
    pub username: Option<String>,
    pub origin: CredentialOrigin,
    /// The helper's name, or the config file's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Whether these are the credentials used (an earlier origin for the same registry wins).
    pub in_effect: bool,
    /// When `capstan registries login` kept them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_at: Option<DateTime<Utc>>,
}

/// `GET /api/v1/registries`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RegistryLogins {
    pub registries: Vec<RegistryLogin>,
}

/// `PUT /api/v1/registries/{registry}`: credentials to check against the registry and keep.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryLoginRequest {
    pub username: String,
    /// The password or access token (never returned, never logged).
    pub password: String,
}

impl std::fmt::Debug for RegistryLoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryLoginRequest")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}
