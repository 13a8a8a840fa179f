//! Following one container through the engine's logs API, for log drivers other than
//! `json-file` and for engines whose files capstan cannot open (a remote engine). A task per
//! container streams the output into a small bounded queue (a slow store slows the stream:
//! the engine keeps the rest); reading drains the queue.
//!
//! Exactly once: the API resumes only by whole seconds (`since`), and returns the pieces
//! stamped at or after it in the order the driver stored them. Stamps are not in that order
//! across streams (stdout and stderr are stamped apart), so no stamp marks a place. The
//! position keeps a second `S` a little behind the newest stamp and how many pieces stamped at
//! or after `S` were read; a stream resumed at `S` repeats exactly those first, and they are
//! skipped. A line's id counts the pieces read since the container's first one, so it is the
//! same whenever the line is read.
//!
//! A stream may end before its repeat is over (a Swarm manager answers "node not available"
//! while its workers reconnect): what it repeated is known already, so the next stream skips
//! the same pieces again, counted from what was read, never from what the cut stream did.

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_engine::{Engine, LogChunk};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::tail::{Batch, Position};

/// Pieces queued per container (each up to 16 KiB: at most 4 MiB waiting).
const QUEUE: usize = 256;
/// How far `since` stays behind the newest stamp, for pieces stamped out of order.
const SLACK_SECS: i64 = 2;
/// The wait before following again after the stream ended (the container stopped).
const RECONNECT: Duration = Duration::from_secs(1);
const MAX_RECONNECT: Duration = Duration::from_secs(10);

enum Item {
    /// A new stream starts at this whole second: it repeats the pieces stamped at or after it.
    Connected(i64),
    Chunk(LogChunk),
    /// The stream ended: the container stopped, so a line still waiting for its end is whole.
    Ended,
}

/// Follows one container through the logs API.
#[derive(Debug)]
pub struct ApiFollower {
    rx: mpsc::Receiver<Item>,
    task: tokio::task::JoinHandle<()>,
    pos: Position,
    /// Pieces of the stream being read still to skip (they were read before).
    skip: u64,
    /// Whether the pieces skipped are counted into `seconds`: a stream from the saved
    /// position repeats what the last run read, which `seconds` does not know yet.
    recount: bool,
    /// Pieces read per stamp second, from `pos.api_since` on (complete once a stream from the
    /// saved position has repeated everything the last run read).
    seconds: BTreeMap<i64, u64>,
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connected(since) => write!(f, "Connected({since})"),
            Self::Chunk(c) => write!(f, "Chunk({} bytes)", c.bytes.len()),
            Self::Ended => f.write_str("Ended"),
        }
    }
}

impl Drop for ApiFollower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What an [`ApiFollower`] follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Followee {
    /// A container of the engine.
    Container,
    /// A Swarm task, through one of the cluster's managers.
    Task,
}

