//! A real Prometheus (Debian's `prometheus` 2.42) of the test's own, scraping one target every
//! second with a bearer token, on a random port of 127.0.0.1.

use std::process::Stdio;

use tokio::process::{Child, Command};

const BINARY: &str = "/usr/bin/prometheus";

pub struct Prometheus {
    dir: tempfile::TempDir,
    port: u16,
    _child: Child,
    http: reqwest::Client,
}

impl Prometheus {
    /// Starts a server scraping `http://TARGET/metrics` (`target` as `host:port`) with
    /// `token`, and waits until it is ready.
    pub async fn start(target: &str, token: &str) -> Self {
        assert!(
            std::path::Path::new(BINARY).exists(),
            "{BINARY} is missing: run the tests with scripts/test, which installs prometheus"
        );
        let dir = tempfile::Builder::new()
            .prefix("capt-prometheus-")
            .tempdir()
            .unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, token).unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
                 scrape_configs:\n\
                 - job_name: capstan\n  \
                   metrics_path: /metrics\n  \
                   authorization: {{type: Bearer, credentials_file: {}}}\n  \
                   static_configs: [{{targets: [\"{target}\"]}}]\n",
                token_file.display()
            ),
        )
        .unwrap();
        let port = crate::free_port();
        let child = Command::new(BINARY)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let p = Self {
            dir,
            port,
            _child: child,
            http: reqwest::Client::new(),
        };
        crate::wait_ready(
            &format!("http://127.0.0.1:{port}/-/ready"),
            "prometheus",
            &p.dir.path().join("prometheus.log"),
        )
        .await;
        p
    }

    /// The values of an instant PromQL query (empty when nothing matches yet).
    pub async fn query(&self, promql: &str) -> Vec<f64> {
        let body: serde_json::Value = self
            .http
            .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query(&[("query", promql)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["status"], "success", "{body}");
        body["data"]["result"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|s| s["value"][1].as_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}
