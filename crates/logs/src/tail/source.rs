//! What a tailer reads: a plain log file, or a rotated one the engine compressed (`.N.gz`),
//! and the engine time of a file's last record (how a copy of a file already read is known).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// What is being read: a plain log file, or a rotated one the engine compressed.
pub(super) enum Source {
    Plain(File),
    Gz(Box<flate2::read::MultiGzDecoder<std::io::BufReader<File>>>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Plain(_) => "Plain",
            Self::Gz(_) => "Gz",
        })
    }
}

impl Source {
    pub(super) fn from_file(file: File, path: &Path) -> Self {
        if is_gz(path) {
            Self::Gz(Box::new(flate2::read::MultiGzDecoder::new(
                std::io::BufReader::new(file),
            )))
        } else {
            Self::Plain(file)
        }
    }

    /// `path` opened at `offset` (of its uncompressed bytes).
    pub(super) fn open(path: &Path, offset: u64) -> std::io::Result<Self> {
        Self::open_at(File::open(path)?, path, offset)
    }

    /// `file` (opened from `path`) at `offset` (of its uncompressed bytes).
    pub(super) fn open_at(file: File, path: &Path, offset: u64) -> std::io::Result<Self> {
        let mut source = Self::from_file(file, path);
        match &mut source {
            Self::Plain(file) => {
                file.seek(SeekFrom::Start(offset))?;
            }
            Self::Gz(gz) => {
                let skipped = std::io::copy(&mut gz.as_mut().take(offset), &mut std::io::sink())?;
                if skipped != offset {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("{} ends before the position", path.display()),
                    ));
                }
            }
        }
        Ok(source)
    }
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::Plain(file) => file.read(buf),
            Self::Gz(gz) => gz.read(buf),
        }
    }
}

/// A whole log file's records (uncompressed).
pub(super) fn read_whole(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    Source::open(path, 0)?.read_to_end(&mut out)?;
    Ok(out)
}

pub(super) fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// The engine time of the last record in a plain log file (read from its end).
pub(super) fn plain_last_time(path: &Path) -> Option<i64> {
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let from = len.saturating_sub(64 * 1024);
    file.seek(SeekFrom::Start(from)).ok()?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).ok()?;
    last_record_time(&tail)
}

/// The engine time of the last record in `records` (whole json-file records, or the end of
/// them).
pub(super) fn last_record_time(records: &[u8]) -> Option<i64> {
    records
        .split(|b| *b == b'\n')
        .rev()
        .filter(|r| !r.is_empty())
        .find_map(record_time)
}

/// The engine time of the last record in a compressed log file: from its gzip header, where
/// the engine writes it (`{"lastTime": ...}`), else from its records.
pub(super) fn gz_last_time(path: &Path) -> Option<i64> {
    let file = File::open(path).ok()?;
    let mut gz = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
    let from_header = gz
        .header()
        .and_then(|h| h.extra())
        .and_then(|extra| serde_json::from_slice::<serde_json::Value>(extra).ok())
        .and_then(|v| {
            let t = v.get("lastTime")?.as_str()?;
            chrono::DateTime::parse_from_rfc3339(t)
                .ok()?
                .timestamp_nanos_opt()
        });
    if from_header.is_some() {
        return from_header;
    }
    let mut all = Vec::new();
    gz.read_to_end(&mut all).ok()?;
    last_record_time(&all)
}

/// The time of a record, read without decoding it whole: a json-file record is a JSON object,
/// a CRI record starts with its time.
pub(super) fn record_time(record: &[u8]) -> Option<i64> {
    if record.first() == Some(&b'{') {
        json_record_time(record)
    } else {
        crate::cri::record_time(record)
    }
}

/// The engine time of a json-file record, read without decoding the whole record.
fn json_record_time(record: &[u8]) -> Option<i64> {
    const KEY: &[u8] = b"\"time\":\"";
    let at = record.windows(KEY.len()).rposition(|w| w == KEY)? + KEY.len();
    let end = record[at..].iter().position(|b| *b == b'"')? + at;
    chrono::DateTime::parse_from_rfc3339(std::str::from_utf8(&record[at..end]).ok()?)
        .ok()?
        .timestamp_nanos_opt()
}
