//! The embedded log store: tantivy indexes, one per hour of ingestion (a partition), so that
//! retention drops whole directories. Every commit carries, as tantivy's commit payload, the
//! read positions of every container it covers: lines and positions become durable together,
//! which is what makes collection exactly-once across a kill -9.
//!
//! A line is indexed and stored lean: its text (indexed with positions and stored), its level
//! and parsed fields, its sequence number and time (fast fields), and the number of its
//! [`Origin`] (container, image, labels, stream), which is kept once per store rather than
//! once per line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tantivy::query::Query;
use tantivy::schema::Schema;
use tantivy::{Index, IndexReader, IndexWriter};

use crate::origin::{Origin, Origins};
use crate::query::{Compiler, LogQuery};
use crate::tail::Position;

mod disk;
mod document;
mod search;

use disk::{dir_size, open_partition, upgrade_layout};
pub use document::Entry;
pub(crate) use document::Fields;
use document::{schema, to_doc};
pub use search::{Cursor, Span};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("log store at {dir}: {source}")]
    Tantivy {
        dir: String,
        #[source]
        source: tantivy::TantivyError,
    },
    #[error("log store at {dir}: {source}")]
    Io {
        dir: String,
        #[source]
        source: std::io::Error,
    },
}

/// What a partition holds, kept in its commit payload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    pub min_time: i64,
    pub max_time: i64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub lines: u64,
}

/// What every commit records: the last sequence number given out, the read position of every
/// container, and what the partition holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub positions: BTreeMap<String, Position>,
    pub meta: PartitionMeta,
    /// How far the lines other capstans sent are stored (a fleet host's key → the last of its
    /// own sequence numbers stored here): committed with those lines, so each is stored once.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub remote: BTreeMap<String, u64>,
}

struct Partition {
    name: String,
    dir: PathBuf,
    index: Index,
    reader: IndexReader,
    meta: PartitionMeta,
}

struct Inner {
    /// Oldest first.
    partitions: Vec<Partition>,
    /// The partition being written and its writer.
    writer: Option<(String, IndexWriter)>,
    /// The last checkpoint committed.
    checkpoint: Checkpoint,
    /// What was added since: its checkpoint, committed at the next commit.
    pending: Option<Checkpoint>,
    /// Every origin of every line stored.
    origins: Origins,
    /// The origins of the lines added since the last commit (no segment shows them yet).
    pending_origins: std::collections::HashSet<u64>,
    /// How many times what was added was dropped (a writer that did not add it learns of it:
    /// [`Store::rollbacks`]).
    rollbacks: u64,
}

/// The store. Its methods block (tantivy is synchronous): call them from a blocking task.
pub struct Store {
    dir: PathBuf,
    schema: Schema,
    pub(crate) f: Fields,
    inner: Mutex<Inner>,
    writer_memory: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The memory the writer may use before it flushes a segment, unless told otherwise.
const WRITER_MEMORY: usize = 32 * 1024 * 1024;
/// tantivy's least heap for a writer thread.
const MIN_WRITER_MEMORY: usize = 15_000_000;
/// How many segments of a size are merged at once.
const MERGE_WIDTH: usize = 16;

impl Store {
    /// Opens (or creates) the store under `dir`, and returns the checkpoint of the last commit.
    ///
    /// # Errors
    /// The directory cannot be made, or a partition cannot be opened.
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let io = |source| Error::Io {
            dir: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        upgrade_layout(dir).map_err(io)?;
        let origins = Origins::open(&dir.join("origins.jsonl")).map_err(io)?;
        let (schema, f) = schema();
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with('p') && n[1..].chars().all(|c| c.is_ascii_digit()))
            .collect();
        names.sort();
        let mut partitions = Vec::new();
        let mut checkpoint = Checkpoint::default();
        for name in names {
            let pdir = dir.join(&name);
            let p = open_partition(&pdir, &name)?;
            let cp: Option<Checkpoint> = p
                .index
                .load_metas()
                .ok()
                .and_then(|m| m.payload)
                .and_then(|s| serde_json::from_str(&s).ok());
            match cp {
                Some(cp) => {
                    if cp.seq >= checkpoint.seq {
                        checkpoint = cp.clone();
                    }
                    partitions.push(Partition { meta: cp.meta, ..p });
                }
                // made but never committed (killed at once): nothing in it
                None => {
                    drop(p);
                    let _ = std::fs::remove_dir_all(&pdir);
                }
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
            schema,
            f,
            inner: Mutex::new(Inner {
                partitions,
                writer: None,
                checkpoint,
                pending: None,
                origins,
                pending_origins: std::collections::HashSet::new(),
                rollbacks: 0,
            }),
            writer_memory: std::sync::atomic::AtomicUsize::new(WRITER_MEMORY),
        })
    }

