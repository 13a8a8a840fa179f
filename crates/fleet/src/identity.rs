//! A capstan's own key pair and self-signed certificate, made at first start and kept in the
//! data dir (the key 0600): the hub's, which join tokens pin, and each agent's, by which the
//! hub knows the host.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use sha2::Digest as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate and its key.
#[derive(Clone)]
pub struct Identity {
    pub cert: CertificateDer<'static>,
    key: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

/// `sha256:<hex>` of a certificate.
pub fn fingerprint(cert: &[u8]) -> String {
    let digest = sha2::Sha256::digest(cert);
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for b in digest {
        use std::fmt::Write as _;
        let _ = write!(out, "{b:02x}");
    }
    out
}

impl Identity {
    /// The identity kept under `dir` (`cert.der`, `key.der`), made for `name` when there is
    /// none.
    ///
    /// # Errors
    /// The directory or a file cannot be read or written, or what is there does not parse.
    pub fn load_or_create(dir: &Path, name: &str) -> Result<Self, String> {
        let (cert_path, key_path) = (dir.join("cert.der"), dir.join("key.der"));
        if cert_path.exists() && key_path.exists() {
            let cert = std::fs::read(&cert_path)
                .map_err(|e| format!("cannot read {}: {e}", cert_path.display()))?;
            let key = std::fs::read(&key_path)
                .map_err(|e| format!("cannot read {}: {e}", key_path.display()))?;
            return Ok(Self {
                cert: CertificateDer::from(cert),
                key,
            });
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let made = rcgen::generate_simple_self_signed(vec![name.to_owned()])
            .map_err(|e| format!("cannot make a key pair: {e}"))?;
        let key = made.key_pair.serialize_der();
        write_private(&key_path, &key)?;
        write_private(&cert_path, made.cert.der())?;
        Ok(Self {
            cert: made.cert.der().clone(),
            key,
        })
    }

    /// `sha256:<hex>` of the certificate.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert)
    }

    pub(crate) fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()))
    }
}

/// Writes `bytes` to a new file only its owner can read, then renames it into place.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_identity_is_made_once_kept_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let made = Identity::load_or_create(dir.path(), "capstan-host").unwrap();
        let again = Identity::load_or_create(dir.path(), "capstan-host").unwrap();
        assert_eq!(made.fingerprint(), again.fingerprint());
        assert!(made.fingerprint().starts_with("sha256:"));
        assert_eq!(made.fingerprint().len(), 71);
        let key_mode = std::fs::metadata(dir.path().join("key.der"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
        let other = Identity::load_or_create(&dir.path().join("other"), "capstan-host").unwrap();
        assert_ne!(made.fingerprint(), other.fingerprint());
    }
}
