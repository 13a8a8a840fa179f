//! Recent history, embedded: every sweep's samples at full resolution for an hour, and per
//! minute (average and maximum) for a week, in one SQLite file (`<data>/metrics.db`) so that a
//! restart keeps them.
//!
//! A sweep is one row (its time and a blob of `(series id, value)` pairs), not one row per
//! sample: 100 containers at 1 s cost one insert a second. Series (a name and its labels) are
//! numbered once, in their own table.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use capstan_model::Sample;
use capstan_store::Db;
use rusqlite::{Connection, OptionalExtension as _, Transaction, params};

/// Full resolution is kept this long, for queries.
pub const RAW_KEEP: Duration = Duration::from_hours(1);
/// Full-resolution rows stay this much longer than [`RAW_KEEP`], so that a range that starts
/// "an hour ago" (measured a moment before the query reads) finds its first points, its
/// range windows' and its lookback's.
pub const RAW_SLACK: Duration = Duration::from_mins(5);
/// Minute averages and maxima are kept this long.
pub const MINUTE_KEEP: Duration = Duration::from_hours(24 * 7);

const MINUTE_MS: i64 = 60_000;

/// The history's schema, opened and migrated as every capstan database is
/// ([`capstan_store::migrations::open`]). Files of the first release, versioned in a `meta`
/// row instead, take the first entry as a no-op.
const MIGRATIONS: &[&str] = &[
    // 1: series and the two resolutions
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
     CREATE TABLE IF NOT EXISTS series (
         id INTEGER PRIMARY KEY, name TEXT NOT NULL, labels TEXT NOT NULL,
         last_seen INTEGER NOT NULL, UNIQUE (name, labels));
     CREATE TABLE IF NOT EXISTS raw (t INTEGER PRIMARY KEY, data BLOB NOT NULL);
     CREATE TABLE IF NOT EXISTS minute (t INTEGER PRIMARY KEY, data BLOB NOT NULL);",
    // 2: how far each fleet host's sweeps are kept here (the time of its last one, unix ms)
    "CREATE TABLE remote_cursors (key TEXT PRIMARY KEY, t INTEGER NOT NULL);",
];

/// Why the history could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("metrics history {path}: {source}; move the file away to start a new history")]
    Db {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("metrics history: {0}; upgrade capstan or move the file away")]
    Open(#[from] capstan_store::Error),
}

/// A numbered series: its name and labels (sorted by name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeriesKey {
    pub name: String,
    pub labels: Vec<(String, String)>,
}

/// One series' points in a range, oldest first: `(unix ms, value)`.
#[derive(Debug, Clone)]
pub struct Points {
    pub key: SeriesKey,
    pub points: Vec<(i64, f64)>,
}

/// Which table a read uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Every sweep.
    Raw,
    /// Per minute: the average, or for counters the maximum (their last value).
    Minute,
}

/// What the file says, kept in memory: series numbers, and how far roll-up and pruning got.
struct Cache {
    ids: HashMap<SeriesKey, u32>,
    keys: HashMap<u32, SeriesKey>,
    /// Start of the newest minute already rolled up.
    rolled: i64,
    /// When old rows were last dropped.
    pruned: i64,
}

