//! Who may do what: API tokens with roles, and the audit log.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a token may do. Each role may do what the ones before it may.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read everything; plan a deploy; test an alert rule.
    Viewer,
    /// Also deploy, roll back, take apps down, build, scan, check for updates.
    Operator,
    /// Also manage tokens and alert rules, import advisories, read the audit log.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    /// `viewer`, `operator` or `admin`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "viewer" => Some(Self::Viewer),
            "operator" => Some(Self::Operator),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

/// A token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
    pub created: DateTime<Utc>,
    /// The name of the token that created it.
    pub created_by: String,
    /// To the minute.
    pub last_used: Option<DateTime<Utc>>,
    pub revoked: Option<DateTime<Utc>>,
}

/// `GET /api/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewToken {
    pub name: String,
    pub role: Role,
}

/// The answer to `POST /api/v1/tokens`: the secret, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedToken {
    pub token: String,
    pub info: TokenInfo,
}

/// One request that changed something (or tried to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub time: DateTime<Utc>,
    /// The token's name.
    pub who: String,
    pub role: Role,
    pub method: String,
    pub path: String,
    /// The answer's HTTP status.
    pub status: u16,
    /// The client's address.
    pub remote: String,
}

/// `GET /api/v1/audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditLog {
    pub entries: Vec<AuditEntry>,
}

/// A user as listed (never the password or its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub created: DateTime<Utc>,
    pub created_by: String,
}

/// `GET /api/v1/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserList {
    pub users: Vec<User>,
}

/// `POST /api/v1/users`: a new user, or a new role and password for one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewUser {
    pub name: String,
    pub role: Role,
    pub password: String,
}

/// `POST /api/v1/session`: sign in with a user name and password, or with a token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SignIn {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
}

/// A signed-in session: who, the role, and the token every changing request must carry in
/// `X-CSRF-Token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Session {
    pub who: String,
    pub role: Role,
    pub csrf_token: String,
    pub expires: DateTime<Utc>,
}

/// A host-level feature an admin allowed for one app (the deploy policy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Allowance {
    pub app: String,
    /// As written to allow it: `privileged`, `bind=/srv/www`, `cap_add=NET_ADMIN`,
    /// `security_opt=seccomp:unconfined`, `sysctl=NAME`, `low_port=80`.
    pub feature: String,
    /// Who allowed it.
    pub allowed_by: String,
    pub time: chrono::DateTime<chrono::Utc>,
}

/// `GET /api/v1/policy`: every allowance, by app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyList {
    pub allowances: Vec<Allowance>,
}

/// `POST /api/v1/policy/{app}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewAllowance {
    pub feature: String,
}