    /// The heap of the index writer made next (at least tantivy's 15 MB); a bound on the
    /// store's memory under a flood.
    pub fn set_writer_memory(&self, bytes: usize) {
        self.writer_memory
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Parses a query in the log query language (see [`crate::query`]).
    ///
    /// # Errors
    /// Where the query stops making sense.
    pub fn compile(&self, text: &str) -> Result<LogQuery, crate::query::QueryError> {
        LogQuery::parse(text)
    }

    /// The tantivy query for `query`, against the origins known now.
    fn tantivy_query(&self, inner: &Inner, query: &LogQuery) -> Box<dyn Query> {
        Compiler::new(&self.f, &inner.origins).compile(&query.0)
    }

    /// The last committed checkpoint.
    pub fn checkpoint(&self) -> Checkpoint {
        self.lock().checkpoint.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn err(&self, source: tantivy::TantivyError) -> Error {
        Error::Tantivy {
            dir: self.dir.display().to_string(),
            source,
        }
    }

    /// Stores `lines` and commits them with `positions` (the read positions after them);
    /// returns the sequence number of the last line.
    ///
    /// # Errors
    /// The index cannot be written; nothing of the batch is then visible or checkpointed.
    pub fn append(
        &self,
        lines: Vec<Entry>,
        positions: BTreeMap<String, Position>,
        now_ns: i64,
    ) -> Result<u64, Error> {
        let last = self.add(lines, positions, now_ns)?;
        self.commit()?;
        Ok(last)
    }

    /// Adds `lines` (numbered here, in order) to the partition of `now_ns`'s hour, without
    /// committing: they become visible and durable, together with `positions` (the read
    /// positions after them), at the next [`Store::commit`]. Returns the sequence number of
    /// the last line.
    ///
    /// # Errors
    /// The index cannot be written; everything added since the last commit is then dropped
    /// (read it again from the last checkpoint).
    pub fn add(
        &self,
        lines: Vec<Entry>,
        positions: BTreeMap<String, Position>,
        now_ns: i64,
    ) -> Result<u64, Error> {
        let name = format!("p{}", now_ns.div_euclid(3_600_000_000_000));
        let mut inner = self.lock();
        let result = self.add_locked(&mut inner, &name, lines, positions);
        if result.is_err() {
            Self::rollback(&mut inner);
        }
        result
    }

    fn add_locked(
        &self,
        inner: &mut Inner,
        name: &str,
        lines: Vec<Entry>,
        positions: BTreeMap<String, Position>,
    ) -> Result<u64, Error> {
        if inner.writer.as_ref().is_none_or(|(n, _)| n != name) {
            // a new hour: what the old partition holds is committed first
            self.commit_locked(inner)?;
            inner.writer = None;
            if !inner.partitions.iter().any(|p| p.name == name) {
                let pdir = self.dir.join(name);
                std::fs::create_dir_all(&pdir).map_err(|source| Error::Io {
                    dir: pdir.display().to_string(),
                    source,
                })?;
                let index = Index::builder()
                    .schema(self.schema.clone())
                    .settings(tantivy::IndexSettings {
                        // compressed on the writer's thread: a thread of its own costs a wake-up
                        // per block; larger blocks compress better and are woken for less often
                        docstore_compress_dedicated_thread: false,
                        docstore_blocksize: 64 * 1024,
                        ..tantivy::IndexSettings::default()
                    })
                    .create_in_dir(&pdir)
                    .map_err(|e| self.err(e))?;
                drop(index);
                let p = open_partition(&pdir, name)?;
                inner.partitions.push(p);
            }
            let p = inner
                .partitions
                .iter()
                .find(|p| p.name == name)
                .ok_or_else(|| {
                    self.err(tantivy::TantivyError::InternalError(
                        "partition vanished".into(),
                    ))
                })?;
            let writer: IndexWriter = p
                .index
                .writer_with_num_threads(
                    1,
                    self.writer_memory
                        .load(std::sync::atomic::Ordering::Relaxed)
                        .max(MIN_WRITER_MEMORY),
                )
                .map_err(|e| self.err(e))?;
            // log data is written once and never deleted line by line: merge in wider steps,
            // so a flood is not rewritten over and over
            let mut policy = tantivy::merge_policy::LogMergePolicy::default();
            policy.set_min_num_segments(MERGE_WIDTH);
            policy.set_level_log_size(1.0);
            writer.set_merge_policy(Box::new(policy));
            inner.writer = Some((name.to_owned(), writer));
        }
        let (mut seq, mut meta, remote) = match &inner.pending {
            Some(p) => (p.seq, p.meta.clone(), p.remote.clone()),
            None => (
                inner.checkpoint.seq,
                inner
                    .partitions
                    .iter()
                    .find(|p| p.name == name)
                    .map(|p| p.meta.clone())
                    .unwrap_or_default(),
                inner.checkpoint.remote.clone(),
            ),
        };
        let f = self.f;
        // lines of one container and stream share their origin: look it up once a run
        let mut last_origin: Option<(Arc<Origin>, u64)> = None;
        for line in lines {
            let origin = match &last_origin {
                Some((o, id)) if Arc::ptr_eq(o, &line.origin) => *id,
                _ => {
                    let id = inner
                        .origins
                        .intern(&line.origin)
                        .map_err(|source| Error::Io {
                            dir: self.dir.display().to_string(),
                            source,
                        })?;
                    last_origin = Some((Arc::clone(&line.origin), id));
                    inner.pending_origins.insert(id);
                    id
                }
            };
            let Some((_, writer)) = inner.writer.as_mut() else {
                return Err(self.err(tantivy::TantivyError::InternalError("no writer".into())));
            };
            seq += 1;
            if meta.lines == 0 {
                meta.first_seq = seq;
                meta.min_time = line.time_nano;
                meta.max_time = line.time_nano;
            }
            meta.lines += 1;
            meta.last_seq = seq;
            meta.min_time = meta.min_time.min(line.time_nano);
            meta.max_time = meta.max_time.max(line.time_nano);
            writer
                .add_document(to_doc(&f, seq, origin, line))
                .map_err(|e| self.err(e))?;
        }
        inner.pending = Some(Checkpoint {
            seq,
            positions,
            meta,
            remote,
        });
        Ok(seq)
    }

    /// Commits what was added since the last commit, with the positions given last; returns
    /// the last sequence number committed (`None` with nothing to commit).
    ///
    /// # Errors
    /// The index cannot be committed; what was added is then dropped.
    pub fn commit(&self) -> Result<Option<u64>, Error> {
        let mut inner = self.lock();
        let seq = inner.pending.as_ref().map(|p| p.seq);
        let result = self.commit_locked(&mut inner);
        if result.is_err() {
            Self::rollback(&mut inner);
        }
        result.map(|()| seq)
    }

    fn commit_locked(&self, inner: &mut Inner) -> Result<(), Error> {
        let Some(pending) = inner.pending.take() else {
            return Ok(());
        };
        let Some((name, writer)) = inner.writer.as_mut() else {
            return Ok(());
        };
        let name = name.clone();
        let payload = serde_json::to_string(&pending).unwrap_or_default();
        let mut prepared = writer.prepare_commit().map_err(|e| self.err(e))?;
        prepared.set_payload(&payload);
        prepared.commit().map_err(|e| self.err(e))?;
        if let Some(p) = inner.partitions.iter_mut().find(|p| p.name == name) {
            p.meta = pending.meta.clone();
            p.reader.reload().map_err(|e| Error::Tantivy {
                dir: p.dir.display().to_string(),
                source: e,
            })?;
        }
        inner.checkpoint = pending;
        inner.pending_origins.clear();
        Ok(())
    }

    /// Stores the lines other capstans sent (fleet hosts: `(key, last, lines)`, `last` the
    /// host's own sequence number of the last of its lines), and commits them once with each
    /// host's cursor, together with whatever this capstan's collector added meanwhile. A batch
    /// at or before its host's cursor (sent again after an answer was lost) is not stored
    /// again. Returns each host's cursor, in the order given, and the last sequence number
    /// committed when something was.
    ///
    /// # Errors
    /// The index cannot be written or committed; nothing of the batches is then stored (and
    /// what the collector had added is dropped with it: it reads it again,
    /// [`Store::rollbacks`]).
    pub fn append_remote(
        &self,
        batches: Vec<(String, u64, Vec<Entry>)>,
        now_ns: i64,
    ) -> Result<(Vec<u64>, Option<u64>), Error> {
        let name = format!("p{}", now_ns.div_euclid(3_600_000_000_000));
        let mut inner = self.lock();
        let mut cursors = Vec::with_capacity(batches.len());
        let mut last_seq = None;
        let mut result = Ok(());
        for (key, last, lines) in batches {
            let at = inner
                .pending
                .as_ref()
                .unwrap_or(&inner.checkpoint)
                .remote
                .get(&key)
                .copied()
                .unwrap_or(0);
            if last <= at {
                cursors.push(at);
                continue;
            }
            let positions = inner
                .pending
                .as_ref()
                .unwrap_or(&inner.checkpoint)
                .positions
                .clone();
            match self.add_locked(&mut inner, &name, lines, positions) {
                Ok(seq) => {
                    if let Some(p) = inner.pending.as_mut() {
                        p.remote.insert(key, last);
                    }
                    last_seq = Some(seq);
                    cursors.push(last);
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if result.is_ok() && last_seq.is_some() {
            result = self.commit_locked(&mut inner);
        }
        match result {
            Ok(()) => Ok((cursors, last_seq)),
            Err(e) => {
                Self::rollback(&mut inner);
                Err(e)
            }
        }
    }

    /// Drops what was added since the last commit (a writer that learnt, from
    /// [`Store::rollbacks`], that part of it was dropped already, before it reads it again).
    pub fn discard(&self) {
        Self::rollback(&mut self.lock());
    }

    /// How far the lines of fleet host `key` are stored (0: none yet).
    pub fn remote_cursor(&self, key: &str) -> u64 {
        self.lock().checkpoint.remote.get(key).copied().unwrap_or(0)
    }

    /// How many times what was added was dropped: a writer whose added lines may have gone
    /// with another writer's failure compares it before and after its commit.
    pub fn rollbacks(&self) -> u64 {
        self.lock().rollbacks
    }

    /// Drops what was added since the last commit.
    fn rollback(inner: &mut Inner) {
        inner.rollbacks += 1;
        inner.pending = None;
        inner.pending_origins.clear();
        if let Some((_, writer)) = inner.writer.as_mut() {
            let _ = writer.rollback();
        }
    }

    /// How many origins (container and stream) the store knows: those of its lines, and of
    /// the lines added since the last commit.
    pub fn origin_count(&self) -> usize {
        self.lock().origins.count()
    }

    /// Partitions: name, what they hold, bytes on disk.
    pub fn partitions(&self) -> Vec<(String, PartitionMeta, u64)> {
        self.lock()
            .partitions
            .iter()
            .map(|p| (p.name.clone(), p.meta.clone(), dir_size(&p.dir)))
            .collect()
    }
}
