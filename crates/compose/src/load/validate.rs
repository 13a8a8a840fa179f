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

/// A size as Docker reads it, in bytes.
fn bytes(text: &str) -> Result<i64, String> {
    capstan_model::parse_size(text)
        .map_err(|e| e.to_string())
        .and_then(|b| i64::try_from(b).map_err(|_| format!("{text:?} is out of range")))
}

/// The values of a service's resource and process keys: each parses and is in range, and a
/// key given twice (`mem_limit` and `deploy.resources.limits.memory`, `scale` and
/// `deploy.replicas`) says the same both times. The failing key and why.
fn values(s: &crate::model::Service) -> Result<(), (&'static str, String)> {
    let size =
        |key: &'static str, v: &Option<String>| -> Result<Option<i64>, (&'static str, String)> {
            v.as_deref()
                .map(|t| bytes(t).map_err(|m| (key, m)))
                .transpose()
        };
    let range = |key: &'static str, v: Option<i64>, lo: i64, hi: i64| match v {
        Some(n) if !(lo..=hi).contains(&n) => Err((key, format!("{n} is not {lo} to {hi}"))),
        _ => Ok(()),
    };
    let limits = s
        .deploy
        .as_ref()
        .and_then(|d| d.resources.as_ref())
        .and_then(|r| r.limits.as_ref());
    let reservations = s
        .deploy
        .as_ref()
        .and_then(|d| d.resources.as_ref())
        .and_then(|r| r.reservations.as_ref());
    let same = |key: &'static str, other: &str, a: Option<i64>, b: Option<i64>| match (a, b) {
        (Some(x), Some(y)) if x != y => Err((
            key,
            format!("says {x}, {other} says {y}: give one of them, or the same value to both"),
        )),
        _ => Ok(()),
    };
    let memory = size("mem_limit", &s.mem_limit)?;
    same(
        "mem_limit",
        "deploy.resources.limits.memory",
        memory,
        limits
            .and_then(|l| l.memory.as_deref())
            .and_then(|m| bytes(m).ok()),
    )?;
    let reservation = size("mem_reservation", &s.mem_reservation)?;
    same(
        "mem_reservation",
        "deploy.resources.reservations.memory",
        reservation,
        reservations
            .and_then(|r| r.memory.as_deref())
            .and_then(|m| bytes(m).ok()),
    )?;
    match s.memswap_limit.as_deref() {
        None | Some("-1") => {}
        Some(t) => {
            let swap = bytes(t).map_err(|m| ("memswap_limit", m))?;
            let limit = memory.or_else(|| {
                limits
                    .and_then(|l| l.memory.as_deref())
                    .and_then(|m| bytes(m).ok())
            });
            match limit {
                None => {
                    return Err((
                        "memswap_limit",
                        "needs mem_limit (the engine sets swap only beside a memory limit)".into(),
                    ));
                }
                Some(l) if swap < l => {
                    return Err((
                        "memswap_limit",
                        format!(
                            "{t} is below mem_limit: it is memory plus swap, so at least the memory limit (-1: unlimited swap)"
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
    }
    range("mem_swappiness", s.mem_swappiness, 0, 100)?;
    let cpus = s
        .cpus
        .as_deref()
        .map(|c| match c.trim().parse::<f64>() {
            Ok(n) if n > 0.0 && n.is_finite() => Ok((n * 1e9).round() as i64),
            _ => Err((
                "cpus",
                format!("{c:?} is not a number of CPUs above 0 (0.5, 2)"),
            )),
        })
        .transpose()?;
    same(
        "cpus",
        "deploy.resources.limits.cpus",
        cpus,
        limits
            .and_then(|l| l.cpus.as_deref())
            .and_then(|c| c.trim().parse::<f64>().ok())
            .map(|n| (n * 1e9).round() as i64),
    )?;
    let any_cpus = cpus.is_some() || limits.is_some_and(|l| l.cpus.is_some());
    if any_cpus && (s.cpu_period.is_some() || s.cpu_quota.is_some()) {
        let key = if s.cpu_quota.is_some() {
            "cpu_quota"
        } else {
            "cpu_period"
        };
        return Err((
            key,
            "cannot be given with cpus (the engine refuses both): cpus is the quota over \
             the period, so give one or the other"
                .into(),
        ));
    }
    range("cpu_shares", s.cpu_shares, 2, 262_144)?;
    if let Some(set) = &s.cpuset {
        let ok = !set.is_empty()
            && set.split(',').all(|part| {
                let mut ends = part.splitn(2, '-');
                ends.all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            });
        if !ok {
            return Err(("cpuset", format!("{set:?} is not a CPU list (0-3, 0,2)")));
        }
    }
    range("cpu_period", s.cpu_period, 1000, 1_000_000)?;
    range("cpu_quota", s.cpu_quota, -1, i64::MAX)?;
    for (key, v) in [
        ("cpu_rt_period", &s.cpu_rt_period),
        ("cpu_rt_runtime", &s.cpu_rt_runtime),
    ] {
        if let Some(t) = v {
            crate::model::micros(t).map_err(|m| (key, m))?;
        }
    }
    same(
        "pids_limit",
        "deploy.resources.limits.pids",
        s.pids_limit,
        limits.and_then(|l| l.pids),
    )?;
    range("oom_score_adj", s.oom_score_adj, -1000, 1000)?;
    range("scale", s.scale, 0, i64::from(u32::MAX))?;
    same(
        "scale",
        "deploy.replicas",
        s.scale,
        s.deploy.as_ref().and_then(|d| d.replicas),
    )?;
    let deploy = s.deploy.as_ref();
    match deploy.and_then(|d| d.mode.as_deref()) {
        None | Some("replicated") => {}
        Some("global") => {
            if deploy.and_then(|d| d.replicas).is_some() || s.scale.is_some() {
                return Err((
                    "deploy.mode",
                    "global runs one replica on every node: take deploy.replicas (or scale) out"
                        .into(),
                ));
            }
        }
        Some(other) => {
            return Err((
                "deploy.mode",
                format!("{other:?} is not a mode: replicated or global"),
            ));
        }
    }
    match deploy.and_then(|d| d.endpoint_mode.as_deref()) {
        None | Some("dnsrr") => {}
        Some("vip") => {
            return Err((
                "deploy.endpoint_mode",
                "vip needs the kernel's IPVS, which capstan does not use: capstan's proxy spreads \
                 requests over the replicas; take it out, or say dnsrr"
                    .into(),
            ));
        }
        Some(other) => {
            return Err((
                "deploy.endpoint_mode",
                format!("{other:?} is not an endpoint mode: dnsrr"),
            ));
        }
    }
    if let Some(p) = deploy.and_then(|d| d.placement.as_ref()) {
        range(
            "deploy.placement.max_replicas_per_node",
            p.max_replicas_per_node,
            1,
            i64::from(u32::MAX),
        )?;
        for c in &p.constraints {
            if !["==", "!="].iter().any(|op| c.contains(op)) {
                return Err((
                    "deploy.placement.constraints",
                    format!(
                        "{c:?} is not a constraint: ATTRIBUTE==VALUE or ATTRIBUTE!=VALUE (node.role==worker)"
                    ),
                ));
            }
        }
    }
    for d in &s.devices {
        if d.source.contains('=') {
            return Err((
                "devices",
                format!(
                    "{:?} is a CDI device name, which this engine's API does not take: give the host path (/dev/...)",
                    d.source
                ),
            ));
        }
        if !d.source.starts_with('/') || d.target.as_deref().is_some_and(|t| !t.starts_with('/')) {
            return Err((
                "devices",
                format!(
                    "{:?}: give absolute paths, HOST[:CONTAINER[:PERMISSIONS]]",
                    d.source
                ),
            ));
        }
        if let Some(p) = &d.permissions
            && (p.is_empty() || !p.chars().all(|c| "rwm".contains(c)))
        {
            return Err(("devices", format!("{p:?}: permissions are some of r, w, m")));
        }
    }
    let from_gpus = s.gpus.as_ref().map_or(0, |g| g.0.len());
    for (i, r) in s.device_requests().into_iter().enumerate() {
        let key = if i < from_gpus { "gpus" } else { "deploy" };
        if let Some(c) = &r.count
            && c != "all"
            && c.parse::<u32>().map_or(true, |n| n == 0)
        {
            return Err((key, format!("count {c:?} is not a number above 0 or all")));
        }
        if r.count.is_some() && !r.device_ids.is_empty() {
            return Err((key, "give count or device_ids, not both".into()));
        }
        if r.capabilities.is_empty() {
            return Err((
                key,
                "a device request names its capabilities ([gpu])".into(),
            ));
        }
    }
    if let Some(b) = &s.blkio_config {
        range("blkio_config", b.weight, 10, 1000)?;
        for w in &b.weight_device {
            range("blkio_config", Some(w.weight), 10, 1000)?;
        }
        for r in b.device_read_bps.iter().chain(&b.device_write_bps) {
            bytes(&r.rate).map_err(|m| ("blkio_config", format!("{}: {m}", r.path)))?;
        }
        for r in b.device_read_iops.iter().chain(&b.device_write_iops) {
            r.rate.trim().parse::<u64>().map_err(|_| {
                (
                    "blkio_config",
                    format!(
                        "{}: {:?} is not a number of operations per second",
                        r.path, r.rate
                    ),
                )
            })?;
        }
    }
    Ok(())
}

/// `address/prefix`, IPv4 or IPv6.
fn is_cidr(text: &str) -> bool {
    text.split_once('/')
        .is_some_and(|(addr, prefix)| match addr.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(_)) => prefix.parse::<u8>().is_ok_and(|p| p <= 32),
            Ok(std::net::IpAddr::V6(_)) => prefix.parse::<u8>().is_ok_and(|p| p <= 128),
            Err(_) => false,
        })
}

/// A top-level network's address pools: subnets and ranges in CIDR form, addresses that are
/// addresses. The failing field and why.
fn network_values(n: &crate::model::Network) -> Result<(), String> {
    for (i, pool) in n.ipam.iter().flat_map(|i| &i.config).enumerate() {
        for (field, v) in [("subnet", &pool.subnet), ("ip_range", &pool.ip_range)] {
            if let Some(v) = v
                && !is_cidr(v)
            {
                return Err(format!(
                    "ipam.config[{i}].{field}: {v:?} is not an address/prefix (10.5.0.0/16)"
                ));
            }
        }
        for (what, v) in pool
            .gateway
            .iter()
            .map(|g| ("gateway".to_owned(), g))
            .chain(
                pool.aux_addresses
                    .iter()
                    .map(|(k, v)| (format!("aux_addresses.{k}"), v)),
            )
        {
            if v.parse::<std::net::IpAddr>().is_err() {
                return Err(format!(
                    "ipam.config[{i}].{what}: {v:?} is not an IP address"
                ));
            }
        }
    }
    Ok(())
}

/// Cross-references: image or build, dependencies (and cycles), networks, volumes, secrets,
/// configs, host ports.
pub(super) fn validate(project: &Project, tree: &Node) -> Result<(), Error> {
    for (name, n) in &project.networks {
        if let Some(n) = n
            && let Err(message) = network_values(n)
        {
            let networks = tree.get("networks");
            let pos = networks
                .and_then(|ns| ns.get(name))
                .and_then(|net| net.key("ipam"))
                .or_else(|| networks.and_then(|ns| ns.key(name)))
                .map_or_else(|| tree.pos.clone(), |k| k.pos.clone());
            return Err(invalid(&pos, &format!("networks.{name}"), message));
        }
    }
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
        for (net, cfg) in s.networks.iter().flat_map(|n| &n.0) {
            if net != "default" && !project.networks.contains_key(net) {
                return Err(invalid(
                    &at("networks"),
                    &path("networks"),
                    format!("network {net:?} is not declared under top-level `networks:`"),
                ));
            }
            let fixed = [&cfg.ipv4_address, &cfg.ipv6_address];
            for a in fixed.iter().copied().flatten() {
                if a.parse::<std::net::IpAddr>().is_err() {
                    return Err(invalid(
                        &at("networks"),
                        &path(&format!("networks.{net}")),
                        format!("{a:?} is not an IP address"),
                    ));
                }
            }
            if fixed.iter().any(|a| a.is_some()) {
                let replicas = s.declared_replicas();
                let stop_first = s
                    .deploy
                    .as_ref()
                    .and_then(|d| d.update_config.as_ref())
                    .and_then(|u| u.order.as_deref())
                    == Some("stop-first");
                if replicas > 1 || !stop_first {
                    return Err(invalid(
                        &at("networks"),
                        &path(&format!("networks.{net}")),
                        "a fixed address is held by one container at a time: give the service \
                         one replica and deploy.update_config.order: stop-first (its rollouts \
                         then stop the old container before starting the new one)"
                            .to_owned(),
                    ));
                }
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
        if let Some(mode) = &s.network_mode {
            let problem = match mode.split_once(':') {
                None if matches!(mode.as_str(), "host" | "none" | "bridge") => None,
                Some(("service", other)) => match project.services.get(other) {
                    None => Some(format!("no service named {other:?}")),
                    Some(_) if other == name => Some("a service cannot join itself".to_owned()),
                    Some(o) if o.network_service() == Some(name.as_str()) => Some(format!(
                        "{other} joins this service's network namespace in turn: one of them must have its own"
                    )),
                    Some(_) => None,
                },
                Some(("container", c)) if !c.is_empty() => None,
                _ => Some(format!(
                    "{mode:?} is not host, none, bridge, service:NAME or container:NAME"
                )),
            };
            let problem = problem.or_else(|| {
                if s.networks.as_ref().is_some_and(|n| !n.0.is_empty()) {
                    Some("cannot be given with networks: the service joins one or the other".to_owned())
                } else if !s.ports.is_empty() {
                    Some(format!(
                        "network_mode: {mode} gives the service no address on the app's networks, so capstan's proxy cannot publish its ports: take ports out (with host, the service binds the host's ports itself)"
                    ))
                } else {
                    None
                }
            });
            if let Some(message) = problem {
                return Err(invalid(&at("network_mode"), &path("network_mode"), message));
            }
        }
        if let Some(p) = s
            .ports
            .iter()
            .find(|p| p.protocol == "udp" && p.published.is_some())
        {
            let replicas = s.declared_replicas();
            let published = p.published.as_deref().unwrap_or_default();
            let problem = if published.contains('-') {
                Some(format!(
                    "{published}:{}/udp: a range of host ports for one target is not published: give one host port per target (8000-8002:9000-9002)",
                    p.target
                ))
            } else if replicas > 1 {
                Some(format!(
                    "{published}:{}/udp is published by the engine, which gives a host port to one container: give the service one replica",
                    p.target
                ))
            } else {
                None
            };
            if let Some(message) = problem {
                return Err(invalid(&at("ports"), &path("ports"), message));
            }
        }
        for (key, value, allowed) in [
            ("pid", &s.pid, &["host"][..]),
            ("ipc", &s.ipc, &["private", "shareable", "none", "host"][..]),
            ("uts", &s.uts, &["host"][..]),
            ("userns_mode", &s.userns_mode, &["host"][..]),
        ] {
            let Some(v) = value else { continue };
            let joins = matches!(key, "pid" | "ipc")
                && v.strip_prefix("container:").is_some_and(|c| !c.is_empty());
            if !allowed.contains(&v.as_str()) && !joins {
                let also = if matches!(key, "pid" | "ipc") {
                    " or container:NAME"
                } else {
                    ""
                };
                return Err(invalid(
                    &at(key),
                    &path(key),
                    format!("{v:?} is not {}{also}", allowed.join(", ")),
                ));
            }
        }
        for rule in &s.device_cgroup_rules {
            let parts: Vec<&str> = rule.split_whitespace().collect();
            let ok = matches!(parts.as_slice(), [kind, numbers, access]
                if matches!(*kind, "a" | "b" | "c")
                    && numbers.split_once(':').is_some_and(|(maj, min)| {
                        [maj, min].iter().all(|n| *n == "*" || n.parse::<u32>().is_ok())
                    })
                    && !access.is_empty()
                    && access.chars().all(|c| "rwm".contains(c)));
            if !ok {
                return Err(invalid(
                    &at("device_cgroup_rules"),
                    &path("device_cgroup_rules"),
                    format!("{rule:?} is not TYPE MAJOR:MINOR ACCESS (c 1:3 mr, b 8:* rw)"),
                ));
            }
        }
        if let Some(c) = &s.container_name {
            let replicas = s.declared_replicas();
            let ok = c.len() >= 2
                && c.len() <= 128
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            let problem = if !ok {
                Some(format!(
                    "{c:?} is not a container name: letters, digits, _ . - (a letter or digit first)"
                ))
            } else if replicas != 1 {
                Some(format!(
                    "names one container, and the service has {replicas} replicas: give it one, or take container_name out"
                ))
            } else {
                project
                    .services
                    .iter()
                    .find(|(other, o)| *other != name && o.container_name.as_deref() == Some(c))
                    .map(|(other, _)| format!("{c:?} is service {other}'s container_name too"))
            };
            if let Some(message) = problem {
                return Err(invalid(
                    &at("container_name"),
                    &path("container_name"),
                    message,
                ));
            }
        }
        if let Err((key, message)) = values(s) {
            return Err(invalid(&at(key), &path(key), message));
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
