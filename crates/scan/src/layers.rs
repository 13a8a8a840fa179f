//! Reading an image's package databases from its layers: a `docker save` archive is indexed
//! once (where each layer's tar sits), and from each layer only the few files that say what is
//! installed are kept, with the whiteouts that delete them, so that layers can be cached on
//! their own and stacked again.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Files kept whole.
const FILES: [&str; 4] = [
    "var/lib/dpkg/status",
    "lib/apk/db/installed",
    "etc/os-release",
    "usr/lib/os-release",
];
/// Directories whose files are kept (distroless images' per-package dpkg records).
const DIRS: [&str; 1] = ["var/lib/dpkg/status.d/"];
/// A package database larger than this is not a package database.
const MAX_FILE: u64 = 64 << 20;
/// What one layer may hold of wanted files, in all: a layer past it is refused, not read on.
const MAX_LAYER_BYTES: u64 = 64 << 20;
/// How many wanted files one layer may hold (a distroless image has a few dozen records).
const MAX_LAYER_FILES: usize = 10_000;
/// What the layers of one image may hold of wanted files, in all.
pub(crate) const MAX_IMAGE_BYTES: u64 = 256 << 20;

impl LayerFiles {
    /// The bytes of the files it keeps.
    pub(crate) fn bytes(&self) -> u64 {
        self.files
            .values()
            .map(|c| c.as_ref().map_or(0, |t| t.len() as u64))
            .sum()
    }
}

/// What one layer holds of the files that matter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LayerFiles {
    /// Path → content; `None`: the layer deletes the path (a whiteout).
    pub files: BTreeMap<String, Option<String>>,
    /// Directories this layer makes opaque: nothing below them from lower layers stays.
    pub opaque: Vec<String>,
}

fn wanted(path: &str) -> bool {
    FILES.contains(&path)
        || DIRS
            .iter()
            .any(|d| path.starts_with(d) && path.len() > d.len() && !path.ends_with(".md5sums"))
}

/// Whether deleting `path` (a whiteout, an opaque directory) can touch a wanted file.
fn touches(path: &str) -> bool {
    let dir = format!("{}/", path.trim_end_matches('/'));
    wanted(path)
        || FILES.iter().any(|f| f.starts_with(&dir))
        || DIRS.iter().any(|d| d.starts_with(&dir) || *d == dir)
}

