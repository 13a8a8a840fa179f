//! Where a stream's records come from on a host, and where they go on the hub, for the streams
//! whose stores live in other crates (the log store): the daemon plugs its stores in.

use std::sync::Arc;

use capstan_model::{LogLine, Sample};

/// The hub's log store, as the fleet takes hosts' lines into it.
#[async_trait::async_trait]
pub trait LogInbox: Send + Sync {
    /// How far the lines of the host with key `key` are stored (its own sequence numbers).
    fn cursor(&self, key: &str) -> u64;

    /// Stores `lines` of host `host` (key `key`), the last of them its line `last`, committed
    /// with that cursor; returns the cursor. Lines at or before the cursor are not stored
    /// again.
    ///
    /// # Errors
    /// The store failed: nothing of the batch is stored.
    async fn take(
        &self,
        key: &str,
        host: &str,
        last: u64,
        lines: Vec<LogLine>,
    ) -> Result<u64, String>;
}

/// A host's log store, as the agent reads what to ship.
#[async_trait::async_trait]
pub trait LogOutbox: Send + Sync {
    /// Lines stored after `seq`, oldest first, at most `limit`.
    ///
    /// # Errors
    /// The store failed.
    async fn after(&self, seq: u64, limit: usize) -> Result<Vec<LogLine>, String>;
}

/// A sweep of metrics: its time (unix ms) and samples.
pub type Sweep = (i64, Vec<Sample>);

/// The hub's metrics history, as the fleet takes hosts' sweeps into it.
#[async_trait::async_trait]
pub trait MetricsInbox: Send + Sync {
    /// How far the sweeps of the host with key `key` are kept (the time of its last, unix ms).
    ///
    /// # Errors
    /// The history failed.
    async fn cursor(&self, key: &str) -> Result<i64, String>;

    /// Keeps `sweeps` of host `host` (key `key`), each sample labelled `host`, with the cursor
    /// moved in the same transaction; returns the cursor.
    ///
    /// # Errors
    /// The history failed: nothing of the batch is kept.
    async fn take(&self, key: &str, host: &str, sweeps: Vec<Sweep>) -> Result<i64, String>;
}

/// A host's metrics history, as the agent reads what to ship.
#[async_trait::async_trait]
pub trait MetricsOutbox: Send + Sync {
    /// The host's own sweeps after `t` (unix ms), oldest first, at most `limit`.
    ///
    /// # Errors
    /// The history failed.
    async fn after(&self, t: i64, limit: usize) -> Result<Vec<Sweep>, String>;
}

/// Where the hub keeps what hosts send besides their journals (none: not kept there).
#[derive(Clone, Default)]
pub struct Inboxes {
    pub logs: Option<Arc<dyn LogInbox>>,
    pub metrics: Option<Arc<dyn MetricsInbox>>,
}

/// What a host runs for its hub (a release of an app, through its own rollout engine).
#[async_trait::async_trait]
pub trait HostOps: Send + Sync {
    /// Runs `request` as a release here, its steps sent to `progress`; its report, and the
    /// image id each service ran.
    ///
    /// # Errors
    /// The release could not be run at all (the ledger, the policy, a lock): why.
    async fn deploy(
        &self,
        request: capstan_deploy::DeployRequest,
        pull: bool,
        progress: tokio::sync::mpsc::Sender<capstan_model::Progress>,
    ) -> Result<
        (
            capstan_model::Report,
            std::collections::BTreeMap<String, String>,
        ),
        String,
    >;

    /// Takes `app` down here (its volumes too with `volumes`): what was removed.
    ///
    /// # Errors
    /// Why it could not be.
    async fn down(&self, app: String, volumes: bool) -> Result<Vec<String>, String>;

    /// The replicas of `app` here, as they are now.
    ///
    /// # Errors
    /// The engine's.
    async fn observe(&self, app: String) -> Result<Vec<capstan_deploy::Replica>, String>;
}

/// What a host ships besides its journal (none: not collected there), and what it runs for
/// its hub.
#[derive(Clone, Default)]
pub struct Outboxes {
    pub logs: Option<Arc<dyn LogOutbox>>,
    pub metrics: Option<Arc<dyn MetricsOutbox>>,
    /// Its operations (none: it takes no commands).
    pub ops: Option<Arc<dyn HostOps>>,
    /// Where the hub's commands are kept from when they are taken until the hub has their
    /// ends (`<data>/fleet/commands`).
    pub commands_dir: Option<std::path::PathBuf>,
}

impl Outboxes {
    /// What runs the hub's commands here, when this host takes any.
    pub(crate) fn runner(&self) -> Option<crate::runner::Runner> {
        let (ops, dir) = self.ops.clone().zip(self.commands_dir.as_ref())?;
        Some(crate::runner::Runner::new(ops, dir))
    }
}