impl ApiFollower {
    /// Starts following container or task `id` (`name` for capstan's own log) from `pos`.
    /// Needs a Tokio runtime.
    pub fn new(engine: Engine, followee: Followee, id: &str, name: &str, pos: Position) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let resume = Resume {
            since: pos.api_since,
            seen: pos.api_seen,
        };
        let task = tokio::spawn(follow(
            engine,
            followee,
            id.to_owned(),
            name.to_owned(),
            resume,
            tx,
        ));
        Self {
            rx,
            task,
            pos: Position { inode: 0, ..pos },
            skip: 0,
            recount: false,
            seconds: BTreeMap::new(),
        }
    }

    /// The position after everything returned so far.
    pub fn position(&self) -> &Position {
        &self.pos
    }

    /// The position, to change the parts of it that joining keeps (multiline groups,
    /// waiting pieces).
    pub fn position_mut(&mut self) -> &mut Position {
        &mut self.pos
    }

    /// The whole lines queued so far, up to about `max_bytes` of them; never waits.
    pub fn read(&mut self, max_bytes: usize) -> Batch {
        let mut batch = Batch::default();
        let mut bytes = 0;
        while bytes < max_bytes {
            let Ok(item) = self.rx.try_recv() else {
                break;
            };
            match item {
                Item::Connected(since) => {
                    // from the saved position (until a stream has repeated all it knows),
                    // or from a later second, where `seconds` knows how many were read
                    if since <= self.pos.api_since {
                        self.skip = self.pos.api_seen;
                        self.recount = true;
                        self.seconds.clear();
                    } else {
                        self.skip = self.seconds.range(since..).map(|(_, n)| n).sum();
                        self.recount = false;
                    }
                }
                Item::Chunk(chunk) => {
                    bytes += chunk.bytes.len();
                    self.accept(&chunk, &mut batch);
                }
                // (only after the repeat is over: before, the waiting line's rest may come)
                Item::Ended if self.skip == 0 => {
                    for line in self.pos.joiner.flush() {
                        batch.lines.push(line);
                        batch.inodes.push(0);
                    }
                }
                Item::Ended => {}
            }
        }
        batch.more = bytes >= max_bytes;
        batch
    }

    /// One piece: skipped when it repeats what was read, else fed to the joiner.
    fn accept(&mut self, chunk: &LogChunk, batch: &mut Batch) {
        let text = String::from_utf8_lossy(&chunk.bytes);
        let Some((stamp, piece)) = text.split_once(' ') else {
            batch.bad += 1;
            return;
        };
        let Some(time) = chrono::DateTime::parse_from_rfc3339(stamp).ok() else {
            batch.bad += 1;
            return;
        };
        let time_ns = time.timestamp_nanos_opt().unwrap_or_default();
        let second = time.timestamp();
        let pos = &mut self.pos;
        if self.skip > 0 {
            self.skip -= 1;
            if self.recount && second >= pos.api_since {
                *self.seconds.entry(second).or_default() += 1;
            }
            return;
        }
        if second >= pos.api_since {
            *self.seconds.entry(second).or_default() += 1;
            pos.api_seen += 1;
        }
        // keep the resume point close behind the newest stamp, so a resume repeats little
        let newest = self.seconds.keys().next_back().copied().unwrap_or(second);
        if newest - SLACK_SECS > pos.api_since {
            pos.api_since = newest - SLACK_SECS;
            self.seconds = self.seconds.split_off(&pos.api_since);
            pos.api_seen = self.seconds.values().sum();
        }
        let offset = pos.offset;
        pos.offset += 1;
        // the pieces of one long line all carry its first piece's stamp; a piece with another
        // stamp starts a new line (the `local` driver drops the newline of a long line's last
        // piece, so the stamp is what ends it)
        if pos
            .joiner
            .pending
            .get(chunk.stream)
            .is_some_and(|p| p.time_ns != time_ns)
            && let Some(line) = pos.joiner.take(chunk.stream)
        {
            batch.lines.push(line);
            batch.inodes.push(0);
        }
        if let Some(line) = pos.joiner.piece(chunk.stream, time_ns, piece, offset) {
            batch.lines.push(line);
            batch.inodes.push(0);
        }
    }
}

/// Where following resumes: the saved position's second, and how many pieces stamped at or
/// after it the last run read.
struct Resume {
    since: i64,
    seen: u64,
}

