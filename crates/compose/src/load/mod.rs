//! From `-f` files to a resolved [`Project`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_path_to_error::Segment;

use crate::error::{Error, Warning};
use crate::interpolate::interpolate;
use crate::merge::merge_files;
use crate::model::Project;
use crate::node::{Node, Pos, Value};

mod extends;
mod files;
mod validate;

use files::resolve_files;
use validate::validate;

/// What to load.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The files, in merge order; empty means the files `COMPOSE_FILE` names, else
    /// `compose.yaml` (or `compose.yml`, `docker-compose.yml`, `docker-compose.yaml`) in
    /// `working_dir` with its `compose.override.yaml` (or `.yml`, `docker-compose.override.*`)
    /// merged over it when there is one.
    pub files: Vec<PathBuf>,
    /// `-p`; else `COMPOSE_PROJECT_NAME`, else `name:`, else the project directory's name.
    pub project_name: Option<String>,
    /// `--profile`s to enable (plus `COMPOSE_PROFILES`).
    pub profiles: Vec<String>,
    /// The caller's environment; wins over `.env`.
    pub environment: BTreeMap<String, String>,
    /// `--env-file`; default `.env` in the project directory (if present).
    pub env_file: Option<PathBuf>,
    /// Where relative `-f` paths and the default file are looked up.
    pub working_dir: PathBuf,
    /// The Compose file itself, sent rather than read (an upload to the API): it stands as
    /// `compose.yaml` in `working_dir`, and nothing beside it is read: no `.env`, and an
    /// `env_file` or a config or secret `file` is refused.
    pub text: Option<String>,
}

/// A loaded project.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The resolved model (name set, profiles applied, env files read, paths absolute).
    pub project: Project,
    /// Keys accepted but not acted on.
    pub warnings: Vec<Warning>,
    /// The project directory (the first file's directory).
    pub project_dir: PathBuf,
    /// Where each service's keys are written (`services.web.privileged` →
    /// `compose.yaml:7:5`), for messages about a key after the files are gone (the deploy
    /// policy's refusals).
    pub positions: BTreeMap<String, String>,
}

/// Service keys of the Compose spec that capstan does not apply yet, each with why: refused
/// with file and line, never accepted and dropped (each would change what runs).
const NOT_APPLIED: &[(&str, Why)] = &[
    ("platform", Why::NotYet),
    ("links", Why::NotYet),
    ("external_links", Why::NotYet),
    ("annotations", Why::NotYet),
    ("develop", Why::NotYet),
    ("label_file", Why::NotYet),
    ("post_start", Why::NotYet),
    ("pre_stop", Why::NotYet),
    ("mac_address", Why::NotYet),
    ("volumes_from", Why::Host),
    ("use_api_socket", Why::Host),
    ("isolation", Why::Windows),
    ("credential_spec", Why::Windows),
    ("cpu_count", Why::Windows),
    ("cpu_percent", Why::Windows),
];

/// Why a key in [`NOT_APPLIED`] is refused.
#[derive(Debug, Clone, Copy)]
enum Why {
    NotYet,
    Host,
    Windows,
}

impl Why {
    fn message(self) -> &'static str {
        match self {
            Self::NotYet => {
                "is not applied by capstan yet: refused rather than ignored, as it would change \
                 what runs (take it out, or run this service another way)"
            }
            Self::Host => {
                "reaches into the host and is not applied by capstan yet: refused rather than \
                 ignored (take it out, or run this service another way)"
            }
            Self::Windows => {
                "applies to Windows containers only, and this engine runs Linux containers: \
                 take it out"
            }
        }
    }
}

const DEFAULT_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];

