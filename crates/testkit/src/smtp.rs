//! A real SMTP server of the test's own: Debian's `python3-aiosmtpd`, on a random port of
//! 127.0.0.1, requiring `AUTH` with the given user and password, storing every message it
//! accepts in a maildir.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Debian's interpreter: the one its `python3-aiosmtpd` package installs for.
const PYTHON: &str = "/usr/bin/python3";

const SERVER: &str = r#"
import sys
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword

port, maildir, user, password = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]

def authenticate(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login.decode() == user \
        and data.password.decode() == password
    return AuthResult(success=ok)

controller = Controller(
    Mailbox(maildir), hostname="127.0.0.1", port=int(port),
    authenticator=authenticate, auth_required=True, auth_require_tls=False,
)
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
"#;

pub struct Smtp {
    dir: tempfile::TempDir,
    port: u16,
    _child: Child,
}

impl Smtp {
    /// Starts a server that takes mail only from `user` with `password`.
    pub async fn start(user: &str, password: &str) -> Self {
        assert!(
            Path::new("/usr/lib/python3/dist-packages/aiosmtpd").exists(),
            "python3-aiosmtpd is missing: run the tests with scripts/test, which installs it"
        );
        let dir = tempfile::Builder::new()
            .prefix("capt-smtp-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("server.py"), SERVER).unwrap();
        let port = crate::free_port();
        let mut child = Command::new(PYTHON)
            .arg(dir.path().join("server.py"))
            .arg(port.to_string())
            .arg(dir.path().join("maildir"))
            .args([user, password])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("server.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
        assert!(
            matches!(ready, Ok(Ok(Some(ref l))) if l == "ready"),
            "the SMTP server did not start: {}",
            std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
        );
        Self {
            dir,
            port,
            _child: child,
        }
    }

    /// `smtp://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The messages accepted so far, whole (headers and body), oldest first.
    pub fn messages(&self) -> Vec<String> {
        let new: PathBuf = self.dir.path().join("maildir").join("new");
        let mut files: Vec<_> = std::fs::read_dir(new)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        files
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .collect()
    }
}
