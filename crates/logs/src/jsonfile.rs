//! The engine's `json-file` log format: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"2026-11-22T08:00:00.123456789Z"}`. The engine cuts
//! a line longer than 16 KiB into pieces that do not end in `\n`; they are joined back here, per
//! stream, so stdout and stderr never mix.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One record of the file, borrowed from it where no escape forces a copy.
#[derive(Debug, Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    log: Cow<'a, str>,
    #[serde(borrow)]
    stream: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
}

/// `2026-11-22T08:00:00.123456789Z` (the engine's RFC 3339 in UTC, its fraction cut after the
/// last non-zero digit) in ns since the epoch, read without a general parser; `None` for any
/// other shape.
fn engine_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        b[from..to].iter().try_fold(0_i64, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let fraction = &b[19..b.len() - 1];
    let nanos = match fraction {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            num(20, 20 + digits.len())? * 10_i64.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    // days from the civil date (Howard Hinnant's algorithm)
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// An RFC 3339 time in ns since the epoch: the engine's UTC form read fast, any other offset
/// through a general parser.
pub fn time_ns(text: &str) -> Option<i64> {
    engine_time(text).or_else(|| {
        chrono::DateTime::parse_from_rfc3339(text)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt())
    })
}

/// A whole line, joined from its pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The engine's time of the line's first piece, in ns since the epoch.
    pub time_ns: i64,
    /// The text, without the trailing newline.
    pub text: String,
    /// Offset of the line's first piece in its file (with the file's inode, a stable id).
    pub offset: u64,
    /// The line was longer than the cap: `text` is its first part, the rest was dropped.
    pub truncated: bool,
}

/// The longest line kept whole by default (`[logs] max_line`): the first part of a longer one
/// is kept, marked truncated, and the rest dropped.
pub const DEFAULT_MAX_LINE: usize = 1024 * 1024;

/// A line still waiting for its last piece.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub text: String,
    pub time_ns: i64,
    pub offset: u64,
    /// The line passed the cap and its first part went out: its other pieces are dropped
    /// until it ends.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dropping: bool,
}

/// Joins pieces per stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joiner {
    /// Pieces waiting for the end of their line, by stream (never more than the cap each).
    pub pending: BTreeMap<String, Pending>,
    /// The longest line kept whole, in bytes (0: [`DEFAULT_MAX_LINE`]); configuration, not
    /// state, so it is not saved with the position.
    #[serde(skip)]
    pub max_line: usize,
}

/// Why a record could not be read.
#[derive(Debug, thiserror::Error)]
#[error("not a log record: {0}")]
pub struct BadRecord(pub String);

impl Joiner {
    /// Feeds one record (one line of the file, without its `\n`) found at `offset`; returns
    /// the line it completes, if any.
    ///
    /// # Errors
    /// A record that is not the engine's JSON (the caller counts and skips it).
    pub fn feed(&mut self, record: &[u8], offset: u64) -> Result<Option<Line>, BadRecord> {
        self.feed_timed(record, offset).map(|(_, line)| line)
    }

    /// [`Joiner::feed`], also saying the record's own engine time (a joined line carries its
    /// first piece's).
    ///
    /// # Errors
    /// A record that is not the engine's JSON (the caller counts and skips it).
    pub fn feed_timed(
        &mut self,
        record: &[u8],
        offset: u64,
    ) -> Result<(i64, Option<Line>), BadRecord> {
        let r: Record = serde_json::from_slice(record).map_err(|e| BadRecord(e.to_string()))?;
        let time_ns = time_ns(&r.time)
            .ok_or_else(|| BadRecord(format!("time {:?} is not RFC 3339", r.time)))?;
        Ok((time_ns, self.piece(&r.stream, time_ns, &r.log, offset)))
    }

    /// Feeds one piece of output (`text` ends with `\n` when it ends its line) of `stream`,
    /// written at `time_ns`, whose id within its source is `offset`; returns the line it
    /// completes, if any. A line's time and offset are those of its first piece.
    pub fn piece(&mut self, stream: &str, time_ns: i64, text: &str, offset: u64) -> Option<Line> {
        let complete = text.ends_with('\n');
        let piece = text.strip_suffix('\n').unwrap_or(text);
        let piece = piece.strip_suffix('\r').unwrap_or(piece);
        let pending = self.pending.remove(stream);
        let mut line = match pending {
            Some(p) if p.dropping => {
                // the rest of a line whose first part went out: dropped to its end
                if !complete {
                    self.pending.insert(stream.to_owned(), p);
                }
                return None;
            }
            Some(p) => Line {
                stream: stream.to_owned(),
                time_ns: p.time_ns,
                text: p.text + piece,
                offset: p.offset,
                truncated: false,
            },
            None => Line {
                stream: stream.to_owned(),
                time_ns,
                text: piece.to_owned(),
                offset,
                truncated: false,
            },
        };
        let max = self.max_line();
        if line.text.len() > max {
            // an endless line: its first part goes out marked, never more than the cap waits
            truncate(&mut line.text, max);
            line.truncated = true;
            if !complete {
                self.pending.insert(
                    stream.to_owned(),
                    Pending {
                        text: String::new(),
                        time_ns: line.time_ns,
                        offset: line.offset,
                        dropping: true,
                    },
                );
            }
            return Some(line);
        }
        if complete {
            return Some(line);
        }
        self.pending.insert(
            stream.to_owned(),
            Pending {
                text: std::mem::take(&mut line.text),
                time_ns: line.time_ns,
                offset: line.offset,
                dropping: false,
            },
        );
        None
    }

    /// The longest line kept whole.
    pub fn max_line(&self) -> usize {
        if self.max_line == 0 {
            DEFAULT_MAX_LINE
        } else {
            self.max_line
        }
    }

