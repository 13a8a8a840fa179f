//! `[[targets]]`: the places apps run besides the local engine (a Swarm cluster, through one
//! of its managers), checked at start, and how each one is doing now.

use std::collections::BTreeSet;
use std::time::Duration;

use capstan_engine::Engine;
use capstan_model::{TargetKind, TargetStatus};
use serde::Deserialize;

/// One `[[targets]]` entry of capstan.toml.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// What `--target` and the API call it.
    pub name: String,
    /// `swarm` or `kubernetes`.
    pub kind: TargetKind,
    /// Swarm: a manager's engine, `unix:///path` or `tcp://host:port`.
    #[serde(default)]
    pub docker_host: String,
    /// Kubernetes: the kubeconfig file (default: `$KUBECONFIG`, then `~/.kube/config`).
    #[serde(default)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Kubernetes: the kubeconfig's context (default: its current one).
    #[serde(default)]
    pub context: Option<String>,
    /// Kubernetes: the namespace apps go in (default: the context's, then `default`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Kubernetes: how published ports are offered, `loadbalancer` (default) or `nodeport`.
    #[serde(default)]
    pub publish: Option<String>,
    /// Kubernetes: a named volume's claim when the volume gives no size (default `1Gi`).
    #[serde(default)]
    pub volume_size: Option<String>,
    /// Kubernetes: how long a rollout may go without progress before it is rolled back
    /// (default `10m`).
    #[serde(default)]
    pub progress_deadline: Option<String>,
}

/// The name of the engine `[docker]` gives: the default target, which `[[targets]]` cannot
/// name again.
pub const LOCAL: &str = "local";

/// How long a target has to answer before it is shown as not answering.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

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
        match t.kind {
            TargetKind::Local => {
                return Err(format!(
                    "{at}.kind: `local` is the engine in [docker]; a target is another place: kind = \"swarm\" or \"kubernetes\""
                ));
            }
            TargetKind::Swarm => {
                if t.docker_host.is_empty() {
                    return Err(format!(
                        "{at}.docker_host: a Swarm target is reached through a manager's engine: docker_host = \"tcp://manager:2375\""
                    ));
                }
                Engine::new(Some(&t.docker_host)).map_err(|e| {
                    format!("{at}.docker_host: {e} (unix:///path or tcp://host:port)")
                })?;
                let kube = [
                    ("kubeconfig", t.kubeconfig.is_some()),
                    ("context", t.context.is_some()),
                    ("namespace", t.namespace.is_some()),
                    ("publish", t.publish.is_some()),
                    ("volume_size", t.volume_size.is_some()),
                    ("progress_deadline", t.progress_deadline.is_some()),
                ];
                if let Some((key, _)) = kube.iter().find(|(_, set)| *set) {
                    return Err(format!(
                        "{at}.{key}: a Kubernetes target's setting, and this target is a Swarm"
                    ));
                }
            }
            TargetKind::Kubernetes => check_kubernetes(&at, t)?,
            TargetKind::Host => {
                return Err(format!(
                    "{at}.kind: a Docker host joins the fleet with `capstan agent --join` (docs/fleet.md) and is then a target by its name; an engine over SSH or TLS without an agent is not supported yet"
                ));
            }
        }
    }
    Ok(())
}

fn check_kubernetes(at: &str, t: &TargetConfig) -> Result<(), String> {
    if !t.docker_host.is_empty() {
        return Err(format!(
            "{at}.docker_host: a Kubernetes target is reached through its kubeconfig (kubeconfig, context, namespace), not an engine"
        ));
    }
    if let Some(ns) = &t.namespace {
        let ok = !ns.is_empty()
            && ns.len() <= 63
            && ns
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !ns.starts_with('-')
            && !ns.ends_with('-');
        if !ok {
            return Err(format!(
                "{at}.namespace: {ns:?} is no namespace name (lowercase letters, digits and '-', at most 63)"
            ));
        }
    }
    if let Some(p) = &t.publish
        && !matches!(p.as_str(), "loadbalancer" | "nodeport")
    {
        return Err(format!(
            "{at}.publish: {p:?}: published ports are offered as a `loadbalancer` or a `nodeport`"
        ));
    }
    if let Some(d) = &t.progress_deadline {
        capstan_model::parse_duration(d).map_err(|e| format!("{at}.progress_deadline: {e}"))?;
    }
    if let Some(v) = &t.volume_size {
        capstan_model::parse_size(v).map_err(|e| format!("{at}.volume_size: {e}"))?;
    }
    Ok(())
}

/// A target not heard from yet.
pub fn unasked(name: &str, kind: TargetKind, endpoint: &str) -> TargetStatus {
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

pub fn silent(host: &str) -> String {
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
            ..TargetConfig::default()
        }
    }

    #[test]
    fn bad_targets_are_refused_naming_the_entry_and_key() {
        let ok = target("lab", TargetKind::Swarm, "tcp://10.0.0.1:2375");
        assert_eq!(check(std::slice::from_ref(&ok)), Ok(()));
        let kube = TargetConfig {
            namespace: Some("apps".into()),
            publish: Some("nodeport".into()),
            ..target("k8s", TargetKind::Kubernetes, "")
        };
        assert_eq!(check(&[ok.clone(), kube]), Ok(()));
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
            (
                vec![target("lab", TargetKind::Swarm, "")],
                "targets[0].docker_host: a Swarm target",
            ),
            (
                vec![TargetConfig {
                    namespace: Some("apps".into()),
                    ..target("lab", TargetKind::Swarm, "tcp://a:1")
                }],
                "targets[0].namespace: a Kubernetes target's setting",
            ),
            (
                vec![target("k", TargetKind::Kubernetes, "tcp://a:1")],
                "targets[0].docker_host: a Kubernetes target",
            ),
            (
                vec![TargetConfig {
                    namespace: Some("Apps_1".into()),
                    ..target("k", TargetKind::Kubernetes, "")
                }],
                "targets[0].namespace:",
            ),
            (
                vec![TargetConfig {
                    publish: Some("ingress".into()),
                    ..target("k", TargetKind::Kubernetes, "")
                }],
                "targets[0].publish:",
            ),
            (
                vec![TargetConfig {
                    progress_deadline: Some("soon".into()),
                    ..target("k", TargetKind::Kubernetes, "")
                }],
                "targets[0].progress_deadline:",
            ),
            (
                vec![target("edge", TargetKind::Host, "ssh://edge")],
                "targets[0].kind: a Docker host joins the fleet with `capstan agent --join`",
            ),
        ] {
            let err = check(&targets).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
    }
}
