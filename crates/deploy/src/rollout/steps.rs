//! A service's steps: kept for the report and sent as progress as they happen.

use capstan_model::{Progress, Step};
use tokio::sync::mpsc;

/// The steps of one service in one rollout.
pub(super) struct Steps {
    service: String,
    pub(super) lines: Vec<String>,
    progress: Option<mpsc::Sender<Progress>>,
}

impl Steps {
    pub(super) fn new(service: &str, progress: Option<mpsc::Sender<Progress>>) -> Self {
        Self {
            service: service.to_owned(),
            lines: Vec::new(),
            progress,
        }
    }

    /// Records a step for the report and sends it as progress.
    pub(super) fn push(&mut self, step: Step, message: String) {
        send(self.progress.as_ref(), &self.service, step, &message);
        self.lines.push(message);
    }
}

/// Sends one progress line (best effort: a reader that lags misses it, the report keeps it).
pub(super) fn send(
    progress: Option<&mpsc::Sender<Progress>>,
    service: &str,
    step: Step,
    message: &str,
) {
    if let Some(tx) = progress {
        let _ = tx.try_send(Progress {
            service: service.to_owned(),
            step,
            message: message.to_owned(),
        });
    }
}

/// Why a service's part of a rollout failed, and whether what it had changed was put back.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) message: String,
    pub(super) rolled_back: bool,
}

/// `1, 2, 3`.
pub(super) fn join(batch: &[u32]) -> String {
    batch
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