    /// Forgets the pieces waiting (the file they came from is gone), keeping the cap.
    pub fn reset(&mut self) {
        self.pending.clear();
    }

    /// The line waiting on `stream`, as it is (its next piece starts another line); none for
    /// a line whose first part already went out.
    pub fn take(&mut self, stream: &str) -> Option<Line> {
        let p = self.pending.remove(stream)?;
        (!p.dropping).then(|| Line {
            stream: stream.to_owned(),
            time_ns: p.time_ns,
            text: p.text,
            offset: p.offset,
            truncated: false,
        })
    }

    /// The lines still waiting, as they are (a process that exited without a final newline).
    pub fn flush(&mut self) -> Vec<Line> {
        let streams: Vec<String> = self.pending.keys().cloned().collect();
        streams.iter().filter_map(|s| self.take(s)).collect()
    }
}

/// Cuts `text` to at most `max` bytes, at a character's boundary.
pub(crate) fn truncate(text: &mut String, max: usize) {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(log: &str, stream: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "log": log, "stream": stream, "time": "2026-11-22T08:00:00.000000001Z"
        }))
        .unwrap()
    }

    #[test]
    fn pieces_are_joined_per_stream() {
        let mut j = Joiner::default();
        assert_eq!(j.feed(&rec("aaa", "stdout"), 0).unwrap(), None);
        let err = j.feed(&rec("boom\n", "stderr"), 50).unwrap().unwrap();
        assert_eq!((err.text.as_str(), err.offset), ("boom", 50));
        let out = j.feed(&rec("bbb\n", "stdout"), 100).unwrap().unwrap();
        assert_eq!(
            (out.text.as_str(), out.offset, out.stream.as_str()),
            ("aaabbb", 0, "stdout")
        );
        assert_eq!(out.time_ns, 1_795_334_400_000_000_001);
        assert!(j.pending.is_empty());
    }

    #[test]
    fn engine_times_read_like_rfc_3339() {
        for t in [
            "2026-11-22T08:00:00.123456789Z",
            "2026-11-22T08:00:00.1234Z",
            "2026-11-22T08:00:00Z",
            "2024-02-29T23:59:59.999999999Z",
            "2000-03-01T00:00:00.5Z",
            "1970-01-01T00:00:00.000000001Z",
            "2100-12-31T12:34:56.7Z",
        ] {
            let expected = chrono::DateTime::parse_from_rfc3339(t)
                .unwrap()
                .timestamp_nanos_opt()
                .unwrap();
            assert_eq!(engine_time(t), Some(expected), "{t}");
        }
        // other shapes go to the general parser
        for t in [
            "2026-11-22T08:00:00+01:00",
            "2026-11-22 08:00:00Z",
            "2026-13-22T08:00:00Z",
            "2026-11-22T08:00:00.Z",
            "2026-11-22T08:00:00.1234567890Z",
            "yesterday",
        ] {
            assert_eq!(engine_time(t), None, "{t}");
        }
        let mut j = Joiner::default();
        let rec = br#"{"log":"x\n","stream":"stdout","time":"2026-11-22T09:00:00+01:00"}"#;
        assert_eq!(
            j.feed(rec, 0).unwrap().unwrap().time_ns,
            1_795_334_400_000_000_000
        );
    }

    #[test]
    fn a_final_piece_without_newline_is_flushed_and_bad_records_are_errors() {
        let mut j = Joiner::default();
        assert_eq!(j.feed(&rec("tail", "stdout"), 7).unwrap(), None);
        let flushed = j.flush();
        assert_eq!(flushed[0].text, "tail");
        assert!(j.feed(b"not json", 0).is_err());
        assert!(
            j.feed(br#"{"log":"x\n","stream":"stdout","time":"yesterday"}"#, 0)
                .is_err()
        );
    }

    #[test]
    fn an_endless_line_goes_out_cut_at_the_cap_and_never_waits_longer() {
        let mut j = Joiner {
            max_line: 64 * 1024,
            ..Joiner::default()
        };
        let piece = "x".repeat(16 * 1024);
        let mut out = Vec::new();
        // 50 MiB in the engine's 16 KiB pieces, then the newline, then another line
        for i in 0..3200_u64 {
            out.extend(j.piece("stdout", 1, &piece, i));
            // what waits (and would be saved with the position) stays under the cap
            let waiting: usize = j.pending.values().map(|p| p.text.len()).sum();
            assert!(waiting <= 64 * 1024, "{waiting} bytes waiting");
        }
        out.extend(j.piece("stdout", 1, "end\n", 3200));
        out.extend(j.piece("stdout", 2, "after\n", 3201));
        assert_eq!(
            out.len(),
            2,
            "{:?}",
            out.iter().map(|l| l.text.len()).collect::<Vec<_>>()
        );
        assert!(out[0].truncated);
        assert_eq!(out[0].text.len(), 64 * 1024);
        assert_eq!(out[0].offset, 0, "the line keeps its first piece's id");
        assert_eq!((out[1].text.as_str(), out[1].truncated), ("after", false));
        // a multibyte character is never cut in half
        let mut j = Joiner {
            max_line: 5,
            ..Joiner::default()
        };
        let cut = j.piece("stdout", 1, "ab\u{e9}\u{e9}\u{e9}\n", 0).unwrap();
        assert_eq!(cut.text, "ab\u{e9}");
        // a line cut mid-way by a flush is not sent again
        let mut j = Joiner {
            max_line: 4,
            ..Joiner::default()
        };
        assert!(j.piece("stdout", 1, "abcdef", 0).is_some());
        assert!(j.flush().is_empty());
    }
}
