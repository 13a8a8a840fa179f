use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A `capstan serve` under test, on a port of its own, with its own data dir.
#[derive(Debug)]
pub struct Daemon {
    bin: PathBuf,
    docker_host: String,
    child: Option<Child>,
    /// The container it runs in, when it runs from capstan's image ([`Daemon::in_container`]).
    container: Option<String>,
    /// `capstan agent`'s own flags when it runs as a fleet host ([`Daemon::start_agent`]).
    agent: Option<Vec<String>>,
    /// The network namespace it runs in and the address it listens on there (a host of the
    /// run's three: [`Daemon::start_agent_on`]).
    netns: Option<(String, String)>,
    data: PathBuf,
    _data_guard: Option<tempfile::TempDir>,
    /// Set in the daemon's environment (over `DOCKER_CONFIG`, which points at nothing unless
    /// a test says: the machine's own Docker credentials are not the test's).
    env: Vec<(String, String)>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The admin token.
    pub token: String,
    http: reqwest::Client,
}

impl Daemon {
    /// Starts the daemon `bin` (the test's `CARGO_BIN_EXE_capstan`) against `docker_host` with a
    /// fresh data dir, and waits until it serves.
    /// Log collection is off (every daemon of a run shares one engine, and would read every
    /// other test's containers); tests of logs use [`Daemon::start_with`].
    pub async fn start(bin: &Path, docker_host: &str) -> Self {
        Self::start_with(bin, docker_host, "[logs]\ncollect = false\n").await
    }

    /// Starts with `config` as its capstan.toml. Unless `config` has an `[images]` section,
    /// registry watching is off: daemons of parallel tests share the engine, and one must not
    /// send requests to another test's registry. Unless it has a `[metrics]` section, metrics
    /// are not collected; unless it has `[alerts]`, the built-in alert rules are off.
    pub async fn start_with(bin: &Path, docker_host: &str, config: &str) -> Self {
        Self::start_prepared(bin, docker_host, config, |_| {}).await
    }

    /// [`Self::start_with`], `prepare` run on the fresh data dir before the daemon starts (to
    /// keep credentials its config names, as an installer would).
    pub async fn start_prepared(
        bin: &Path,
        docker_host: &str,
        config: &str,
        prepare: impl FnOnce(&Path),
    ) -> Self {
        Self::start_full(bin, docker_host, config, prepare, &[]).await
    }

    /// [`Self::start_with`], with `env` set in the daemon's environment (`DOCKER_CONFIG`,
    /// `PATH` for a credential helper), at every start.
    pub async fn start_with_env(
        bin: &Path,
        docker_host: &str,
        config: &str,
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_full(bin, docker_host, config, |_| {}, env).await
    }

    async fn start_full(
        bin: &Path,
        docker_host: &str,
        config: &str,
        prepare: impl FnOnce(&Path),
        env: &[(&str, &str)],
    ) -> Self {
        let mut d = Self::unstarted(bin, docker_host, config);
        prepare(&d.data);
        d.env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        d.spawn(None).await;
        d
    }

    /// Replaces its capstan.toml (taken at the next [`Self::restart`]), with the same defaults
    /// as [`Self::start_with`].
    pub fn set_config(&self, config: &str) {
        std::fs::write(self.config_path(), with_defaults(config)).unwrap();
    }

    /// A fresh data dir and its config, nothing running yet.
    fn unstarted(bin: &Path, docker_host: &str, config: &str) -> Self {
        let config = with_defaults(config);
        let guard = tempfile::Builder::new()
            .prefix("capstan-test-data-")
            .tempdir_in(std::env::temp_dir())
            .unwrap();
        let data = guard.path().to_owned();
        let mut config_path = data.clone().into_os_string();
        config_path.push(".toml");
        std::fs::write(&config_path, &config).unwrap();
        Self {
            bin: bin.to_owned(),
            docker_host: docker_host.to_owned(),
            child: None,
            container: None,
            agent: None,
            netns: None,
            data,
            _data_guard: Some(guard),
            env: Vec::new(),
            url: String::new(),
            token: String::new(),
            http: reqwest::Client::new(),
        }
    }

