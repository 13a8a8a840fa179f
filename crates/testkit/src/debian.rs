//! A real Debian image: `debootstrap --variant=minbase bookworm` from Debian's mirror, its
//! root filesystem kept as a tarball under `/var/tmp` (outside any clone) so later runs import
//! it without the mirror, and imported through the engine as one layer. Its package versions
//! follow the mirror: tests read its own `dpkg/status` for what to expect.

use std::io::Read;
use std::path::{Path, PathBuf};

use capstan_engine::Engine;

/// The test image's reference.
pub const DEBIAN: &str = "capstan-test/debian:bookworm";

/// The cached root filesystem.
const TARBALL: &str = "/var/tmp/capstan-debian-bookworm-minbase.tar";
const MIRROR: &str = "http://deb.debian.org/debian";

/// The imported image and the `var/lib/dpkg/status` it holds.
pub struct DebianImage {
    pub reference: String,
    pub dpkg_status: String,
}

fn lock(path: &Path) -> std::fs::File {
    let lock = std::fs::File::create(path).unwrap();
    lock.lock().unwrap();
    lock
}

/// Makes the tarball unless it is there (a minute or so; one process at a time).
fn ensure_tarball() -> PathBuf {
    let tarball = PathBuf::from(TARBALL);
    let _lock = lock(&tarball.with_extension("lock"));
    if tarball.exists() {
        return tarball;
    }
    assert!(
        Path::new("/usr/sbin/debootstrap").exists(),
        "debootstrap is missing: run the tests with scripts/test, which installs it"
    );
    let root = tempfile::Builder::new()
        .prefix("capstan-debootstrap-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let out = std::process::Command::new("/usr/sbin/debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(root.path())
        .arg(MIRROR)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "debootstrap failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let partial = tarball.with_extension("tar.partial");
    let out = std::process::Command::new("tar")
        .arg("-C")
        .arg(root.path())
        .arg("-cf")
        .arg(&partial)
        .args([
            "--exclude=./dev/*",
            "--exclude=./proc/*",
            "--exclude=./sys/*",
            ".",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&partial, &tarball).unwrap();
    tarball
}

/// `var/lib/dpkg/status` from the tarball.
fn dpkg_status(tarball: &Path) -> String {
    let mut archive = tar::Archive::new(std::fs::File::open(tarball).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        if path.trim_start_matches("./") == "var/lib/dpkg/status" {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            return text;
        }
    }
    panic!("{} has no var/lib/dpkg/status", tarball.display());
}

/// A Debian root filesystem (the same minbase) unpacked into `dir`, to `chroot` into.
pub async fn debian_root(dir: &Path) {
    let tarball = tokio::task::spawn_blocking(ensure_tarball).await.unwrap();
    let out = tokio::process::Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-xf")
        .arg(&tarball)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "cannot unpack {}: {}",
        tarball.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Imports [`DEBIAN`] unless the engine has it (building the tarball first if need be).
pub async fn debian_image(engine: &Engine) -> DebianImage {
    let tarball = tokio::task::spawn_blocking(ensure_tarball).await.unwrap();
    let dir = crate::run_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let lock_path = dir.join("debian.lock");
    let guard = tokio::task::spawn_blocking(move || lock(&lock_path))
        .await
        .unwrap();
    if engine.inspect_image(DEBIAN).await.unwrap().is_none() {
        let bytes = tokio::fs::read(&tarball).await.unwrap();
        engine.import_rootfs(bytes.into(), DEBIAN).await.unwrap();
    }
    drop(guard);
    let status = tokio::task::spawn_blocking(move || dpkg_status(&tarball))
        .await
        .unwrap();
    DebianImage {
        reference: DEBIAN.to_owned(),
        dpkg_status: status,
    }
}