/// The history file, shared by the collector (writes) and the API (reads).
pub struct History {
    db: Db,
    /// Taken before the database, always.
    cache: Mutex<Cache>,
    /// Between sweeps, as the collector was configured: how far back an instant looks.
    interval: Duration,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("path", &self.db.path())
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// The series numbers and the roll-up's progress, as the file has them.
    fn load(conn: &Connection) -> Result<Self, rusqlite::Error> {
        let mut ids = HashMap::new();
        let mut keys = HashMap::new();
        let mut stmt = conn.prepare("SELECT id, name, labels FROM series")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (id, name, labels) = row?;
            let key = SeriesKey {
                name,
                labels: serde_json::from_str(&labels).unwrap_or_default(),
            };
            ids.insert(key.clone(), id);
            keys.insert(id, key);
        }
        let rolled = conn.query_row("SELECT COALESCE(MAX(t), 0) FROM minute", [], |r| r.get(0))?;
        Ok(Self {
            ids,
            keys,
            rolled,
            pruned: 0,
        })
    }

    /// One sweep written in `tx`; the cache follows what the transaction wrote (numbers of
    /// series it added, minutes it rolled up).
    fn record(
        &mut self,
        tx: &Transaction<'_>,
        t: i64,
        samples: &[Sample],
    ) -> Result<(), rusqlite::Error> {
        let data = self.encode(tx, t, samples)?;
        merge_raw(tx, t, &data)?;
        self.advance(tx, t, &data)
    }

    /// A sweep's samples as `(series id, value)` pairs, numbering series it has not seen.
    fn encode(
        &mut self,
        tx: &Transaction<'_>,
        t: i64,
        samples: &[Sample],
    ) -> Result<Vec<u8>, rusqlite::Error> {
        let mut data = Vec::with_capacity(samples.len() * 10);
        for s in samples {
            if !s.value.is_finite() {
                continue;
            }
            let key = SeriesKey {
                name: s.name.clone(),
                labels: s.labels.clone(),
            };
            let id = match self.ids.get(&key) {
                Some(id) => *id,
                None => {
                    let labels = serde_json::to_string(&key.labels).unwrap_or_default();
                    tx.execute(
                        "INSERT INTO series (name, labels, last_seen) VALUES (?1, ?2, ?3)
                         ON CONFLICT (name, labels) DO UPDATE SET last_seen = excluded.last_seen",
                        params![key.name, labels, t],
                    )?;
                    let id: u32 = tx.query_row(
                        "SELECT id FROM series WHERE name = ?1 AND labels = ?2",
                        params![key.name, labels],
                        |r| r.get(0),
                    )?;
                    self.ids.insert(key.clone(), id);
                    self.keys.insert(id, key);
                    id
                }
            };
            put_varint(&mut data, id);
            data.extend_from_slice(&s.value.to_le_bytes());
        }
        Ok(data)
    }

    /// Rolls up the minutes a sweep at `t` completes and drops what is past its keep; `data`'s
    /// series are fresh.
    fn advance(
        &mut self,
        tx: &Transaction<'_>,
        t: i64,
        data: &[u8],
    ) -> Result<(), rusqlite::Error> {
        // every minute before this sweep's is complete
        let current = t - t.rem_euclid(MINUTE_MS);
        if self.rolled < current - MINUTE_MS {
            let first: Option<i64> = tx.query_row(
                "SELECT MIN(t) FROM raw WHERE t >= ?1",
                [self.rolled + MINUTE_MS],
                |r| r.get(0),
            )?;
            if let Some(first) = first {
                let mut minute = first - first.rem_euclid(MINUTE_MS);
                while minute < current {
                    roll_up(tx, minute, &self.keys)?;
                    minute += MINUTE_MS;
                }
            }
            self.rolled = current - MINUTE_MS;
        }
        if t - self.pruned >= MINUTE_MS {
            tx.execute(
                "DELETE FROM raw WHERE t < ?1",
                [t - (RAW_KEEP + RAW_SLACK).as_millis() as i64],
            )?;
            tx.execute(
                "DELETE FROM minute WHERE t < ?1",
                [t - MINUTE_KEEP.as_millis() as i64],
            )?;
            // series seen this sweep are fresh; the others age out with the minute table
            let seen: Vec<u32> = {
                let mut ids = Vec::new();
                let mut rest = data;
                while let Some((id, tail)) = get_varint(rest) {
                    ids.push(id);
                    rest = tail.get(8..).unwrap_or_default();
                }
                ids
            };
            {
                let mut stmt =
                    tx.prepare_cached("UPDATE series SET last_seen = ?1 WHERE id = ?2")?;
                for id in seen {
                    stmt.execute(params![t, id])?;
                }
            }
            let cutoff = t - MINUTE_KEEP.as_millis() as i64;
            let gone: Vec<u32> = {
                let mut stmt = tx.prepare("SELECT id FROM series WHERE last_seen < ?1")?;
                stmt.query_map([cutoff], |r| r.get(0))?
                    .collect::<Result<_, _>>()?
            };
            tx.execute("DELETE FROM series WHERE last_seen < ?1", [cutoff])?;
            for id in gone {
                if let Some(key) = self.keys.remove(&id) {
                    self.ids.remove(&key);
                }
            }
            self.pruned = t;
        }
        Ok(())
    }
}

