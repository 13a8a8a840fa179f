//! An OpenSSH server of the test's own (Debian's `openssh-server`), with a host key and a
//! client key the test makes and authorizes: the fleet's engines over ssh, backups over SFTP.
//! Stopped when dropped.

use std::path::PathBuf;

pub struct Sshd {
    dir: tempfile::TempDir,
    child: std::process::Child,
    /// `ssh://root@IP:PORT`.
    pub address: String,
    pub ip: String,
    pub port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    /// Listens on `ip:port` (in the network namespace `netns`, a path under `/run/netns`,
    /// when given), with `env` set in its sessions (`SetEnv`). Files beside it: `client_key`,
    /// `known_hosts` (its key), `wrong_known_hosts` (another key), `sshd.log`.
    pub fn start(ip: &str, port: u16, netns: Option<&str>, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("capt-sshd-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let keygen = |file: &str| {
            let ok = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join(file))
                .status()
                .unwrap();
            assert!(ok.success(), "ssh-keygen {file}");
        };
        keygen("host_key");
        keygen("client_key");
        keygen("other_host_key");
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let known = |key: &str| {
            let public = std::fs::read_to_string(d.join(key)).unwrap();
            let mut fields = public.split_whitespace();
            format!(
                "[{ip}]:{port} {} {}\n",
                fields.next().unwrap(),
                fields.next().unwrap()
            )
        };
        std::fs::write(d.join("known_hosts"), known("host_key.pub")).unwrap();
        // a known-hosts file that pins another key: the host must be refused
        std::fs::write(d.join("wrong_known_hosts"), known("other_host_key.pub")).unwrap();
        let set_env = env
            .iter()
            .map(|(k, v)| format!("SetEnv {k}={v}"))
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress {ip}\nHostKey {hk}\nAuthorizedKeysFile {ak}\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n\
                 PidFile {pid}\nSubsystem sftp internal-sftp\n{set_env}",
                hk = d.join("host_key").display(),
                ak = d.join("authorized_keys").display(),
                pid = d.join("sshd.pid").display(),
            ),
        )
        .unwrap();
        // sshd's privilege separation needs its directory
        std::fs::create_dir_all("/run/sshd").unwrap();
        let mut command = match netns {
            Some(ns) => {
                let mut c = std::process::Command::new("nsenter");
                c.arg(format!("--net={ns}")).arg("/usr/sbin/sshd");
                c
            }
            None => std::process::Command::new("/usr/sbin/sshd"),
        };
        let child = command
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        Self {
            dir,
            child,
            address: format!("ssh://root@{ip}:{port}"),
            ip: ip.to_owned(),
            port,
        }
    }

    /// A file beside it.
    pub fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}
