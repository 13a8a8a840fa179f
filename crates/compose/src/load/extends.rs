//! `extends`: a service built on another one (of the same files, or of another file beside
//! them), merged as a later file merges over an earlier one: the extending service's own keys
//! win, lists like `ports` add up, mappings like `environment` merge key by key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::invalid;
use crate::Error;
use crate::merge::merge_files;
use crate::node::{Key, Node, Pos, Value};

/// Keys that tie a service to others: a service with one of them cannot be extended (the
/// Compose specification's restriction).
const TIES: &[&str] = &["depends_on", "links", "volumes_from"];

/// How `extends` reads another file: parsed, interpolated and stripped as the loader does.
pub(super) type LoadFile<'a> = dyn Fn(&Path) -> Result<Node, Error> + 'a;

/// Replaces every service of `tree` that has `extends` with the service it extends, its own
/// keys merged over it. `project_dir` is where `extends.file` is looked up; `load` reads
/// one (`None`: nothing may be read, an upload).
pub(super) fn resolve(
    tree: &mut Node,
    project_dir: &Path,
    load: Option<&LoadFile<'_>>,
) -> Result<(), Error> {
    let names: Vec<String> = tree
        .get("services")
        .and_then(Node::entries)
        .map(|e| e.iter().map(|(k, _)| k.name.clone()).collect())
        .unwrap_or_default();
    let mut files: BTreeMap<PathBuf, Node> = BTreeMap::new();
    let mut resolved = Vec::new();
    for name in names {
        let mut stack = Vec::new();
        let node = service(tree, None, &name, project_dir, load, &mut files, &mut stack)?;
        resolved.push((name, node));
    }
    if let Some(Node {
        value: Value::Map(services),
        ..
    }) = services_mut(tree)
    {
        for (name, node) in resolved {
            if let Some((_, slot)) = services.iter_mut().find(|(k, _)| k.name == name) {
                *slot = node;
            }
        }
    }
    Ok(())
}

fn services_mut(tree: &mut Node) -> Option<&mut Node> {
    match &mut tree.value {
        Value::Map(entries) => entries
            .iter_mut()
            .find(|(k, _)| k.name == "services")
            .map(|(_, v)| v),
        _ => None,
    }
}

/// Service `name` of `tree` (the main files' when `file` is `None`), its `extends` resolved.
fn service(
    tree: &Node,
    file: Option<&Path>,
    name: &str,
    project_dir: &Path,
    load: Option<&LoadFile<'_>>,
    files: &mut BTreeMap<PathBuf, Node>,
    stack: &mut Vec<(Option<PathBuf>, String)>,
) -> Result<Node, Error> {
    let Some(svc) = tree.get("services").and_then(|s| s.get(name)).cloned() else {
        return Err(Error::Project(format!("no service {name:?} to extend")));
    };
    let Some(ext) = svc.get("extends").cloned() else {
        return Ok(svc);
    };
    let ext_pos = svc
        .key("extends")
        .map_or_else(|| svc.pos.clone(), |k| k.pos.clone());
    let path = format!("services.{name}.extends");
    let (base_file, base) = match &ext.value {
        Value::Str(s) => (None, s.clone()),
        Value::Map(_) => {
            let base = ext.get("service").and_then(Node::scalar).ok_or_else(|| {
                invalid(
                    &ext_pos,
                    &path,
                    "name the service to extend (service: NAME)",
                )
            })?;
            (ext.get("file").and_then(Node::scalar), base)
        }
        _ => {
            return Err(invalid(
                &ext_pos,
                &path,
                "expected a service name or {service, file}",
            ));
        }
    };
    // a file beside the project's (its relative paths then mean the same)
    let base_path = match &base_file {
        None => file.map(Path::to_path_buf),
        Some(f) => {
            let Some(load) = load else {
                return Err(invalid(
                    &ext_pos,
                    &path,
                    "an upload carries one file: extend a service of the same file",
                ));
            };
            let p = project_dir.join(f);
            if p.parent() != Some(project_dir) {
                return Err(invalid(
                    &ext_pos,
                    &path,
                    format!(
                        "{f} is not beside the project's files: the relative paths of its services would mean something else here; put it in {}",
                        project_dir.display()
                    ),
                ));
            }
            if !files.contains_key(&p) {
                let loaded = load(&p)?;
                files.insert(p.clone(), loaded);
            }
            Some(p)
        }
    };
    let at = (base_path.clone(), base.clone());
    if stack.contains(&at) || (base_path.as_deref() == file && base == name) {
        let mut chain: Vec<String> = stack.iter().map(|(_, s)| s.clone()).collect();
        chain.push(name.to_owned());
        chain.push(base);
        return Err(invalid(
            &ext_pos,
            &path,
            format!("extends goes round: {}", chain.join(" -> ")),
        ));
    }
    stack.push((file.map(Path::to_path_buf), name.to_owned()));
    let base_tree = match &base_path {
        Some(p) if base_file.is_some() || file.is_some() => files
            .get(p)
            .cloned()
            .ok_or_else(|| Error::Project(format!("{} was not read", p.display())))?,
        _ => tree.clone(),
    };
    if base_tree
        .get("services")
        .and_then(|s| s.get(&base))
        .is_none()
    {
        return Err(invalid(
            &ext_pos,
            &path,
            format!(
                "no service {base:?} in {}",
                base_file.as_deref().unwrap_or("these files")
            ),
        ));
    }
    let base_node = service(
        &base_tree,
        base_path.as_deref(),
        &base,
        project_dir,
        load,
        files,
        stack,
    )?;
    stack.pop();
    if let Some(tie) = TIES.iter().find(|t| base_node.get(t).is_some()) {
        return Err(invalid(
            &ext_pos,
            &path,
            format!(
                "{base} has {tie}, which ties it to other services: such a service cannot be extended"
            ),
        ));
    }
    for key in ["network_mode", "ipc", "pid"] {
        if base_node
            .get(key)
            .and_then(Node::scalar)
            .is_some_and(|v| v.starts_with("service:") || v.starts_with("container:"))
        {
            return Err(invalid(
                &ext_pos,
                &path,
                format!(
                    "{base} shares another's namespace ({key}): such a service cannot be extended"
                ),
            ));
        }
    }
    let mut own = svc;
    if let Value::Map(entries) = &mut own.value {
        entries.retain(|(k, _)| k.name != "extends");
    }
    Ok(merge_service(name, base_node, own))
}

/// `over` merged onto `base` as one service of two files.
fn merge_service(name: &str, base: Node, over: Node) -> Node {
    let wrap = |n: Node| {
        let pos = n.pos.clone();
        let key = |k: &str, pos: &Pos| Key {
            name: k.to_owned(),
            pos: pos.clone(),
        };
        Node {
            value: Value::Map(vec![(
                key("services", &pos),
                Node {
                    value: Value::Map(vec![(key(name, &pos), n)]),
                    pos: pos.clone(),
                },
            )]),
            pos,
        }
    };
    let pos = over.pos.clone();
    let merged = merge_files(wrap(base), wrap(over));
    merged
        .get("services")
        .and_then(|s| s.get(name))
        .cloned()
        .unwrap_or(Node {
            value: Value::Null,
            pos,
        })
}
