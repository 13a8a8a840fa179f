//! Registry credentials kept by capstan itself (`capstan registries login`), sealed in the
//! data dir's vault as one credential, `registries`, so that a key rotation seals them again
//! with the others. Reading and writing take one short lock (a login and a logout never lose
//! each other's change).

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::auth::Credentials;
use crate::reference::DOCKER_HUB;

/// The keyring credential the logins are kept as.
pub const KEYRING_NAME: &str = "registries";

#[derive(Serialize, Deserialize)]
struct Kept {
    username: String,
    password: String,
    saved_at: DateTime<Utc>,
}

/// A login as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub registry: String,
    pub username: String,
    pub saved_at: DateTime<Utc>,
}

/// The registry credentials `capstan registries login` kept.
#[derive(Debug)]
pub struct Logins {
    keyring: capstan_vault::keyring::Keyring,
    lock: Mutex<()>,
}

/// Names a registry as references do, from what a user typed (`https://ghcr.io/`,
/// `127.0.0.1:5000`, `https://index.docker.io/v1/`): the host (lower case) and port, Docker
/// Hub's aliases as `docker.io`.
///
/// # Errors
/// Not a host name or address with an optional port, said for the user.
pub fn registry_name(text: &str) -> Result<String, Error> {
    let trimmed = text.trim();
    let host = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .unwrap_or(trimmed);
    let host = host
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let bad = |why: &str| {
        Error::Credentials(format!(
            "{text:?} is not a registry: {why} (name it as image references do: ghcr.io, registry.example.com:5000, 127.0.0.1:5000, docker.io)"
        ))
    };
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| bad("an IPv6 address is written in brackets"))?;
        addr.parse::<std::net::Ipv6Addr>()
            .map_err(|_| bad("not an IPv6 address in the brackets"))?;
        (host[..addr.len() + 2].to_owned(), after.strip_prefix(':'))
    } else {
        match host.split_once(':') {
            Some((n, p)) => (n.to_owned(), Some(p)),
            None => (host.clone(), None),
        }
    };
    if let Some(p) = port
        && p.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(bad("the port is not 1-65535"));
    }
    if !name.starts_with('[') {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(bad("not a host name"));
        }
        if port.is_none() && !name.contains('.') && name != "localhost" {
            return Err(bad(
                "a one-word name is a Docker Hub namespace to Docker, not a registry",
            ));
        }
    }
    let registry = match (name.as_str(), port) {
        ("index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com", None) => {
            DOCKER_HUB.to_owned()
        }
        (n, Some(p)) => format!("{n}:{p}"),
        (n, None) => n.to_owned(),
    };
    Ok(registry)
}

impl Logins {
    pub fn new(keyring: capstan_vault::keyring::Keyring) -> Self {
        Self {
            keyring,
            lock: Mutex::new(()),
        }
    }

