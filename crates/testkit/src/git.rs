//! A real git server for the pipeline's tests and benchmark: a bare repository served by
//! `git daemon` on a loopback port, a working clone that commits and pushes to it, and a
//! post-receive hook that posts each push as GitHub does (openssl signs, curl sends).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{eventually, free_port};

/// A bare repository served by `git daemon` (fetch and push, on a loopback port), and a
/// working clone that commits and pushes to it.
pub struct GitServer {
    dir: tempfile::TempDir,
    /// `git://127.0.0.1:PORT/NAME.git`
    pub url: String,
    hook: PathBuf,
    _daemon: tokio::process::Child,
}

/// `git ARGS` in `dir` as Pat Pusher; what it printed.
///
/// # Panics
/// git fails (what it printed is shown).
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Pat Pusher")
        .env("GIT_AUTHOR_EMAIL", "pat@example.com")
        .env("GIT_COMMITTER_NAME", "Pat Pusher")
        .env("GIT_COMMITTER_EMAIL", "pat@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl GitServer {
    /// Serves an empty repository `NAME.git` (branch `main`) and makes its working clone.
    pub async fn start(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        git(
            dir.path(),
            &["init", "-q", "--bare", "-b", "main", &format!("{name}.git")],
        );
        git(dir.path(), &["init", "-q", "-b", "main", "work"]);
        let port = free_port();
        let daemon = tokio::process::Command::new("git")
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--enable=receive-pack",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={}", dir.path().display()),
            ])
            .arg(dir.path())
            // (its children serve connections: they must not hold the test's output open)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let url = format!("git://127.0.0.1:{port}/{name}.git");
        let hook = dir.path().join(format!("{name}.git/hooks/post-receive"));
        eventually(Duration::from_secs(10), "git daemon answering", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(drop)
        })
        .await;
        Self {
            dir,
            url,
            hook,
            _daemon: daemon,
        }
    }

    /// The working clone.
    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Writes `files`, commits them and pushes; the commit's id.
    pub fn push(&self, message: &str, files: &[(&str, &str)]) -> String {
        for (name, text) in files {
            std::fs::write(self.work().join(name), text).unwrap();
        }
        git(&self.work(), &["add", "-A"]);
        git(&self.work(), &["commit", "-q", "-m", message]);
        git(&self.work(), &["push", "-q", &self.url, "main"]);
        git(&self.work(), &["rev-parse", "HEAD"])
    }

    /// Commits `files` on `branch` (made from main) and pushes it; the commit's id. The clone
    /// is back on main after.
    pub fn push_branch(&self, branch: &str, message: &str, files: &[(&str, &str)]) -> String {
        git(&self.work(), &["checkout", "-q", "-B", branch, "main"]);
        for (name, text) in files {
            std::fs::write(self.work().join(name), text).unwrap();
        }
        git(&self.work(), &["add", "-A"]);
        git(&self.work(), &["commit", "-q", "-m", message]);
        git(&self.work(), &["push", "-q", &self.url, branch]);
        let id = git(&self.work(), &["rev-parse", "HEAD"]);
        git(&self.work(), &["checkout", "-q", "main"]);
        id
    }

    /// A post-receive hook posting each pushed branch as GitHub does, signed with `secret`.
    pub fn hook(&self, url: &str, secret: &str) {
        let script = format!(
            r#"#!/bin/sh
while read old new ref; do
  message=$(git log -1 --format=%s "$new")
  body=$(printf '{{"ref":"%s","before":"%s","after":"%s","head_commit":{{"id":"%s","message":"%s","author":{{"name":"Pat Pusher"}}}},"commits":[]}}' "$ref" "$old" "$new" "$new" "$message")
  sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac '{secret}' | sed 's/^.*= //')
  curl -sS -o /dev/null -H 'X-GitHub-Event: push' -H "X-GitHub-Delivery: $new" \
    -H "X-Hub-Signature-256: sha256=$sig" -H 'Content-Type: application/json' \
    --data-binary "$body" '{url}'
done
"#
        );
        std::fs::write(&self.hook, script).unwrap();
        std::fs::set_permissions(&self.hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}