    /// `capstan agent` (a fleet host) with `flags` (`--join URL --token T --name N`), `config`
    /// as for [`Daemon::start_with`]; it serves its local API as `serve` does.
    pub async fn start_agent(bin: &Path, docker_host: &str, config: &str, flags: &[&str]) -> Self {
        let mut d = Self::unstarted(bin, docker_host, config);
        d.agent = Some(flags.iter().map(|f| (*f).to_owned()).collect());
        d.spawn(None).await;
        d
    }

    /// `capstan agent` on host `node` (1 to 3) of the run's three hosts (`scripts/swarm-ground`):
    /// in its network namespace, against its engine, its API on its address on the test bridge
    /// (`10.217.0.1N`, which the test reaches while the host's link is up).
    pub async fn start_agent_on(node: u8, bin: &Path, config: &str, flags: &[&str]) -> Self {
        let engine = crate::swarm_node_host(&format!("capt-node{node}"));
        let mut d = Self::unstarted(bin, &engine, config);
        d.agent = Some(flags.iter().map(|f| (*f).to_owned()).collect());
        d.netns = Some((format!("capt-swn{node}"), format!("10.217.0.1{node}")));
        d.spawn(None).await;
        d
    }

    /// capstan from its container image (`scripts/image`), run on the engine at `docker_host`
    /// (`unix://`) the way docs/install.md says: the engine's socket, its containers' log
    /// directory and the cgroup hierarchy mounted, the host's network, the data dir a bind
    /// mount (a fresh one here, where the test reads the admin token). `bin` runs the CLI.
    pub async fn in_container(bin: &Path, docker_host: &str, image: &str, config: &str) -> Self {
        let mut d = Self::unstarted(bin, docker_host, config);
        let socket = docker_host
            .strip_prefix("unix://")
            .expect("the image test mounts the engine's unix socket");
        let root = docker(docker_host, &["info", "--format", "{{.DockerRootDir}}"]);
        let containers = format!("{}/containers", root.trim());
        let port = crate::free_port();
        let listen = format!("127.0.0.1:{port}");
        let name = crate::unique("capstan-image");
        let mut args = vec!["run", "-d", "--name", &name, "--network", "host"];
        let mounts = [
            format!("{socket}:/var/run/docker.sock"),
            format!("{containers}:{containers}:ro"),
            "/sys/fs/cgroup:/sys/fs/cgroup:ro".to_owned(),
            format!("{}:/var/lib/capstan", d.data.display()),
            format!("{}:/etc/capstan/capstan.toml:ro", d.config_path().display()),
        ];
        for m in &mounts {
            args.extend(["-v", m.as_str()]);
        }
        args.extend([image, "serve", "--listen", &listen]);
        args.extend(["--config", "/etc/capstan/capstan.toml"]);
        let id = docker(docker_host, &args).trim().to_owned();
        d.container = Some(id);
        d.url = format!("http://{listen}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(token) = std::fs::read_to_string(d.data.join("admin.token")) {
                token.trim().clone_into(&mut d.token);
                let health = d
                    .http
                    .get(format!("{}/api/v1/health", d.url))
                    .bearer_auth(&d.token)
                    .send()
                    .await;
                if health.is_ok_and(|r| r.status().is_success()) {
                    return d;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "capstan's image did not serve within 30 s; its log: {}",
                d.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts (again) on the same data dir; `listen` keeps the old address when given.
    async fn spawn(&mut self, listen: Option<String>) {
        let ip = self
            .netns
            .as_ref()
            .map_or("127.0.0.1", |(_, ip)| ip.as_str());
        let listen = listen.unwrap_or_else(|| format!("{ip}:0"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        // nsenter execs the binary: the child is capstan itself
        let mut command = match &self.netns {
            Some((ns, _)) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        let mut child = command
            .args(match &self.agent {
                Some(flags) => [&["agent".to_owned()][..], flags].concat(),
                None => vec!["serve".to_owned()],
            })
            .args(["--listen", &listen, "--docker-host", &self.docker_host])
            .arg("--data")
            .arg(&self.data)
            .arg("--config")
            .arg(self.config_path())
            // the API server's view of each connection that ended in an error: what to look at
            // when a browser test sees a fetch fail
            .env(
                "RUST_LOG",
                "info,capstan_images=debug,capstan_api::server=debug",
            )
            .env(
                "DOCKER_CONFIG",
                self.data.with_extension("no-docker-config"),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("capstan did not start; log: {}", self.log()))
            .unwrap()
            .unwrap_or_else(|| panic!("capstan exited at start; log: {}", self.log()));
        // "capstan serving on http://ADDR (...)", or https:// under TLS
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        self.url = url;
        let token = std::fs::read_to_string(self.data.join("admin.token")).unwrap();
        token.trim().clone_into(&mut self.token);
        self.child = Some(child);
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    fn config_path(&self) -> PathBuf {
        let mut p = self.data.clone().into_os_string();
        p.push(".toml");
        PathBuf::from(p)
    }

    /// The daemon's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    fn log_path(&self) -> PathBuf {
        let mut p = self.data.clone().into_os_string();
        p.push(".log");
        PathBuf::from(p)
    }

    /// The daemon's log so far (for failure messages).
    pub fn log(&self) -> String {
        match &self.container {
            Some(id) => docker(&self.docker_host, &["logs", id]),
            None => std::fs::read_to_string(self.log_path()).unwrap_or_default(),
        }
    }

    /// The listen address (`127.0.0.1:PORT`).
    pub fn addr(&self) -> String {
        self.url.trim_start_matches("http://").to_owned()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon not running");
        let pid = child.id().unwrap().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("capstan did not exit within 30 s of SIGTERM")
            .unwrap()
    }

    /// SIGKILL, no chance to finish anything.
    pub async fn kill9(&mut self) {
        let mut child = self.child.take().expect("daemon not running");
        child.kill().await.unwrap();
    }

    /// Starts again on the same data dir and address.
    pub async fn restart(&mut self) {
        let addr = self.addr();
        self.spawn(Some(addr)).await;
    }

    /// Runs the CLI against this daemon: `(exit code, stdout, stderr)`.
    pub async fn cli(&self, args: &[&str]) -> (i32, String, String) {
        self.cli_in(Path::new("."), args, &[]).await
    }

    /// Runs the CLI against this daemon in `dir` (where a Compose file is) with extra
    /// environment variables: `(exit code, stdout, stderr)`.
    pub async fn cli_in(
        &self,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (i32, String, String) {
        let out = Command::new(&self.bin)
            .args(args)
            .current_dir(dir)
            .env("CAPSTAN_URL", &self.url)
            .env("CAPSTAN_TOKEN", &self.token)
            .envs(env.iter().copied())
            .output()
            .await
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs the CLI against this daemon with `input` on its standard input.
    pub async fn cli_with_input(&self, args: &[&str], input: &str) -> (i32, String, String) {
        use tokio::io::AsyncWriteExt as _;
        let mut child = Command::new(&self.bin)
            .args(args)
            .env("CAPSTAN_URL", &self.url)
            .env("CAPSTAN_TOKEN", &self.token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).await.unwrap();
        drop(stdin);
        let out = child.wait_with_output().await.unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `GET /metrics` with the admin token: the Prometheus text.
    pub async fn metrics_text(&self) -> String {
        let resp = self
            .http
            .get(format!("{}/metrics", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "GET /metrics");
        resp.text().await.unwrap()
    }

    /// GET with the admin token, the answer unread (a stream).
    pub async fn get_stream(&self, path_and_query: &str) -> reqwest::Response {
        let resp = self
            .http
            .get(format!("{}{path_and_query}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "GET {path_and_query}");
        resp
    }

    /// GET with the admin token: `(status, body)`.
    pub async fn get_raw(
        &self,
        path_and_query: &str,
        token: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut req = self.http.get(format!("{}{path_and_query}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        status_and_json(req).await
    }

    /// POST a JSON body with the admin token: `(status, body)`.
    pub async fn post_raw(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let req = self.http.post(format!("{}{path}", self.url)).json(body);
        status_and_json(req.bearer_auth(&self.token)).await
    }

    /// PUT with the admin token: `(status, body)`.
    pub async fn put_raw(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let req = self.http.put(format!("{}{path}", self.url)).json(body);
        status_and_json(req.bearer_auth(&self.token)).await
    }

    /// DELETE with the admin token: `(status, body)`.
    pub async fn delete_raw(&self, path: &str) -> (u16, serde_json::Value) {
        let req = self.http.delete(format!("{}{path}", self.url));
        status_and_json(req.bearer_auth(&self.token)).await
    }

    /// POST `body` as `content_type` with the admin token; the status and the answer's text.
    pub async fn post_text(&self, path: &str, content_type: &str, body: String) -> (u16, String) {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        )
    }

    /// GET a JSON document with the admin token; fails the test on a non-2xx answer.
    pub async fn get<T: DeserializeOwned>(&self, path_and_query: &str) -> T {
        let (status, body) = self.get_raw(path_and_query, Some(&self.token)).await;
        assert!(
            (200..300).contains(&status),
            "GET {path_and_query} answered {status}: {body}"
        );
        serde_json::from_value(body).unwrap()
    }

    /// Every event matching `query` (e.g. `type=image&inferred=false`), newest first, all pages.
    pub async fn all_events(&self, query: &str) -> Vec<capstan_model::Event> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q = format!("/api/v1/events?limit=1000&{query}");
            if let Some(c) = &cursor {
                q = format!("{q}&cursor={c}");
            }
            let page: capstan_model::EventPage = self.get(&q).await;
            out.extend(page.events);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return out,
            }
        }
    }

    /// The health document.
    pub async fn health(&self) -> capstan_model::Health {
        self.get("/api/v1/health").await
    }

    /// The pid of the proxy serving this data dir, while one runs (it holds a lock on
    /// `proxy.pid`).
    pub fn proxy_pid(&self) -> Option<u32> {
        let mut file = std::fs::File::open(self.data.join("proxy.pid")).ok()?;
        if file.try_lock_shared().is_ok() {
            return None; // nobody holds it: the proxy is gone
        }
        let mut pid = String::new();
        std::io::Read::read_to_string(&mut file, &mut pid).ok()?;
        pid.trim().parse().ok()
    }
}

impl Drop for Daemon {
    /// The proxy outlives the daemon by design; a test's proxy goes with its test.
    /// Its config goes with it, and its log too unless the test failed (the log is where to
    /// look then); the data dir goes with its guard.
    fn drop(&mut self) {
        if let Some(id) = &self.container {
            if std::thread::panicking() {
                eprintln!("capstan's container log:\n{}", self.log());
            }
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", id])
                .env("DOCKER_HOST", &self.docker_host)
                .output();
        }
        if let Some(pid) = self.proxy_pid() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = std::fs::remove_file(self.config_path());
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(self.log_path());
        }
    }
}

/// Sends `req`: its status, and its body as JSON (`null` when it is none).
async fn status_and_json(req: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// Runs `capstan serve` with `config` as its capstan.toml, expecting it to refuse to start
/// (exit 2, bad input); returns what it printed on stderr.
pub async fn serve_refused(bin: &Path, config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capstan.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&path)
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "bad input: {err}");
    err
}

/// Runs the docker CLI against `host` and fails the test when it fails: its standard output
/// (with its standard error for `logs`).
pub fn docker(host: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", host)
        .output()
        .expect("cannot run the docker CLI (scripts/test installs docker.io)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || args.first() == Some(&"logs"),
        "docker {}: {stderr}",
        args.join(" ")
    );
    if args.first() == Some(&"logs") {
        format!("{stdout}{stderr}")
    } else {
        stdout
    }
}

/// Keeps credential `name` = `value` sealed in data dir `data`, as an installer would (`capstan
/// secrets set NAME --data DATA`, the value on its standard input): for
/// [`Daemon::start_prepared`].
pub fn keep_credential(bin: &Path, data: &Path, name: &str, value: &str) {
    use std::io::Write as _;
    let mut set = std::process::Command::new(bin)
        .args(["secrets", "set", name, "--data"])
        .arg(data)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    set.stdin
        .take()
        .unwrap()
        .write_all(format!("{value}\n").as_bytes())
        .unwrap();
    assert!(set.wait().unwrap().success(), "capstan secrets set {name}");
}

/// `config` with what a test daemon has unless it says: no registry watching, no metrics, no
/// built-in alert rules.
fn with_defaults(config: &str) -> String {
    let mut config = if config.contains("[images]") {
        config.to_owned()
    } else {
        format!("{config}\n[images]\nwatch = false\n")
    };
    // the same for metrics: every daemon collecting every container of the shared engine
    // would load it for all the others
    if !config.contains("[metrics]") {
        config.push_str("\n[metrics]\ncollect = false\n");
    }
    // and for the built-in alert rules: another test's OOM or restart loop is not this one's
    if !config.contains("[alerts") {
        config.push_str("\n[alerts]\ndefaults = false\n");
    }
    config
}
