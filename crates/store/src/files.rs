//! Small files capstan keeps beside its databases (alert rules posted through the API, image
//! update state, the log store's origins): replaced whole and durably, so that a crash or a
//! power cut leaves either the old content or the new, never a torn file that stops the daemon
//! from starting.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// Replaces `path` with `bytes`: written to a temporary file beside it (mode 0600), synced,
/// renamed over it, and the directory synced so that the rename itself survives a power cut.
/// Creates the directory when needed.
///
/// # Errors
/// The file or its directory cannot be written.
pub fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace_as(path, bytes, 0o600, None, None)
}

/// [`replace`], the file left with `mode` and owned by `uid`/`gid` when given (set on the
/// temporary file, so that the file never shows with another mode or owner).
///
/// # Errors
/// The file or its directory cannot be written, or owned.
pub fn replace_as(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::chown(&tmp, uid, gid)?;
    }
    if mode != 0o600 {
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Syncs a directory, so that the renames and removals in it are on disk.
///
/// # Errors
/// The directory cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_file_is_replaced_whole_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/rules.json");
        super::replace(&path, b"[1]").unwrap();
        super::replace(&path, b"[1, 2]").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"[1, 2]");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["rules.json"], "no temporary file left");
    }
}
