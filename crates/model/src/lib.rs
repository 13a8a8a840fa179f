//! Plain data types shared by the daemon, the HTTP API and the CLI.
//!
//! This crate owns the wire shapes of `/api/v1` (events, images, containers, health, errors,
//! deploy plans, progress and reports), the vocabulary the crates share (rollout steps, release
//! results, the per-app rollout lock) and small pure helpers on them (time formatting, lifecycle
//! naming). It must never do I/O: no sockets, no files, no clocks beyond what callers pass in.

mod access;
mod alerts;
mod app;
mod deploy;
mod event;
mod health;
mod image;
mod logs;
mod metrics;
mod notify;
mod scan;
mod time;

pub use access::{
    AuditEntry, AuditLog, CreatedToken, NewToken, NewUser, Role, Session, SignIn, TokenInfo,
    TokenList, User, UserList,
};
pub use alerts::{
    Alert, AlertList, AlertRuleInfo, AlertRules, AlertState, RuleTest, RuleTestInstance,
    is_label_name,
};
pub use app::{AppSummary, Release};
pub use deploy::{
    Action, Outcome, Plan, Progress, ReleaseResult, Report, RolloutLock, RolloutLocks, ServicePlan,
    ServiceReport, Step,
};
pub use event::{CapstanAction, Event, EventPage, EventType};
pub use health::{EngineHealth, Health, JournalHealth};
pub use image::{
    AutoUpdate, Container, ContainerList, HistoryEntry, Image, ImageDetail, ImageList, ImageUpdate,
    ImageUpdates, Lifecycle, UpdateCandidate,
};
pub use logs::{LogLine, LogPage, ORIGIN_FIELDS, Origin};
pub use metrics::{ContainerStats, MetricSeries, MetricsResult};
pub use notify::{NotifyChannel, NotifyChannels};
pub use scan::{ContainerFindings, Finding, ScanReport, Severity, VulnDbStatus};
pub use time::{
    format_duration, format_nanos, nanos_to_datetime, parse_duration_nanos, parse_retry_after,
    parse_time_or_ago,
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
    pub code: String,
    /// Lowercase message naming the offending input and the next step.
    pub message: String,
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

/// This machine's host name (the kernel's), as logs and notifications name it; empty when it
/// cannot be read.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}
