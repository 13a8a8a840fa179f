//! The image job: a journal of every engine event and, derived from it, the image and container
//! inventory with each image's lifecycle.
//!
//! It owns the meaning of engine events: which image an event is about, what lifecycle step it
//! is, what changed while capstan could not watch (recorded as inferred events). It reads the
//! engine only through `capstan-engine` and writes only through `capstan-store`; it must never
//! serve HTTP or print.

mod apply;
mod backoff;
mod cluster;
mod config;
mod error;
mod hooks;
mod journal;
mod reconcile;
mod stale;
mod telemetry;
pub mod watch;
mod watcher;
pub mod window;

pub use cluster::ClusterJournal;
pub use config::{DEFAULT_PRUNE_KEEP, ImagesConfig, PruneSchedule, RegistryAuth};
pub use error::Error;
pub use hooks::pushed_repositories;
pub use journal::{Journal, JournalStatus};
pub use stale::stale_images;
pub use watcher::{
    AUTO_LABEL, POLICY_LABEL, RunningContainer, RunsElsewhere, WINDOW_LABEL, WatchConfig,
    WatchState, Watcher,
};
