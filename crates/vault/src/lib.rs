//! Secrets at rest. A value is sealed with XChaCha20-Poly1305 under a random data key, with a
//! fresh random nonce, and bound to what it is (its app, name and version) as associated data,
//! so a sealed value moved to another name does not open. The data key itself is sealed under
//! the master key of `<data>/vault.key` (32 random bytes, mode 0600) into `<data>/vault.datakey`.
//! A key that does not open the data key fails closed: nothing is read, and the message says
//! which files disagree.
//!
//! It owns the keys and the sealing. It must never decide what is secret, nor where a secret
//! goes: the deploy crate does.

pub mod keyring;

use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The sealed form's first bytes: its version.
const MAGIC: &[u8; 4] = b"cv1\0";
/// What the data key is bound to when the master key seals it.
const DATA_KEY_AAD: &[u8] = b"capstan vault data key v1";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;

/// Why the vault cannot be opened, or a value not sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A key file cannot be read, made or written.
    #[error("cannot use {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The key file holds no key of the right size.
    #[error("{} is not a capstan key (32 bytes expected); restore it from a backup", path.display())]
    BadKey { path: PathBuf },
    /// The master key does not open the data key: the key file was replaced, or the data key
    /// file is damaged. Nothing can be opened until the right key file is back.
    #[error(
        "{} does not open {}: the key file was replaced or one of them is damaged; put back \
         the key file this data directory was made with",
        key.display(),
        data_key.display()
    )]
    WrongKey { key: PathBuf, data_key: PathBuf },
    /// A sealed value does not open: damaged, or sealed for another name or version.
    #[error("the sealed value of {what} does not open (damaged, or not {what}'s)")]
    Damaged { what: String },
}

/// The vault of one data directory.
pub struct Vault {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the key
        f.debug_struct("Vault").finish_non_exhaustive()
    }
}

/// `N` random bytes from the kernel.
///
/// # Errors
/// `/dev/urandom` cannot be read.
pub fn random<const N: usize>() -> std::io::Result<[u8; N]> {
    use std::io::Read as _;
    let mut out = [0_u8; N];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut out)?;
    Ok(out)
}

/// Seals `plain` under `cipher` with a fresh nonce, bound to `aad`.
fn seal_with(cipher: &XChaCha20Poly1305, aad: &[u8], plain: &[u8]) -> std::io::Result<Vec<u8>> {
    let nonce: [u8; NONCE_LEN] = random()?;
    let sealed = cipher
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
        .map_err(|_| std::io::Error::other("the cipher refused to seal"))?;
    let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + sealed.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens what [`seal_with`] sealed; `None` when it does not open.
fn open_with(cipher: &XChaCha20Poly1305, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let rest = sealed.strip_prefix(MAGIC.as_slice())?;
    if rest.len() < NONCE_LEN {
        return None;
    }
    let (nonce, body) = rest.split_at(NONCE_LEN);
    cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad })
        .ok()
}

impl Vault {
    /// The key file of `data`.
    pub fn key_path(data: &Path) -> PathBuf {
        data.join("vault.key")
    }

    /// Opens the vault of `data`, making its key files on first use (and finishing a key
    /// rotation a crash cut off).
    ///
    /// # Errors
    /// A key file cannot be read or written, or the key does not open the data key.
    pub fn open(data: &Path) -> Result<Self, Error> {
        finish_rotation(data)?;
        let key_path = Self::key_path(data);
        let data_key_path = data.join("vault.datakey");
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path, source }
        };
        if !key_path.exists() && !data_key_path.exists() {
            let master: [u8; KEY_LEN] = random().map_err(io(&key_path))?;
            let data_key: [u8; KEY_LEN] = random().map_err(io(&data_key_path))?;
            let sealed = seal_with(
                &XChaCha20Poly1305::new(&master.into()),
                DATA_KEY_AAD,
                &data_key,
            )
            .map_err(io(&data_key_path))?;
            capstan_store::files::replace(&data_key_path, &sealed).map_err(io(&data_key_path))?;
            capstan_store::files::replace(&key_path, &master).map_err(io(&key_path))?;
        }
        let master = std::fs::read(&key_path).map_err(io(&key_path))?;
        let master: [u8; KEY_LEN] = master.try_into().map_err(|_| Error::BadKey {
            path: key_path.clone(),
        })?;
        let sealed = std::fs::read(&data_key_path).map_err(io(&data_key_path))?;
        let data_key = open_with(
            &XChaCha20Poly1305::new(&master.into()),
            DATA_KEY_AAD,
            &sealed,
        )
        .filter(|k| k.len() == KEY_LEN)
        .ok_or(Error::WrongKey {
            key: key_path,
            data_key: data_key_path,
        })?;
        Ok(Self {
            cipher: XChaCha20Poly1305::new_from_slice(&data_key).map_err(|_| Error::BadKey {
                path: data.join("vault.datakey"),
            })?,
        })
    }

    /// Seals `plain` as `what` (its app, name and version: it opens as nothing else).
    ///
    /// # Errors
    /// No randomness for the nonce.
    pub fn seal(&self, what: &str, plain: &[u8]) -> Result<Vec<u8>, Error> {
        seal_with(&self.cipher, what.as_bytes(), plain).map_err(|source| Error::Io {
            path: PathBuf::from("/dev/urandom"),
            source,
        })
    }

    /// Opens a value sealed as `what`.
    ///
    /// # Errors
    /// [`Error::Damaged`]: it was sealed as something else, or changed since.
    pub fn open_sealed(&self, what: &str, sealed: &[u8]) -> Result<Vec<u8>, Error> {
        open_with(&self.cipher, what.as_bytes(), sealed).ok_or_else(|| Error::Damaged {
            what: what.to_owned(),
        })
    }
}