impl History {
    /// Opens (or creates) the history at `path`; `interval` is the collector's.
    pub fn open(path: &Path, interval: Duration) -> Result<Self, Error> {
        let db = Db::open(path, MIGRATIONS)?;
        let cache = db.read(Cache::load).map_err(|source| Error::Db {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            db,
            cache: Mutex::new(cache),
            interval,
        })
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        |source| Error::Db {
            path: self.db.path().to_owned(),
            source,
        }
    }

    /// Stores one sweep taken at `t` (unix ms); rolls up the minutes it completes and drops
    /// what is past its keep.
    pub fn record(&self, t: i64, samples: &[Sample]) -> Result<(), Error> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let written = self.db.write(|tx| cache.record(tx, t, samples));
        if written.is_err() {
            // the transaction rolled back: what the cache learnt in it is not in the file
            if let Ok(fresh) = self.db.read(Cache::load) {
                *cache = fresh;
            }
        }
        written.map_err(self.db())
    }

    /// The series `wanted` picks, with their points in `[from, to]` (unix ms) at `resolution`.
    pub fn read(
        &self,
        from: i64,
        to: i64,
        resolution: Resolution,
        wanted: &dyn Fn(&SeriesKey) -> bool,
    ) -> Result<Vec<Points>, Error> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let picked: HashMap<u32, &SeriesKey> = cache
            .keys
            .iter()
            .filter(|(_, k)| wanted(k))
            .map(|(id, k)| (*id, k))
            .collect();
        if picked.is_empty() {
            return Ok(Vec::new());
        }
        let sql = match resolution {
            Resolution::Raw => "SELECT t, data FROM raw WHERE t BETWEEN ?1 AND ?2 ORDER BY t",
            Resolution::Minute => "SELECT t, data FROM minute WHERE t BETWEEN ?1 AND ?2 ORDER BY t",
        };
        let out = self
            .db
            .read(|conn| points(conn, sql, from, to, resolution, &picked))
            .map_err(self.db())?;
        Ok(out
            .into_iter()
            .filter_map(|(id, points)| {
                Some(Points {
                    key: (*picked.get(&id)?).clone(),
                    points,
                })
            })
            .collect())
    }

    /// Keeps the sweeps fleet host `host` (key `key`) sent, oldest first, each sample labelled
    /// `host`, in the transaction that moves its cursor: sweeps at or before the cursor (sent
    /// again after an answer was lost) are skipped. A sweep of a minute already rolled up rolls
    /// it up again. Returns the cursor (the time of its last sweep kept, unix ms).
    ///
    /// # Errors
    /// The file cannot be written; nothing of the batch is kept then.
    pub fn record_remote(
        &self,
        key: &str,
        host: &str,
        sweeps: &[(i64, Vec<Sample>)],
    ) -> Result<i64, Error> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let written = self.db.write(|tx| {
            let mut at: i64 = tx
                .query_row("SELECT t FROM remote_cursors WHERE key = ?1", [key], |r| {
                    r.get(0)
                })
                .optional()?
                .unwrap_or(0);
            let from = at;
            let mut seen = Vec::new();
            for (t, samples) in sweeps.iter().filter(|(t, _)| *t > from) {
                let labelled: Vec<Sample> = samples
                    .iter()
                    .map(|s| {
                        let mut labels: Vec<(String, String)> = s
                            .labels
                            .iter()
                            .filter(|(k, _)| k != "host")
                            .cloned()
                            .collect();
                        labels.push(("host".to_owned(), host.to_owned()));
                        labels.sort();
                        Sample {
                            name: s.name.clone(),
                            labels,
                            value: s.value,
                        }
                    })
                    .collect();
                let data = cache.encode(tx, *t, &labelled)?;
                merge_raw(tx, *t, &data)?;
                let minute = t - t.rem_euclid(MINUTE_MS);
                if minute <= cache.rolled {
                    roll_up(tx, minute, &cache.keys)?;
                }
                seen.extend_from_slice(&data);
                at = at.max(*t);
            }
            if !seen.is_empty() {
                cache.advance(tx, at, &seen)?;
            }
            tx.execute(
                "INSERT INTO remote_cursors (key, t) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET t = excluded.t",
                params![key, at],
            )?;
            Ok(at)
        });
        if written.is_err()
            && let Ok(fresh) = self.db.read(Cache::load)
        {
            *cache = fresh;
        }
        written.map_err(self.db())
    }

    /// How far fleet host `key`'s sweeps are kept (unix ms; 0: none yet).
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn remote_cursor(&self, key: &str) -> Result<i64, Error> {
        self.db
            .read(|conn| {
                conn.query_row("SELECT t FROM remote_cursors WHERE key = ?1", [key], |r| {
                    r.get(0)
                })
                .optional()
            })
            .map(Option::unwrap_or_default)
            .map_err(self.db())
    }

    /// This capstan's own sweeps after `t` (unix ms), oldest first, at most `limit`: what a
    /// fleet host ships to its hub next.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn sweeps_after(&self, t: i64, limit: usize) -> Result<Vec<(i64, Vec<Sample>)>, Error> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        self.db
            .read(|conn| {
                let mut stmt = conn
                    .prepare_cached("SELECT t, data FROM raw WHERE t > ?1 ORDER BY t LIMIT ?2")?;
                let mut rows = stmt.query(params![t, limit as i64])?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    let t: i64 = row.get(0)?;
                    let data = row.get_ref(1)?.as_blob().unwrap_or_default();
                    let mut samples = Vec::new();
                    let mut rest = data;
                    while let Some((id, tail)) = get_varint(rest) {
                        // (a hub's fleet hosts' samples, labelled `host`, are theirs)
                        if let (Some(key), Some(value)) = (cache.keys.get(&id), f64_at(tail, 0))
                            && !key.labels.iter().any(|(k, _)| k == "host")
                        {
                            samples.push(Sample {
                                name: key.name.clone(),
                                labels: key.labels.clone(),
                                value,
                            });
                        }
                        rest = tail.get(8..).unwrap_or_default();
                    }
                    out.push((t, samples));
                }
                Ok(out)
            })
            .map_err(self.db())
    }

    /// The oldest sweep still at full resolution (unix ms).
    pub fn raw_since(&self) -> Result<Option<i64>, Error> {
        self.db
            .read(|conn| conn.query_row("SELECT MIN(t) FROM raw", [], |r| r.get(0)))
            .map_err(self.db())
    }

    /// Between sweeps.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

