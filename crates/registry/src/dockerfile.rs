//! The images a Dockerfile pulls: its `FROM` lines, so that a build is given the credentials
//! of those registries alone (not every one capstan knows).

use std::collections::{BTreeMap, HashSet};

use crate::reference::Reference;

/// Every image a Dockerfile's `FROM` lines name, in order: `ARG`s declared before the first
/// `FROM` are substituted (`$NAME`, `${NAME}`, `${NAME:-default}`, a build argument in `args`
/// over the `ARG`'s default); earlier stages and `scratch` are left out, and so is a line
/// whose name does not resolve to a reference.
pub fn dockerfile_bases(text: &str, args: &BTreeMap<String, String>) -> Vec<Reference> {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    let mut seen_from = false;
    for line in logical_lines(text) {
        let mut words = line.split_whitespace();
        let Some(instruction) = words.next() else {
            continue;
        };
        if instruction.eq_ignore_ascii_case("ARG") && !seen_from {
            for decl in words {
                let (name, default) = decl.split_once('=').unwrap_or((decl, ""));
                let value = args
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| default.trim_matches(|c| c == '"' || c == '\'').to_owned());
                vars.insert(name.to_owned(), value);
            }
            continue;
        }
        if !instruction.eq_ignore_ascii_case("FROM") {
            continue;
        }
        seen_from = true;
        let rest: Vec<&str> = words.filter(|w| !w.starts_with("--")).collect();
        let Some(image) = rest.first() else { continue };
        let image = substitute(image, &vars);
        let earlier_stage = stages.contains(&image.to_ascii_lowercase());
        if let [_, as_, stage] = rest.as_slice()
            && as_.eq_ignore_ascii_case("AS")
        {
            stages.insert(stage.to_ascii_lowercase());
        }
        if image.eq_ignore_ascii_case("scratch") || earlier_stage {
            continue;
        }
        if let Ok(r) = Reference::parse(&image) {
            out.push(r);
        }
    }
    out
}

/// Lines with `\` continuations joined, comments and blank lines dropped.
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if current.is_empty() && (line.starts_with('#') || line.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// `$NAME`, `${NAME}` and `${NAME:-default}` from `vars` (unknown names are empty).
fn substitute(word: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'{') {
            chars.next();
            let inner: String = std::iter::from_fn(|| chars.next_if(|c| *c != '}')).collect();
            chars.next();
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner.as_str(), None),
            };
            match (vars.get(name).filter(|v| !v.is_empty()), default) {
                (Some(v), _) => out.push_str(v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {}
            }
        } else {
            let name: String =
                std::iter::from_fn(|| chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_'))
                    .collect();
            out.push_str(vars.get(&name).map_or("", String::as_str));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registries(text: &str, args: &[(&str, &str)]) -> Vec<String> {
        let args = args
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        dockerfile_bases(text, &args)
            .into_iter()
            .map(|r| format!("{}/{}", r.registry, r.repository))
            .collect()
    }

    #[test]
    fn from_lines_name_the_images_a_build_pulls() {
        let text = "# syntax=docker/dockerfile:1\nARG BASE=127.0.0.1:5000/base:1\nARG TAG\nFROM --platform=linux/amd64 ${BASE} AS build\nRUN make\nfrom build as test\nFROM \\\n  ghcr.io/owner/runtime:${TAG:-2}\nCOPY --from=build /app /app\nFROM scratch\n";
        assert_eq!(
            registries(text, &[]),
            ["127.0.0.1:5000/base", "ghcr.io/owner/runtime"]
        );
        assert_eq!(
            registries(text, &[("BASE", "registry.example.com/other:3")]),
            ["registry.example.com/other", "ghcr.io/owner/runtime"]
        );
        assert_eq!(
            registries("FROM $NOPE\nFROM busybox", &[]),
            ["docker.io/library/busybox"]
        );
        assert_eq!(
            registries("FROM alpine AS alpine\nFROM alpine", &[]),
            ["docker.io/library/alpine"]
        );
        assert!(registries("", &[]).is_empty());
    }
}
