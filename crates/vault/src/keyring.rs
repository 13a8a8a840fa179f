//! Credentials capstan itself uses (an SMTP or sink password, a webhook URL with a token in
//! its path, the registry hook's secret), kept sealed in `<data>/credentials/NAME.sealed` and
//! bound to `credentials/NAME`. A config key that names a file (`password_file`, `url_file`)
//! takes `vault:NAME` to read one of them instead; `capstan secrets set NAME` puts one there.
//!
//! The daemon installs its keyring once, when it has opened its vault, before it reads its
//! config; [`credential`] answers from it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::{Error, Vault};

/// What a config key that names a file says to read a credential instead: `vault:NAME`.
pub const SCHEME: &str = "vault:";

/// The credentials of one data directory.
#[derive(Debug, Clone)]
pub struct Keyring {
    vault: Arc<Vault>,
    dir: PathBuf,
}

/// Why a credential cannot be read, kept or named.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error(transparent)]
    Vault(#[from] Error),
    /// No credential of that name was kept.
    #[error("no credential {name:?} is kept; put it there with: capstan secrets set {name}")]
    Unknown { name: String },
    /// Read outside `capstan serve` (a config checked on its own).
    #[error("{SCHEME}{name} is read by capstan serve from its data dir's vault, not here")]
    NoVault { name: String },
    /// A name that could not be a file's.
    #[error(
        "{name:?} is not a credential's name: use letters, digits, '-', '_' and '.', not first"
    )]
    BadName { name: String },
}

/// Refuses a name that could climb out of the credentials' directory.
///
/// # Errors
/// [`KeyringError::BadName`].
pub fn check_name(name: &str) -> Result<(), KeyringError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(KeyringError::BadName {
            name: name.to_owned(),
        })
    }
}

impl Keyring {
    /// The credentials of `data`, sealed by `vault` (the data dir's own).
    pub fn new(vault: Arc<Vault>, data: &Path) -> Self {
        Self {
            vault,
            dir: data.join("credentials"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.sealed"))
    }

    /// Keeps `value` as credential `name`, sealed (replacing the one kept).
    ///
    /// # Errors
    /// A bad name, or the file cannot be written.
    pub fn set(&self, name: &str, value: &[u8]) -> Result<(), KeyringError> {
        check_name(name)?;
        let io = |source| Error::Io {
            path: self.dir.clone(),
            source,
        };
        {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)
                .map_err(io)?;
        }
        let sealed = self.vault.seal(&what(name), value)?;
        capstan_store::files::replace(&self.path(name), &sealed).map_err(io)?;
        Ok(())
    }

    /// Credential `name`; `None` when none is kept.
    ///
    /// # Errors
    /// A bad name, the file cannot be read, or it does not open.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>, KeyringError> {
        check_name(name)?;
        let path = self.path(name);
        match std::fs::read(&path) {
            Ok(sealed) => Ok(Some(self.vault.open_sealed(&what(name), &sealed)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io { path, source }.into()),
        }
    }

    /// Forgets credential `name`; whether one was kept.
    ///
    /// # Errors
    /// A bad name, or the file cannot be removed.
    pub fn remove(&self, name: &str) -> Result<bool, KeyringError> {
        check_name(name)?;
        let path = self.path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(Error::Io { path, source }.into()),
        }
    }

    /// The names of the credentials kept, sorted.
    ///
    /// # Errors
    /// The directory cannot be read.
    pub fn names(&self) -> Result<Vec<String>, KeyringError> {
        let files = crate::sealed_files(&self.dir).map_err(|source| Error::Io {
            path: self.dir.clone(),
            source,
        })?;
        Ok(files
            .into_iter()
            .map(|(_, name)| name)
            .filter(|name| check_name(name).is_ok())
            .collect())
    }
}

/// What credential `name` is sealed as.
fn what(name: &str) -> String {
    format!("credentials/{name}")
}

/// Every sealed credential of `data` with what it was sealed as: what a key rotation seals
/// again, beside the apps' secrets.
///
/// # Errors
/// The directory cannot be read.
pub fn sealed_credentials(data: &Path) -> std::io::Result<Vec<(PathBuf, String)>> {
    Ok(crate::sealed_files(&data.join("credentials"))?
        .into_iter()
        .filter(|(_, name)| check_name(name).is_ok())
        .map(|(path, name)| (path, what(&name)))
        .collect())
}

static INSTALLED: OnceLock<Keyring> = OnceLock::new();

/// Makes `keyring` the one [`credential`] reads from, for the rest of the process; `false`
/// when one was installed already.
pub fn install(keyring: Keyring) -> bool {
    INSTALLED.set(keyring).is_ok()
}

/// Credential `name` from the installed keyring.
///
/// # Errors
/// [`KeyringError::NoVault`] when none is installed, [`KeyringError::Unknown`] when no such
/// credential is kept, and the keyring's.
pub fn credential(name: &str) -> Result<Vec<u8>, KeyringError> {
    let keyring = INSTALLED.get().ok_or_else(|| KeyringError::NoVault {
        name: name.to_owned(),
    })?;
    keyring.get(name)?.ok_or_else(|| KeyringError::Unknown {
        name: name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_kept_sealed_listed_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = Keyring::new(Arc::new(Vault::open(dir.path()).unwrap()), dir.path());
        assert_eq!(keyring.get("smtp").unwrap(), None);
        keyring.set("smtp", b"hunter2").unwrap();
        keyring
            .set("slack.url", b"https://hooks.example/T/B/x")
            .unwrap();
        assert_eq!(
            keyring.get("smtp").unwrap().as_deref(),
            Some(&b"hunter2"[..])
        );
        assert_eq!(keyring.names().unwrap(), ["slack.url", "smtp"]);
        let on_disk = std::fs::read(dir.path().join("credentials/smtp.sealed")).unwrap();
        assert!(!on_disk.windows(7).any(|w| w == b"hunter2"));
        // sealed as its own name: moved to another, it does not open
        std::fs::copy(
            dir.path().join("credentials/smtp.sealed"),
            dir.path().join("credentials/other.sealed"),
        )
        .unwrap();
        assert!(matches!(keyring.get("other"), Err(KeyringError::Vault(_))));
        assert!(keyring.remove("smtp").unwrap());
        assert!(!keyring.remove("smtp").unwrap());
        for bad in ["", "../admin.token", ".hidden", "a/b"] {
            assert!(matches!(
                keyring.set(bad, b"x"),
                Err(KeyringError::BadName { .. })
            ));
        }
        assert_eq!(sealed_credentials(dir.path()).unwrap().len(), 2);
    }
}
