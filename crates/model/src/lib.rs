//! Plain data types shared by the daemon, the HTTP API and the CLI.
//!
//! This crate owns the wire shapes of `/api/v1` (events, images, containers, health, errors,
//! deploy plans, progress and reports), the vocabulary the crates share (rollout steps, release
//! results, the per-app rollout lock) and small pure helpers on them (time formatting, lifecycle
//! naming). It must never do I/O: no sockets, no files, no clocks beyond what callers pass in.

mod access;
mod alerts;
mod app;
mod backup;
mod deploy;
mod event;
mod exposition;
mod fleet;
mod health;
mod image;
mod logs;
mod metrics;
mod names;
mod notify;
mod pipeline;
mod registry;
mod scan;
mod security;
mod target;
mod text;
mod time;
mod units;

pub use access::{
    Allowance, AuditEntry, AuditLog, CreatedToken, NewAllowance, NewToken, NewUser, PolicyList,
    Role, Session, SignIn, TokenInfo, TokenList, User, UserList,
};
pub use alerts::{
    Alert, AlertList, AlertRuleInfo, AlertRules, AlertState, RuleTest, RuleTestInstance,
    is_label_name,
};
pub use app::{AppReplica, AppSummary, BuiltImage, Release};
pub use backup::{BackupReport, RestoreReport, RestoreRequest, Snapshot};
pub use deploy::{
    Action, Operated, OperatedReplica, Outcome, Plan, Progress, RegistryCheck, ReleaseResult,
    Report, RolloutLock, RolloutLocks, ServicePlan, ServiceReport, Step, Violation,
};
pub use event::{CapstanAction, Event, EventPage, EventType};
pub use exposition::{Exposition, Sample};
pub use fleet::{FleetHost, JoinTokenIssued, NewJoinToken};
pub use health::{EngineHealth, Health, JournalHealth};
pub use image::{
    AutoUpdate, Container, ContainerList, HistoryEntry, HookAccepted, Image, ImageDetail,
    ImageList, ImageUpdate, ImageUpdates, Lifecycle, PruneReport, PrunedImage, StaleImage,
    UpdateCandidate,
};
pub use logs::{
    HistogramBucket, LogHistogram, LogLine, LogPage, LogPartition, ORIGIN_FIELDS, Origin,
};
pub use metrics::{ContainerStats, MetricSeries, MetricsResult};
pub use names::{NameError, check_app_name, check_object_name, is_retiring, retiring};
pub use notify::{NotifyChannel, NotifyChannels};
pub use pipeline::{Build, GitSource, HookDelivery, HookInfo, HookOutcome, HookSecret, Previews};
pub use registry::{
    CredentialOrigin, RegistryAuth, RegistryLogin, RegistryLoginRequest, RegistryLogins,
};
pub use scan::{ContainerFindings, Finding, ScanReport, Severity, VulnDbStatus};
pub use security::{
    CheckStatus, DEFAULT_CAPABILITIES, ObjectKind, SecurityCheck, SecurityFinding, SecurityObject,
    SecurityReport,
};
pub use target::{TargetKind, TargetNode, TargetStatus};
pub use text::excerpt;
pub use time::{
    format_duration, format_nanos, nanos_to_datetime, parse_retry_after, parse_time_or_ago,
};
pub use units::{
    ConfigDuration, ConfigError, ConfigSize, UnitError, parse_duration, parse_duration_nanos,
    parse_size,
};

use serde::{Deserialize, Serialize};

/// The body of every API error: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error itself.
    pub error: ErrorDetail,
}

/// Machine-readable code plus a human message saying what to do next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable code, e.g. `bad_request`, `unauthorized`, `not_found`, `engine_unavailable`.
    pub code: ErrorCode,
    /// Lowercase message naming the offending input and the next step.
    pub message: String,
}

/// The kinds of API failure: each answers with its own HTTP status, and the CLI exits with its
/// [`ErrorCode::exit_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: a parameter or body is wrong.
    BadRequest,
    /// 401: missing or wrong token.
    Unauthorized,
    /// 403: the token's role may not do this.
    Forbidden,
    /// 404: no such object or route.
    NotFound,
    /// 409: the object is busy (a deploy of the app is running).
    Conflict,
    /// 413: a body over the route's limit.
    TooLarge,
    /// 422: the engine could not do what was asked (a build step failed).
    Failed,
    /// 429: too many attempts (failed sign-ins); `Retry-After` says when to try again.
    TooManyRequests,
    /// 503: the Docker engine cannot be reached.
    EngineUnavailable,
    /// 500: a fault inside capstan (details are logged, not sent).
    Internal,
    /// A code a newer daemon sent that this client does not know.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The code as the wire spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::TooLarge => "too_large",
            Self::Failed => "failed",
            Self::TooManyRequests => "too_many_requests",
            Self::EngineUnavailable => "engine_unavailable",
            Self::Internal => "internal",
            Self::Unknown => "unknown",
        }
    }

    /// How the CLI exits when the daemon answers with this code.
    pub fn exit_status(self) -> ExitStatus {
        match self {
            Self::BadRequest
            | Self::NotFound
            | Self::Unauthorized
            | Self::Forbidden
            | Self::TooLarge => ExitStatus::Usage,
            Self::EngineUnavailable => ExitStatus::Unreachable,
            Self::Conflict
            | Self::Failed
            | Self::TooManyRequests
            | Self::Internal
            | Self::Unknown => ExitStatus::Failure,
        }
    }
}

/// The CLI's exit statuses (the design's contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// 0: it worked.
    Success,
    /// 1: the operation failed (a deploy rolled back, a scan found findings at `--fail-on`).
    Failure,
    /// 2: bad usage or bad input.
    Usage,
    /// 3: the daemon or the engine cannot be reached.
    Unreachable,
}

impl ExitStatus {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Failure => 1,
            Self::Usage => 2,
            Self::Unreachable => 3,
        }
    }
}

/// An error and its causes on one line (`error sending request: client error (Connect):
/// invalid peer certificate: UnknownIssuer`), each cause once: the outer message of an HTTP
/// client rarely says what went wrong, its causes do.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = c.source();
    }
    message
}

/// This machine's host name, as logs and notifications name it: `$CAPSTAN_HOST` when set, else
/// the kernel's; empty when it cannot be read.
pub fn host_name() -> String {
    // set where the kernel's name is not the host's (a node agent's pod: its node's name)
    if let Ok(h) = std::env::var("CAPSTAN_HOST")
        && !h.trim().is_empty()
    {
        return h.trim().to_owned();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_keep_their_wire_names_and_exit_statuses() {
        let body: ErrorBody =
            serde_json::from_str(r#"{"error": {"code": "engine_unavailable", "message": "m"}}"#)
                .unwrap();
        assert_eq!(body.error.code, ErrorCode::EngineUnavailable);
        assert_eq!(body.error.code.exit_status().code(), 3);
        assert_eq!(ErrorCode::NotFound.exit_status(), ExitStatus::Usage);
        assert_eq!(ErrorCode::Conflict.exit_status(), ExitStatus::Failure);
        assert_eq!(
            serde_json::to_string(&ErrorCode::BadRequest).unwrap(),
            format!("\"{}\"", ErrorCode::BadRequest.as_str())
        );
        let newer: ErrorBody =
            serde_json::from_str(r#"{"error": {"code": "teapot", "message": "m"}}"#).unwrap();
        assert_eq!(
            newer.error.code,
            ErrorCode::Unknown,
            "a newer code still decodes"
        );
    }
}
