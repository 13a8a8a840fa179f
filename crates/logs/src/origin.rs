//! Where lines come from: host, container, image, Compose and capstan labels, the allowed
//! labels and the stream. A container writes millions of lines from the same few origins, so
//! the store keeps each origin once (`origins.jsonl`, append-only) and each line carries only
//! its origin's number; a query on `service:api` becomes a query on the numbers of the origins
//! whose service is `api`.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use capstan_model::LogLine;
use serde::{Deserialize, Serialize};

/// The fields a query can match on an origin (besides `label.NAME`).
pub const ORIGIN_FIELDS: [&str; 10] = [
    "stream",
    "container_id",
    "container",
    "image",
    "image_id",
    "app",
    "service",
    "project",
    "host",
    "replica",
];

/// Where a line comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Origin {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub app: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub project: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `stdout` or `stderr`.
    pub stream: String,
}

impl Origin {
    /// The origin of `line`.
    pub fn of(line: &LogLine) -> Self {
        Self {
            host: line.host.clone(),
            container_id: line.container_id.clone(),
            container: line.container.clone(),
            image: line.image.clone(),
            image_id: line.image_id.clone(),
            app: line.app.clone(),
            service: line.service.clone(),
            replica: line.replica,
            project: line.project.clone(),
            labels: line.labels.clone(),
            stream: line.stream.clone(),
        }
    }

    /// The same origin for another stream.
    #[must_use]
    pub fn with_stream(&self, stream: &str) -> Self {
        Self {
            stream: stream.to_owned(),
            ..self.clone()
        }
    }

    /// Writes the origin's fields onto `line`.
    pub fn stamp(&self, line: &mut LogLine) {
        line.host.clone_from(&self.host);
        line.container_id.clone_from(&self.container_id);
        line.container.clone_from(&self.container);
        line.image.clone_from(&self.image);
        line.image_id.clone_from(&self.image_id);
        line.app.clone_from(&self.app);
        line.service.clone_from(&self.service);
        line.replica = self.replica;
        line.project.clone_from(&self.project);
        line.labels.clone_from(&self.labels);
        line.stream.clone_from(&self.stream);
    }

    /// The value a query field names (one of [`ORIGIN_FIELDS`] or `label.NAME`); `None` when
    /// the name is not an origin field.
    pub fn field(&self, name: &str) -> Option<String> {
        let v = match name {
            "stream" => &self.stream,
            "container_id" => &self.container_id,
            "container" => &self.container,
            "image" => &self.image,
            "image_id" => &self.image_id,
            "app" => &self.app,
            "service" => &self.service,
            "project" => &self.project,
            "host" => &self.host,
            "replica" => return Some(self.replica.map(|r| r.to_string()).unwrap_or_default()),
            _ => {
                let label = name.strip_prefix("label.")?;
                return Some(self.labels.get(label).cloned().unwrap_or_default());
            }
        };
        Some(v.clone())
    }

    /// Whether `name` is a field of origins.
    pub fn is_field(name: &str) -> bool {
        ORIGIN_FIELDS.contains(&name) || name.starts_with("label.")
    }
}

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
