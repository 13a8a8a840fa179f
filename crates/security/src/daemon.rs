//! What only the engine's host can tell: how its daemon was started (its command line and
//! `daemon.json`), who owns its socket and configuration file, and whether its data has a
//! partition of its own. Read when capstan runs on that host and reaches the engine over a unix
//! socket; a remote engine's checks that need these say they do not apply.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// A file's owner and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFacts {
    pub path: String,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits (`0o660`).
    pub mode: u32,
}

impl FileFacts {
    /// Reads `path`'s owner and mode; `None` when it is not there.
    pub fn read(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Self {
            path: path.display().to_string(),
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
        })
    }
}

/// How the engine's daemon was set up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DaemonSetup {
    /// `dockerd`'s arguments (without the program name).
    pub args: Vec<String>,
    /// Its configuration file, when it has one.
    pub config_file: Option<FileFacts>,
    /// That file's settings (empty when none).
    pub config: Map<String, Value>,
    /// The socket capstan reaches it through.
    pub socket: Option<FileFacts>,
    /// The `docker` group's id, when the host has one.
    pub docker_gid: Option<u32>,
    /// The engine's data root is on the same filesystem as the host's root (no partition of
    /// its own); `None` when that could not be read.
    pub data_on_root_fs: Option<bool>,
}

impl DaemonSetup {
    /// The value of a flag given as `--flag=value` or `--flag value` (the last one given), else
    /// of `key` in `daemon.json` (strings and numbers as written, booleans as `true`/`false`).
    pub fn setting(&self, flag: &str, key: &str) -> Option<String> {
        let mut found = None;
        let mut args = self.args.iter();
        while let Some(arg) = args.next() {
            if let Some(value) = arg.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
                found = Some(value.to_owned());
            } else if arg == flag {
                found = args.next().cloned();
            }
        }
        found.or_else(|| match self.config.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    }

    /// A boolean flag: `--flag` alone is true, `--flag=false` false; else `key` in
    /// `daemon.json`; else `default`.
    pub fn switch(&self, flag: &str, key: &str, default: bool) -> bool {
        let mut found = None;
        for arg in &self.args {
            if arg == flag {
                found = Some(true);
            } else if let Some(value) = arg.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
                found = Some(!matches!(
                    value,
                    "false" | "0" | "f" | "F" | "FALSE" | "False"
                ));
            }
        }
        found
            .or_else(|| self.config.get(key).and_then(Value::as_bool))
            .unwrap_or(default)
    }

    /// Every address it listens on (`-H`, `--host`, `hosts` in `daemon.json`).
    pub fn hosts(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut args = self.args.iter();
        while let Some(arg) = args.next() {
            if arg == "-H" || arg == "--host" {
                out.extend(args.next().cloned());
            } else if let Some(v) = arg
                .strip_prefix("--host=")
                .or_else(|| arg.strip_prefix("-H="))
            {
                out.push(v.to_owned());
            } else if let Some(v) = arg.strip_prefix("-H").filter(|v| !v.is_empty()) {
                out.push(v.to_owned());
            }
        }
        if let Some(Value::Array(hosts)) = self.config.get("hosts") {
            out.extend(hosts.iter().filter_map(Value::as_str).map(str::to_owned));
        }
        out
    }
}

/// The engine's socket path when `host` is a unix socket.
pub fn socket_path(host: &str) -> Option<&str> {
    host.strip_prefix("unix://")
}

/// Whether `args` (a `dockerd` command line) serves the socket at `socket`: named with `-H`, or
/// the default socket when it names none (or only `fd://`, systemd's socket activation).
fn serves(args: &[String], socket: &Path) -> bool {
    let setup = DaemonSetup {
        args: args.to_vec(),
        ..DaemonSetup::default()
    };
    let unix: Vec<PathBuf> = setup
        .hosts()
        .iter()
        .filter_map(|h| h.strip_prefix("unix://").map(PathBuf::from))
        .collect();
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if unix.is_empty() {
        return ["/var/run/docker.sock", "/run/docker.sock"]
            .iter()
            .any(|d| same(Path::new(d), socket));
    }
    unix.iter().any(|p| same(p, socket))
}

