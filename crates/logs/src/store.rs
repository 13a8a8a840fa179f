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

use capstan_model::LogLine;
use serde::{Deserialize, Serialize};
use tantivy::collector::{Count, HistogramCollector, TopDocs};
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, JsonObjectOptions, STORED, STRING, Schema, TEXT,
    TextFieldIndexing, Value,
};

use crate::origin::{Origin, Origins};
use crate::query::{Compiler, LogQuery};
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term,
};

use crate::tail::Position;

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
}

/// The version of the store's layout, in `<dir>/FORMAT`. A store of an older layout (no
/// such file) is moved aside whole into `<dir>/format-1/`.
const FORMAT: &str = "2";

/// The fields of the schema.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields {
    pub seq: Field,
    pub time: Field,
    pub origin: Field,
    pub raw: Field,
    pub level: Field,
    pub parsed: Field,
    /// What is stored besides the text: [`StoredLine`] as JSON.
    pub line: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    // fast fields only: a range query reads the column; indexing them would add a term per
    // line to the term dictionary
    let seq = b.add_u64_field("seq", FAST);
    let time = b.add_i64_field("time", FAST);
    let origin = b.add_u64_field("origin", INDEXED | FAST);
    let raw = b.add_text_field("raw", TEXT | STORED);
    let level = b.add_text_field("level", STRING);
    let parsed = b.add_json_field(
        "fields",
        JsonObjectOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("default")
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        ),
    );
    let line = b.add_text_field("line", STORED);
    let schema = b.build();
    (
        schema,
        Fields {
            seq,
            time,
            origin,
            raw,
            level,
            parsed,
            line,
        },
    )
}

/// A line on its way into the store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entry {
    /// Where it comes from (share one `Arc` per container and stream: the store numbers it
    /// once).
    pub origin: Arc<Origin>,
    /// A stable id (see [`LogLine::id`]).
    pub id: String,
    /// The engine's time, ns since the epoch.
    pub time_nano: i64,
    pub raw: String,
    /// The message a parser found (empty: the raw line is the message).
    pub message: String,
    pub level: Option<String>,
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// `fields` is `raw`'s JSON object as it is: stored once, as the text.
    pub fields_are_raw: bool,
    pub parse_error: bool,
}

impl From<LogLine> for Entry {
    fn from(line: LogLine) -> Self {
        Self {
            origin: Arc::new(line.origin),
            id: line.id,
            time_nano: line.time_nano,
            raw: line.raw,
            message: line.message,
            level: line.level,
            fields: line.fields.into_iter().collect(),
            fields_are_raw: false,
            parse_error: line.parse_error,
        }
    }
}

/// What a line stores besides its text.
#[derive(Serialize)]
struct StoredRef<'a> {
    seq: u64,
    time: i64,
    origin: u64,
    id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    level: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<&'a serde_json::Map<String, serde_json::Value>>,
    /// The fields are the text's own JSON object (half the stored bytes of a JSON line).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    fields_in_text: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    parse_error: bool,
}

