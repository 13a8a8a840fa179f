//! The checks that span a whole project: what services refer to exists, no dependency cycle,
//! no host port published twice.

use std::collections::BTreeMap;

use super::{invalid, service_key_pos};
use crate::error::Error;
use crate::model::Project;
use crate::node::Node;

/// Depth-first search for a `depends_on` cycle through `n`; returns it as a path.
fn visit<'a>(
    n: &'a str,
    p: &'a Project,
    state: &mut BTreeMap<&'a str, u8>,
    stack: &mut Vec<&'a str>,
) -> Option<Vec<String>> {
    match state.get(n) {
        Some(2) => return None,
        Some(1) => {
            let start = stack.iter().position(|s| *s == n).unwrap_or(0);
            let mut cycle: Vec<String> = stack[start..].iter().map(|s| (*s).to_owned()).collect();
            cycle.push(n.to_owned());
            return Some(cycle);
        }
        _ => {}
    }
    state.insert(n, 1);
    stack.push(n);
    if let Some(s) = p.services.get(n) {
        for dep in s.depends_on.iter().flat_map(|d| d.0.keys()) {
            if let Some(c) = visit(dep, p, state, stack) {
                return Some(c);
            }
        }
    }
    stack.pop();
    state.insert(n, 2);
    None
}

/// Cross-references: image or build, dependencies (and cycles), networks, volumes, secrets,
/// configs, host ports.
pub(super) fn validate(project: &Project, tree: &Node) -> Result<(), Error> {
    let mut host_ports: BTreeMap<(String, String, String), String> = BTreeMap::new();
    for (name, s) in &project.services {
        let at = |key: &str| service_key_pos(tree, name, key);
        let path = |key: &str| format!("services.{name}.{key}");
        if s.image.is_none() && s.build.is_none() {
            return Err(invalid(
                &at("image"),
                &format!("services.{name}"),
                "needs `image` or `build`",
            ));
        }
        for dep in s.depends_on.iter().flat_map(|d| d.0.keys()) {
            if !project.services.contains_key(dep) {
                return Err(invalid(
                    &at("depends_on"),
                    &path("depends_on"),
                    format!("no service named {dep:?}"),
                ));
            }
        }
        for net in s.networks.iter().flat_map(|n| n.0.keys()) {
            if net != "default" && !project.networks.contains_key(net) {
                return Err(invalid(
                    &at("networks"),
                    &path("networks"),
                    format!("network {net:?} is not declared under top-level `networks:`"),
                ));
            }
        }
        for v in &s.volumes {
            if v.kind == "volume"
                && let Some(src) = &v.source
                && !project.volumes.contains_key(src)
            {
                return Err(invalid(
                    &at("volumes"),
                    &path("volumes"),
                    format!("volume {src:?} is not declared under top-level `volumes:`"),
                ));
            }
        }
        for (kind, refs, defs) in [
            ("secrets", &s.secrets, &project.secrets),
            ("configs", &s.configs, &project.configs),
        ] {
            for r in refs {
                if !defs.contains_key(&r.source) {
                    return Err(invalid(
                        &at(kind),
                        &path(kind),
                        format!(
                            "{kind} {:?} is not declared under top-level `{kind}:`",
                            r.source
                        ),
                    ));
                }
            }
        }
        if let Some(policy) = &s.pull_policy {
            let parsed = crate::model::PullPolicy::parse(policy)
                .map_err(|e| invalid(&at("pull_policy"), &path("pull_policy"), e))?;
            if parsed == crate::model::PullPolicy::Build && s.build.is_none() {
                return Err(invalid(
                    &at("pull_policy"),
                    &path("pull_policy"),
                    "build needs the service's `build:` section (its context)".to_owned(),
                ));
            }
        }
        if let Some(restart) = &s.restart {
            let ok = matches!(
                restart.as_str(),
                "no" | "always" | "unless-stopped" | "on-failure"
            ) || restart
                .strip_prefix("on-failure:")
                .is_some_and(|n| n.parse::<u32>().is_ok());
            if !ok {
                return Err(invalid(
                    &at("restart"),
                    &path("restart"),
                    format!("{restart:?} is not no, always, unless-stopped or on-failure[:N]"),
                ));
            }
        }
        for p in &s.ports {
            if let Some(published) = &p.published {
                let key = (
                    p.host_ip.clone().unwrap_or_default(),
                    published.clone(),
                    p.protocol.clone(),
                );
                if let Some(other) = host_ports.insert(key, name.clone()) {
                    return Err(invalid(
                        &at("ports"),
                        &path("ports"),
                        format!(
                            "host port {published}/{} is already published by service {other:?}",
                            p.protocol
                        ),
                    ));
                }
            }
        }
    }
    // dependency cycles
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    for name in project.services.keys() {
        if let Some(cycle) = visit(name, project, &mut state, &mut Vec::new()) {
            let first = &cycle[0];
            return Err(invalid(
                &service_key_pos(tree, first, "depends_on"),
                &format!("services.{first}.depends_on"),
                format!("dependency cycle: {}", cycle.join(" -> ")),
            ));
        }
    }
    Ok(())
}
