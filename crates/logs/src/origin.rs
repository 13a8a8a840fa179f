//! Where lines come from: host, container, image, Compose and capstan labels, the allowed
//! labels and the stream. A container writes millions of lines from the same few origins, so
//! the store keeps each origin once (`origins.jsonl`, append-only) and each line carries only
//! its origin's number; a query on `service:api` becomes a query on the numbers of the origins
//! whose service is `api`.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use capstan_model::{ORIGIN_FIELDS, Origin};

#[derive(Serialize, Deserialize)]
struct Record {
    id: u64,
    #[serde(flatten)]
    origin: Origin,
}

/// Every origin the store has seen, by number, kept in an append-only file: an origin is
/// written (and synced) before the first line that names it is added, so a committed line
/// always finds its origin.
#[derive(Debug)]
pub(crate) struct Origins {
    path: PathBuf,
    by_origin: HashMap<Arc<Origin>, u64>,
    by_id: HashMap<u64, Arc<Origin>>,
    next: u64,
}

impl Origins {
    /// Reads `path` (a missing file is an empty table). A last record torn by a crash is cut
    /// off, so appends go on after whole records.
    pub(crate) fn open(path: &Path) -> std::io::Result<Self> {
        let mut table = Self {
            path: path.to_owned(),
            by_origin: HashMap::new(),
            by_id: HashMap::new(),
            next: 1,
        };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(table),
            Err(e) => return Err(e),
        };
        let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        for line in bytes[..whole].lines() {
            let line = line?;
            if let Ok(r) = serde_json::from_str::<Record>(&line) {
                table.insert(r.id, Arc::new(r.origin));
            }
        }
        if whole < bytes.len() {
            let file = std::fs::OpenOptions::new().write(true).open(path)?;
            file.set_len(whole as u64)?;
            file.sync_data()?;
        }
        Ok(table)
    }

    fn insert(&mut self, id: u64, origin: Arc<Origin>) {
        self.next = self.next.max(id + 1);
        self.by_origin.insert(Arc::clone(&origin), id);
        self.by_id.insert(id, origin);
    }

    /// The number of `origin`, written to the file first when it is new.
    pub(crate) fn intern(&mut self, origin: &Arc<Origin>) -> std::io::Result<u64> {
        if let Some(id) = self.by_origin.get(origin) {
            return Ok(*id);
        }
        let id = self.next;
        let mut line = serde_json::to_vec(&Record {
            id,
            origin: (**origin).clone(),
        })
        .map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(&line)?;
        file.sync_data()?;
        self.insert(id, Arc::clone(origin));
        Ok(id)
    }

    /// Keeps only the origins numbered in `used`: the file is written anew beside the old one
    /// and renamed over it, so a crash leaves one or the other whole. Numbers never change.
    pub(crate) fn keep_only(&mut self, used: &HashSet<u64>) -> std::io::Result<()> {
        if self.by_id.keys().all(|id| used.contains(id)) {
            return Ok(());
        }
        let mut kept: Vec<(u64, Arc<Origin>)> = self
            .by_id
            .iter()
            .filter(|(id, _)| used.contains(id))
            .map(|(id, o)| (*id, Arc::clone(o)))
            .collect();
        kept.sort_unstable_by_key(|(id, _)| *id);
        let mut text = Vec::new();
        for (id, origin) in &kept {
            serde_json::to_writer(
                &mut text,
                &Record {
                    id: *id,
                    origin: (**origin).clone(),
                },
            )
            .map_err(std::io::Error::other)?;
            text.push(b'\n');
        }
        capstan_store::files::replace(&self.path, &text)?;
        self.by_id.retain(|id, _| used.contains(id));
        self.by_origin.retain(|_, id| used.contains(id));
        Ok(())
    }

    /// How many origins are known.
    pub(crate) fn count(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn get(&self, id: u64) -> Option<&Arc<Origin>> {
        self.by_id.get(&id)
    }

    /// The numbers of the origins `keep` holds to.
    pub(crate) fn matching(&self, keep: impl Fn(&Origin) -> bool) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .by_id
            .iter()
            .filter(|(_, o)| keep(o))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn origin(container: &str, stream: &str) -> Arc<Origin> {
        Arc::new(Origin {
            container: container.into(),
            service: "api".into(),
            labels: BTreeMap::from([("team".into(), "core".into())]),
            stream: stream.into(),
            ..Origin::default()
        })
    }

    #[test]
    fn origins_are_numbered_once_and_survive_a_torn_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("origins.jsonl");
        let mut t = Origins::open(&path).unwrap();
        let a = t.intern(&origin("a", "stdout")).unwrap();
        let b = t.intern(&origin("a", "stderr")).unwrap();
        assert_eq!((a, b), (1, 2));
        assert_eq!(t.intern(&origin("a", "stdout")).unwrap(), 1);
        // a crash in the middle of the next record
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(br#"{"id":3,"contai"#)
            .unwrap();
        let mut t = Origins::open(&path).unwrap();
        assert_eq!(t.get(2).unwrap().stream, "stderr");
        assert_eq!(t.intern(&origin("b", "stdout")).unwrap(), 3);
        let t = Origins::open(&path).unwrap();
        assert_eq!(t.get(3).unwrap().container, "b");
        assert_eq!(t.matching(|o| o.container == "a"), [1, 2]);
        assert_eq!(
            t.get(1).unwrap().field("label.team").as_deref(),
            Some("core")
        );
        assert_eq!(t.get(1).unwrap().field("raw"), None);
    }
}