/// The sealed files of `dir` (`NAME.sealed`), each with its `NAME`, sorted; none when `dir`
/// is not there.
///
/// # Errors
/// The directory cannot be read.
pub fn sealed_files(dir: &Path) -> std::io::Result<Vec<(PathBuf, String)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let stem = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".sealed"))
            .map(str::to_owned);
        if let Some(stem) = stem {
            out.push((path, stem));
        }
    }
    out.sort();
    Ok(out)
}

/// The list of files a rotation replaces, written once every new file is in place beside
/// its old one: from then on the rotation is finished, by [`Vault::open`] if need be.
fn rotation_marker(data: &Path) -> PathBuf {
    data.join("vault.rotating")
}

/// `path` with `.rekey` added: a file's new version during a rotation.
fn rekeyed(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".rekey");
    PathBuf::from(p)
}

/// Moves every new file a rotation wrote over its old one, then forgets the rotation.
fn finish_rotation(data: &Path) -> Result<(), Error> {
    let marker = rotation_marker(data);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    let list = match std::fs::read_to_string(&marker) {
        Ok(list) => list,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(&marker)(e)),
    };
    for path in list.lines().map(PathBuf::from) {
        let new = rekeyed(&path);
        if new.exists() {
            std::fs::rename(&new, &path).map_err(io(&path))?;
            if let Some(dir) = path.parent() {
                capstan_store::files::sync_dir(dir).map_err(io(dir))?;
            }
        }
    }
    std::fs::remove_file(&marker).map_err(io(&marker))?;
    capstan_store::files::sync_dir(data).map_err(io(data))
}

