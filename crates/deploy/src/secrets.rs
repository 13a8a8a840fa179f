//! Where an app's secrets are kept and where containers read them. At rest, under the data
//! dir, a secret is only sealed (`<apps>/<app>/secrets/<name>.sealed`, see `capstan-vault`);
//! in plain text it exists only on a tmpfs (`<run>/<app>/secrets/<name>`), which a container
//! mounts read-only and which a reboot empties: the next replica made puts it back from the
//! sealed copy.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use capstan_vault::Vault;

/// The vault and the tmpfs directory of one daemon.
#[derive(Debug, Clone)]
pub struct SecretStore {
    pub vault: Arc<Vault>,
    /// A directory on tmpfs, the daemon's alone (mode 0700).
    pub run_dir: PathBuf,
}

/// What a sealed secret is bound to: its app and name.
fn what(app: &str, name: &str) -> String {
    format!("{app}/secrets/{name}")
}

impl SecretStore {
    /// Where the sealed copy of `app`'s secret `name` is kept.
    fn sealed(apps_dir: &Path, app: &str, name: &str) -> PathBuf {
        apps_dir
            .join(app)
            .join("secrets")
            .join(format!("{name}.sealed"))
    }

    /// Where containers read it.
    pub fn mount_path(&self, app: &str, name: &str) -> PathBuf {
        self.run_dir.join(app).join("secrets").join(name)
    }

