//! What capstan's long-running processes (`capstan serve`, `capstan proxy`) share: one process
//! per data dir, held by an exclusive lock on a file that names the holder's pid, and a clean
//! stop on SIGTERM or SIGINT; and limits that keep one client from taking every connection
//! ([`limits`]).

pub mod limits;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Why a pid lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it; its pid when the file names one.
    #[error("held by {}", pid.as_deref().map_or_else(|| "another process".to_owned(), |p| format!("pid {p}")))]
    Held { pid: Option<String> },
    #[error("cannot use {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Takes an exclusive lock on `path` (mode 0600) for as long as the returned file lives, and
/// writes this process's pid into it.
///
/// # Errors
/// [`LockError::Held`] naming the holder's pid, or the I/O error.
pub fn lock_pid_file(path: &Path) -> Result<File, LockError> {
    let io = |source| LockError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(LockError::Held {
                pid: (!holder.is_empty()).then(|| holder.to_owned()),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    write!(file, "{}", std::process::id()).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(file)
}

/// Cancels `stop` on SIGTERM or SIGINT, logging `SIGTERM: {doing}`; returns early when `stop`
/// is cancelled some other way.
pub async fn stop_on_signals(stop: CancellationToken, doing: &str) {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot install signal handlers; stop this process with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: {doing}"),
        _ = int.recv() => info!("SIGINT: {doing}"),
        () = stop.cancelled() => return,
    }
    stop.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_told_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pid");
        let held = lock_pid_file(&path).unwrap();
        let err = lock_pid_file(&path).unwrap_err();
        assert!(
            matches!(&err, LockError::Held { pid: Some(p) } if *p == std::process::id().to_string()),
            "{err}"
        );
        drop(held);
        lock_pid_file(&path).unwrap();
    }
}
