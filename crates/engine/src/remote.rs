//! Engines on other machines, reached without an agent there.
//!
//! - `ssh://[user@]host[:port]`: through the system `ssh` (the user's keys, agent and
//!   `~/.ssh/config`), as the Docker CLI does it: each connection runs `docker system
//!   dial-stdio` on the host. Host keys are checked (`StrictHostKeyChecking=yes`): a host whose
//!   key is not in the known-hosts file is refused, never added. capstan serves a private unix
//!   socket that stands for the engine; each connection to it is one `ssh` connection of its
//!   own, as the Docker CLI makes them (not sessions multiplexed over one: sshd caps those at
//!   `MaxSessions`, 10 by default, and capstan holds a stream per container it follows), so
//!   every part of capstan that speaks to a unix engine speaks to this one unchanged.
//! - `tcp://host:port` with a TLS directory (`ca.pem`, `cert.pem`, `key.pem`, as
//!   `DOCKER_CERT_PATH` holds them): the engine's certificate is checked against `ca.pem` and
//!   this client presents its own, as `dockerd --tlsverify` requires.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::process::Command;
use tracing::{debug, warn};

use crate::Error;

/// How capstan reaches an engine on another machine (`[docker]`, or a `[[targets]]` host).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// `tcp://`: the directory of `ca.pem`, `cert.pem` and `key.pem`.
    #[serde(default)]
    pub tls_dir: Option<PathBuf>,
    /// `ssh://`: the known-hosts file the host's key must be in (default: ssh's own,
    /// `~/.ssh/known_hosts`).
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// `ssh://`: the private key to sign in with (default: ssh's own and the agent's).
    #[serde(default)]
    pub identity: Option<PathBuf>,
}

impl RemoteConfig {
    /// Refuses settings that do not fit `host`, or files that are not there.
    ///
    /// # Errors
    /// What is wrong, naming the setting.
    pub fn check(&self, host: &str) -> Result<(), String> {
        let ssh = host.starts_with("ssh://");
        if ssh {
            SshAddress::parse(host)?;
            if self.tls_dir.is_some() {
                return Err("tls_dir: an ssh:// engine is reached through ssh, not TLS".into());
            }
        } else if self.known_hosts.is_some() || self.identity.is_some() {
            let key = if self.known_hosts.is_some() {
                "known_hosts"
            } else {
                "identity"
            };
            return Err(format!("{key}: a setting of ssh:// engines"));
        }
        if let Some(dir) = &self.tls_dir {
            for f in TLS_FILES {
                let path = dir.join(f);
                if !path.is_file() {
                    return Err(format!(
                        "tls_dir: {} is not there (the directory holds ca.pem, cert.pem and key.pem, as DOCKER_CERT_PATH does)",
                        path.display()
                    ));
                }
            }
        }
        for (key, path) in [
            ("known_hosts", &self.known_hosts),
            ("identity", &self.identity),
        ] {
            if let Some(p) = path
                && !p.is_file()
            {
                return Err(format!("{key}: {} is not there", p.display()));
            }
        }
        Ok(())
    }
}

/// The files of a TLS directory.
pub(crate) const TLS_FILES: [&str; 3] = ["ca.pem", "cert.pem", "key.pem"];

/// `ssh://[user@]host[:port]`, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SshAddress {
    /// `user@host` or `host`.
    pub destination: String,
    pub port: Option<u16>,
}

impl SshAddress {
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "{url:?}: {why} (an ssh engine is ssh://[user@]host[:port], as DOCKER_HOST spells it)"
            )
        };
        let rest = url
            .strip_prefix("ssh://")
            .ok_or_else(|| bad("not ssh://"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) || rest.starts_with('-') {
            return Err(bad("no path, query or option goes there"));
        }
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) if !u.is_empty() => (Some(u), h),
            Some(_) => return Err(bad("an empty user")),
            None => (None, rest),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.starts_with('[') => (
                h,
                Some(p.parse::<u16>().map_err(|_| bad("the port is no number"))?),
            ),
            _ => (hostport, None),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.starts_with('-') {
            return Err(bad("no host"));
        }
        Ok(Self {
            destination: user.map_or_else(|| host.to_owned(), |u| format!("{u}@{host}")),
            port,
        })
    }
}

