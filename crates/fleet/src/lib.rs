//! The fleet: one capstan (the hub) and the hosts that joined it, each running `capstan agent`.
//!
//! Agents dial out; the hub never reaches a host. Every connection is TLS 1.3 with both keys
//! pinned: the agent checks the hub's certificate against the fingerprint its join token
//! carries (no trust on first use), and the hub knows each host by its own certificate's
//! fingerprint, made at the agent's first start. Over it runs HTTP/2 (hyper): each request is a
//! stream of the one multiplexed connection. Why this and not SSH or Noise: docs/fleet.md.

mod agent;
mod commands;
mod host;
mod hub;
mod identity;
mod load;
mod runner;
mod streams;
mod tls;
mod token;

pub use agent::{AgentError, Joined, join, run_link};
pub use commands::{Command, Done, Op};
pub use host::{HostTarget, host_target};
pub use hub::{Hub, HubConfig};
pub use identity::{Identity, fingerprint};
pub use load::{Load, run as run_load};
pub use streams::{
    HostOps, Inboxes, LogInbox, LogOutbox, MetricsInbox, MetricsOutbox, Outboxes, Sweep,
};
pub use token::{JoinToken, TokenError};

/// How often each side pings the other over an idle connection, and how long it waits for the
/// answer before it takes the connection for dead.
const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(10);

/// The SNI name the agent sends and the hub's certificate carries (the key is what is checked).
const HUB_NAME: &str = "capstan-hub";
