//! What a Compose file names on the caller's disk (env files, bind mounts, build contexts,
//! configs and secrets from files), made absolute; an upload may name none of it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{invalid, service_key_pos};
use crate::error::Error;
use crate::model::{Command, Project};
use crate::node::{Node, Value};

fn absolute(dir: &Path, p: &str) -> String {
    let expanded = match p.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map_or_else(|| PathBuf::from(p), |h| PathBuf::from(h).join(rest)),
        None => PathBuf::from(p),
    };
    let joined = if expanded.is_absolute() {
        expanded
    } else {
        dir.join(expanded)
    };
    // lexical clean-up of ./ and ../ (the path may not exist yet)
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out.display().to_string()
}

/// Reads what lives on the caller's disk and makes paths absolute.
/// What an uploaded file may not name (see [`Options::text`]).
const NOT_BESIDE_AN_UPLOAD: &str = "an uploaded Compose file cannot name files beside it (they \
                                    are on the uploader's side); inline them, or deploy with the CLI";

/// `local`: whether files beside the Compose file may be read (not for an upload).
pub(super) fn resolve_files(
    project: &mut Project,
    dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    tree: &Node,
    local: bool,
) -> Result<(), Error> {
    for (name, service) in &mut project.services {
        if !local && !service.env_file.is_empty() {
            return Err(invalid(
                &service_key_pos(tree, name, "env_file"),
                &format!("services.{name}.env_file"),
                NOT_BESIDE_AN_UPLOAD,
            ));
        }
        let mut env = BTreeMap::new();
        for (i, file) in service.env_file.iter().enumerate() {
            let path = PathBuf::from(absolute(dir, file));
            let pos = tree
                .get("services")
                .and_then(|s| s.get(name))
                .and_then(|s| s.get("env_file"))
                .map_or_else(
                    || service_key_pos(tree, name, "env_file"),
                    |n| match &n.value {
                        Value::Seq(items) => items
                            .get(i)
                            .map_or_else(|| n.pos.clone(), |x| x.pos.clone()),
                        _ => n.pos.clone(),
                    },
                );
            let text = std::fs::read_to_string(&path).map_err(|e| {
                invalid(
                    &pos,
                    &format!("services.{name}.env_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let vars = crate::env::parse(&text).map_err(|(line, m)| {
                invalid(
                    &pos,
                    &format!("services.{name}.env_file"),
                    format!("{}:{line}: {m}", path.display()),
                )
            })?;
            env.extend(vars.into_iter().map(|(k, v)| (k, Some(v))));
        }
        service.env_file.clear();
        // `environment` wins over env files; a bare name takes the caller's value
        for (k, v) in std::mem::take(&mut service.environment) {
            env.insert(k.clone(), v.or_else(|| lookup(&k)));
        }
        env.retain(|_, v| v.is_some());
        service.environment = env;
        if let Some(build) = &mut service.build {
            build.context = absolute(dir, &build.context);
            for (k, v) in &mut build.args {
                if v.is_none() {
                    *v = lookup(k);
                }
            }
        }
        for v in &mut service.volumes {
            if v.kind == "bind"
                && let Some(src) = &v.source
            {
                v.source = Some(absolute(dir, src));
            }
        }
        if let Some(Command::Shell(s)) = &service.command
            && s.is_empty()
        {
            service.command = None;
        }
    }
    for (kind, objects) in [
        ("secrets", &mut project.secrets),
        ("configs", &mut project.configs),
    ] {
        for (name, obj) in objects.iter_mut() {
            let node = tree.get(kind).and_then(|s| s.get(name));
            let pos = node.map_or_else(|| tree.pos.clone(), |n| n.pos.clone());
            let path = format!("{kind}.{name}");
            let sources = [
                obj.file.is_some(),
                obj.environment.is_some(),
                obj.content.is_some(),
                obj.external == Some(true),
            ];
            if sources.iter().filter(|s| **s).count() != 1 {
                return Err(invalid(
                    &pos,
                    &path,
                    "needs exactly one of file, environment, content or external: true",
                ));
            }
            if let Some(file) = &obj.file {
                if !local {
                    return Err(invalid(&pos, &format!("{path}.file"), NOT_BESIDE_AN_UPLOAD));
                }
                let abs = absolute(dir, file);
                if !Path::new(&abs).is_file() {
                    let fpos = node
                        .and_then(|n| n.get("file"))
                        .map_or(pos.clone(), |n| n.pos.clone());
                    return Err(invalid(
                        &fpos,
                        &format!("{path}.file"),
                        format!("file {abs} does not exist"),
                    ));
                }
                obj.file = Some(abs);
            }
            if let Some(var) = &obj.environment
                && lookup(var).is_none()
            {
                let epos = node
                    .and_then(|n| n.get("environment"))
                    .map_or(pos.clone(), |n| n.pos.clone());
                return Err(invalid(
                    &epos,
                    &format!("{path}.environment"),
                    format!("variable {var} is not set"),
                ));
            }
        }
    }
    Ok(())
}