/// Keeps the wanted files of one layer's tar.
pub(crate) fn read_layer(reader: impl Read) -> std::io::Result<LayerFiles> {
    let mut out = LayerFiles::default();
    let mut kept_bytes: u64 = 0;
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let path = path
            .trim_start_matches("./")
            .trim_start_matches('/')
            .to_owned();
        let (parent, name) = match path.rsplit_once('/') {
            Some((p, n)) => (format!("{p}/"), n.to_owned()),
            None => (String::new(), path.clone()),
        };
        if name == ".wh..wh..opq" {
            if touches(&parent) {
                out.opaque.push(parent);
            }
        } else if let Some(deleted) = name.strip_prefix(".wh.") {
            let target = format!("{parent}{deleted}");
            if touches(&target) {
                out.files.insert(target, None);
            }
        } else if wanted(&path) && entry.header().entry_type().is_file() && entry.size() <= MAX_FILE
        {
            // a layer stuffed with package records is refused whole, before it fills memory
            kept_bytes += entry.size();
            if kept_bytes > MAX_LAYER_BYTES || out.files.len() >= MAX_LAYER_FILES {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "the layer holds more package records than any image does (over \
                         {MAX_LAYER_FILES} files or {} MiB); not scanned",
                        MAX_LAYER_BYTES >> 20
                    ),
                ));
            }
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes)?;
            out.files
                .insert(path, Some(String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    Ok(out)
}

/// The files as the stacked layers leave them (lowest layer first).
pub(crate) fn stack(layers: &[LayerFiles]) -> BTreeMap<String, String> {
    let mut fs: BTreeMap<String, String> = BTreeMap::new();
    for layer in layers {
        for dir in &layer.opaque {
            fs.retain(|p, _| !p.starts_with(dir.as_str()));
        }
        for (path, content) in &layer.files {
            match content {
                Some(text) => {
                    fs.insert(path.clone(), text.clone());
                }
                None => {
                    let below = format!("{path}/");
                    fs.retain(|p, _| p != path && !p.starts_with(&below));
                }
            }
        }
    }
    fs
}

/// `manifest.json` of a `docker save` archive: one entry per image.
#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}
#[derive(Deserialize)]
struct Config {
    rootfs: RootFs,
}
#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

/// Why a saved image (`docker save`) cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SavedError {
    /// The archive cannot be read.
    #[error("cannot read the saved image {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A part the manifest names is not in the archive.
    #[error("the saved image has no {0}")]
    Missing(String),
    /// Its manifest or config does not parse.
    #[error("the saved image's {what} does not parse: {source}")]
    Parse {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// Its manifest lists no image.
    #[error("the saved image's manifest.json lists no image")]
    Empty,
    /// A layer cannot be read.
    #[error("cannot read a layer of the saved image: {0}")]
    Layer(#[source] std::io::Error),
}

/// Where a `docker save` archive keeps each layer, by diff id (the digest of the layer's
/// uncompressed tar, as the image config lists them).
pub(crate) fn index_saved(path: &Path) -> Result<HashMap<String, (u64, u64)>, SavedError> {
    let io = |source: std::io::Error| SavedError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut at: HashMap<String, (u64, u64)> = HashMap::new();
    let mut archive = tar::Archive::new(file);
    for entry in archive.entries().map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.path().map_err(io)?.to_string_lossy().into_owned();
        at.insert(name, (entry.raw_file_position(), entry.size()));
    }
    let read = |name: &str| -> Result<Vec<u8>, SavedError> {
        let (offset, size) = at
            .get(name)
            .ok_or_else(|| SavedError::Missing(name.to_owned()))?;
        let mut f = std::fs::File::open(path).map_err(io)?;
        f.seek(SeekFrom::Start(*offset)).map_err(io)?;
        let mut bytes = Vec::with_capacity(*size as usize);
        f.take(*size).read_to_end(&mut bytes).map_err(io)?;
        Ok(bytes)
    };
    let manifest: Vec<Entry> =
        serde_json::from_slice(&read("manifest.json")?).map_err(|source| SavedError::Parse {
            what: "manifest.json",
            source,
        })?;
    let entry = manifest.into_iter().next().ok_or(SavedError::Empty)?;
    let config: Config =
        serde_json::from_slice(&read(&entry.config)?).map_err(|source| SavedError::Parse {
            what: "config",
            source,
        })?;
    let mut out = HashMap::new();
    for (diff_id, layer) in config.rootfs.diff_ids.into_iter().zip(entry.layers) {
        let place = *at
            .get(&layer)
            .ok_or_else(|| SavedError::Missing(layer.clone()))?;
        out.insert(diff_id, place);
    }
    Ok(out)
}

/// Reads the layer at `place` of the saved archive at `path`.
pub(crate) fn read_saved_layer(path: &Path, place: (u64, u64)) -> Result<LayerFiles, SavedError> {
    let mut f = std::fs::File::open(path).map_err(SavedError::Layer)?;
    f.seek(SeekFrom::Start(place.0))
        .map_err(SavedError::Layer)?;
    read_layer(f.take(place.1)).map_err(SavedError::Layer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, content) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(content.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, content.as_bytes()).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn layers_keep_package_databases_and_stack_with_whiteouts() {
        let base = read_layer(
            &layer(&[
                ("var/lib/dpkg/status", "Package: a\n"),
                ("var/lib/dpkg/status.d/b", "Package: b\n"),
                ("var/lib/dpkg/status.d/b.md5sums", "x"),
                ("etc/os-release", "ID=debian\n"),
                ("usr/bin/ls", "binary"),
            ])[..],
        )
        .unwrap();
        assert_eq!(base.files.len(), 3, "{base:?}");
        let upper = read_layer(
            &layer(&[
                ("./var/lib/dpkg/status", "Package: a\n\nPackage: c\n"),
                ("var/lib/dpkg/status.d/.wh.b", ""),
                ("etc/.wh.os-release", ""),
                ("usr/bin/.wh.ls", ""),
            ])[..],
        )
        .unwrap();
        assert_eq!(upper.files.len(), 3, "{upper:?}");
        let fs = stack(&[base.clone(), upper]);
        assert_eq!(
            fs.keys().collect::<Vec<_>>(),
            ["var/lib/dpkg/status"],
            "{fs:?}"
        );
        assert_eq!(fs["var/lib/dpkg/status"], "Package: a\n\nPackage: c\n");
        let opaque = read_layer(&layer(&[("var/lib/dpkg/status.d/.wh..wh..opq", "")])[..]).unwrap();
        assert_eq!(opaque.opaque, ["var/lib/dpkg/status.d/"]);
        let fs = stack(&[base, opaque]);
        assert!(!fs.contains_key("var/lib/dpkg/status.d/b"));
        assert!(fs.contains_key("var/lib/dpkg/status"));
    }

    #[test]
    fn a_layer_stuffed_with_package_records_is_refused() {
        let many: Vec<(String, String)> = (0..=MAX_LAYER_FILES)
            .map(|i| {
                (
                    format!("var/lib/dpkg/status.d/p{i}"),
                    "Package: p\n".to_owned(),
                )
            })
            .collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
        let e = read_layer(&layer(&refs)[..]).unwrap_err();
        assert!(e.to_string().contains("more package records"), "{e}");
        // the same just under the count is read
        let fewer = read_layer(&layer(&refs[..100])[..]).unwrap();
        assert_eq!(fewer.files.len(), 100);
        assert!(fewer.bytes() > 0);
    }
}
