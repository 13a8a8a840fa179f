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
    /// Swarm: a manager's engine, `unix:///path` or `tcp://host:port`. Host: the engine,
    /// `ssh://[user@]host[:port]` or `tcp://host:port` with `tls_dir`.
    #[serde(default)]
    pub docker_host: String,
    /// Host, `tcp://`: the directory of `ca.pem`, `cert.pem` and `key.pem` (client TLS, the
    /// engine's certificate checked against `ca.pem`).
    #[serde(default)]
    pub tls_dir: Option<std::path::PathBuf>,
    /// Host, `ssh://`: the known-hosts file its key must be in (default: ssh's own).
    #[serde(default)]
    pub known_hosts: Option<std::path::PathBuf>,
    /// Host, `ssh://`: the private key to sign in with (default: ssh's own and its agent's).
    #[serde(default)]
    pub identity: Option<std::path::PathBuf>,
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
                if t.docker_host.starts_with("ssh://") {
                    return Err(format!(
                        "{at}.docker_host: a Swarm manager is reached at unix:///path or tcp://host:port"
                    ));
                }
                Engine::new(Some(&t.docker_host)).map_err(|e| {
                    format!("{at}.docker_host: {e} (unix:///path or tcp://host:port)")
                })?;
                if let Some(key) = t.kubernetes_setting() {
                    return Err(format!(
                        "{at}.{key}: a Kubernetes target's setting, and this target is a Swarm"
                    ));
                }
            }
            TargetKind::Kubernetes => check_kubernetes(&at, t)?,
            TargetKind::Host => check_host(&at, t)?,
        }
    }
    Ok(())
}

impl TargetConfig {
    /// How a host's engine is reached: its TLS files or ssh's known hosts and key.
    pub fn remote(&self) -> capstan_engine::RemoteConfig {
        capstan_engine::RemoteConfig {
            tls_dir: self.tls_dir.clone(),
            known_hosts: self.known_hosts.clone(),
            identity: self.identity.clone(),
        }
    }

    /// The settings only a Kubernetes target takes that are set here.
    fn kubernetes_setting(&self) -> Option<&'static str> {
        [
            ("kubeconfig", self.kubeconfig.is_some()),
            ("context", self.context.is_some()),
            ("namespace", self.namespace.is_some()),
            ("publish", self.publish.is_some()),
            ("volume_size", self.volume_size.is_some()),
            ("progress_deadline", self.progress_deadline.is_some()),
        ]
        .into_iter()
        .find_map(|(key, set)| set.then_some(key))
    }
}

/// A Docker host without an agent: its engine over ssh, or over tcp with TLS both ways.
fn check_host(at: &str, t: &TargetConfig) -> Result<(), String> {
    if t.docker_host.is_empty() {
        return Err(format!(
            "{at}.docker_host: a host without an agent is reached through its engine: docker_host = \"ssh://user@host\" (or \"tcp://host:2376\" with tls_dir); a host that runs `capstan agent --join` needs no [[targets]] entry"
        ));
    }
    if t.docker_host.starts_with("tcp://") && t.tls_dir.is_none() {
        return Err(format!(
            "{at}.tls_dir: an engine's plain tcp port lets anyone who reaches it run anything as root there: give tls_dir (ca.pem, cert.pem, key.pem), or use ssh://"
        ));
    }
    if !t.docker_host.starts_with("tcp://") && !t.docker_host.starts_with("ssh://") {
        return Err(format!(
            "{at}.docker_host: {:?}: a host is ssh://[user@]host[:port] or tcp://host:port (with tls_dir)",
            t.docker_host
        ));
    }
    if let Some(key) = t.kubernetes_setting() {
        return Err(format!(
            "{at}.{key}: a Kubernetes target's setting, and this target is a host"
        ));
    }
    Engine::with_remote(Some(&t.docker_host), t.remote())
        .map(drop)
        .map_err(|e| format!("{at}: {e}"))
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
                vec![target("edge", TargetKind::Host, "")],
                "targets[0].docker_host: a host without an agent",
            ),
            (
                vec![target("edge", TargetKind::Host, "tcp://10.0.0.5:2375")],
                "targets[0].tls_dir: an engine's plain tcp port",
            ),
            (
                vec![target("edge", TargetKind::Host, "unix:///run/docker.sock")],
                "targets[0].docker_host: \"unix:///run/docker.sock\": a host is",
            ),
            (
                vec![target("edge", TargetKind::Host, "ssh://-oProxyCommand=x")],
                "targets[0]: docker host",
            ),
            (
                vec![TargetConfig {
                    tls_dir: Some("/nonexistent".into()),
                    ..target("edge", TargetKind::Host, "tcp://10.0.0.5:2376")
                }],
                "/nonexistent/ca.pem is not there",
            ),
            (
                vec![TargetConfig {
                    known_hosts: Some("/nonexistent".into()),
                    tls_dir: Some("/nonexistent".into()),
                    ..target("edge", TargetKind::Host, "tcp://10.0.0.5:2376")
                }],
                "known_hosts: a setting of ssh:// engines",
            ),
            (
                vec![TargetConfig {
                    namespace: Some("apps".into()),
                    ..target("edge", TargetKind::Host, "ssh://edge")
                }],
                "targets[0].namespace: a Kubernetes target's setting, and this target is a host",
            ),
        ] {
            let err = check(&targets).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
    }
}