/// Streams the container's (or task's) output into `tx` until the receiver goes or the
/// container does.
async fn follow(
    engine: Engine,
    followee: Followee,
    id: String,
    name: String,
    resume: Resume,
    tx: mpsc::Sender<Item>,
) {
    let mut wait = RECONNECT;
    let mut since = resume.since;
    loop {
        if tx.send(Item::Connected(since)).await.is_err() {
            return;
        }
        // a stream from the saved position moves on only once it repeated what the last run
        // read (the reader counts those per second as they come)
        let mut repeat = if since == resume.since {
            resume.seen
        } else {
            0
        };
        let mut stream = match followee {
            Followee::Container => engine.follow_logs(&id, since),
            Followee::Task => engine.follow_task_logs(&id, since),
        };
        let mut got = false;
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => {
                    if repeat > 0 {
                        repeat -= 1;
                    } else if let Some(t) = chunk_seconds(&chunk) {
                        since = since.max(t);
                    }
                    got = true;
                    if tx.send(Item::Chunk(chunk)).await.is_err() {
                        return;
                    }
                }
                Err(capstan_engine::Error::NotFound { .. }) => {
                    debug!(container = %name, "container gone; its logs are read");
                    return;
                }
                Err(e) => {
                    if e.to_string().contains("does not support reading") {
                        warn!(container = %name, error = %e, "the container's log driver cannot be read; its lines are not collected");
                        return;
                    }
                    debug!(container = %name, error = %e, "log stream failed; following again");
                    break;
                }
            }
        }
        // the container stopped (or the engine went): follow again, in case it restarts
        if tx.send(Item::Ended).await.is_err() {
            return;
        }
        wait = if got {
            RECONNECT
        } else {
            (wait * 2).min(MAX_RECONNECT)
        };
        tokio::select! {
            () = tx.closed() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// The whole seconds of a piece's timestamp.
fn chunk_seconds(chunk: &LogChunk) -> Option<i64> {
    let end = chunk.bytes.iter().position(|b| *b == b' ')?;
    let stamp = std::str::from_utf8(&chunk.bytes[..end]).ok()?;
    chrono::DateTime::parse_from_rfc3339(stamp)
        .ok()
        .map(|t| t.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(stamp: &str, text: &str) -> LogChunk {
        LogChunk {
            stream: "stdout",
            bytes: format!("{stamp} {text}").into(),
        }
    }

    fn follower(pos: Position) -> (ApiFollower, mpsc::Sender<Item>) {
        let (tx, rx) = mpsc::channel(64);
        let f = ApiFollower {
            rx,
            task: tokio::spawn(async {}),
            pos,
            skip: 0,
            recount: false,
            seconds: BTreeMap::new(),
        };
        (f, tx)
    }

    /// What the engine sends for `since`: the pieces stamped at or after it, in stored order.
    fn replay(tx: &mpsc::Sender<Item>, log: &[(&str, &str)], since: i64) {
        tx.try_send(Item::Connected(since)).unwrap();
        for (stamp, text) in log {
            let t = chrono::DateTime::parse_from_rfc3339(stamp).map_or(i64::MAX, |t| t.timestamp());
            if t >= since {
                tx.try_send(Item::Chunk(chunk(stamp, text))).unwrap();
            }
        }
    }

    fn texts(b: &Batch) -> Vec<&str> {
        b.lines.iter().map(|l| l.text.as_str()).collect()
    }

    // regression: stdout and stderr are stamped apart, so a stamp after the last one read is
    // no sign of a new piece (lines were lost when it was taken for one)
    #[tokio::test]
    async fn a_resumed_stream_repeats_nothing_and_loses_nothing_with_stamps_out_of_order() {
        let log = [
            ("2026-12-02T10:00:00.1Z", "a\n"),
            ("2026-12-02T10:00:00.3Z", "b\n"),
            ("2026-12-02T10:00:00.2Z", "stderr stamped earlier\n"),
            ("2026-12-02T10:00:01.0Z", "long "),
            ("2026-12-02T10:00:01.0Z", "line\n"),
            ("2026-12-02T10:00:01.5Z", "no "),
            ("2026-12-02T10:00:01.5Z", "newline"),
            ("2026-12-02T10:00:04.0Z", "c\n"),
            ("2026-12-02T10:00:03.9Z", "d\n"),
            ("2026-12-02T10:00:05.0Z", "e\n"),
            ("2026-12-02T10:00:07.0Z", "f\n"),
            ("bad", "x\n"),
        ];
        // read the first 8 pieces, then capstan dies
        let (mut f, tx) = follower(Position::default());
        replay(&tx, &log[..8], 0);
        let first = f.read(1 << 20);
        assert_eq!(
            texts(&first),
            [
                "a",
                "b",
                "stderr stamped earlier",
                "long line",
                "no newline",
                "c"
            ]
        );
        let offsets: Vec<u64> = first.lines.iter().map(|l| l.offset).collect();
        assert_eq!(offsets, [0, 1, 2, 3, 5, 7]);
        let pos = f.position().clone();
        assert_eq!(
            pos.api_since, 1_796_205_602,
            "two seconds behind the newest stamp"
        );
        // resumed where the position says, the engine repeats from that second on
        let (mut f, tx) = follower(pos.clone());
        replay(&tx, &log, pos.api_since);
        let second = f.read(1 << 20);
        assert_eq!(texts(&second), ["d", "e", "f"]);
        let offsets: Vec<u64> = second.lines.iter().map(|l| l.offset).collect();
        assert_eq!(offsets, [8, 9, 10], "ids go on from where they were");
        assert_eq!(second.bad, 1);
        // the stream ends (the container stopped) and the task follows again from the newest
        // second it had reached, within the same run
        tx.try_send(Item::Ended).unwrap();
        let later = [
            ("2026-12-02T10:00:07.0Z", "f\n"),
            ("2026-12-02T10:00:07.5Z", "g\n"),
        ];
        replay(&tx, &later, 1_796_205_607);
        assert_eq!(
            texts(&f.read(1 << 20)),
            ["g"],
            "the repeat is skipped, no more"
        );
        // and once more, from the saved position: nothing new
        let (mut f, tx) = follower(f.position().clone());
        replay(&tx, &log, f.position().api_since);
        assert!(f.read(1 << 20).lines.is_empty());
    }

    // regression: a Swarm manager restarting answers "node not available" for a while, so
    // streams ended before repeating anything; the second such stream skipped nothing and the
    // task's lines were stored twice
    #[tokio::test]
    async fn streams_cut_before_their_repeat_is_over_repeat_nothing() {
        let log = [
            ("2026-12-02T10:00:00.1Z", "web-up\n"),
            ("2026-12-02T10:00:00.2Z", "ready\n"),
            ("2026-12-02T10:00:05.0Z", "a\n"),
            ("2026-12-02T10:00:05.1Z", "b\n"),
            ("2026-12-02T10:00:08.0Z", "c\n"),
            ("2026-12-02T10:00:09.0Z", "d\n"),
        ];
        let (mut f, tx) = follower(Position::default());
        replay(&tx, &log[..4], 0);
        assert_eq!(texts(&f.read(1 << 20)), ["web-up", "ready", "a", "b"]);
        // the stream ends; the follow task goes on from the newest second it reached
        let since = 1_796_205_605;
        tx.try_send(Item::Ended).unwrap();
        for _ in 0..3 {
            // cut at once, then after one repeated piece
            tx.try_send(Item::Connected(since)).unwrap();
            tx.try_send(Item::Ended).unwrap();
            tx.try_send(Item::Connected(since)).unwrap();
            tx.try_send(Item::Chunk(chunk(log[2].0, log[2].1))).unwrap();
            tx.try_send(Item::Ended).unwrap();
            assert!(f.read(1 << 20).lines.is_empty());
        }
        replay(&tx, &log, since);
        assert_eq!(texts(&f.read(1 << 20)), ["c", "d"]);

        // from a saved position: the repeat of what the last run read is cut short, twice
        let saved = f.position().clone();
        let (mut f, tx) = follower(saved.clone());
        let known: Vec<_> = log
            .iter()
            .filter(|(stamp, _)| {
                chrono::DateTime::parse_from_rfc3339(stamp)
                    .unwrap()
                    .timestamp()
                    >= saved.api_since
            })
            .collect();
        assert!(known.len() >= 2, "{known:?}");
        tx.try_send(Item::Connected(saved.api_since)).unwrap();
        tx.try_send(Item::Chunk(chunk(known[0].0, known[0].1)))
            .unwrap();
        tx.try_send(Item::Ended).unwrap();
        tx.try_send(Item::Connected(saved.api_since)).unwrap();
        tx.try_send(Item::Ended).unwrap();
        assert!(f.read(1 << 20).lines.is_empty());
        let more = [&log[..], &[("2026-12-02T10:00:09.5Z", "e\n")]].concat();
        replay(&tx, &more, saved.api_since);
        assert_eq!(texts(&f.read(1 << 20)), ["e"]);
        // and later in that run, from the newest second reached
        replay(&tx, &more, 1_796_205_609);
        assert!(f.read(1 << 20).lines.is_empty());
    }
}