impl Vault {
    /// Rotates the keys of `data`: every value of `sealed` (a sealed file and what it was
    /// sealed as) is sealed again under a new data key, which a new master key wraps. Crash-safe:
    /// the new files are written beside the old, then a list of them, then they replace the old
    /// ones; a rotation cut off before the list leaves the old keys in force, one cut off after
    /// it is finished by the next [`Vault::open`]. Returns how many values were sealed again.
    ///
    /// # Errors
    /// The old key does not open the data key or a value, or a file cannot be written.
    pub fn rotate(data: &Path, sealed: &[(PathBuf, String)]) -> Result<usize, Error> {
        let old = Self::open(data)?;
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path, source }
        };
        let master: [u8; KEY_LEN] = random().map_err(io(Path::new("/dev/urandom")))?;
        let data_key: [u8; KEY_LEN] = random().map_err(io(Path::new("/dev/urandom")))?;
        let new = Self {
            cipher: XChaCha20Poly1305::new(&data_key.into()),
        };
        let mut replaced = Vec::new();
        for (path, what) in sealed {
            let value = old.open_sealed(what, &std::fs::read(path).map_err(io(path))?)?;
            capstan_store::files::replace(&rekeyed(path), &new.seal(what, &value)?)
                .map_err(io(path))?;
            replaced.push(path.clone());
        }
        let data_key_path = data.join("vault.datakey");
        let wrapped = seal_with(
            &XChaCha20Poly1305::new(&master.into()),
            DATA_KEY_AAD,
            &data_key,
        )
        .map_err(io(&data_key_path))?;
        capstan_store::files::replace(&rekeyed(&data_key_path), &wrapped)
            .map_err(io(&data_key_path))?;
        let key_path = Self::key_path(data);
        capstan_store::files::replace(&rekeyed(&key_path), &master).map_err(io(&key_path))?;
        replaced.push(data_key_path);
        replaced.push(key_path);
        let list = replaced.iter().fold(String::new(), |mut list, p| {
            list.push_str(&p.display().to_string());
            list.push('\n');
            list
        });
        let marker = rotation_marker(data);
        capstan_store::files::replace(&marker, list.as_bytes()).map_err(io(&marker))?;
        finish_rotation(data)?;
        Ok(sealed.len())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_value_opens_only_as_what_it_was_sealed_as() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(dir.path()).unwrap();
        let sealed = vault.seal("shop/secrets/db@1", b"s3cret").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"s3cret"));
        assert_eq!(
            vault.open_sealed("shop/secrets/db@1", &sealed).unwrap(),
            b"s3cret"
        );
        // another name, another version, a flipped bit: refused
        assert!(vault.open_sealed("blog/secrets/db@1", &sealed).is_err());
        assert!(vault.open_sealed("shop/secrets/db@2", &sealed).is_err());
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(vault.open_sealed("shop/secrets/db@1", &bad).is_err());
        // a nonce per value: the same value twice seals differently
        assert_ne!(sealed, vault.seal("shop/secrets/db@1", b"s3cret").unwrap());
        // the key file is the owner's alone, and the vault opens again with it
        let mode = std::fs::metadata(Vault::key_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Vault::open(dir.path()).unwrap();
        assert_eq!(
            again.open_sealed("shop/secrets/db@1", &sealed).unwrap(),
            b"s3cret"
        );
    }

    #[test]
    fn a_rotation_seals_everything_again_and_a_cut_off_one_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::open(dir.path()).unwrap();
        let items: Vec<(PathBuf, String)> = (0..3)
            .map(|i| {
                let path = dir.path().join(format!("s{i}.sealed"));
                std::fs::write(
                    &path,
                    vault.seal(&format!("shop/secrets/s{i}"), b"v").unwrap(),
                )
                .unwrap();
                (path, format!("shop/secrets/s{i}"))
            })
            .collect();
        let old_key = std::fs::read(Vault::key_path(dir.path())).unwrap();
        let old_value = std::fs::read(&items[0].0).unwrap();
        assert_eq!(Vault::rotate(dir.path(), &items).unwrap(), 3);
        assert_ne!(std::fs::read(Vault::key_path(dir.path())).unwrap(), old_key);
        assert_ne!(std::fs::read(&items[0].0).unwrap(), old_value);
        let rotated = Vault::open(dir.path()).unwrap();
        for (path, what) in &items {
            assert_eq!(
                rotated
                    .open_sealed(what, &std::fs::read(path).unwrap())
                    .unwrap(),
                b"v"
            );
        }
        // the old vault's seal does not open under the new keys
        assert!(rotated.open_sealed(&items[0].1, &old_value).is_err());
        // cut off after the list of new files was written: the next open finishes it
        std::fs::write(
            rekeyed(&items[1].0),
            rotated.seal(&items[1].1, b"w").unwrap(),
        )
        .unwrap();
        std::fs::write(
            rotation_marker(dir.path()),
            format!("{}\n", items[1].0.display()),
        )
        .unwrap();
        let again = Vault::open(dir.path()).unwrap();
        assert_eq!(
            again
                .open_sealed(&items[1].1, &std::fs::read(&items[1].0).unwrap())
                .unwrap(),
            b"w"
        );
        assert!(!rotation_marker(dir.path()).exists());
    }

    #[test]
    fn a_wrong_key_fails_closed_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        Vault::open(dir.path()).unwrap();
        std::fs::write(Vault::key_path(dir.path()), [7_u8; 32]).unwrap();
        let e = Vault::open(dir.path()).unwrap_err();
        assert!(matches!(e, Error::WrongKey { .. }), "{e}");
        assert!(e.to_string().contains("put back the key file"), "{e}");
        std::fs::write(Vault::key_path(dir.path()), b"short").unwrap();
        assert!(matches!(Vault::open(dir.path()), Err(Error::BadKey { .. })));
        // a key file without its data key is not made anew over it
        std::fs::remove_file(dir.path().join("vault.datakey")).unwrap();
        assert!(Vault::open(dir.path()).is_err());
    }
}