/// The private socket standing for an ssh engine, and what ssh said last when it failed.
#[derive(Debug)]
pub(crate) struct Bridge {
    pub socket: PathBuf,
    dir: PathBuf,
    last_error: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // (the ssh it runs is killed with its task: kill_on_drop)
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Bridge {
    /// Serves a socket for the engine at `url` (on the runtime of the caller), in a private
    /// directory of its own.
    pub(crate) fn start(url: &str, remote: &RemoteConfig) -> Result<Self, Error> {
        let address = SshAddress::parse(url).map_err(|reason| Error::Unreachable {
            host: url.to_owned(),
            reason,
        })?;
        let dir = private_dir().map_err(|e| Error::Unreachable {
            host: url.to_owned(),
            reason: format!("cannot make the ssh bridge's directory: {e}"),
        })?;
        let socket = dir.join("engine.sock");
        let last_error = Arc::new(Mutex::new(None));
        let task = tokio::spawn(forward(
            Ssh {
                options: ssh_options(remote),
                address,
            },
            socket.clone(),
            Arc::clone(&last_error),
            url.to_owned(),
        ));
        Ok(Self {
            socket,
            dir,
            last_error,
            task,
        })
    }

    /// What ssh said the last time it failed (a host key refused, a login denied).
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

/// A directory only this user reads, for the bridge's socket (short: a unix socket's path has
/// room for about 100 bytes).
fn private_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "capstan-ssh-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

/// How `ssh` is run for one host.
#[derive(Debug, Clone)]
struct Ssh {
    options: Vec<String>,
    address: SshAddress,
}

impl Ssh {
    /// `ssh` with the options, `extra`, then the destination and `command`.
    fn command(&self, extra: &[String], command: &[&str]) -> Command {
        let mut c = Command::new("ssh");
        c.args(&self.options).args(extra);
        if let Some(p) = self.address.port {
            c.arg("-p").arg(p.to_string());
        }
        c.arg("--").arg(&self.address.destination).args(command);
        c.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        c
    }
}

/// The options of every `ssh` run: no prompt ever (a question would hang capstan), the host's
/// key checked and never learnt, a dead link found within 30 s.
fn ssh_options(remote: &RemoteConfig) -> Vec<String> {
    let mut args: Vec<String> = [
        "-T",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "ServerAliveInterval=10",
        "-o",
        "ServerAliveCountMax=3",
        "-o",
        "LogLevel=ERROR",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if let Some(k) = &remote.known_hosts {
        args.push("-o".into());
        args.push(format!("UserKnownHostsFile={}", k.display()));
    }
    if let Some(i) = &remote.identity {
        args.extend(["-o".into(), "IdentitiesOnly=yes".into(), "-i".into()]);
        args.push(i.display().to_string());
    }
    args
}

/// The longest wait before ssh is run again after it failed.
const BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Keeps the engine's socket forwarded to `socket` until dropped: asks the host where its
/// engine listens (`DOCKER_HOST` as its logins see it, else the default socket), then holds one
/// ssh connection forwarding every connection to `socket` to it (ssh channels of their own,
/// which sshd does not cap as it caps sessions), and connects again, after a wait that
/// doubles, whenever that ends.
async fn forward(ssh: Ssh, socket: PathBuf, errors: Arc<Mutex<Option<String>>>, host: String) {
    let record = |said: Option<String>| {
        if let Ok(mut last) = errors.lock() {
            *last = said;
        }
    };
    let mut backoff = std::time::Duration::from_secs(1);
    loop {
        let started = tokio::time::Instant::now();
        match engine_address(&ssh).await {
            Ok(target) => {
                let _ = std::fs::remove_file(&socket);
                let bind = format!("{}:{target}", socket.display());
                let extra: Vec<String> = [
                    "-N",
                    "-o",
                    "ExitOnForwardFailure=yes",
                    "-o",
                    "StreamLocalBindUnlink=yes",
                    "-o",
                    "StreamLocalBindMask=0177",
                    "-L",
                    &bind,
                ]
                .map(str::to_owned)
                .to_vec();
                match run(ssh.command(&extra, &[]), |_| record(None)).await {
                    Ok(_) => {}
                    Err(said) => {
                        warn!(%host, error = %said, "the ssh link to the engine failed; connecting again");
                        record(Some(said));
                    }
                }
            }
            Err(said) => {
                warn!(%host, error = %said, "cannot ask the host where its engine is");
                record(Some(said));
            }
        }
        if started.elapsed() > BACKOFF_MAX * 2 {
            backoff = std::time::Duration::from_secs(1);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Where the host's engine listens, as a forward's target: the path of its unix socket, or
/// `host:port` of a tcp one.
async fn engine_address(ssh: &Ssh) -> Result<String, String> {
    let out = run(
        ssh.command(
            &[],
            &["printf '%s' \"${DOCKER_HOST:-unix:///var/run/docker.sock}\""],
        ),
        |_| {},
    )
    .await?;
    let said = out.trim();
    if let Some(path) = said.strip_prefix("unix://") {
        Ok(path.to_owned())
    } else if let Some(hostport) = said.strip_prefix("tcp://") {
        Ok(hostport.trim_end_matches('/').to_owned())
    } else {
        Err(format!(
            "the host's DOCKER_HOST is {said:?}: a unix:// or tcp:// engine is forwarded"
        ))
    }
}

/// Runs `command` to its end: its output, or what it said on stderr when it failed.
/// `started` is called once it runs.
async fn run(mut command: Command, started: impl FnOnce(u32)) -> Result<String, String> {
    let child = command
        .spawn()
        .map_err(|e| format!("cannot run ssh: {e} (install the OpenSSH client)"))?;
    started(child.id().unwrap_or_default());
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("ssh: {e}"))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.trim().lines().last().unwrap_or_default().trim();
    debug!(status = %out.status, stderr = %stderr.trim(), "ssh failed");
    Err(if line.is_empty() {
        format!("ssh exited with {}", out.status)
    } else {
        format!("ssh: {line}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_addresses_are_taken_apart_and_options_never_pass() {
        let a = SshAddress::parse("ssh://deploy@10.0.0.5:2222").unwrap();
        assert_eq!(a.destination, "deploy@10.0.0.5");
        assert_eq!(a.port, Some(2222));
        let a = SshAddress::parse("ssh://edge").unwrap();
        assert_eq!((a.destination.as_str(), a.port), ("edge", None));
        let a = SshAddress::parse("ssh://root@[fd00::1]:22").unwrap();
        assert_eq!((a.destination.as_str(), a.port), ("root@fd00::1", Some(22)));
        for bad in [
            "ssh://",
            "ssh://-oProxyCommand=x",
            "ssh://@host",
            "ssh://host/path",
            "ssh://host:port",
            "ssh://a b",
            "tcp://host",
        ] {
            assert!(SshAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_command_line_checks_host_keys_and_asks_nothing() {
        let remote = RemoteConfig {
            known_hosts: Some("/etc/capstan/known_hosts".into()),
            identity: Some("/etc/capstan/id".into()),
            ..RemoteConfig::default()
        };
        let ssh = Ssh {
            options: ssh_options(&remote),
            address: SshAddress::parse("ssh://root@h:2222").unwrap(),
        };
        let c = ssh.command(&["-N".into()], &["true"]);
        let args: Vec<String> = c
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let args = args.join(" ");
        for want in [
            "BatchMode=yes",
            "StrictHostKeyChecking=yes",
            "UserKnownHostsFile=/etc/capstan/known_hosts",
            "IdentitiesOnly=yes -i /etc/capstan/id",
            "-N -p 2222 -- root@h true",
        ] {
            assert!(args.contains(want), "{want} in {args}");
        }
    }
}
