//! Names the commit capstan was built from, for `capstan --version` and the health endpoint:
//! `CAPSTAN_COMMIT` when the builder sets it (a packager building from a tarball), else what git
//! says about the checkout, else "unknown".

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=CAPSTAN_COMMIT");
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = std::env::var("CAPSTAN_COMMIT").ok().or_else(|| {
        let commit = git(&dir, &["rev-parse", "--short=12", "HEAD"])?;
        // rebuilt when HEAD moves: where git keeps it (only paths that exist: cargo would rerun
        // the script on every build for one that does not)
        if let Some(git_dir) = git(&dir, &["rev-parse", "--absolute-git-dir"]) {
            let git_dir = PathBuf::from(git_dir);
            let mut watched = vec![git_dir.join("HEAD"), git_dir.join("packed-refs")];
            // the branch's directory, not its file: a branch packed when this ran gets its
            // file at the next commit, which a watch on the file would miss (cargo scans a
            // directory for any change)
            if let Some(name) = git(&dir, &["symbolic-ref", "-q", "HEAD"]) {
                let branch = git_dir.join(name);
                watched.extend(branch.parent().map(std::path::Path::to_path_buf));
            }
            // relative to this package where it can be: two checkouts sharing a target
            // directory share this script's unit, and an absolute path would watch the
            // other checkout's git (cargo resolves a relative one against the package)
            let root = dir.ancestors().nth(2).map(Path::to_path_buf);
            for path in watched.iter().filter(|p| p.exists()) {
                match root.as_deref().and_then(|r| path.strip_prefix(r).ok()) {
                    Some(rest) => println!("cargo:rerun-if-changed=../../{}", rest.display()),
                    None => println!("cargo:rerun-if-changed={}", path.display()),
                }
            }
        }
        Some(commit)
    });
    println!(
        "cargo:rustc-env=CAPSTAN_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
}
