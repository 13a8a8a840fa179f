//! `type = "file"`: appends one JSON object per line to a file, synced before the cursor
//! moves. A line torn by a crash mid-write is cut before its batch is written again.

use std::io::Write;
use std::path::{Path, PathBuf};

use capstan_model::{ConfigError, LogLine};
use serde::Deserialize;
use tracing::warn;

use super::{Delivery, Error};

/// `[[logs.sinks]]` with `type = "file"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The NDJSON file to append to (its directory is created).
    pub path: PathBuf,
}

impl Config {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.path.as_os_str().is_empty() {
            return Err(ConfigError::new("path", "must not be empty"));
        }
        Ok(())
    }
}

pub(super) struct Sink {
    path: PathBuf,
}

impl Sink {
    pub(super) fn new(config: &Config) -> Self {
        Self {
            path: config.path.clone(),
        }
    }

    pub(super) async fn deliver(&self, lines: &[LogLine]) -> Result<Delivery, Error> {
        let path = self.path.clone();
        let lines = lines.to_vec();
        let written = tokio::task::spawn_blocking(move || write(&path, &lines)).await;
        match written {
            Ok(Ok(())) => Ok(Delivery::all()),
            Ok(Err(source)) => Err(Error::Io {
                path: self.path.clone(),
                source,
            }),
            Err(e) => Err(Error::Io {
                path: self.path.clone(),
                source: std::io::Error::other(e),
            }),
        }
    }
}

fn write(path: &Path, lines: &[LogLine]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(lines.len() * 256);
    for l in lines {
        serde_json::to_writer(&mut out, l).map_err(std::io::Error::other)?;
        out.push(b'\n');
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    drop_torn_tail(&mut f)?;
    f.write_all(&out)?;
    f.sync_data()
}

/// A crash in the middle of a write leaves a last line without its newline; that batch was not
/// delivered (the cursor did not move) and comes again whole, so the torn part goes.
fn drop_torn_tail(f: &mut std::fs::File) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut keep = len;
    let mut chunk = vec![0_u8; 64 * 1024];
    loop {
        let start = keep.saturating_sub(chunk.len() as u64);
        let n = (keep - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut chunk[..n])?;
        if let Some(pos) = chunk[..n].iter().rposition(|b| *b == b'\n') {
            keep = start + pos as u64 + 1;
            break;
        }
        if start == 0 {
            keep = 0;
            break;
        }
        keep = start;
    }
    if keep < len {
        warn!(
            dropped = len - keep,
            "a file sink's last line was torn by a crash; it is written again"
        );
        f.set_len(keep)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_dropped_before_the_batch_comes_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ndjson");
        std::fs::write(&path, "{\"a\":1}\n{\"a\":2}\n{\"a\":").unwrap();
        let line = LogLine {
            seq: 3,
            raw: "three".into(),
            ..LogLine::default()
        };
        write(&path, &[line]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[2].contains("\"three\""));
        assert!(text.ends_with('\n'));
    }
}