/// The points of the `picked` series that `sql` reads from one table in `[from, to]`.
fn points(
    conn: &Connection,
    sql: &str,
    from: i64,
    to: i64,
    resolution: Resolution,
    picked: &HashMap<u32, &SeriesKey>,
) -> Result<HashMap<u32, Vec<(i64, f64)>>, rusqlite::Error> {
    let mut out: HashMap<u32, Vec<(i64, f64)>> = HashMap::new();
    {
        let mut stmt = conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params![from, to])?;
        while let Some(row) = rows.next()? {
            let t: i64 = row.get(0)?;
            let data = row.get_ref(1)?.as_blob().unwrap_or_default();
            let mut rest = data;
            while let Some((id, tail)) = get_varint(rest) {
                let (value, tail) = match resolution {
                    Resolution::Raw => (f64_at(tail, 0), tail.get(8..)),
                    Resolution::Minute => {
                        // (avg, max): counters take their max, their last value
                        let counter = picked.get(&id).is_some_and(|k| is_counter(&k.name));
                        (f64_at(tail, if counter { 8 } else { 0 }), tail.get(16..))
                    }
                };
                if picked.contains_key(&id)
                    && let Some(v) = value
                {
                    out.entry(id).or_default().push((t, v));
                }
                rest = tail.unwrap_or_default();
            }
        }
    }
    Ok(out)
}