    /// Keeps `bytes` as `app`'s secret `name`, sealed: as its latest value, and as the version
    /// of its digest (what the ledger records per release), which a rollback reads back. A plain
    /// copy an older capstan left in the data dir goes.
    ///
    /// # Errors
    /// The sealed copies cannot be written.
    pub fn keep(
        &self,
        apps_dir: &Path,
        app: &str,
        name: &str,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        let seal = |what: String| self.vault.seal(&what, bytes).map_err(std::io::Error::other);
        let version = format!("{name}@{}", crate::plan::fnv_hex(bytes));
        capstan_store::files::replace(
            &Self::sealed(apps_dir, app, &version),
            &seal(what(app, &version))?,
        )?;
        capstan_store::files::replace(&Self::sealed(apps_dir, app, name), &seal(what(app, name))?)?;
        let plain = apps_dir.join(app).join("secrets").join(name);
        match std::fs::remove_file(&plain) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Keeps `bytes` sealed as the version of `app`'s secret `name` whose digest is `digest`
    /// (not as its latest value): what a release recorded before secrets were versioned.
    ///
    /// # Errors
    /// The sealed copy cannot be written.
    pub fn keep_version(
        &self,
        apps_dir: &Path,
        app: &str,
        name: &str,
        digest: &str,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        let version = format!("{name}@{digest}");
        let sealed = self
            .vault
            .seal(&what(app, &version), bytes)
            .map_err(std::io::Error::other)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(apps_dir.join(app).join("secrets"))?;
        capstan_store::files::replace(&Self::sealed(apps_dir, app, &version), &sealed)
    }

    /// The version of `app`'s secret `name` whose digest is `digest` (as the ledger recorded
    /// it for a release); `None` when that version was not kept (a release from before
    /// versions were).
    ///
    /// # Errors
    /// The sealed version does not open.
    pub fn read_version(
        &self,
        apps_dir: &Path,
        app: &str,
        name: &str,
        digest: &str,
    ) -> std::io::Result<Option<Vec<u8>>> {
        let version = format!("{name}@{digest}");
        match std::fs::read(Self::sealed(apps_dir, app, &version)) {
            Ok(sealed) => self
                .vault
                .open_sealed(&what(app, &version), &sealed)
                .map(Some)
                .map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `app`'s secret `name` as kept (an older capstan's plain copy is sealed on the way).
    ///
    /// # Errors
    /// Neither a sealed nor a plain copy is there, or the sealed one does not open.
    pub fn read(&self, apps_dir: &Path, app: &str, name: &str) -> std::io::Result<Vec<u8>> {
        match std::fs::read(Self::sealed(apps_dir, app, name)) {
            Ok(sealed) => self
                .vault
                .open_sealed(&what(app, name), &sealed)
                .map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let plain = std::fs::read(apps_dir.join(app).join("secrets").join(name))?;
                self.keep(apps_dir, app, name, &plain)?;
                Ok(plain)
            }
            Err(e) => Err(e),
        }
    }
}

/// Every sealed secret under `apps_dir`, with what it was sealed as: what a key rotation
/// seals again.
///
/// # Errors
/// A directory cannot be read.
pub fn sealed_items(apps_dir: &Path) -> std::io::Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    let apps = match std::fs::read_dir(apps_dir) {
        Ok(apps) => apps,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for app in apps {
        let app = app?;
        let Some(app_name) = app.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        for (path, stem) in capstan_vault::sealed_files(&app.path().join("secrets"))? {
            out.push((path, what(&app_name, &stem)));
        }
    }
    out.sort();
    Ok(out)
}

/// How a config or secret file is written for containers: its mode, and its owner when a
/// reference asks for one.
#[derive(Debug, Clone, Copy)]
pub struct FileMode {
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Replaces `path` with `bytes` as `how` says, in a private directory made when needed.
///
/// # Errors
/// The file cannot be written, owned or renamed.
pub fn place(path: &Path, bytes: &[u8], how: FileMode) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    capstan_store::files::replace_as(path, bytes, how.mode, how.uid, how.gid)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_secret_is_kept_sealed_and_placed_in_plain_only_where_asked() {
        let data = tempfile::tempdir().unwrap();
        let run = tempfile::tempdir().unwrap();
        let store = SecretStore {
            vault: Arc::new(Vault::open(data.path()).unwrap()),
            run_dir: run.path().to_owned(),
        };
        let apps = data.path().join("apps");
        // a plain copy left by an older capstan is sealed when read, and goes
        place(
            &apps.join("shop/secrets/db"),
            b"legacy",
            FileMode {
                mode: 0o400,
                uid: None,
                gid: None,
            },
        )
        .unwrap();
        assert_eq!(store.read(&apps, "shop", "db").unwrap(), b"legacy");
        assert!(!apps.join("shop/secrets/db").exists());
        store.keep(&apps, "shop", "db", b"s3cret-value").unwrap();
        assert_eq!(store.read(&apps, "shop", "db").unwrap(), b"s3cret-value");
        // each version stays readable by its digest after a newer one is kept
        let first = crate::plan::fnv_hex(b"s3cret-value");
        store.keep(&apps, "shop", "db", b"rotated").unwrap();
        assert_eq!(store.read(&apps, "shop", "db").unwrap(), b"rotated");
        assert_eq!(
            store
                .read_version(&apps, "shop", "db", &first)
                .unwrap()
                .unwrap(),
            b"s3cret-value"
        );
        assert_eq!(
            store.read_version(&apps, "shop", "db", "0000").unwrap(),
            None
        );
        store.keep(&apps, "shop", "db", b"s3cret-value").unwrap();
        let sealed = std::fs::read(apps.join("shop/secrets/db.sealed")).unwrap();
        assert!(!sealed.windows(12).any(|w| w == b"s3cret-value"));
        // sealed for shop's db, it is not blog's
        std::fs::create_dir_all(apps.join("blog/secrets")).unwrap();
        std::fs::copy(
            apps.join("shop/secrets/db.sealed"),
            apps.join("blog/secrets/db.sealed"),
        )
        .unwrap();
        assert!(store.read(&apps, "blog", "db").is_err());
        let path = store.mount_path("shop", "db");
        place(
            &path,
            b"s3cret-value",
            FileMode {
                mode: 0o440,
                uid: None,
                gid: None,
            },
        )
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"s3cret-value");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o440);
    }
}
