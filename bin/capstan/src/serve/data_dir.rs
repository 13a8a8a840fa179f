//! The data directory of `capstan serve`: made private, locked for one daemon, and the
//! secrets written in it on first start.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write as _};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};
use tracing::{info, warn};

/// How the daemon starts its proxy: this same executable, `proxy --data DIR`.
pub(super) fn proxy_launch(data: &Path) -> Result<capstan_proxy::Launch> {
    let program = std::env::current_exe()
        .context("cannot find capstan's own executable to start the proxy")?;
    Ok(capstan_proxy::Launch {
        program,
        args: vec!["proxy".into(), "--data".into(), data.as_os_str().to_owned()],
    })
}

fn prepare_data_dir(data: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data)
        .with_context(|| {
            format!(
                "cannot create data dir {} (pick another with --data or CAPSTAN_DATA)",
                data.display()
            )
        })?;
    // the journal and the token are capstan's alone, also in a dir someone made beforehand
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700)).with_context(|| {
        format!(
            "cannot make data dir {} private (mode 0700)",
            data.display()
        )
    })?;
    Ok(())
}

/// Holds an exclusive lock on `<data>/capstan.lock` for the daemon's life.
fn lock_data_dir(data: &Path) -> Result<File> {
    capstan_process::lock_pid_file(&data.join("capstan.lock")).map_err(|e| match e {
        capstan_process::LockError::Held { pid } => anyhow::anyhow!(
            "another capstan{} is already using data dir {}; stop it first, or give this one its own with --data",
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
            data.display()
        ),
        e @ capstan_process::LockError::Io { .. } => anyhow::Error::new(e),
    })
}

/// The data dir of a daemon about to start: made private, locked for it alone, its vault
/// open and its keyring installed (so the config's `vault:NAME` credentials can be read).
pub struct Opened {
    pub data: std::path::PathBuf,
    pub vault: std::sync::Arc<capstan_vault::Vault>,
    pub keyring: capstan_vault::keyring::Keyring,
    /// Held for the daemon's life.
    _lock: File,
}

/// Opens `data` for a daemon: see [`Opened`]. A key that does not open the data key stops the
/// start here, saying so: nothing is deployed half-blind.
///
/// # Errors
/// The dir cannot be made or locked, or the vault does not open.
pub fn open(data: &Path) -> Result<Opened> {
    prepare_data_dir(data)?;
    let lock = lock_data_dir(data)?;
    let vault = std::sync::Arc::new(capstan_vault::Vault::open(data)?);
    let keyring = capstan_vault::keyring::Keyring::new(vault.clone(), data);
    capstan_vault::keyring::install(keyring.clone());
    Ok(Opened {
        data: data.to_owned(),
        vault,
        keyring,
        _lock: lock,
    })
}

/// A new random token: 32 bytes from the kernel, in hex.
fn random_token(what: &str) -> Result<String> {
    let mut bytes = [0_u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .with_context(|| format!("cannot read /dev/urandom to make the {what}"))?;
    Ok(bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// Reads credential `name` (the registry hook's secret), keeping a new random one sealed on
/// first start. A plain copy an older capstan wrote at `legacy` is sealed and removed.
pub(super) fn ensure_credential(
    keyring: &capstan_vault::keyring::Keyring,
    name: &str,
    legacy: &Path,
    what: &str,
) -> Result<String> {
    let kept = |e: capstan_vault::keyring::KeyringError| {
        anyhow::anyhow!("cannot keep the {what} in the vault: {e}")
    };
    if let Ok(old) = std::fs::read_to_string(legacy) {
        let old = old.trim();
        if !old.is_empty() {
            keyring.set(name, old.as_bytes()).map_err(kept)?;
        }
        std::fs::remove_file(legacy)
            .with_context(|| format!("cannot remove the plain {what} {}", legacy.display()))?;
        info!(path = %legacy.display(), "the {what} is now kept sealed (capstan secrets show {name})");
    }
    if let Some(value) = keyring.get(name).map_err(kept)? {
        return String::from_utf8(value)
            .with_context(|| format!("the {what} kept in the vault is not text"));
    }
    let token = random_token(what)?;
    keyring.set(name, token.as_bytes()).map_err(kept)?;
    info!("made a new {what}, kept sealed (capstan secrets show {name})");
    Ok(token)
}

/// Reads a secret (the admin token), writing a new random one (mode 0600) on first start;
/// `what` names it in messages.
pub(super) fn ensure_secret(path: &Path, what: &str) -> Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            warn!(path = %path.display(), "the {what} was readable by others; set its mode to 0600");
        }
        let token = existing.trim().to_owned();
        if !token.is_empty() {
            return Ok(token);
        }
    }
    let token = random_token(what)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write the {what} to {}", path.display()))?;
    writeln!(file, "{token}")?;
    file.sync_all()?;
    info!(path = %path.display(), "wrote a new {what}");
    Ok(token)
}

/// The daemon's directory on tmpfs, where secrets are placed in plain text for containers to
/// mount: `/run/capstan/<a hash of the data dir>` (one per data dir, so two daemons on one
/// host keep apart; `$XDG_RUNTIME_DIR/capstan` for a user's daemon; `$CAPSTAN_RUN_DIR` instead
/// of either, as the test suite sets). When that is not on a tmpfs already (Debian's `/run` is one under
/// systemd), a tmpfs is mounted there, private to root.
pub(super) fn secrets_run_dir(data: &Path) -> Result<std::path::PathBuf> {
    let data = data.canonicalize().unwrap_or_else(|_| data.to_owned());
    let id = data
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    let var = |name| std::env::var_os(name).filter(|d: &std::ffi::OsString| !d.is_empty());
    let is_root = std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt as _;
        m.uid() == 0
    });
    // a user's daemon: the user's runtime dir (a tmpfs of their own under systemd)
    let root = match (var("CAPSTAN_RUN_DIR"), var("XDG_RUNTIME_DIR")) {
        (Some(dir), _) => std::path::PathBuf::from(dir),
        (None, Some(xdg)) if !is_root => std::path::PathBuf::from(xdg).join("capstan"),
        _ => std::path::PathBuf::from("/run/capstan"),
    };
    let dir = root.join(format!("{id:016x}"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {} for secrets", dir.display()))?;
    if !on_tmpfs(&dir) {
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                "mode=0700,size=64m,nosuid,nodev,noexec",
                "capstan-secrets",
            ])
            .arg(&dir)
            .status()
            .with_context(|| format!("cannot run mount for a tmpfs at {}", dir.display()))?;
        anyhow::ensure!(
            status.success() && on_tmpfs(&dir),
            "secrets are placed on a tmpfs, and none could be mounted at {} (run capstan as \
             root, or mount a tmpfs there)",
            dir.display()
        );
    }
    Ok(dir)
}

/// Whether `dir` is on a tmpfs: the longest mount point of `/proc/mounts` that holds it.
fn on_tmpfs(dir: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return false;
    };
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, point, kind) = (f.next()?, f.next()?, f.next()?);
            Some((point.replace("\\040", " "), kind.to_owned()))
        })
        .filter(|(point, _)| dir.starts_with(point))
        .max_by_key(|(point, _)| point.len())
        .is_some_and(|(_, kind)| kind == "tmpfs")
}
