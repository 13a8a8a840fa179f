//! The store on disk: its layout's version, the partitions' directories (opened, measured,
//! dropped by retention) and the origins no kept line names any more.

use std::path::{Path, PathBuf};

use tantivy::{Index, ReloadPolicy};

use super::{Error, Inner, Partition, PartitionMeta, Store};

/// The version of the store's layout, in `<dir>/FORMAT`. A store of an older layout (no
/// such file) is moved aside whole into `<dir>/format-1/`.
const FORMAT: &str = "2";

impl Store {
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
}

/// Moves a store of an older layout aside (into `format-1/`, where it stays on disk) and
/// marks `dir` with the current one.
pub(super) fn upgrade_layout(dir: &Path) -> std::io::Result<()> {
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

/// Decompressed doc-store blocks (64 KiB, some 500 lines each) each segment keeps: pages of
/// lines read their blocks in order, so a few suffice, and tantivy's default (100) let an
/// export of 300,000 lines grow the daemon by some 30 MiB of cached blocks.
const DOC_BLOCKS_CACHED: usize = 4;

pub(super) fn open_partition(dir: &Path, name: &str) -> Result<Partition, Error> {
    let err = |source| Error::Tantivy {
        dir: dir.display().to_string(),
        source,
    };
    let index = Index::open_in_dir(dir).map_err(err)?;
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .doc_store_cache_num_blocks(DOC_BLOCKS_CACHED)
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

pub(super) fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |rd| {
        rd.filter_map(Result::ok)
            .filter_map(|e| e.metadata().ok())
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.len())
            .sum()
    })
}
