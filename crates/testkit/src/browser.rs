//! A real headless Chromium (Debian's `chromium`), driven over WebDriver through Debian's
//! `chromedriver` on a random port of 127.0.0.1.

use std::process::Stdio;

use tokio::process::{Child, Command};

const DRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A running chromedriver, and the log it writes.
pub struct Browser {
    dir: tempfile::TempDir,
    port: u16,
    _child: Child,
}

impl Browser {
    /// Starts chromedriver and waits until it answers.
    pub async fn start() -> Self {
        for binary in [DRIVER, CHROMIUM] {
            assert!(
                std::path::Path::new(binary).exists(),
                "{binary} is missing: run the tests with scripts/test, which installs chromium and chromium-driver"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("capt-chromedriver-")
            .tempdir()
            .unwrap();
        let port = crate::free_port();
        let log = dir.path().join("chromedriver.log");
        let child = Command::new(DRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        crate::wait_ready(
            &format!("http://127.0.0.1:{port}/status"),
            "chromedriver",
            &log,
        )
        .await;
        Self {
            dir,
            port,
            _child: child,
        }
    }

    /// The WebDriver endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What chromedriver logged (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }

    /// A headless Chromium `width` × `height` CSS pixels large, driven through this driver.
    pub async fn client(&self, width: u32, height: u32) -> fantoccini::Client {
        fantoccini::ClientBuilder::rustls()
            .unwrap()
            .capabilities(Self::capabilities(width, height, &self.net_log()))
            .connect(&self.url())
            .await
            .unwrap_or_else(|e| panic!("cannot start Chromium: {e}\n{}", self.log()))
    }

    /// Where Chromium writes its network log: every socket, request and the error that ended
    /// one (what "Failed to fetch" was, when a page says only that).
    fn net_log(&self) -> std::path::PathBuf {
        self.dir.path().join("netlog.json")
    }

    /// The capabilities of a headless Chromium `width` × `height` CSS pixels large, writing its
    /// network log to `net_log`.
    pub fn capabilities(
        width: u32,
        height: u32,
        net_log: &std::path::Path,
    ) -> serde_json::Map<String, serde_json::Value> {
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    format!("--window-size={width},{height}"),
                    format!("--log-net-log={}", net_log.display()),
                    // the profile beside the logs: how its processes are found when the driver
                    // goes (killing chromedriver leaves the Chromium it started running)
                    format!("--user-data-dir={}", profile_of(net_log).display()),
                ],
            },
        });
        match caps {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        }
    }
}

/// The Chromium profile of the session whose network log is `net_log`.
fn profile_of(net_log: &std::path::Path) -> std::path::PathBuf {
    net_log.with_file_name("profile")
}

impl Drop for Browser {
    /// Every Chromium this driver started goes with it (a session a test never closed would
    /// keep running, and a run's leftovers slow every later test). A failing test keeps
    /// chromedriver's log and Chromium's network log, and says where.
    fn drop(&mut self) {
        let _ = std::process::Command::new("pkill")
            .arg("-KILL")
            .arg("-f")
            .arg(profile_of(&self.net_log()))
            .status();
        if std::thread::panicking() {
            let dir = tempfile::Builder::new()
                .prefix("capt-chromedriver-kept-")
                .tempdir()
                .map(tempfile::TempDir::keep);
            if let Ok(kept) = dir {
                for name in ["chromedriver.log", "netlog.json"] {
                    let _ = std::fs::copy(self.dir.path().join(name), kept.join(name));
                }
                eprintln!(
                    "the browser's logs are kept in {} (netlog.json: grep net_error)",
                    kept.display()
                );
            }
        }
    }
}
