//! Notifications. A channel (a JSON webhook, a Slack-compatible webhook, or email over SMTP)
//! reads the journal's `capstan` events it is subscribed to (`update_available`, ...) after a
//! cursor of its own (`<data>/notify/<name>.cursor`, the last sequence number delivered), so
//! that:
//! - one notification goes out per event, and an event is journaled once per new thing (a new
//!   update candidate, not every check cycle that sees it again): deduplicated by construction;
//! - what one check cycle (or one rule evaluation) journaled goes out as one message: the
//!   channel sends when told a batch is complete, and sweeps now and then for stragglers;
//! - a failed delivery is retried with backoff (honouring `Retry-After`), and across restarts,
//!   since the cursor moves only after the server took the message: at least once.

mod channel;
mod config;
mod message;
mod runner;

pub use config::{ChannelConfig, DEFAULT_EVENTS, Kind, check_all};
pub use message::Message;
pub use runner::Notifier;
