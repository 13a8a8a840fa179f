/// Errors of the journal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine failed or went away.
    #[error(transparent)]
    Engine(#[from] capstan_engine::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] capstan_store::Error),
    /// The engine closed the event stream (it stopped or restarted).
    #[error("the engine closed the event stream (stopped or restarting?); reconnecting")]
    StreamEnded,
}
