//! Fetching a commit with the system `git`: one bare cache per repository under
//! `<data>/git`, fetched shallow, and the commit's tree written out for the build. Credentials
//! reach git through its environment (never its arguments, which other users can read), and
//! git never asks on a terminal.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use base64::Engine as _;
use sha2::Digest as _;

/// How many commits a branch is fetched with when the pushed commit cannot be fetched by
/// itself (a server that refuses unadvertised commits).
const DEPTH: &str = "50";

/// A commit id as git prints it (40 or 64 hex digits): anything else is refused before git
/// sees it.
pub fn is_commit(id: &str) -> bool {
    matches!(id.len(), 40 | 64) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The bare cache of `repository` under `cache`.
pub fn cache_dir(cache: &Path, repository: &str) -> PathBuf {
    let digest = sha2::Sha256::digest(repository.as_bytes());
    let name = crate::signature::hex(&digest[..8]);
    cache.join(format!("{name}.git"))
}

/// Runs git; its output goes to `log`, a line at a time.
async fn git(
    args: &[&str],
    credential: Option<&str>,
    log: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<u8>, String> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(c) = credential {
        let header = format!(
            "Authorization: Basic {}",
            base64::engine::general_purpose::STANDARD.encode(c)
        );
        cmd.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env("GIT_CONFIG_VALUE_0", header);
    }
    let out = cmd
        .output()
        .await
        .map_err(|e| format!("cannot run git (is it installed?): {e}"))?;
    for line in String::from_utf8_lossy(&out.stderr).lines() {
        log(line);
    }
    if out.status.success() {
        Ok(out.stdout)
    } else {
        let said = String::from_utf8_lossy(&out.stderr);
        let last = said
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        Err(format!(
            "git {} failed: {last}",
            args.first().unwrap_or(&"")
        ))
    }
}

/// Fetches `commit` of `repository` (on `branch`) into its cache under `cache` and writes its
/// tree into `into`; `credential` is `user:token`.
///
/// # Errors
/// What git said, last line first.
pub async fn checkout(
    cache: &Path,
    repository: &str,
    branch: &str,
    commit: &str,
    credential: Option<&str>,
    into: &Path,
    log: &mut (dyn FnMut(&str) + Send),
) -> Result<(), String> {
    if !is_commit(commit) {
        return Err(format!("{commit:?} is not a commit id"));
    }
    if repository.starts_with('-') || branch.starts_with('-') {
        return Err("a repository or branch cannot start with `-`".into());
    }
    let repo = cache_dir(cache, repository);
    let dir = repo.to_string_lossy().into_owned();
    if !repo.join("HEAD").exists() {
        std::fs::create_dir_all(&repo).map_err(|e| format!("cannot make {dir}: {e}"))?;
        git(&["init", "--bare", "-q", &dir], None, log).await?;
    }
    log(&format!("fetching {commit} from {repository}"));
    let by_id = git(
        &[
            "-C",
            &dir,
            "fetch",
            "-q",
            "--no-tags",
            "--depth",
            "1",
            "--",
            repository,
            commit,
        ],
        credential,
        log,
    )
    .await;
    if by_id.is_err() {
        let refspec = format!("+refs/heads/{branch}:refs/heads/{branch}");
        git(
            &[
                "-C",
                &dir,
                "fetch",
                "-q",
                "--no-tags",
                "--depth",
                DEPTH,
                "--",
                repository,
                &refspec,
            ],
            credential,
            log,
        )
        .await?;
    }
    let object = format!("{commit}^{{commit}}");
    git(&["-C", &dir, "cat-file", "-e", &object], None, log)
        .await
        .map_err(|_| format!("{repository} has no commit {commit} on {branch}"))?;
    let tar = git(&["-C", &dir, "archive", "--format=tar", commit], None, log).await?;
    let into = into.to_owned();
    tokio::task::spawn_blocking(move || tar::Archive::new(&tar[..]).unpack(&into))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot write the commit's files: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_commit_ids_reach_git() {
        assert!(is_commit(&"a".repeat(40)));
        assert!(is_commit(&"0123456789abcdef".repeat(4)));
        assert!(!is_commit("--upload-pack=x"));
        assert!(!is_commit(&"g".repeat(40)));
        assert!(!is_commit("abc"));
    }

    #[test]
    fn each_repository_has_its_own_cache() {
        let a = cache_dir(Path::new("/d"), "http://h/a.git");
        let b = cache_dir(Path::new("/d"), "http://h/b.git");
        assert_ne!(a, b);
        assert!(a.to_string_lossy().ends_with(".git"));
    }
}