    fn read(&self) -> Result<BTreeMap<String, Kept>, Error> {
        let Some(bytes) = self
            .keyring
            .get(KEYRING_NAME)
            .map_err(|e| vault_error(&e))?
        else {
            return Ok(BTreeMap::new());
        };
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::Credentials(format!(
                "the registry logins kept in the vault do not read ({e}); log in again with capstan registries login"
            ))
        })
    }

    fn write(&self, logins: &BTreeMap<String, Kept>) -> Result<(), Error> {
        if logins.is_empty() {
            self.keyring
                .remove(KEYRING_NAME)
                .map_err(|e| vault_error(&e))?;
            return Ok(());
        }
        let bytes = serde_json::to_vec(logins)
            .map_err(|e| Error::Credentials(format!("cannot encode the registry logins: {e}")))?;
        self.keyring
            .set(KEYRING_NAME, &bytes)
            .map_err(|e| vault_error(&e))
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The credentials kept for `registry`.
    ///
    /// # Errors
    /// The vault cannot be read.
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>, Error> {
        let _held = self.locked();
        Ok(self
            .read()?
            .remove(registry)
            .map(|k| Credentials::new(k.username, k.password)))
    }

    /// Every login kept, by registry.
    ///
    /// # Errors
    /// The vault cannot be read.
    pub fn list(&self) -> Result<Vec<Login>, Error> {
        let _held = self.locked();
        Ok(self
            .read()?
            .into_iter()
            .map(|(registry, k)| Login {
                registry,
                username: k.username,
                saved_at: k.saved_at,
            })
            .collect())
    }

    /// Keeps `credentials` for `registry`, replacing what was kept; whether something was.
    ///
    /// # Errors
    /// The vault cannot be read or written.
    pub fn save(&self, registry: &str, credentials: &Credentials) -> Result<bool, Error> {
        let _held = self.locked();
        let mut all = self.read()?;
        let replaced = all.insert(
            registry.to_owned(),
            Kept {
                username: credentials.username.clone(),
                password: credentials.secret().to_owned(),
                saved_at: Utc::now(),
            },
        );
        self.write(&all)?;
        Ok(replaced.is_some())
    }

    /// Forgets what was kept for `registry`; whether anything was.
    ///
    /// # Errors
    /// The vault cannot be read or written.
    pub fn remove(&self, registry: &str) -> Result<bool, Error> {
        let _held = self.locked();
        let mut all = self.read()?;
        if all.remove(registry).is_none() {
            return Ok(false);
        }
        self.write(&all)?;
        Ok(true)
    }
}

fn vault_error(e: &capstan_vault::keyring::KeyringError) -> Error {
    Error::Credentials(format!("the vault: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_named_as_references_name_them() {
        for (typed, named) in [
            ("https://index.docker.io/v1/", "docker.io"),
            ("docker.io", "docker.io"),
            ("GHCR.io", "ghcr.io"),
            ("https://ghcr.io/", "ghcr.io"),
            ("127.0.0.1:5000", "127.0.0.1:5000"),
            ("http://localhost:5000/v2/", "localhost:5000"),
            ("localhost", "localhost"),
            ("[::1]:5000", "[::1]:5000"),
        ] {
            assert_eq!(registry_name(typed).unwrap(), named, "{typed}");
        }
        for bad in [
            "",
            "myorg",
            "a b.io",
            "host.io:0",
            "host.io:70000",
            "-x.io",
            "[zz]:1",
            "x..io",
        ] {
            let e = registry_name(bad).unwrap_err().to_string();
            assert!(e.contains("is not a registry"), "{bad}: {e}");
        }
    }

    #[test]
    fn logins_are_kept_sealed_listed_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let vault = std::sync::Arc::new(capstan_vault::Vault::open(dir.path()).unwrap());
        let logins = Logins::new(capstan_vault::keyring::Keyring::new(vault, dir.path()));
        assert_eq!(logins.get("ghcr.io").unwrap(), None);
        assert!(
            !logins
                .save("ghcr.io", &Credentials::new("ci", "s3cret-token"))
                .unwrap()
        );
        logins
            .save("127.0.0.1:5000", &Credentials::new("u", "p"))
            .unwrap();
        assert!(
            logins
                .save("127.0.0.1:5000", &Credentials::new("u", "p2"))
                .unwrap(),
            "a second login replaces the first"
        );
        assert_eq!(
            logins.get("ghcr.io").unwrap(),
            Some(Credentials::new("ci", "s3cret-token"))
        );
        let listed: Vec<_> = logins
            .list()
            .unwrap()
            .into_iter()
            .map(|l| l.registry)
            .collect();
        assert_eq!(listed, ["127.0.0.1:5000", "ghcr.io"]);
        let sealed = std::fs::read(dir.path().join("credentials/registries.sealed")).unwrap();
        assert!(!sealed.windows(12).any(|w| w == b"s3cret-token"));
        assert!(logins.remove("ghcr.io").unwrap());
        assert!(!logins.remove("ghcr.io").unwrap());
        assert!(logins.remove("127.0.0.1:5000").unwrap());
        assert!(!dir.path().join("credentials/registries.sealed").exists());
    }
}