/// Adds `data` to the sweep row at `t`: a fleet host's sweep and this capstan's may fall on
/// the same millisecond, and neither replaces the other.
fn merge_raw(tx: &Transaction<'_>, t: i64, data: &[u8]) -> Result<(), rusqlite::Error> {
    let mut row: Vec<u8> = tx
        .query_row("SELECT data FROM raw WHERE t = ?1", [t], |r| r.get(0))
        .optional()?
        .unwrap_or_default();
    row.extend_from_slice(data);
    tx.execute(
        "INSERT OR REPLACE INTO raw (t, data) VALUES (?1, ?2)",
        params![t, row],
    )?;
    Ok(())
}

/// A counter's name, by Prometheus' convention.
pub fn is_counter(name: &str) -> bool {
    name.ends_with("_total")
}

/// Writes the minute starting at `minute` as `(id, avg, max)` per series, from its sweeps.
fn roll_up(
    tx: &rusqlite::Transaction<'_>,
    minute: i64,
    keys: &HashMap<u32, SeriesKey>,
) -> Result<(), rusqlite::Error> {
    let mut acc: HashMap<u32, (f64, f64, u32)> = HashMap::new();
    {
        let mut stmt = tx.prepare_cached("SELECT data FROM raw WHERE t >= ?1 AND t < ?2")?;
        let mut rows = stmt.query([minute, minute + MINUTE_MS])?;
        while let Some(row) = rows.next()? {
            let data = row.get_ref(0)?.as_blob().unwrap_or_default();
            let mut rest = data;
            while let Some((id, tail)) = get_varint(rest) {
                if let Some(v) = f64_at(tail, 0) {
                    let e = acc.entry(id).or_insert((0.0, f64::MIN, 0));
                    e.0 += v;
                    e.1 = e.1.max(v);
                    e.2 += 1;
                }
                rest = tail.get(8..).unwrap_or_default();
            }
        }
    }
    if acc.is_empty() {
        return Ok(());
    }
    let mut ids: Vec<&u32> = acc.keys().filter(|id| keys.contains_key(id)).collect();
    ids.sort();
    let mut data = Vec::with_capacity(ids.len() * 18);
    for id in ids {
        let (sum, max, n) = acc[id];
        put_varint(&mut data, *id);
        data.extend_from_slice(&(sum / f64::from(n)).to_le_bytes());
        data.extend_from_slice(&max.to_le_bytes());
    }
    tx.execute(
        "INSERT OR REPLACE INTO minute (t, data) VALUES (?1, ?2)",
        params![minute, data],
    )?;
    Ok(())
}

fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(data: &[u8]) -> Option<(u32, &[u8])> {
    let mut v: u32 = 0;
    for (i, b) in data.iter().enumerate().take(5) {
        v |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, &data[i + 1..]));
        }
    }
    None
}

