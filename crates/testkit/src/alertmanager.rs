//! A real Alertmanager (Debian's `prometheus-alertmanager` 0.25) of the test's own, on a
//! random port of 127.0.0.1, clustering off.

use std::process::Stdio;

use tokio::process::{Child, Command};

const BINARY: &str = "/usr/bin/prometheus-alertmanager";

pub struct Alertmanager {
    dir: tempfile::TempDir,
    port: u16,
    _child: Child,
    http: reqwest::Client,
}

impl Alertmanager {
    /// Starts one and waits until it is ready.
    pub async fn start() -> Self {
        assert!(
            std::path::Path::new(BINARY).exists(),
            "{BINARY} is missing: run the tests with scripts/test, which installs prometheus-alertmanager"
        );
        let dir = tempfile::Builder::new()
            .prefix("capt-alertmanager-")
            .tempdir()
            .unwrap();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route: {receiver: default}\nreceivers: [{name: default}]\n",
        )
        .unwrap();
        let port = crate::free_port();
        let child = Command::new(BINARY)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("alertmanager.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let am = Self {
            dir,
            port,
            _child: child,
            http: reqwest::Client::new(),
        };
        crate::wait_ready(
            &format!("{}/-/ready", am.url()),
            "alertmanager",
            &am.dir.path().join("alertmanager.log"),
        )
        .await;
        am
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The alerts it holds (`GET /api/v2/alerts`), as JSON.
    pub async fn alerts(&self) -> Vec<serde_json::Value> {
        self.http
            .get(format!("{}/api/v2/alerts", self.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}
