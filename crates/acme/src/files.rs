//! Where certificates live: the files capstan.toml names, and what ACME issued under
//! `<data>/certs/<app>.<challenge>/` (`cert.pem`, `key.pem`, 0600; the directories 0700).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// `[[proxy.certificates]]`: a certificate chain and its key, served for the names the
/// certificate holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateFile {
    /// The chain, PEM (the leaf first).
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
}

/// A certificate as served: chain, key, the names it holds and its end.
#[derive(Clone)]
pub struct Stored {
    pub names: Vec<String>,
    pub not_after: DateTime<Utc>,
    pub chain_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stored")
            .field("names", &self.names)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Stored {
    /// As the proxy takes it.
    pub fn for_proxy(&self) -> capstan_proxy::Certificate {
        capstan_proxy::Certificate {
            names: self.names.clone(),
            chain_pem: self.chain_pem.clone(),
            key_pem: self.key_pem.clone(),
        }
    }
}

/// The DNS names and end of the first certificate of a PEM chain.
///
/// # Errors
/// What is wrong with it, in words.
pub fn leaf(chain_pem: &str) -> Result<(Vec<String>, DateTime<Utc>), String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain_pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(n) = name {
                names.push(n.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    let not_after = DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
        .ok_or_else(|| "its end is not a date".to_owned())?;
    Ok((names, not_after))
}

/// A certificate file of capstan.toml, read and checked (`at` names it: `proxy.certificates[0]`).
///
/// # Errors
/// A file that cannot be read, or a certificate without a name.
pub fn read_file_certificate(at: &str, f: &CertificateFile) -> Result<Stored, ConfigError> {
    let bad = |message: String| ConfigError {
        key: at.to_owned(),
        message,
    };
    let chain_pem = std::fs::read_to_string(&f.cert)
        .map_err(|e| bad(format!("cannot read {}: {e}", f.cert.display())))?;
    let key_pem = std::fs::read_to_string(&f.key)
        .map_err(|e| bad(format!("cannot read {}: {e}", f.key.display())))?;
    let (names, not_after) =
        leaf(&chain_pem).map_err(|e| bad(format!("{}: {e}", f.cert.display())))?;
    if names.is_empty() {
        return Err(bad(format!(
            "{} names no host (no DNS subject alternative name)",
            f.cert.display()
        )));
    }
    let stored = Stored {
        names,
        not_after,
        chain_pem,
        key_pem,
    };
    capstan_proxy::check_certificate(&stored.for_proxy()).map_err(|e| {
        bad(format!(
            "{} with {}: {e}",
            f.cert.display(),
            f.key.display()
        ))
    })?;
    Ok(stored)
}

/// The directory of issued certificates, made 0700.
///
/// # Errors
/// It cannot be made.
pub fn certs_dir(data: &Path) -> std::io::Result<PathBuf> {
    let dir = data.join("certs");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    Ok(dir)
}

/// Writes `text` to `path` readable by its owner alone, whole or not at all.
///
/// # Errors
/// It cannot be written.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Stores an issued certificate in `dir` (made 0700).
///
/// # Errors
/// It cannot be written.
pub fn save(dir: &Path, stored: &Stored) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // the key first: a chain without its key is never read as whole
    write_private(&dir.join("key.pem"), &stored.key_pem)?;
    write_private(&dir.join("cert.pem"), &stored.chain_pem)
}

/// An issued certificate stored in `dir`, if one is there whole.
pub fn load(dir: &Path) -> Option<Stored> {
    let chain_pem = std::fs::read_to_string(dir.join("cert.pem")).ok()?;
    let key_pem = std::fs::read_to_string(dir.join("key.pem")).ok()?;
    let (names, not_after) = leaf(&chain_pem).ok()?;
    Some(Stored {
        names,
        not_after,
        chain_pem,
        key_pem,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn self_signed(names: &[&str]) -> Stored {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (names, not_after) = leaf(&cert.pem()).unwrap();
        Stored {
            names,
            not_after,
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    #[test]
    fn stored_certificates_are_private_and_read_back_whole() {
        let data = tempfile::tempdir().unwrap();
        let dir = certs_dir(data.path()).unwrap().join("shop.http-01");
        let cert = self_signed(&["shop.example.com", "www.shop.example.com"]);
        save(&dir, &cert).unwrap();
        for file in ["cert.pem", "key.pem"] {
            let mode = std::fs::metadata(dir.join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let back = load(&dir).unwrap();
        assert_eq!(back.names, ["shop.example.com", "www.shop.example.com"]);
        assert_eq!(back.key_pem, cert.key_pem);
        // a half-written pair is not read
        std::fs::remove_file(dir.join("key.pem")).unwrap();
        assert!(load(&dir).is_none());
    }

    #[test]
    fn a_certificate_file_is_read_with_its_names_or_refused_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let cert = self_signed(&["files.example.com"]);
        std::fs::write(dir.path().join("c.pem"), &cert.chain_pem).unwrap();
        std::fs::write(dir.path().join("k.pem"), &cert.key_pem).unwrap();
        let file = CertificateFile {
            cert: dir.path().join("c.pem"),
            key: dir.path().join("k.pem"),
        };
        let read = read_file_certificate("proxy.certificates[0]", &file).unwrap();
        assert_eq!(read.names, ["files.example.com"]);
        // a key of another certificate
        let other = self_signed(&["other.example.com"]);
        std::fs::write(dir.path().join("k.pem"), &other.key_pem).unwrap();
        let err = read_file_certificate("proxy.certificates[0]", &file).unwrap_err();
        assert_eq!(err.key, "proxy.certificates[0]");
        std::fs::write(dir.path().join("c.pem"), "not pem").unwrap();
        let err = read_file_certificate("proxy.certificates[0]", &file).unwrap_err();
        assert!(err.message.contains("not a PEM certificate"), "{err}");
        let missing = CertificateFile {
            cert: dir.path().join("nope.pem"),
            key: dir.path().join("k.pem"),
        };
        let err = read_file_certificate("proxy.certificates[1]", &missing).unwrap_err();
        assert!(err.message.contains("cannot read"), "{err}");
    }
}