/// The override file merged over the default one when no file is named.
const OVERRIDE_FILES: &[&str] = &[
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// `COMPOSE_FILE` from the caller's environment, else from the `.env` of the working
/// directory: files separated by `COMPOSE_PATH_SEPARATOR` (default `:`). Empty when unset.
fn compose_file(opts: &Options) -> Result<Vec<PathBuf>, Error> {
    if opts.text.is_some() {
        return Ok(Vec::new());
    }
    let mut vars = BTreeMap::new();
    let dotenv = opts.env_file.as_ref().map_or_else(
        || opts.working_dir.join(".env"),
        |f| opts.working_dir.join(f),
    );
    if let Ok(text) = std::fs::read_to_string(&dotenv)
        && let Ok(parsed) = crate::env::parse(&text)
    {
        vars.extend(parsed);
    }
    vars.extend(opts.environment.clone());
    let Some(list) = vars.get("COMPOSE_FILE").filter(|l| !l.is_empty()) else {
        return Ok(Vec::new());
    };
    let separator = vars
        .get("COMPOSE_PATH_SEPARATOR")
        .filter(|s| !s.is_empty())
        .map_or(":", String::as_str);
    let files: Vec<PathBuf> = list
        .split(separator)
        .filter(|f| !f.is_empty())
        .map(PathBuf::from)
        .collect();
    for f in &files {
        if !opts.working_dir.join(f).is_file() {
            return Err(Error::Project(format!(
                "COMPOSE_FILE names {}, which is not a file in {}",
                f.display(),
                opts.working_dir.display()
            )));
        }
    }
    Ok(files)
}

/// How deep `include:` may nest (a file including itself, even through others, is stopped).
const MAX_INCLUDE_DEPTH: usize = 8;

/// Loads a project; see the crate docs.
pub fn load(opts: &Options) -> Result<Loaded, Error> {
    load_at(opts, 0)
}

/// Merges the projects `include:` names into `project`, each loaded from its own directory
/// (its relative paths resolved there, its `.env` read there). A name defined both here and
/// there, otherwise, is refused.
fn include(
    project: &mut Project,
    opts: &Options,
    project_dir: &Path,
    tree: &Node,
    depth: usize,
    warnings: &mut Vec<Warning>,
    positions: &mut BTreeMap<String, String>,
) -> Result<(), Error> {
    let pos = tree
        .key("include")
        .map_or_else(|| tree.pos.clone(), |k| k.pos.clone());
    if opts.text.is_some() {
        return Err(invalid(
            &pos,
            "include",
            "an upload carries one file: deploy it with the capstan CLI, which reads the files it includes",
        ));
    }
    if depth >= MAX_INCLUDE_DEPTH {
        return Err(invalid(
            &pos,
            "include",
            format!("includes nest deeper than {MAX_INCLUDE_DEPTH}: does a file include itself?"),
        ));
    }
    for entry in std::mem::take(&mut project.include) {
        let files: Vec<PathBuf> = entry.path.iter().map(|f| project_dir.join(f)).collect();
        let Some(first) = files.first() else {
            return Err(invalid(&pos, "include", "an entry names no file"));
        };
        let dir = entry.project_directory.as_ref().map_or_else(
            || {
                first
                    .parent()
                    .map_or_else(|| project_dir.to_owned(), Path::to_path_buf)
            },
            |d| project_dir.join(d),
        );
        let sub = Options {
            files: files.clone(),
            project_name: project.name.clone(),
            profiles: opts.profiles.clone(),
            environment: opts.environment.clone(),
            env_file: entry.env_file.first().map(|f| project_dir.join(f)),
            working_dir: dir,
            text: None,
        };
        let included = load_at(&sub, depth + 1)?;
        let shown = entry.path.join(", ");
        let clash = |kind: &str, name: &str| {
            invalid(
                &pos,
                "include",
                format!(
                    "{kind}.{name} is defined by {shown} and by this project otherwise: one of them must go, or say the same"
                ),
            )
        };
        for (name, s) in included.project.services {
            if project.services.get(&name).is_some_and(|mine| *mine != s) {
                return Err(clash("services", &name));
            }
            project.services.insert(name, s);
        }
        for (name, n) in included.project.networks {
            if project.networks.get(&name).is_some_and(|mine| *mine != n) {
                return Err(clash("networks", &name));
            }
            project.networks.insert(name, n);
        }
        for (name, v) in included.project.volumes {
            if project.volumes.get(&name).is_some_and(|mine| *mine != v) {
                return Err(clash("volumes", &name));
            }
            project.volumes.insert(name, v);
        }
        for (kind, mine, theirs) in [
            ("configs", &mut project.configs, included.project.configs),
            ("secrets", &mut project.secrets, included.project.secrets),
        ] {
            for (name, f) in theirs {
                if mine.get(&name).is_some_and(|m| *m != f) {
                    return Err(clash(kind, &name));
                }
                mine.insert(name, f);
            }
        }
        warnings.extend(included.warnings);
        for (k, v) in included.positions {
            positions.entry(k).or_insert(v);
        }
    }
    Ok(())
}

fn load_at(opts: &Options, depth: usize) -> Result<Loaded, Error> {
    let named = if opts.files.is_empty() {
        compose_file(opts)?
    } else {
        opts.files.clone()
    };
    let files = if opts.text.is_some() {
        vec![opts.working_dir.join("compose.yaml")]
    } else if named.is_empty() {
        let found = DEFAULT_FILES
            .iter()
            .map(|f| opts.working_dir.join(f))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                Error::Project(format!(
                    "no compose.yaml (or compose.yml, docker-compose.yml) in {}; name one with -f",
                    opts.working_dir.display()
                ))
            })?;
        // its override beside it, merged over it, as docker compose does
        let mut files = vec![found];
        files.extend(
            OVERRIDE_FILES
                .iter()
                .map(|f| opts.working_dir.join(f))
                .find(|p| p.is_file()),
        );
        files
    } else {
        named.iter().map(|f| opts.working_dir.join(f)).collect()
    };
    // errors name files as the user did
    let shown: Vec<String> = if opts.text.is_some() {
        vec!["compose.yaml".to_owned()]
    } else if named.is_empty() {
        files.iter().map(|f| f.display().to_string()).collect()
    } else {
        named.iter().map(|f| f.display().to_string()).collect()
    };
    let project_dir = files[0]
        .parent()
        .map_or_else(|| opts.working_dir.clone(), Path::to_path_buf);

    // the environment for interpolation: .env first, the caller's environment wins
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let dotenv = opts
        .env_file
        .clone()
        .map_or_else(|| project_dir.join(".env"), |f| opts.working_dir.join(f));
    if opts.text.is_none() && (dotenv.is_file() || opts.env_file.is_some()) {
        let text = read(&dotenv)?;
        let parsed = crate::env::parse(&text).map_err(|(line, message)| Error::Invalid {
            pos: Pos {
                file: dotenv.display().to_string().into(),
                line,
                col: 1,
            },
            path: "env file".into(),
            message,
        })?;
        vars.extend(parsed);
    }
    vars.extend(opts.environment.clone());
    let lookup = |name: &str| vars.get(name).cloned();

    let mut warnings = Vec::new();
    let mut merged: Option<Node> = None;
    for (file, name) in files.iter().zip(&shown) {
        let text = match &opts.text {
            Some(text) => text.clone(),
            None => read(file)?,
        };
        let mut node = Node::parse(name, &text)?;
        interpolate_tree(&mut node, &lookup, &mut Vec::new())?;
        strip(&mut node)?;
        merged = Some(match merged {
            None => node,
            Some(base) => merge_files(base, node),
        });
    }
    let mut tree = merged.unwrap_or_else(|| Node::parse("", "").unwrap_or_else(|_| unreachable!()));
    let load_other = |path: &Path| -> Result<Node, Error> {
        let shown = path.display().to_string();
        let mut node = Node::parse(&shown, &read(path)?)?;
        interpolate_tree(&mut node, &lookup, &mut Vec::new())?;
        strip(&mut node)?;
        Ok(node)
    };
    extends::resolve(
        &mut tree,
        &project_dir,
        opts.text
            .is_none()
            .then_some(&load_other as &extends::LoadFile<'_>),
    )?;
    if !matches!(tree.value, Value::Map(_)) {
        return Err(invalid(
            &tree.pos,
            "(top level)",
            "a Compose file is a mapping with `services:`",
        ));
    }

    let json = tree.to_json();
    let mut project: Project =
        serde_path_to_error::deserialize(json).map_err(|e| serde_error(&tree, &e))?;
    if let Some(v) = tree.key("version") {
        warnings.push(Warning {
            pos: v.pos.clone(),
            path: "version".into(),
            message: "obsolete; ignored".into(),
        });
        project.version = None;
    }

    project.name = Some(project_name(opts, &vars, &project, &project_dir, &tree)?);
    let mut included_positions = BTreeMap::new();
    if !project.include.is_empty() {
        include(
            &mut project,
            opts,
            &project_dir,
            &tree,
            depth,
            &mut warnings,
            &mut included_positions,
        )?;
    }
    apply_profiles(opts, &vars, &mut project, &tree)?;
    resolve_files(
        &mut project,
        &project_dir,
        &lookup,
        &tree,
        opts.text.is_none(),
    )?;
    validate(&project, &tree)?;
    crate::routes::resolve(&mut project).map_err(|e| {
        let pos = match e.path.strip_prefix("services.") {
            Some(rest) => service_key_pos(&tree, rest.split('.').next().unwrap_or(""), "labels"),
            None => tree
                .key(CAPSTAN_EXTENSION)
                .map_or_else(|| tree.pos.clone(), |k| k.pos.clone()),
        };
        invalid(&pos, &e.path, e.message)
    })?;
    let mut positions = positions(&tree);
    for (k, v) in included_positions {
        positions.entry(k).or_insert(v);
    }
    Ok(Loaded {
        project,
        warnings,
        project_dir,
        positions,
    })
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

fn invalid(pos: &Pos, path: &str, message: impl Into<String>) -> Error {
    Error::Invalid {
        pos: pos.clone(),
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Interpolates every string value (keys are left alone).
fn interpolate_tree(
    node: &mut Node,
    lookup: &dyn Fn(&str) -> Option<String>,
    path: &mut Vec<String>,
) -> Result<(), Error> {
    match &mut node.value {
        Value::Str(s) => {
            *s = interpolate(s, lookup).map_err(|m| invalid(&node.pos, &path.join("."), m))?;
        }
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(format!("[{i}]"));
                interpolate_tree(item, lookup, path)?;
                path.pop();
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                path.push(k.name.clone());
                interpolate_tree(v, lookup, path)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

/// capstan's top-level extension: `x-capstan: {source: …}`.
const CAPSTAN_EXTENSION: &str = "x-capstan";

/// Drops `x-` extensions where the spec allows them, and refuses a service key capstan does not
/// apply yet ([`NOT_APPLIED`]): dropped, the service would run otherwise than written, and the
/// deploy policy could not be asked about it.
fn strip(root: &mut Node) -> Result<(), Error> {
    let Value::Map(entries) = &mut root.value else {
        return Ok(());
    };
    // capstan's own extension is read (and checked, key by key) as the project's
    entries.retain(|(k, _)| !k.name.starts_with("x-") || k.name == CAPSTAN_EXTENSION);
    for (section, items) in entries.iter_mut() {
        if section.name == CAPSTAN_EXTENSION {
            continue;
        }
        let Value::Map(items) = &mut items.value else {
            continue;
        };
        for (name, def) in items.iter_mut() {
            let Value::Map(keys) = &mut def.value else {
                continue;
            };
            if section.name == "services"
                && let Some((k, why)) = keys.iter().find_map(|(k, _)| {
                    NOT_APPLIED
                        .iter()
                        .find(|(name, _)| *name == k.name)
                        .map(|(_, why)| (k, *why))
                })
            {
                return Err(invalid(
                    &k.pos,
                    &format!("services.{}.{}", name.name, k.name),
                    why.message(),
                ));
            }
            keys.retain(|(k, _)| !k.name.starts_with("x-"));
        }
    }
    Ok(())
}

/// The nodes along a serde path (root first), with the path as text.
fn locate<'a>(tree: &'a Node, path: &serde_path_to_error::Path) -> (Vec<&'a Node>, Vec<String>) {
    let mut nodes = vec![tree];
    let mut names = Vec::new();
    for seg in path {
        let node = nodes[nodes.len() - 1];
        let next = match seg {
            Segment::Map { key } => {
                names.push(key.clone());
                node.get(key)
            }
            Segment::Seq { index } => {
                names.push(format!("[{index}]"));
                match &node.value {
                    Value::Seq(items) => items.get(*index),
                    _ => None,
                }
            }
            Segment::Enum { .. } | Segment::Unknown => continue,
        };
        match next {
            Some(n) => nodes.push(n),
            None => break,
        }
    }
    (nodes, names)
}

fn path_text(names: &[String]) -> String {
    let mut out = String::new();
    for n in names {
        if !out.is_empty() && !n.starts_with('[') {
            out.push('.');
        }
        out.push_str(n);
    }
    if out.is_empty() {
        "(top level)".into()
    } else {
        out
    }
}

fn serde_error(tree: &Node, e: &serde_path_to_error::Error<serde_json::Error>) -> Error {
    let (nodes, names) = locate(tree, e.path());
    let message = e.inner().to_string();
    let node = nodes[nodes.len() - 1];
    // an unknown key: point at the key itself, and list the known ones
    if let Some(name) = message
        .strip_prefix("unknown field `")
        .and_then(|m| m.split('`').next())
    {
        let holder = nodes.iter().rev().find(|n| n.key(name).is_some());
        if let Some(key) = holder.and_then(|n| n.key(name)) {
            let mut names = names.clone();
            if names.last().map(String::as_str) != Some(name) {
                names.push(name.to_owned());
            }
            let known = message.split("expected ").nth(1).unwrap_or_default();
            return invalid(
                &key.pos,
                &path_text(&names),
                format!("unknown key `{name}` (expected {known})"),
            );
        }
    }
    invalid(&node.pos, &path_text(&names), message)
}

fn project_name(
    opts: &Options,
    vars: &BTreeMap<String, String>,
    project: &Project,
    dir: &Path,
    tree: &Node,
) -> Result<String, Error> {
    let (raw, from) = if let Some(p) = &opts.project_name {
        (p.clone(), "-p")
    } else if let Some(p) = vars.get("COMPOSE_PROJECT_NAME").filter(|p| !p.is_empty()) {
        (p.clone(), "COMPOSE_PROJECT_NAME")
    } else if let Some(p) = &project.name {
        (p.clone(), "name")
    } else {
        let base = dir
            .canonicalize()
            .unwrap_or_else(|_| dir.to_path_buf())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // the directory name is normalised, an explicit name must already be valid
        let normal: String = base
            .to_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        (normal, "the project directory")
    };
    // the app's name: the one rule capstan keeps for what becomes a path and a label
    let Err(e) = capstan_model::check_app_name(&raw) else {
        return Ok(raw);
    };
    let message = format!("project name {raw:?} (from {from}) {}", e.why);
    match (from, tree.get("name")) {
        ("name", Some(n)) => Err(invalid(&n.pos, "name", message)),
        _ => Err(Error::Project(message)),
    }
}

fn apply_profiles(
    opts: &Options,
    vars: &BTreeMap<String, String>,
    project: &mut Project,
    tree: &Node,
) -> Result<(), Error> {
    let mut active: BTreeSet<String> = opts.profiles.iter().cloned().collect();
    if let Some(env) = vars.get("COMPOSE_PROFILES") {
        active.extend(
            env.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
        );
    }
    let all = active.contains("*");
    let disabled: BTreeSet<String> = project
        .services
        .iter()
        .filter(|(_, s)| {
            !s.profiles.is_empty() && !all && !s.profiles.iter().any(|p| active.contains(p))
        })
        .map(|(n, _)| n.clone())
        .collect();
    for (name, service) in &project.services {
        if disabled.contains(name) {
            continue;
        }
        for dep in service.depends_on.iter().flat_map(|d| d.0.keys()) {
            if disabled.contains(dep) {
                let pos = service_key_pos(tree, name, "depends_on");
                return Err(invalid(
                    &pos,
                    &format!("services.{name}.depends_on"),
                    format!(
                        "depends on {dep:?}, whose profiles are not enabled (enable one with --profile)"
                    ),
                ));
            }
        }
    }
    project.services.retain(|n, _| !disabled.contains(n));
    Ok(())
}

/// Where every `services.<name>.<key>` is written.
fn positions(tree: &Node) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(Value::Map(services)) = tree.get("services").map(|s| &s.value) else {
        return out;
    };
    for (name, def) in services {
        if let Value::Map(keys) = &def.value {
            for (key, _) in keys {
                out.insert(
                    format!("services.{}.{}", name.name, key.name),
                    key.pos.to_string(),
                );
            }
        }
    }
    out
}

fn service_key_pos(tree: &Node, service: &str, key: &str) -> Pos {
    let services = tree.get("services");
    let svc = services.and_then(|s| s.get(service));
    // a dotted key (`deploy.resources.limits.cpus`): as deep as the file writes it
    let mut found = None;
    let mut node = svc;
    for part in key.split('.') {
        let Some(n) = node else { break };
        match n.key(part) {
            Some(k) => found = Some(k.pos.clone()),
            None => break,
        }
        node = n.get(part);
    }
    found
        .or_else(|| services.and_then(|s| s.key(service)).map(|k| k.pos.clone()))
        .unwrap_or_else(|| tree.pos.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_mode_placement_and_endpoint_mode_are_read_and_bad_values_refused_with_their_line() {
        let ok = load_text(
            "services:\n  agent:\n    image: a\n    deploy:\n      mode: global\n      \
             endpoint_mode: dnsrr\n      placement:\n        constraints: [node.role==worker]\n        \
             preferences: [{spread: node.labels.zone}]\n        max_replicas_per_node: 1\n",
        )
        .unwrap();
        let agent = &ok.project.services["agent"];
        assert!(agent.is_global());
        assert_eq!(agent.declared_replicas(), 1);
        let placement = agent.deploy.as_ref().unwrap().placement.as_ref().unwrap();
        assert_eq!(placement.constraints, ["node.role==worker"]);
        assert_eq!(placement.preferences[0].spread, "node.labels.zone");
        for (deploy, says) in [
            ("{mode: everywhere}", "deploy.mode"),
            ("{mode: global, replicas: 2}", "take deploy.replicas"),
            ("{endpoint_mode: vip}", "IPVS"),
            (
                "{placement: {constraints: [node.role]}}",
                "is not a constraint",
            ),
            (
                "{placement: {max_replicas_per_node: 0}}",
                "max_replicas_per_node",
            ),
        ] {
            let e = load_text(&format!(
                "services:\n  web:\n    image: w\n    deploy: {deploy}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("compose.yaml:4") && e.contains(says),
                "{deploy}: {e}"
            );
        }
    }

    fn load_text(text: &str) -> Result<Loaded, Error> {
        load(&Options {
            project_name: Some("shop".into()),
            working_dir: std::env::temp_dir(),
            text: Some(text.into()),
            ..Options::default()
        })
    }

    #[test]
    fn the_override_file_and_compose_file_choose_the_files_as_docker_compose_does() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("compose.yaml", "services:\n  web:\n    image: a:1\n");
        write(
            "compose.override.yaml",
            "services:\n  web:\n    image: a:2\n",
        );
        write("prod.yaml", "services:\n  web:\n    image: a:3\n");
        write("extra.yaml", "services:\n  cache:\n    image: c:1\n");
        let load_in = |environment: &[(&str, &str)]| {
            load(&Options {
                project_name: Some("shop".into()),
                working_dir: dir.path().to_owned(),
                environment: environment
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                ..Options::default()
            })
        };
        // the override beside the default file is merged over it
        let loaded = load_in(&[]).unwrap();
        assert_eq!(loaded.project.services["web"].image.as_deref(), Some("a:2"));
        // COMPOSE_FILE names the files instead (the override is not added), in order
        let loaded = load_in(&[("COMPOSE_FILE", "compose.yaml:prod.yaml:extra.yaml")]).unwrap();
        assert_eq!(loaded.project.services["web"].image.as_deref(), Some("a:3"));
        assert!(loaded.project.services.contains_key("cache"));
        let loaded = load_in(&[
            ("COMPOSE_FILE", "prod.yaml;compose.yaml"),
            ("COMPOSE_PATH_SEPARATOR", ";"),
        ])
        .unwrap();
        assert_eq!(loaded.project.services["web"].image.as_deref(), Some("a:1"));
        // from the .env of the working directory too; the caller's environment wins
        write(".env", "COMPOSE_FILE=prod.yaml\n");
        assert_eq!(
            load_in(&[]).unwrap().project.services["web"]
                .image
                .as_deref(),
            Some("a:3")
        );
        assert_eq!(
            load_in(&[("COMPOSE_FILE", "compose.yaml")])
                .unwrap()
                .project
                .services["web"]
                .image
                .as_deref(),
            Some("a:1")
        );
        // a file it names that is not there is said
        let e = load_in(&[("COMPOSE_FILE", "nope.yaml")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("COMPOSE_FILE names nope.yaml"), "{e}");
    }

    #[test]
    fn extends_builds_a_service_on_another_of_the_same_file_or_one_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write(
            "compose.yaml",
            "services:\n  base:\n    image: a:1\n    environment: {A: '1', B: '1'}\n    expose: ['3000']\n  web:\n    extends: base\n    environment: {B: '2'}\n    expose: ['3001']\n  worker:\n    extends: {file: common.yaml, service: job}\n    command: run\n",
        );
        write(
            "common.yaml",
            "services:\n  job:\n    extends: root\n    image: j:1\n  root:\n    image: r:1\n    init: true\n",
        );
        let load_in = || {
            load(&Options {
                project_name: Some("shop".into()),
                working_dir: dir.path().to_owned(),
                ..Options::default()
            })
        };
        let loaded = load_in().unwrap();
        let web = &loaded.project.services["web"];
        assert_eq!(web.image.as_deref(), Some("a:1"));
        assert_eq!(web.environment["A"].as_deref(), Some("1"));
        assert_eq!(web.environment["B"].as_deref(), Some("2"));
        assert_eq!(web.expose, ["3000", "3001"], "lists add up");
        let worker = &loaded.project.services["worker"];
        assert_eq!(worker.image.as_deref(), Some("j:1"));
        assert_eq!(worker.init, Some(true), "extends of extends");
        assert!(
            !loaded.project.services.contains_key("job"),
            "only what is named"
        );
        // what cannot be extended, or is not there, or goes round: said with where
        for (text, said) in [
            (
                "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n  c:\n    extends: a\n",
                "compose.yaml:8:5: services.c.extends: a has depends_on, which ties it to other services",
            ),
            (
                "services:\n  c:\n    extends: nope\n    image: x\n",
                "compose.yaml:3:5: services.c.extends: no service \"nope\" in these files",
            ),
            (
                "services:\n  a:\n    extends: b\n  b:\n    extends: a\n",
                "extends goes round",
            ),
            (
                "services:\n  c:\n    extends: {file: ../elsewhere.yaml, service: x}\n",
                "is not beside the project's files",
            ),
        ] {
            write("compose.yaml", text);
            let e = load_in().unwrap_err().to_string();
            assert!(e.contains(said), "{e}");
        }
        // an upload reads no other file
        let e = load_text("services:\n  c:\n    extends: {file: common.yaml, service: job}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("an upload carries one file"), "{e}");
    }

    #[test]
    fn include_brings_in_another_files_services_with_their_own_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write(
            "compose.yaml",
            "include:\n  - db/compose.yaml\nservices:\n  web:\n    image: w:1\n    depends_on: [db]\n",
        );
        write(
            "db/compose.yaml",
            "services:\n  db:\n    image: \"postgres:${PG:-15}\"\n    volumes: ['./data:/var/lib/postgresql/data']\nvolumes:\n  cache:\n",
        );
        write("db/.env", "PG=16\n");
        let load_in = || {
            load(&Options {
                project_name: Some("shop".into()),
                working_dir: dir.path().to_owned(),
                ..Options::default()
            })
        };
        let loaded = load_in().unwrap();
        let db = &loaded.project.services["db"];
        // its own .env, and its relative paths from its own directory
        assert_eq!(db.image.as_deref(), Some("postgres:16"));
        assert_eq!(
            db.volumes[0].source.as_deref(),
            Some(dir.path().join("db/data").display().to_string().as_str())
        );
        assert!(loaded.project.volumes.contains_key("cache"));
        assert!(loaded.project.services.contains_key("web"));
        // the same name defined otherwise on both sides is refused
        write(
            "compose.yaml",
            "include:\n  - db/compose.yaml\nservices:\n  db:\n    image: other\n",
        );
        let e = load_in().unwrap_err().to_string();
        assert!(
            e.contains("compose.yaml:1:1: include: services.db is defined by db/compose.yaml and by this project otherwise"),
            "{e}"
        );
        // a file that includes itself stops
        write("compose.yaml", "include: [compose.yaml]\nservices: {}\n");
        let e = load_in().unwrap_err().to_string();
        assert!(e.contains("includes nest deeper than"), "{e}");
        // an upload reads no other file
        let e = load_text("include: [db/compose.yaml]\nservices: {}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("an upload carries one file"), "{e}");
    }

    #[test]
    fn port_ranges_are_one_port_per_target() {
        let ports = |spec: &str| {
            load_text(&format!(
                "services:\n  web:\n    image: a\n    ports: [\"{spec}\"]\n"
            ))
            .map(|l| {
                l.project.services["web"]
                    .ports
                    .iter()
                    .map(|p| {
                        format!(
                            "{}{}:{}/{}",
                            p.host_ip
                                .as_deref()
                                .map(|h| format!("{h}:"))
                                .unwrap_or_default(),
                            p.published.as_deref().unwrap_or("-"),
                            p.target,
                            p.protocol
                        )
                    })
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            ports("8000-8002:9000-9002").unwrap(),
            ["8000:9000/tcp", "8001:9001/tcp", "8002:9002/tcp"]
        );
        assert_eq!(
            ports("127.0.0.1:5000-5001:6000-6001/udp").unwrap(),
            ["127.0.0.1:5000:6000/udp", "127.0.0.1:5001:6001/udp"]
        );
        assert_eq!(ports("3000-3001").unwrap(), ["-:3000/tcp", "-:3001/tcp"]);
        // a range of host ports for one target stays one port (the proxy refuses it)
        assert_eq!(ports("8000-8010:80").unwrap(), ["8000-8010:80/tcp"]);
        for (bad, said) in [
            ("8000-8001:9000-9002", "differ in length"),
            ("9002-9000", "runs backwards"),
            ("8000-8001:0-1", "not a port number"),
        ] {
            let e = ports(bad).unwrap_err().to_string();
            assert!(e.contains(said), "{bad}: {e}");
        }
        // UDP published by the engine: one replica, one host port per target
        let e = load_text(
            "services:\n  dns:\n    image: a\n    scale: 2\n    ports: ['5353:53/udp']\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(
                "compose.yaml:5:5: services.dns.ports: 5353:53/udp is published by the engine"
            ),
            "{e}"
        );
    }

    #[test]
    fn x_capstan_is_read_and_checked_other_extensions_are_dropped() {
        let loaded = load_text(
            "x-other: {anything: 1}\nx-capstan:\n  source:\n    repository: https://git.example.com/shop.git\n    paths: [web]\nservices:\n  web:\n    image: busybox\n",
        )
        .unwrap();
        let source = loaded.project.capstan.unwrap().source.unwrap();
        assert_eq!(source.repository, "https://git.example.com/shop.git");
        assert_eq!(source.branch, "main");
        assert_eq!(source.paths, ["web"]);
        let e = load_text(
            "x-capstan:\n  source:\n    repository: x\n    brnch: dev\nservices:\n  web:\n    image: busybox\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("compose.yaml:4:5"), "{e}");
        assert!(e.contains("brnch"), "{e}");
    }

    #[test]
    fn host_level_keys_capstan_does_not_apply_are_refused_not_dropped() {
        for key in ["volumes_from: [other]", "use_api_socket: true"] {
            let text = format!("services:\n  web:\n    image: busybox\n    {key}\n");
            let e = load_text(&text).unwrap_err().to_string();
            let name = key.split(':').next().unwrap();
            assert!(
                e.contains(&format!("compose.yaml:4:5: services.web.{name}")),
                "{e}"
            );
            assert!(e.contains("refused rather than ignored"), "{e}");
        }
        // so is every other key not applied yet, each with why; Windows' own say so
        for (key, why) in [
            ("label_file: ./labels", "not applied by capstan yet"),
            ("isolation: process", "Windows containers only"),
            ("cpu_count: 2", "Windows containers only"),
        ] {
            let text = format!("services:\n  web:\n    image: busybox\n    {key}\n");
            let e = load_text(&text).unwrap_err().to_string();
            let name = key.split(':').next().unwrap();
            assert!(
                e.contains(&format!("compose.yaml:4:5: services.web.{name}: ")) && e.contains(why),
                "{e}"
            );
        }
        // the keys capstan applies load without a warning
        let loaded = load_text("services:\n  web:\n    image: busybox\n    tty: true\n    mem_limit: 64m\n    attach: false\n").unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(loaded.positions["services.web.image"], "compose.yaml:3:5");
    }
}