/// [`StoredRef`] read back.
#[derive(Deserialize)]
struct StoredLine {
    seq: u64,
    time: i64,
    origin: u64,
    id: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    fields: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    fields_in_text: bool,
    #[serde(default)]
    parse_error: bool,
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
        let (mut seq, mut meta) = match &inner.pending {
            Some(p) => (p.seq, p.meta.clone()),
            None => (
                inner.checkpoint.seq,
                inner
                    .partitions
                    .iter()
                    .find(|p| p.name == name)
                    .map(|p| p.meta.clone())
                    .unwrap_or_default(),
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

    /// Drops what was added since the last commit.
    fn rollback(inner: &mut Inner) {
        inner.pending = None;
        inner.pending_origins.clear();
        if let Some((_, writer)) = inner.writer.as_mut() {
            let _ = writer.rollback();
        }
    }

    /// Lines matching `query` between `since` and `until` (ns, inclusive), newest first, up to
    /// `limit`; and how many matched in all.
    ///
    /// # Errors
    /// A failed search.
    pub fn search(
        &self,
        query: &LogQuery,
        since: Option<i64>,
        until: Option<i64>,
        limit: usize,
    ) -> Result<(Vec<LogLine>, u64), Error> {
        let inner = self.lock();
        let q = self.with_time(&*self.tantivy_query(&inner, query), since, until);
        let mut out = Vec::new();
        let mut total = 0;
        for p in inner.partitions.iter().rev() {
            if p.meta.lines == 0
                || since.is_some_and(|s| p.meta.max_time < s)
                || until.is_some_and(|u| p.meta.min_time > u)
            {
                continue;
            }
            let searcher = p.reader.searcher();
            // counted apart: a term query is then counted from its document frequency
            let count = searcher.search(&*q, &Count).map_err(|e| self.err(e))?;
            total += count as u64;
            let want = limit.saturating_sub(out.len());
            if want == 0 || count == 0 {
                continue;
            }
            for addr in newest(&searcher, &*q, want).map_err(|e| self.err(e))? {
                out.push(self.line(&inner, &searcher, addr)?);
            }
        }
        out.truncate(limit);
        Ok((out, total))
    }

    /// Lines with a sequence number after `after`, oldest first, up to `limit` (for sinks and
    /// live tails).
    ///
    /// # Errors
    /// A failed search.
    pub fn after(&self, after: u64, query: &LogQuery, limit: usize) -> Result<Vec<LogLine>, Error> {
        let inner = self.lock();
        let query = self.tantivy_query(&inner, query);
        let range: Box<dyn Query> = Box::new(RangeQuery::new(
            std::ops::Bound::Excluded(Term::from_field_u64(self.f.seq, after)),
            std::ops::Bound::Unbounded,
        ));
        let q = BooleanQuery::new(vec![(Occur::Must, range), (Occur::Must, query.box_clone())]);
        let mut out = Vec::new();
        for p in &inner.partitions {
            if p.meta.last_seq <= after {
                continue;
            }
            let searcher = p.reader.searcher();
            let want = limit.saturating_sub(out.len());
            if want == 0 {
                break;
            }
            let top = searcher
                .search(
                    &q,
                    &TopDocs::with_limit(want).order_by_fast_field::<u64>("seq", Order::Asc),
                )
                .map_err(|e| self.err(e))?;
            for (_, addr) in top {
                out.push(self.line(&inner, &searcher, addr)?);
            }
        }
        Ok(out)
    }

    /// Counts of matching lines per bucket of `width` ns from `since` to `until`.
    ///
    /// # Errors
    /// A failed search.
    pub fn histogram(
        &self,
        query: &LogQuery,
        since: i64,
        until: i64,
        width: i64,
    ) -> Result<Vec<u64>, Error> {
        let inner = self.lock();
        let width = width.max(1);
        let buckets = ((until - since) / width + 1).clamp(1, 10_000) as usize;
        let q = self.with_time(
            &*self.tantivy_query(&inner, query),
            Some(since),
            Some(until),
        );
        let mut counts = vec![0_u64; buckets];
        for p in &inner.partitions {
            if p.meta.lines == 0 || p.meta.max_time < since || p.meta.min_time > until {
                continue;
            }
            let searcher = p.reader.searcher();
            let collector =
                HistogramCollector::new::<i64>("time".to_owned(), since, width as u64, buckets);
            let part = searcher.search(&*q, &collector).map_err(|e| self.err(e))?;
            for (c, n) in counts.iter_mut().zip(part) {
                *c += n;
            }
        }
        Ok(counts)
    }

    /// Drops whole partitions (never the one being written) whose newest line is older than
    /// `older_than` ns, then the oldest ones while the store is larger than `max_bytes`.
    /// Returns the partitions dropped.
    ///
    /// # Errors
    /// A partition directory that cannot be removed.
    pub fn retain(
        &self,
        older_than: Option<i64>,
        max_bytes: Option<u64>,
    ) -> Result<Vec<String>, Error> {
        let mut inner = self.lock();
        let writing = inner.writer.as_ref().map(|(n, _)| n.clone());
        let mut dropped = Vec::new();
        loop {
            let total: u64 = inner.partitions.iter().map(|p| dir_size(&p.dir)).sum();
            let Some(oldest) = inner.partitions.first() else {
                break;
            };
            if Some(&oldest.name) == writing.as_ref() {
                break;
            }
            let too_old = older_than.is_some_and(|t| oldest.meta.max_time < t);
            let too_big = max_bytes.is_some_and(|m| total > m);
            if !(too_old || too_big) {
                break;
            }
            let p = inner.partitions.remove(0);
            let dir = p.dir.clone();
            dropped.push(p.name.clone());
            drop(p);
            std::fs::remove_dir_all(&dir).map_err(|source| Error::Io {
                dir: dir.display().to_string(),
                source,
            })?;
        }
        if !dropped.is_empty() {
            self.forget_unused_origins(&mut inner)?;
        }
        Ok(dropped)
    }

    /// Drops the origins no line left in the store names (a host whose containers come and
    /// go would otherwise keep every one it ever ran, in memory and in `origins.jsonl`).
    fn forget_unused_origins(&self, inner: &mut Inner) -> Result<(), Error> {
        let mut used = inner.pending_origins.clone();
        for p in &inner.partitions {
            for segment in p.reader.searcher().segment_readers() {
                let index = segment
                    .inverted_index(self.f.origin)
                    .map_err(|e| self.err(e))?;
                let mut terms = index.terms().stream().map_err(|e| self.err(e.into()))?;
                while terms.advance() {
                    // a u64 term is its 8 bytes, big-endian
                    if let Ok(bytes) = <[u8; 8]>::try_from(terms.key()) {
                        used.insert(u64::from_be_bytes(bytes));
                    }
                }
            }
        }
        inner.origins.keep_only(&used).map_err(|source| Error::Io {
            dir: self.dir.display().to_string(),
            source,
        })
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

    fn with_time(
        &self,
        query: &dyn Query,
        since: Option<i64>,
        until: Option<i64>,
    ) -> Box<dyn Query> {
        if since.is_none() && until.is_none() {
            return query.box_clone();
        }
        let bound = |v: Option<i64>| match v {
            Some(v) => std::ops::Bound::Included(Term::from_field_i64(self.f.time, v)),
            None => std::ops::Bound::Unbounded,
        };
        Box::new(BooleanQuery::new(vec![
            (Occur::Must, query.box_clone()),
            (
                Occur::Must,
                Box::new(RangeQuery::new(bound(since), bound(until))),
            ),
        ]))
    }

    fn line(
        &self,
        inner: &Inner,
        searcher: &tantivy::Searcher,
        addr: DocAddress,
    ) -> Result<LogLine, Error> {
        let doc: TantivyDocument = searcher.doc(addr).map_err(|e| self.err(e))?;
        let text = |field| {
            doc.get_first(field)
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        let stored: StoredLine = serde_json::from_str(&text(self.f.line)).map_err(|e| {
            self.err(tantivy::TantivyError::InternalError(format!(
                "a stored line cannot be read: {e}"
            )))
        })?;
        let raw = text(self.f.raw);
        let fields = if stored.fields_in_text {
            crate::parse::json(&raw)
                .map(|f| f.into_iter().collect())
                .unwrap_or_default()
        } else {
            stored.fields
        };
        Ok(LogLine {
            seq: stored.seq,
            id: stored.id,
            time: capstan_model::nanos_to_datetime(stored.time),
            time_nano: stored.time,
            raw,
            message: stored.message,
            level: stored.level,
            fields,
            parse_error: stored.parse_error,
            origin: inner
                .origins
                .get(stored.origin)
                .map(|o| Origin::clone(o))
                .unwrap_or_default(),
        })
    }
}

/// Moves a store of an older layout aside (into `format-1/`, where it stays on disk) and
/// marks `dir` with the current one.
fn upgrade_layout(dir: &Path) -> std::io::Result<()> {
    let marker = dir.join("FORMAT");
    if let Ok(v) = std::fs::read_to_string(&marker) {
        if v.trim() == FORMAT {
            return Ok(());
        }
        return Err(std::io::Error::other(format!(
            "the log store has layout {} and this capstan reads layout {FORMAT}: use a newer capstan, or move the directory away to start a new store",
            v.trim()
        )));
    }
    let old: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('p') && n[1..].chars().all(|c| c.is_ascii_digit()))
        })
        .collect();
    if !old.is_empty() {
        let aside = dir.join("format-1");
        std::fs::create_dir_all(&aside)?;
        for p in &old {
            if let Some(name) = p.file_name() {
                std::fs::rename(p, aside.join(name))?;
            }
        }
        tracing::warn!(
            dir = %aside.display(),
            partitions = old.len(),
            "the log store had an older layout: its partitions are kept there but no longer searched; containers are read again from their first kept line"
        );
    }
    std::fs::write(&marker, format!("{FORMAT}\n"))?;
    Ok(())
}

/// The `want` matches of `query` with the highest sequence numbers, highest first. Segments
/// are searched newest first, and the search stops at a segment whose lines are all older than
/// the ones found: the newest lines of a flood cost one segment's matches, not the partition's.
fn newest(
    searcher: &tantivy::Searcher,
    query: &dyn Query,
    want: usize,
) -> tantivy::Result<Vec<DocAddress>> {
    use tantivy::collector::Collector;
    let weight = query.weight(tantivy::query::EnableScoring::disabled_from_searcher(
        searcher,
    ))?;
    let collector = TopDocs::with_limit(want).order_by_fast_field::<u64>("seq", Order::Desc);
    let mut segments: Vec<(u64, u32)> = searcher
        .segment_readers()
        .iter()
        .enumerate()
        .map(|(ord, r)| {
            let max = r
                .fast_fields()
                .u64("seq")
                .map_or(u64::MAX, |c| c.max_value());
            (max, ord as u32)
        })
        .collect();
    segments.sort_unstable_by(|a, b| b.cmp(a));
    let mut best: Vec<(u64, DocAddress)> = Vec::new();
    for (max, ord) in segments {
        if best.len() >= want && best.last().is_some_and(|(seq, _)| *seq >= max) {
            break;
        }
        let reader = searcher.segment_reader(ord);
        let fruit = collector.collect_segment(&*weight, ord, reader)?;
        let fruit = collector.merge_fruits(vec![fruit])?;
        best.extend(
            fruit
                .into_iter()
                .map(|(seq, addr)| (seq.unwrap_or(0), addr)),
        );
        best.sort_unstable_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        best.truncate(want);
    }
    Ok(best.into_iter().map(|(_, addr)| addr).collect())
}

fn open_partition(dir: &Path, name: &str) -> Result<Partition, Error> {
    let err = |source| Error::Tantivy {
        dir: dir.display().to_string(),
        source,
    };
    let index = Index::open_in_dir(dir).map_err(err)?;
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .map_err(err)?;
    Ok(Partition {
        name: name.to_owned(),
        dir: dir.to_owned(),
        index,
        reader,
        meta: PartitionMeta::default(),
    })
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |rd| {
        rd.filter_map(Result::ok)
            .filter_map(|e| e.metadata().ok())
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.len())
            .sum()
    })
}

fn to_doc(f: &Fields, seq: u64, origin: u64, line: Entry) -> TantivyDocument {
    let mut doc = TantivyDocument::default();
    doc.add_u64(f.seq, seq);
    doc.add_i64(f.time, line.time_nano);
    doc.add_u64(f.origin, origin);
    doc.add_text(f.raw, &line.raw);
    if let Some(level) = &line.level {
        doc.add_text(f.level, level);
    }
    let stored = serde_json::to_string(&StoredRef {
        seq,
        time: line.time_nano,
        origin,
        id: &line.id,
        message: &line.message,
        level: line.level.as_deref(),
        fields: (!line.fields.is_empty() && !line.fields_are_raw).then_some(&line.fields),
        fields_in_text: line.fields_are_raw && !line.fields.is_empty(),
        parse_error: line.parse_error,
    })
    .unwrap_or_default();
    doc.add_text(f.line, stored);
    if !line.fields.is_empty() {
        doc.add_field_value(f.parsed, &serde_json::Value::Object(line.fields));
    }
    doc
}
