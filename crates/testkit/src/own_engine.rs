use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use capstan_engine::Engine;
use tokio::process::Command;

/// A Docker engine of a test's own, for tests that stop or restart it. Such tests run in the
/// `own-engine` nextest group, one at a time, so the names below are fixed; whatever an earlier
/// run that was cut off left behind under them is cleared first. Its own bridge and address
/// pool keep it apart from the run's engine (never `--bridge=none`: it deletes docker0).
#[derive(Debug)]
pub struct OwnEngine {
    dir: PathBuf,
    running: bool,
}

const BRIDGE: &str = "capt-own0";
const GATEWAY: &str = "10.215.0.1/24";
const POOL: &str = "base=10.216.0.0/16,size=24";

async fn run(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

impl OwnEngine {
    /// Clears leftovers, creates the bridge and starts dockerd; returns once it answers.
    pub async fn start() -> Self {
        let dir = crate::run_dir().join("own");
        let mut engine = Self {
            dir,
            running: false,
        };
        engine.clear().await;
        std::fs::create_dir_all(&engine.dir).unwrap();
        assert!(
            run("ip", &["link", "add", BRIDGE, "type", "bridge"]).await,
            "cannot create bridge {BRIDGE} (the tests need root)"
        );
        run("ip", &["addr", "add", GATEWAY, "dev", BRIDGE]).await;
        run("ip", &["link", "set", BRIDGE, "up"]).await;
        engine.launch().await;
        engine
    }

    /// `unix://` address of its socket.
    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.join("docker.sock").display())
    }

    /// A connected handle with the test image present.
    pub async fn engine(&self) -> Engine {
        let engine = Engine::new(Some(&self.host())).unwrap();
        engine.negotiate().await.unwrap();
        crate::ensure_busybox(&engine).await;
        engine
    }

    async fn launch(&mut self) {
        let d = &self.dir;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("dockerd.log"))
            .unwrap();
        let path = |p: &str| d.join(p).display().to_string();
        let mut child = Command::new("dockerd")
            .args(["--data-root", &path("data"), "--exec-root", &path("exec")])
            .args(["--pidfile", &path("pid"), "-H", &self.host()])
            .args(["--bridge", BRIDGE, "--default-address-pool", POOL])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start dockerd: install docker.io (scripts/test does)");
        self.running = true;
        let engine = Engine::new(Some(&self.host())).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_mins(1);
        loop {
            if engine.version().await.is_ok() {
                return;
            }
            // an engine that gave up, or never answers, says why in its log
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "own engine exited ({status}) before answering:\n{}",
                    self.log_tail()
                );
            }
            assert!(
                tokio::time::Instant::now() <= deadline,
                "own engine did not answer /_ping within 60s:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines of its dockerd's log.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// SIGTERM to dockerd; waits until it is gone.
    pub async fn stop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pid")) {
            let pid = pid.trim().to_owned();
            run("kill", &["-TERM", &pid]).await;
            crate::eventually(Duration::from_mins(1), "own engine exits", || {
                let pid = pid.clone();
                async move { (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(()) }
            })
            .await;
        }
        self.running = false;
    }

    /// Stops and starts dockerd on the same data.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    /// Stops whatever runs under our names and removes its files, bridge and mounts.
    async fn clear(&mut self) {
        self.stop().await;
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let prefix = self.dir.display().to_string();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        ours.sort_unstable_by(|a, b| b.cmp(a));
        for m in ours {
            run("umount", &["-l", m]).await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        run("ip", &["link", "del", BRIDGE]).await;
    }

    /// Stops the engine and removes everything it made.
    pub async fn shutdown(mut self) {
        self.clear().await;
    }
}
