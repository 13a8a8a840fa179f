//! A build's log, written as the engine writes a container's (`json-file`: one JSON record
//! per line with `log`, `stream` and `time`) under `<data>/builds/logs/<app>/<service>/<id>.log`,
//! so the log collector stores it, indexes it and tails it live like any container's, and a
//! restart of capstan loses none of it. A `<id>.done` beside it says the build ended.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The directory of build logs under the data dir.
pub fn logs_dir(data: &Path) -> PathBuf {
    data.join("builds").join("logs")
}

/// The log of build `id`.
pub fn log_path(logs: &Path, app: &str, service: &str, id: i64) -> PathBuf {
    logs.join(app).join(service).join(format!("{id}.log"))
}

/// One build's log, open for appending.
#[derive(Debug)]
pub struct BuildLog {
    path: PathBuf,
    file: Option<std::fs::File>,
    /// The last lines, for the record of a failure.
    tail: std::collections::VecDeque<String>,
}

/// Lines kept for a failure's record.
const TAIL: usize = 20;

impl BuildLog {
    /// Opens (creating) the log at `path`. A log that cannot be written is said once in
    /// capstan's own log; the build goes on.
    pub fn open(path: PathBuf) -> Self {
        let file = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
            });
        let file = match file {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot write a build's log; the build goes on without it");
                None
            }
        };
        Self {
            path,
            file,
            tail: std::collections::VecDeque::new(),
        }
    }

    /// Appends one line (`stream`: `stdout` or `stderr`).
    pub fn line(&mut self, stream: &str, text: &str) {
        let text = text.trim_end_matches(['\r', '\n']);
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(text.to_owned());
        let Some(file) = self.file.as_mut() else {
            return;
        };
        let record = serde_json::json!({
            "log": format!("{text}\n"),
            "stream": stream,
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        });
        if writeln!(file, "{record}").is_err() {
            self.file = None;
        }
    }

    /// The last lines written.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }

    /// Says the build ended: the collector forgets the log once it has read it whole.
    pub fn done(self) {
        drop(self.file);
        let _ = std::fs::write(self.path.with_extension("done"), b"");
    }
}
