//! A scan: the image's layers (cached ones from the database, the others read from a `docker
//! save` of it), its packages, and the advisories that apply to their versions.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use capstan_engine::Engine;
use capstan_model::{Finding, ScanReport};
use tracing::info;

use crate::VulnDb;
use crate::db::{DbError, Match};
use crate::layers::{LayerFiles, SavedError, index_saved, read_saved_layer, stack};
use crate::osv::Range;
use crate::packages::{Manager, Package, ecosystem, parse_apk, parse_dpkg};
use crate::version::{compare_apk, compare_deb};

/// Why a scan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no image {0:?} on the engine (pull it first)")]
    NoImage(String),
    #[error(transparent)]
    Engine(#[from] capstan_engine::Error),
    /// The vulnerability database failed.
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    /// The saved image cannot be read.
    #[error(transparent)]
    Saved(#[from] crate::layers::SavedError),
    /// The scratch directory cannot be written.
    #[error("cannot write under {}: {source}", dir.display())]
    Scratch {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The image's layers hold more package records than any image does.
    #[error(
        "the layers of {image} hold over {mib} MiB of package records; not scanned",
        mib = crate::layers::MAX_IMAGE_BYTES >> 20
    )]
    TooLarge { image: String },
    /// A blocking task of the scan did not finish.
    #[error("a scan task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Scans images of one engine against one database.
#[derive(Debug, Clone)]
pub struct Scanner {
    engine: Engine,
    db: VulnDb,
    /// Where saved images are written while their layers are read (then removed).
    tmp: PathBuf,
    /// One image saved at a time.
    saving: Arc<tokio::sync::Semaphore>,
}

static SAVES: AtomicU64 = AtomicU64::new(0);

impl Scanner {
    /// A scanner whose saved images go under `tmp` (what an interrupted scan left there is
    /// removed now).
    pub fn new(engine: Engine, db: VulnDb, tmp: PathBuf) -> Self {
        clear_scratch(&tmp);
        Self {
            engine,
            db,
            tmp,
            saving: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }

    pub fn db(&self) -> &VulnDb {
        &self.db
    }

    /// Scans `image` (a reference or an id). With `refresh`, cached layers are read again.
    ///
    /// # Errors
    /// [`Error::NoImage`], the engine's, or the database's.
    pub async fn scan(&self, image: &str, refresh: bool) -> Result<ScanReport, Error> {
        let (id, diff_ids) = self
            .engine
            .image_layers(image)
            .await?
            .ok_or_else(|| Error::NoImage(image.to_owned()))?;
        let mut layers: Vec<Option<LayerFiles>> = Vec::with_capacity(diff_ids.len());
        for d in &diff_ids {
            let cached = if refresh {
                None
            } else {
                let (db, d) = (self.db.clone(), d.clone());
                blocking(move || db.layer(&d)).await?
            };
            layers.push(cached);
        }
        let missing = layers.iter().filter(|l| l.is_none()).count();
        if missing > 0 {
            let read = self.read_layers(&id, &diff_ids, &layers).await?;
            for (slot, files) in layers.iter_mut().zip(read) {
                if slot.is_none() {
                    *slot = files;
                }
            }
        }
        let layers: Vec<LayerFiles> = layers.into_iter().map(Option::unwrap_or_default).collect();
        if layers.iter().map(LayerFiles::bytes).sum::<u64>() > crate::layers::MAX_IMAGE_BYTES {
            return Err(Error::TooLarge {
                image: image.to_owned(),
            });
        }
        let db = self.db.clone();
        let image_name = image.to_owned();
        let layer_count = diff_ids.len();
        blocking(move || {
            let fs = stack(&layers);
            let os = fs
                .get("etc/os-release")
                .or_else(|| fs.get("usr/lib/os-release"))
                .and_then(|t| ecosystem(t));
            let mut packages = Vec::new();
            for (path, text) in &fs {
                if path == "var/lib/dpkg/status" || path.starts_with("var/lib/dpkg/status.d/") {
                    packages.extend(parse_dpkg(text));
                } else if path == "lib/apk/db/installed" {
                    packages.extend(parse_apk(text));
                }
            }
            let ecosystems: Vec<String> = os
                .iter()
                .flat_map(|e| {
                    let family = e.split(':').next().unwrap_or_default().to_owned();
                    [e.clone(), family]
                })
                .collect();
            let findings = findings(&db, &ecosystems, &packages)?;
            Ok::<_, DbError>(ScanReport {
                image: image_name,
                id,
                os,
                packages: packages.len(),
                findings,
                layers: layer_count,
                layers_read: missing,
                advisories: db.count_for(&ecosystems)?,
                scanned_at: chrono::Utc::now(),
            })
        })
        .await
    }

    /// Saves the image to a file and reads the layers not cached, caching them.
    async fn read_layers(
        &self,
        id: &str,
        diff_ids: &[String],
        have: &[Option<LayerFiles>],
    ) -> Result<Vec<Option<LayerFiles>>, Error> {
        let io = |source: std::io::Error| Error::Scratch {
            dir: self.tmp.clone(),
            source,
        };
        // one image saved at a time, however many scans are asked for
        let _saving = self
            .saving
            .acquire()
            .await
            .map_err(|_| io(std::io::Error::other("the scanner is shutting down")))?;
        tokio::fs::create_dir_all(&self.tmp).await.map_err(io)?;
        let path = self.tmp.join(format!(
            "{SAVE_PREFIX}{}-{}.tar",
            std::process::id(),
            SAVES.fetch_add(1, AtomicOrdering::Relaxed)
        ));
        // removed however the scan ends, a cancelled request's too
        let _scratch = Scratch(path.clone());
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .await
            .map_err(io)?;
        let saved = self.engine.save_to(id, file).await;
        let result = match saved {
            Err(e) => Err(e.into()),
            Ok(()) => {
                let (db, path2) = (self.db.clone(), path.clone());
                let wanted: Vec<(usize, String)> = diff_ids
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| have[*i].is_none())
                    .map(|(i, d)| (i, d.clone()))
                    .collect();
                let total = diff_ids.len();
                blocking(move || {
                    let index = index_saved(&path2)?;
                    let mut out = vec![None; total];
                    for (i, d) in wanted {
                        let place = *index
                            .get(&d)
                            .ok_or_else(|| SavedError::Missing(format!("layer {d}")))?;
                        let files = read_saved_layer(&path2, place)?;
                        db.keep_layer(&d, &files)?;
                        out[i] = Some(files);
                    }
                    Ok::<_, Error>(out)
                })
                .await
            }
        };
        if result.is_ok() {
            info!(image = %id, layers = diff_ids.len(), "image layers read for scanning");
        }
        result
    }
}

/// How saved images are named in the scratch directory.
const SAVE_PREFIX: &str = "save-";

/// A saved image's file, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Removes the saved images a scan left in `dir` when capstan stopped in the middle of it.
fn clear_scratch(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(SAVE_PREFIX) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

async fn blocking<T: Send + 'static, E: Into<Error> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f).await?.map_err(Into::into)
}

/// Whether `version` lies in `range` under `cmp`.
fn in_range(version: &str, range: &Range, cmp: fn(&str, &str) -> Ordering) -> bool {
    range
        .introduced
        .as_deref()
        .is_none_or(|i| cmp(version, i) != Ordering::Less)
        && range
            .fixed
            .as_deref()
            .is_none_or(|f| cmp(version, f) == Ordering::Less)
        && range
            .last_affected
            .as_deref()
            .is_none_or(|l| cmp(version, l) != Ordering::Greater)
}

fn findings(
    db: &VulnDb,
    ecosystems: &[String],
    packages: &[Package],
) -> Result<Vec<Finding>, DbError> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    if ecosystems.is_empty() {
        return Ok(out);
    }
    for p in packages {
        let names: Vec<&str> = if p.source == p.name {
            vec![p.name.as_str()]
        } else {
            vec![p.source.as_str(), p.name.as_str()]
        };
        let cmp: fn(&str, &str) -> Ordering = match p.manager {
            Manager::Dpkg => compare_deb,
            Manager::Apk => compare_apk,
        };
        for Match {
            id,
            summary,
            aliases,
            severity,
            affected,
        } in db.matches(ecosystems, &names)?
        {
            // an advisory keyed by the source package speaks of the source's version
            let version = if affected.package == p.source {
                &p.source_version
            } else {
                &p.version
            };
            let listed = affected
                .versions
                .iter()
                .any(|v| cmp(v, version) == Ordering::Equal);
            let range = affected.ranges.iter().find(|r| in_range(version, r, cmp));
            if !listed && range.is_none() {
                continue;
            }
            if !seen.insert((id.clone(), p.name.clone())) {
                continue;
            }
            out.push(Finding {
                package: p.name.clone(),
                source: affected.package.clone(),
                installed: p.version.clone(),
                fixed: range.and_then(|r| r.fixed.clone()),
                advisory: id,
                aliases,
                severity: affected.severity.unwrap_or(severity),
                summary,
            });
        }
    }
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.package.cmp(&b.package))
            .then_with(|| a.advisory.cmp(&b.advisory))
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_an_interrupted_scan_left_is_cleared_and_a_dropped_scratch_goes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("save-1-0.tar"), b"half an image").unwrap();
        std::fs::write(dir.path().join("keep.txt"), b"not ours").unwrap();
        clear_scratch(dir.path());
        assert!(!dir.path().join("save-1-0.tar").exists());
        assert!(dir.path().join("keep.txt").exists());
        let path = dir.path().join("save-2-0.tar");
        std::fs::write(&path, b"x").unwrap();
        drop(Scratch(path.clone()));
        assert!(!path.exists());
    }

    #[test]
    fn ranges_decide_with_the_managers_order() {
        let r = Range {
            introduced: None,
            fixed: Some("3.0.13-1~deb12u1".into()),
            last_affected: None,
        };
        assert!(in_range("3.0.11-1~deb12u2", &r, compare_deb));
        assert!(!in_range("3.0.13-1~deb12u1", &r, compare_deb));
        assert!(!in_range("3.0.13-1", &r, compare_deb));
        let r = Range {
            introduced: Some("1.2".into()),
            fixed: None,
            last_affected: Some("1.4_p1".into()),
        };
        assert!(!in_range("1.1-r3", &r, compare_apk));
        assert!(in_range("1.4_p1-r0", &r, compare_apk));
        assert!(in_range("1.4-r9", &r, compare_apk));
        assert!(!in_range("1.4_p2", &r, compare_apk));
    }
}
