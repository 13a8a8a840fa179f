//! Hosts without an agent (`[[targets]] kind = "host"`: an engine reached over ssh, or over
//! tcp with TLS both ways). For each, the hub runs an agent on this machine (`capstan agent`
//! against that engine, with a data dir of its own under `<data>/hosts/<name>`), enrolled in
//! the fleet by the hub itself (its key made here, so no token travels), and supervised:
//! started again when it stops. Each such host is then a host of the fleet like any other:
//! its journal, its logs (through the engine's API) and its metrics (the engine's stats API)
//! shipped with cursors, its apps deployed by its agent, `capstan hosts` and the Hosts page.
//!
//! What is lost without an agent on the host itself (docs/fleet.md): cgroup and host metrics
//! (no load, no file-system reads), capstan's proxy (no published ports), secrets and configs
//! in files, and everything while this machine or the link is down.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Base;

/// The longest wait before an agent that stopped is started again.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// An agent that ran this long had a good run: the next wait starts short again.
const GOOD_RUN: Duration = Duration::from_mins(1);
/// How long a stopping agent gets before it is killed.
const STOP_WAIT: Duration = Duration::from_secs(15);

/// Starts an agent for each host of `targets` on this hub (listening for agents at `listen`).
///
/// # Errors
/// A host's directory, key or config cannot be written.
pub(super) async fn start(
    base: &Base,
    hub: &capstan_fleet::Hub,
    listen: SocketAddr,
    targets: &[capstan_deploy::targets::TargetConfig],
) -> Result<()> {
    let hosts: Vec<_> = targets
        .iter()
        .filter(|t| t.kind == capstan_model::TargetKind::Host)
        .collect();
    if hosts.is_empty() {
        return Ok(());
    }
    // the agents run here: they dial the hub on loopback when it listens everywhere
    let url = match listen.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => format!("https://127.0.0.1:{}", listen.port()),
        ip if ip.is_unspecified() => format!("https://[::1]:{}", listen.port()),
        _ => format!("https://{listen}"),
    };
    let exe = std::env::current_exe()
        .context("cannot find capstan's own binary to run the hosts' agents")?;
    for t in hosts {
        let dir = base.data.join("hosts").join(&t.name);
        let config = prepare(&dir, t)?;
        let identity =
            capstan_fleet::Identity::load_or_create(&dir.join("fleet/host"), "capstan-host")
                .map_err(|e| anyhow::anyhow!("targets.{}: the host's key: {e}", t.name))?;
        let via = if t.docker_host.starts_with("ssh://") {
            "ssh"
        } else {
            "tls"
        };
        let labels = BTreeMap::from([("agent".to_owned(), format!("on the hub, over {via}"))]);
        match hub
            .enroll(&t.name, &identity.fingerprint(), &labels)
            .await?
        {
            Ok(()) => {}
            Err(why) => {
                warn!(host = %t.name, "{why}; its agent is not started");
                continue;
            }
        }
        capstan_fleet::Joined {
            url: url.clone(),
            hub: hub.fingerprint(),
            name: t.name.clone(),
        }
        .save(&dir.join("fleet"))
        .map_err(|e| anyhow::anyhow!("targets.{}: {e}", t.name))?;
        info!(host = %t.name, engine = %t.docker_host, "running an agent here for a host without one");
        tokio::spawn(supervise(
            exe.clone(),
            dir,
            config,
            t.name.clone(),
            base.shutdown.clone(),
        ));
    }
    Ok(())
}

/// Makes the host's private directory and writes its agent's config: the engine and how to
/// reach it; metrics through the engine's stats API and logs through its logs API (its files
/// and cgroups are on the other machine).
fn prepare(dir: &Path, t: &capstan_deploy::targets::TargetConfig) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir.join("fleet"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let mut docker = toml::Table::new();
    docker.insert("host".into(), t.docker_host.clone().into());
    for (key, path) in [
        ("tls_dir", &t.tls_dir),
        ("known_hosts", &t.known_hosts),
        ("identity", &t.identity),
    ] {
        if let Some(p) = path {
            // the agent's working directory is not the hub's: a relative path is made whole
            let whole = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            docker.insert(key.into(), whole.display().to_string().into());
        }
    }
    let mut file = toml::Table::new();
    file.insert("docker".into(), docker.into());
    file.insert(
        "metrics".into(),
        toml::Table::from_iter([("source".to_owned(), "engine".into())]).into(),
    );
    file.insert(
        "logs".into(),
        toml::Table::from_iter([("source".to_owned(), "api".into())]).into(),
    );
    let text = format!(
        "# written by the hub at each start from its [[targets]] entry {:?}: edit that, not this\n{}",
        t.name,
        toml::to_string(&file).context("the host agent's config")?
    );
    let path = dir.join("capstan.toml");
    capstan_store::files::replace(&path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Runs the host's agent until `shutdown`, starting it again (after a wait that doubles, up to
/// [`BACKOFF_MAX`]) whenever it stops; its output goes to `<dir>/agent.log`.
async fn supervise(
    exe: PathBuf,
    dir: PathBuf,
    config: PathBuf,
    name: String,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("agent.log"));
        let mut command = tokio::process::Command::new(&exe);
        command
            .arg("agent")
            .arg("--data")
            .arg(&dir)
            .arg("--config")
            .arg(&config)
            .args(["--listen", "127.0.0.1:0"])
            // a hub killed -9 leaves no agent behind, still dialing the host
            .arg("--exit-with-parent")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Ok(log) = log {
            if let Ok(err) = log.try_clone() {
                command.stderr(err);
            }
            command.stdout(log);
        }
        let started = tokio::time::Instant::now();
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => {
                warn!(host = %name, error = %e, "cannot start the host's agent");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => {
                stop(&mut child).await;
                return;
            }
            status = child.wait() => {
                warn!(host = %name, status = ?status.ok(), log = %dir.join("agent.log").display(), "the host's agent stopped; starting it again");
            }
        }
        if started.elapsed() >= GOOD_RUN {
            backoff = Duration::from_secs(1);
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// SIGTERM (through kill(1): capstan has no unsafe code), then SIGKILL after [`STOP_WAIT`].
async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let asked = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .is_ok_and(|s| s.success());
        if asked && tokio::time::timeout(STOP_WAIT, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}