fn f64_at(data: &[u8], at: usize) -> Option<f64> {
    let bytes: [u8; 8] = data.get(at..at + 8)?.try_into().ok()?;
    Some(f64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, c: &str, v: f64) -> Sample {
        Sample {
            name: name.into(),
            labels: vec![("name".into(), c.into())],
            value: v,
        }
    }

    #[test]
    fn sweeps_survive_reopening_and_roll_up_per_minute() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.db");
        let t0 = 1_800_000_000_000_i64 - 1_800_000_000_000_i64.rem_euclid(MINUTE_MS);
        {
            let h = History::open(&path, Duration::from_secs(10)).unwrap();
            for i in 0..12 {
                let t = t0 + i * 10_000;
                h.record(
                    t,
                    &[
                        sample("mem", "a", (i % 6) as f64),
                        sample("cpu_total", "a", i as f64),
                    ],
                )
                .unwrap();
            }
        }
        let h = History::open(&path, Duration::from_secs(10)).unwrap();
        // the next sweep completes the second minute
        h.record(t0 + 120_000, &[sample("mem", "a", 0.0)]).unwrap();
        let all = |_: &SeriesKey| true;
        let raw = h.read(t0, t0 + 200_000, Resolution::Raw, &all).unwrap();
        let mem = raw.iter().find(|p| p.key.name == "mem").unwrap();
        assert_eq!(mem.points.len(), 13);
        let minutes = h.read(t0, t0 + 200_000, Resolution::Minute, &all).unwrap();
        let mem = minutes.iter().find(|p| p.key.name == "mem").unwrap();
        assert_eq!(mem.points, vec![(t0, 2.5), (t0 + MINUTE_MS, 2.5)]);
        let cpu = minutes.iter().find(|p| p.key.name == "cpu_total").unwrap();
        assert_eq!(
            cpu.points,
            vec![(t0, 5.0), (t0 + MINUTE_MS, 11.0)],
            "a counter's minute is its last value"
        );
    }

    /// A fleet host's sweeps are kept with its `host` label once (a batch sent again is
    /// skipped), beside this capstan's own sweep of the same millisecond; one of a minute
    /// already rolled up rolls it up again; the host reads back only what it swept itself.
    #[test]
    fn a_hosts_sweeps_are_kept_once_labelled_beside_the_hubs_own() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(&dir.path().join("metrics.db"), Duration::from_secs(10)).unwrap();
        let t0 = 1_800_000_000_000_i64 - 1_800_000_000_000_i64.rem_euclid(MINUTE_MS);
        h.record(t0, &[sample("mem", "hub", 1.0)]).unwrap();
        // the hub's next minute rolls up the first
        h.record(t0 + MINUTE_MS, &[sample("mem", "hub", 1.0)])
            .unwrap();
        let sweeps = vec![
            (t0, vec![sample("mem", "web", 4.0)]),
            (t0 + 30_000, vec![sample("mem", "web", 8.0)]),
        ];
        assert_eq!(
            h.record_remote("sha256:h1", "h1", &sweeps).unwrap(),
            t0 + 30_000
        );
        assert_eq!(
            h.record_remote("sha256:h1", "h1", &sweeps).unwrap(),
            t0 + 30_000
        );
        assert_eq!(h.remote_cursor("sha256:h1").unwrap(), t0 + 30_000);
        let all = |_: &SeriesKey| true;
        let raw = h.read(t0, t0 + 200_000, Resolution::Raw, &all).unwrap();
        let web = raw
            .iter()
            .find(|p| p.key.labels.contains(&("name".into(), "web".into())))
            .unwrap();
        assert!(
            web.key.labels.contains(&("host".into(), "h1".into())),
            "{:?}",
            web.key
        );
        assert_eq!(web.points, vec![(t0, 4.0), (t0 + 30_000, 8.0)], "once each");
        let hub = raw
            .iter()
            .find(|p| p.key.labels.contains(&("name".into(), "hub".into())))
            .unwrap();
        assert_eq!(
            hub.points.len(),
            2,
            "the hub's sweep at the same time stays"
        );
        let minutes = h.read(t0, t0, Resolution::Minute, &all).unwrap();
        let web = minutes
            .iter()
            .find(|p| p.key.labels.contains(&("name".into(), "web".into())))
            .unwrap();
        assert_eq!(web.points, vec![(t0, 6.0)], "the rolled-up minute again");
        // a host's own sweeps, for shipping: the hub's here (no remote ones exist on a host)
        let own = h.sweeps_after(0, 10).unwrap();
        assert_eq!(own.first().map(|(t, _)| *t), Some(t0));
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.db");
        drop(History::open(&path, Duration::from_secs(5)).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = History::open(&path, Duration::from_secs(5)).unwrap_err();
        assert!(err.to_string().contains("newer capstan"), "{err}");
    }

    #[test]
    fn varints_round_trip() {
        for v in [0, 1, 127, 128, 300, 70_000, u32::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(get_varint(&buf), Some((v, &[][..])));
        }
    }
}
