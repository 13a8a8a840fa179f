//! A consumer's cursor file: the last sequence number it delivered, replaced atomically.

use std::io::Write;
use std::path::Path;

use capstan_model::ConfigError;

/// Checks the name of a consumer (a sink, a channel), which names its cursor file too:
/// letters, digits, `-` and `_`.
///
/// # Errors
/// Says so, under the key `name`.
pub fn check_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ConfigError::new(
            "name",
            format!("{name:?} must be letters, digits, - and _"),
        ));
    }
    Ok(())
}

/// The cursor kept in `path`; `None` when there is none yet (or it does not parse).
pub fn read_cursor(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Replaces the cursor file atomically and durably (write, sync, rename, sync the directory),
/// creating its directory.
///
/// # Errors
/// The file cannot be written.
pub fn write_cursor(path: &Path, cursor: u64) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("cursor.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        write!(f, "{cursor}")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // the rename itself is on disk only once the directory is
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        write_cursor(&dir.path().join("s.cursor"), 42).unwrap();
        assert_eq!(read_cursor(&dir.path().join("s.cursor")), Some(42));
        assert_eq!(read_cursor(&dir.path().join("missing.cursor")), None);
    }
}