/// The `docker` group's id in `group` (the text of `/etc/group`).
pub fn docker_gid(group: &str) -> Option<u32> {
    group.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next() == Some("docker"))
            .then(|| fields.nth(1)?.parse().ok())
            .flatten()
    })
}

/// Reads how the daemon behind the unix socket `host` was set up, from this host's `/proc`;
/// `None` for a remote engine or when no local `dockerd` serves that socket.
pub fn read_local(host: &str, data_root: &str) -> Option<DaemonSetup> {
    let socket = Path::new(socket_path(host)?);
    if !socket.exists() {
        return None;
    }
    let args = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
        })
        .filter(|argv| {
            argv.first()
                .is_some_and(|p| Path::new(p).file_name().is_some_and(|n| n == "dockerd"))
        })
        .map(|argv| argv[1..].to_vec())
        .find(|args| serves(args, socket))?;
    let mut setup = DaemonSetup {
        args,
        ..DaemonSetup::default()
    };
    let config_path = setup
        .setting("--config-file", "")
        .map_or_else(|| PathBuf::from("/etc/docker/daemon.json"), PathBuf::from);
    setup.config_file = FileFacts::read(&config_path);
    if setup.config_file.is_some() {
        setup.config = std::fs::read_to_string(&config_path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
    }
    setup.socket = FileFacts::read(socket);
    setup.docker_gid = std::fs::read_to_string("/etc/group")
        .ok()
        .and_then(|g| docker_gid(&g));
    // a bind mount of a directory onto itself (as dockerd makes of its data root) keeps the
    // device: the device, not the mount table, tells a partition of its own
    setup.data_on_root_fs = match (std::fs::metadata(data_root), std::fs::metadata("/")) {
        (Ok(data), Ok(root)) => Some(data.dev() == root.dev()),
        _ => None,
    };
    Some(setup)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(args: &[&str], config: &str) -> DaemonSetup {
        DaemonSetup {
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            config: serde_json::from_str(config).unwrap(),
            ..DaemonSetup::default()
        }
    }

    #[test]
    fn flags_win_over_the_config_file_and_read_in_every_spelling() {
        let s = setup(
            &[
                "--log-level",
                "debug",
                "--userland-proxy=false",
                "--iptables",
            ],
            r#"{"log-level": "info", "no-new-privileges": true, "iptables": false}"#,
        );
        assert_eq!(
            s.setting("--log-level", "log-level").as_deref(),
            Some("debug")
        );
        assert!(!s.switch("--userland-proxy", "userland-proxy", true));
        assert!(s.switch("--iptables", "iptables", true));
        assert!(s.switch("--no-new-privileges", "no-new-privileges", false));
        assert!(!s.switch("--live-restore", "live-restore", false));
    }

    #[test]
    fn hosts_come_from_every_spelling_and_the_config_file() {
        let s = setup(
            &[
                "-H",
                "unix:///a.sock",
                "--host=tcp://0.0.0.0:2375",
                "-Htcp://127.0.0.1:1",
            ],
            r#"{"hosts": ["fd://"]}"#,
        );
        assert_eq!(
            s.hosts(),
            [
                "unix:///a.sock",
                "tcp://0.0.0.0:2375",
                "tcp://127.0.0.1:1",
                "fd://"
            ]
        );
    }

    #[test]
    fn the_docker_group_is_found_by_name() {
        assert_eq!(
            docker_gid("root:x:0:\ndockerx:x:7:\ndocker:x:998:alice\n"),
            Some(998)
        );
        assert_eq!(docker_gid("root:x:0:\n"), None);
    }
}
