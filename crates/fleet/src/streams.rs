//! Where a stream's records come from on a host, and where they go on the hub, for the streams
//! whose stores live in other crates (the log store): the daemon plugs its stores in.

use capstan_model::LogLine;

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
