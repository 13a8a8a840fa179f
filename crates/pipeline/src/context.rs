//! A build context as the engine takes it: a tar of a directory without what its
//! `.dockerignore` excludes (the CLI packs the caller's directory, the pipeline a checkout).

use std::path::{Path, PathBuf};

/// A tar of `dir` without what `.dockerignore` excludes (the Dockerfile and `.dockerignore`
/// are always sent, as docker does).
pub fn pack(dir: &Path, dockerfile: &str) -> std::io::Result<Vec<u8>> {
    if !dir.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "not a directory",
        ));
    }
    if !dir.join(dockerfile).is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no {dockerfile} in it"),
        ));
    }
    let ignore = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(text) => Ignore::parse(&text),
        Err(_) => Ignore::default(),
    };
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut entries: Vec<_> =
            std::fs::read_dir(dir.join(&rel))?.collect::<Result<Vec<_>, _>>()?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let path = rel.join(entry.file_name());
            let name = path.to_string_lossy().replace('\\', "/");
            let always = name == dockerfile || name == ".dockerignore";
            let kind = entry.file_type()?;
            let ignored = !always && ignore.excludes(&name);
            if kind.is_dir() {
                // an excluded directory is still walked when a `!` rule may bring a child back
                if !ignored {
                    builder.append_path_with_name(entry.path(), &path)?;
                }
                if !ignored || ignore.has_exceptions() {
                    stack.push(path);
                }
            } else if !ignored {
                builder.append_path_with_name(entry.path(), &path)?;
            }
        }
    }
    builder.into_inner()
}

/// `.dockerignore` rules: globs with `*`, `?` and `**`, `!` re-includes, the last match wins, and
/// a rule matching a directory matches everything under it.
#[derive(Debug, Default)]
struct Ignore {
    rules: Vec<(bool, Vec<String>)>,
}

impl Ignore {
    fn parse(text: &str) -> Self {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (exception, pattern) = match l.strip_prefix('!') {
                    Some(p) => (true, p.trim()),
                    None => (false, l),
                };
                let pattern = pattern.trim_start_matches("./").trim_start_matches('/');
                let segments = pattern
                    .split('/')
                    .filter(|s| !s.is_empty() && *s != ".")
                    .map(str::to_owned)
                    .collect();
                (exception, segments)
            })
            .collect();
        Self { rules }
    }

    fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|(e, _)| *e)
    }

    fn excludes(&self, path: &str) -> bool {
        let segments: Vec<&str> = path.split('/').collect();
        let mut excluded = false;
        for (exception, pattern) in &self.rules {
            // the path itself or one of its parent directories
            let hit = (1..=segments.len()).any(|n| matches(pattern, &segments[..n]));
            if hit {
                excluded = !exception;
            }
        }
        excluded
    }
}

fn matches(pattern: &[String], path: &[&str]) -> bool {
    match (pattern.first(), path.first()) {
        (None, None) => true,
        (Some(p), _) if p == "**" => {
            matches(&pattern[1..], path) || (!path.is_empty() && matches(pattern, &path[1..]))
        }
        (Some(p), Some(s)) => {
            glob(p.as_bytes(), s.as_bytes()) && matches(&pattern[1..], &path[1..])
        }
        _ => false,
    }
}

/// One path segment against `*` and `?` (neither crosses a `/`).
fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_rules_follow_docker() {
        let ignore = Ignore::parse("# comment\n*.log\nsecrets/\n**/tmp\nnode_modules\n!keep.log\n");
        assert!(ignore.excludes("debug.log"));
        assert!(!ignore.excludes("keep.log"));
        assert!(
            !ignore.excludes("logs/debug.log"),
            "`*` stays in one directory"
        );
        assert!(ignore.excludes("secrets/token"));
        assert!(ignore.excludes("a/b/tmp/x"));
        assert!(ignore.excludes("node_modules/left-pad/index.js"));
        assert!(!ignore.excludes("src/main.rs"));
        assert!(ignore.has_exceptions());
    }

    #[test]
    fn packing_leaves_out_ignored_files_but_never_the_dockerfile() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "*\n!app\n").unwrap();
        std::fs::create_dir(dir.path().join("app")).unwrap();
        std::fs::write(dir.path().join("app/main.sh"), "echo hi\n").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "no\n").unwrap();
        let tar = pack(dir.path(), "Dockerfile").unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, [".dockerignore", "Dockerfile", "app", "app/main.sh"]);
        assert!(pack(dir.path(), "Missing.Dockerfile").is_err());
    }
}
