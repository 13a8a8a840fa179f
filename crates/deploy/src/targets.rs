//! `[[targets]]`: the places apps run besides the local engine (a Swarm cluster, through one
//! of its managers), checked at start, and how each one is doing now.

use std::collections::BTreeSet;
use std::time::Duration;

use capstan_engine::Engine;
use capstan_model::{TargetKind, TargetStatus};
use serde::Deserialize;

/// One `[[targets]]` entry of capstan.toml.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// What `--target` and the API call it.
    pub name: String,
    /// `swarm`.
    pub kind: TargetKind,
    /// A manager's engine: `unix:///path` or `tcp://host:port`.
    pub docker_host: String,
}

/// The name of the engine `[docker]` gives: the default target, which `[[targets]]` cannot
/// name again.
pub const LOCAL: &str = "local";

/// How long a target has to answer before it is shown as not answering.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Checks `[[targets]]`: names (unique, not `local`), kinds, engine addresses.
///
/// # Errors
/// What is wrong, naming the entry and its key.
pub fn check(targets: &[TargetConfig]) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for (i, t) in targets.iter().enumerate() {
        let at = format!("targets[{i}]");
        capstan_model::check_object_name("target", &t.name)
            .map_err(|e| format!("{at}.name: {e}"))?;
        if t.name == LOCAL {
            return Err(format!(
                "{at}.name: `local` is the engine [docker] names, always a target; give this one another name"
            ));
        }
        if !seen.insert(t.name.as_str()) {
            return Err(format!(
                "{at}.name: {} names two targets; give each its own",
                t.name
            ));
        }
        if t.kind == TargetKind::Local {
            return Err(format!(
                "{at}.kind: `local` is the engine in [docker]; a target is another place: kind = \"swarm\""
            ));
        }
        Engine::new(Some(&t.docker_host))
            .map_err(|e| format!("{at}.docker_host: {e} (unix:///path or tcp://host:port)"))?;
    }
    Ok(())
}

/// A target not heard from yet.
fn unasked(name: &str, kind: TargetKind, endpoint: &str) -> TargetStatus {
    TargetStatus {
        name: name.to_owned(),
        kind,
        endpoint: endpoint.to_owned(),
        healthy: false,
        error: None,
        engine_versions: Vec::new(),
        nodes: Vec::new(),
        managers: 0,
        workers: 0,
        ready: 0,
        leader: None,
    }
}

/// The local engine as a target: whether it answers, and its version.
pub async fn probe_local(engine: &Engine) -> TargetStatus {
    let mut status = unasked(LOCAL, TargetKind::Local, engine.host());
    match tokio::time::timeout(PROBE_TIMEOUT, engine.version()).await {
        Ok(Ok(v)) => {
            status.healthy = true;
            status.engine_versions = vec![v.version];
        }
        Ok(Err(e)) => status.error = Some(e.to_string()),
        Err(_) => status.error = Some(silent(engine.host())),
    }
    status
}

/// A configured target now: a Swarm's manager answers as one, with its nodes.
pub async fn probe(target: &TargetConfig) -> TargetStatus {
    let mut status = unasked(&target.name, target.kind, &target.docker_host);
    let engine = match Engine::new(Some(&target.docker_host)) {
        Ok(engine) => engine,
        Err(e) => {
            status.error = Some(e.to_string());
            return status;
        }
    };
    let nodes = async {
        engine.negotiate().await?;
        if let Err(why) = engine.swarm_manager().await? {
            return Ok(Err(format!(
                "{} is {why}: point docker_host at a manager of the Swarm (`docker swarm init` makes one)",
                target.docker_host
            )));
        }
        engine.swarm_nodes().await.map(Ok)
    };
    match tokio::time::timeout(PROBE_TIMEOUT, nodes).await {
        Err(_) => status.error = Some(silent(&target.docker_host)),
        Ok(Err(e)) => status.error = Some(e.to_string()),
        Ok(Ok(Err(why))) => status.error = Some(why),
        Ok(Ok(Ok(nodes))) => {
            status.healthy = true;
            status.managers = nodes.iter().filter(|n| n.role == "manager").count();
            status.workers = nodes.iter().filter(|n| n.role == "worker").count();
            status.ready = nodes.iter().filter(|n| n.state == "ready").count();
            status.leader = nodes.iter().find(|n| n.leader).map(|n| n.hostname.clone());
            let versions: BTreeSet<String> =
                nodes.iter().map(|n| n.engine_version.clone()).collect();
            status.engine_versions = versions.into_iter().collect();
            status.nodes = nodes;
        }
    }
    status
}

fn silent(host: &str) -> String {
    format!(
        "{host} did not answer within {} s (is its engine running, and the address right?)",
        PROBE_TIMEOUT.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str, kind: TargetKind, host: &str) -> TargetConfig {
        TargetConfig {
            name: name.into(),
            kind,
            docker_host: host.into(),
        }
    }

    #[test]
    fn bad_targets_are_refused_naming_the_entry_and_key() {
        let ok = target("lab", TargetKind::Swarm, "tcp://10.0.0.1:2375");
        assert_eq!(check(std::slice::from_ref(&ok)), Ok(()));
        for (targets, says) in [
            (
                vec![target("local", TargetKind::Swarm, "tcp://a:1")],
                "targets[0].name: `local`",
            ),
            (
                vec![ok.clone(), target("lab", TargetKind::Swarm, "tcp://b:1")],
                "targets[1].name: lab names two targets",
            ),
            (
                vec![target("../x", TargetKind::Swarm, "tcp://a:1")],
                "targets[0].name:",
            ),
            (
                vec![target("home", TargetKind::Local, "tcp://a:1")],
                "targets[0].kind:",
            ),
            (
                vec![target("lab", TargetKind::Swarm, "ssh://lab")],
                "targets[0].docker_host:",
            ),
        ] {
            let err = check(&targets).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
    }
}
