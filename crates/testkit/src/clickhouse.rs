//! A real ClickHouse server (Debian's `clickhouse-server`, 18.16) of the test's own: its own
//! data dir and a random HTTP port on 127.0.0.1, no native or interserver port, stopped and
//! started again by the test to make an outage.

use std::path::PathBuf;
use std::time::Duration;

use tokio::process::{Child, Command};

const BINARY: &str = "/usr/sbin/clickhouse-server";

pub struct ClickHouse {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    http: reqwest::Client,
}

impl ClickHouse {
    /// Starts a server and waits until it answers `/ping`.
    pub async fn start() -> Self {
        assert!(
            std::path::Path::new(BINARY).exists(),
            "{BINARY} is missing: run the tests with scripts/test, which installs clickhouse-server"
        );
        let dir = tempfile::Builder::new()
            .prefix("capt-clickhouse-")
            .tempdir()
            .unwrap();
        let port = crate::free_port();
        let root = dir.path().display().to_string();
        std::fs::write(
            dir.path().join("config.xml"),
            format!(
                r#"<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{root}/server.log</log><errorlog>{root}/error.log</errorlog></logger>
  <http_port>{port}</http_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{root}/data/</path>
  <tmp_path>{root}/tmp/</tmp_path>
  <user_files_path>{root}/user_files/</user_files_path>
  <format_schema_path>{root}/format_schemas/</format_schema_path>
  <users_config>/etc/clickhouse-server/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>5368709120</mark_cache_size>
</yandex>
"#
            ),
        )
        .unwrap();
        let mut ch = Self {
            dir,
            port,
            child: None,
            http: reqwest::Client::new(),
        };
        ch.resume().await;
        ch
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("config.xml")
    }

    /// Starts the server again (same data, same port) and waits for it.
    pub async fn resume(&mut self) {
        let out = std::fs::File::create(self.dir.path().join("stdout.log")).unwrap();
        let child = Command::new(BINARY)
            .arg(format!("--config-file={}", self.config().display()))
            .current_dir(self.dir.path())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let url = format!("{}/ping", self.endpoint());
        let http = self.http.clone();
        crate::eventually(Duration::from_mins(1), "clickhouse to answer /ping", || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                http.get(url)
                    .send()
                    .await
                    .ok()?
                    .error_for_status()
                    .ok()
                    .map(drop)
            }
        })
        .await;
    }

    /// Kills the server (SIGKILL: its graceful stop keeps serving for a while): an outage.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Runs `sql` and returns the answer's text; panics with the server's message on error.
    pub async fn query(&self, sql: &str) -> String {
        match self.run(sql).await {
            Ok(text) => text,
            Err(e) => panic!("clickhouse: {sql}: {e}"),
        }
    }

    /// Runs `sql`; `None` when the server says no (a table not there yet, say).
    pub async fn query_lenient(&self, sql: &str) -> Option<String> {
        self.run(sql).await.ok()
    }

    async fn run(&self, sql: &str) -> Result<String, String> {
        let resp = self
            .http
            .post(format!("{}/", self.endpoint()))
            .body(sql.to_owned())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(text)
        } else {
            Err(format!("{status}: {text}"))
        }
    }
}
