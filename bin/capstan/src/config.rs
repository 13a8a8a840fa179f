//! `capstan.toml` and the defaults of the design's contract (data dir, listen address).

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Deserialize;

/// The daemon's configuration file. Strict: an unknown key is an error naming it.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the API listens on; only loopback unless you mean otherwise.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Data directory (state database, admin token, lock).
    #[serde(default)]
    pub data: Option<PathBuf>,
    /// The Docker engine.
    #[serde(default)]
    pub docker: Docker,
    /// Log collection and the embedded log store.
    #[serde(default)]
    pub logs: Logs,
    /// Registry watching for image updates.
    #[serde(default)]
    pub images: Images,
    /// Container metrics.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Notification channels (`[[notify]]`).
    #[serde(default)]
    pub notify: Vec<capstan_notify::ChannelConfig>,
    /// Alert rules (`[alerts]`, `[[alerts.rules]]`).
    #[serde(default)]
    pub alerts: capstan_alerts::AlertsConfig,
    /// Serve the API and dashboard over TLS (`[tls] cert`, `key`).
    #[serde(default)]
    pub tls: Option<Tls>,
}

/// `[tls]`: PEM files (the certificate chain, leaf first; the private key, PKCS#8, PKCS#1 or
/// SEC1). Session cookies are `Secure` then.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[metrics]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Whether to collect container metrics at all (default true).
    #[serde(default)]
    pub collect: Option<bool>,
    /// Between readings (`5s` by default, at least `1s`).
    #[serde(default)]
    pub interval: Option<String>,
    /// `auto` (default: cgroup files when the engine is on this host), `cgroups`, or `engine`
    /// (its stats API, for a remote engine).
    #[serde(default)]
    pub source: Option<String>,
    /// Keep recent history in `<data>/metrics.db` (default true): every reading for an hour,
    /// per-minute figures for a week.
    #[serde(default)]
    pub history: Option<bool>,
}

impl MetricsConfig {
    /// The collector's settings.
    pub fn collector(&self) -> Result<capstan_metrics::CollectorConfig> {
        let text = self.interval.as_deref().unwrap_or("5s");
        let ns = capstan_model::parse_duration_nanos(text)
            .map_err(|e| anyhow::anyhow!("metrics.interval: {e}"))?;
        let interval = std::time::Duration::from_nanos(ns.max(0) as u64);
        if interval < std::time::Duration::from_secs(1) {
            anyhow::bail!("metrics.interval: at least 1s");
        }
        let source = match self.source.as_deref().unwrap_or("auto") {
            "auto" => capstan_metrics::Source::Auto,
            "cgroups" => capstan_metrics::Source::Cgroups,
            "engine" => capstan_metrics::Source::Engine,
            other => anyhow::bail!("metrics.source: {other:?} is not auto, cgroups or engine"),
        };
        Ok(capstan_metrics::CollectorConfig {
            source,
            interval,
            ..capstan_metrics::CollectorConfig::default()
        })
    }
}

/// `[images]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Images {
    /// Whether to check registries for updates at all (default true).
    #[serde(default)]
    pub watch: Option<bool>,
    /// Between check cycles (`1h` by default; each starts up to a tenth later).
    #[serde(default)]
    pub check_every: Option<String>,
    /// The first cycle after start (`30s` by default).
    #[serde(default)]
    pub first_check_after: Option<String>,
    /// Only containers whose name matches one of these (a trailing `*` matches a prefix);
    /// empty: every running container.
    #[serde(default)]
    pub containers: Vec<String>,
    /// References watched besides the running containers' images, as `ref` or
    /// `ref policy` (`ghcr.io/acme/api:1.4 minor`).
    #[serde(default)]
    pub refs: Vec<String>,
    /// Registries spoken to over plain HTTP besides loopback ones (`host:port`).
    #[serde(default)]
    pub insecure: Vec<String>,
    /// Credentials per registry (else Docker's config: `docker login`).
    #[serde(default)]
    pub registries: Vec<RegistryAuth>,
    /// Scan every image the engine pulls against the advisory database (default false).
    #[serde(default)]
    pub scan_on_pull: Option<bool>,
}

/// `[[images.registries]]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistryAuth {
    /// `docker.io`, `ghcr.io`, `127.0.0.1:5000`.
    pub registry: String,
    pub user: String,
    /// A file whose first line is the password or token (keep it readable by capstan only).
    pub password_file: PathBuf,
}

impl Images {
    fn duration(value: Option<&String>, default: &str, key: &str) -> Result<std::time::Duration> {
        let text = value.map_or(default, String::as_str);
        let ns = capstan_model::parse_duration_nanos(text)
            .map_err(|e| anyhow::anyhow!("images.{key}: {e}"))?;
        Ok(std::time::Duration::from_nanos(ns.max(0) as u64))
    }

    /// The watcher's settings; `data` holds its state.
    pub fn watch_config(&self, data: &Path) -> Result<capstan_images::WatchConfig> {
        let every = Self::duration(self.check_every.as_ref(), "1h", "check_every")?;
        if every < std::time::Duration::from_mins(1) {
            anyhow::bail!(
                "images.check_every: at least 1m (registries limit how often they may be asked)"
            );
        }
        let mut refs = Vec::new();
        for (i, r) in self.refs.iter().enumerate() {
            let (reference, policy) = r.trim().split_once(' ').unwrap_or((r.trim(), "digest"));
            capstan_registry::Reference::parse(reference)
                .map_err(|e| anyhow::anyhow!("images.refs[{i}]: {e}"))?;
            let policy = policy
                .trim()
                .parse()
                .map_err(|e| anyhow::anyhow!("images.refs[{i}]: {e}"))?;
            refs.push((reference.to_owned(), policy));
        }
        Ok(capstan_images::WatchConfig {
            every,
            first_after: Self::duration(
                self.first_check_after.as_ref(),
                "30s",
                "first_check_after",
            )?,
            refs,
            containers: self.containers.clone(),
            state_file: data.join("images").join("updates.json"),
            platform: capstan_registry::Platform::host(),
        })
    }

    /// The registry client's settings, passwords read from their files.
    pub fn registry_options(&self) -> Result<capstan_registry::Options> {
        let mut configured = std::collections::HashMap::new();
        for (i, r) in self.registries.iter().enumerate() {
            let text = std::fs::read_to_string(&r.password_file).with_context(|| {
                format!(
                    "images.registries[{i}].password_file: cannot read {}",
                    r.password_file.display()
                )
            })?;
            let password = text.lines().next().unwrap_or_default().to_owned();
            let registry = capstan_registry::Reference::parse(&format!("{}/x", r.registry))
                .map(|p| p.registry)
                .map_err(|e| anyhow::anyhow!("images.registries[{i}].registry: {e}"))?;
            configured.insert(
                registry,
                capstan_registry::Credentials::new(r.user.clone(), password),
            );
        }
        Ok(capstan_registry::Options {
            insecure: self.insecure.clone(),
            credentials: capstan_registry::CredentialSource {
                configured,
                docker_config: capstan_registry::CredentialSource::default_docker_config(),
                helper_dirs: None,
            },
            page_size: None,
        })
    }
}

/// `[logs]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Logs {
    /// Whether to collect at all (default true).
    #[serde(default)]
    pub collect: Option<bool>,
    /// Only containers whose name matches one of these (a trailing `*` matches a prefix);
    /// empty: every container.
    #[serde(default)]
    pub containers: Vec<String>,
    /// How long lines are kept (`7d` by default); whole hourly partitions are dropped.
    #[serde(default)]
    pub retention: Option<String>,
    /// How much disk the store may use (`10GiB` by default); the oldest partitions go first.
    #[serde(default)]
    pub max_size: Option<String>,
    /// Container labels copied onto every line.
    #[serde(default)]
    pub labels: Vec<String>,
    /// What the log pipeline may hold in memory under a flood (`128MiB`, at least `96MiB`);
    /// beyond it, reading slows down and the engine's log file holds the rest.
    #[serde(default)]
    pub memory: Option<String>,
    /// `auto` (the default: a container's json-file when capstan can open it, else the
    /// engine's logs API) or `api` (always the logs API).
    #[serde(default)]
    pub source: Option<String>,
    /// Parsers and multiline joiners for containers whose labels do not choose one; the first
    /// matching rule wins.
    #[serde(default)]
    pub rules: Vec<LogRule>,
    /// Where lines are shipped, each sink with its own cursor (`type` = file, clickhouse,
    /// elasticsearch, loki or http; see docs/logs.md).
    #[serde(default)]
    pub sinks: Vec<capstan_logs::sinks::SinkConfig>,
}

/// `[[logs.rules]]`
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogRule {
    #[serde(default)]
    pub app: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub container: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub parser: Option<String>,
    #[serde(default)]
    pub multiline: Option<String>,
}

impl Logs {
    /// The retention in ns.
    pub fn retention_ns(&self) -> Option<i64> {
        capstan_model::parse_duration_nanos(self.retention.as_deref().unwrap_or("7d")).ok()
    }

    /// The size bound in bytes.
    pub fn max_bytes(&self) -> Option<u64> {
        capstan_model::parse_size(self.max_size.as_deref().unwrap_or("10GiB")).ok()
    }

    fn check(&self) -> Result<()> {
        if let Some(r) = &self.retention {
            capstan_model::parse_duration_nanos(r)
                .map_err(|e| anyhow::anyhow!("logs.retention: {e}"))?;
        }
        if let Some(m) = &self.max_size {
            capstan_model::parse_size(m).map_err(|e| anyhow::anyhow!("logs.max_size: {e}"))?;
        }
        if let Some(m) = &self.memory {
            let bytes =
                capstan_model::parse_size(m).map_err(|e| anyhow::anyhow!("logs.memory: {e}"))?;
            if bytes < 96 * 1024 * 1024 {
                anyhow::bail!("logs.memory: {m:?} is below the least the pipeline needs (96MiB)");
            }
        }
        match self.source.as_deref() {
            None | Some("auto" | "api") => {}
            Some(other) => anyhow::bail!("logs.source: {other:?} is not auto or api"),
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, sink) in self.sinks.iter().enumerate() {
            sink.check()
                .map_err(|e| anyhow::anyhow!("logs.sinks[{i}].{e}"))?;
            if !names.insert(sink.name.clone()) {
                anyhow::bail!("logs.sinks[{i}].name: {:?} is used twice", sink.name);
            }
        }
        for (i, r) in self.rules.iter().enumerate() {
            if let Some(p) = &r.parser {
                capstan_logs::parse::Parser::from_spec(p)
                    .map_err(|e| anyhow::anyhow!("logs.rules[{i}].parser: {e}"))?;
            }
            if let Some(m) = &r.multiline {
                capstan_logs::multiline::Multiline::from_spec(m)
                    .map_err(|e| anyhow::anyhow!("logs.rules[{i}].multiline: {e}"))?;
            }
        }
        Ok(())
    }

    /// What the collector needs from this section.
    pub fn options(&self) -> capstan_logs::Options {
        capstan_logs::Options {
            containers: self.containers.clone(),
            labels: self.labels.clone(),
            api_only: self.source.as_deref() == Some("api"),
            memory: self
                .memory
                .as_deref()
                .and_then(|m| capstan_model::parse_size(m).ok())
                .map_or(0, |b| usize::try_from(b).unwrap_or(usize::MAX)),
            rules: self
                .rules
                .iter()
                .map(|r| capstan_logs::Rule {
                    app: r.app.clone(),
                    service: r.service.clone(),
                    container: r.container.clone(),
                    image: r.image.clone(),
                    parser: r.parser.clone(),
                    multiline: r.multiline.clone(),
                })
                .collect(),
        }
    }
}

/// `[docker]`
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Docker {
    /// `unix:///var/run/docker.sock` or `tcp://host:port`; default `DOCKER_HOST`, else the
    /// local socket.
    #[serde(default)]
    pub host: Option<String>,
}

/// The API's default address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let config = Self::parse(&text)
            .with_context(|| format!("invalid config file {}", path.display()))?;
        // the certificate and key are read now, so a bad one is bad input, before anything runs
        if let Some(tls) = &config.tls {
            capstan_api::tls::server_config(&tls.cert, &tls.key)
                .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))?;
        }
        Ok(config)
    }

    fn parse(text: &str) -> Result<Self> {
        let config: Self = toml::from_str(text).map_err(|e| {
            // toml says the line; the path says where in the document's structure
            let path = toml::Deserializer::parse(text).ok().and_then(|de| {
                serde_path_to_error::deserialize::<_, Self>(de)
                    .err()
                    .map(|p| p.path().to_string())
            });
            match path {
                Some(path) if path != "." => anyhow::anyhow!("{path}: {e}"),
                _ => anyhow::Error::new(e),
            }
        })?;
        config.logs.check()?;
        config.images.watch_config(Path::new("/"))?;
        config.metrics.collector()?;
        config.alerts.rules().map_err(|e| anyhow::anyhow!("{e}"))?;
        config
            .alerts
            .evaluate_every()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut names = std::collections::BTreeSet::new();
        for (i, channel) in config.notify.iter().enumerate() {
            channel
                .check()
                .map_err(|e| anyhow::anyhow!("notify[{i}].{e}"))?;
            if !names.insert(&channel.name) {
                anyhow::bail!("notify[{i}].name: {:?} is used twice", channel.name);
            }
        }
        Ok(config)
    }
}

/// `$CAPSTAN_DATA`, else `/var/lib/capstan` as root, else `$XDG_DATA_HOME/capstan` or
/// `~/.local/share/capstan`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAPSTAN_DATA").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let is_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if is_root {
        return PathBuf::from("/var/lib/capstan");
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(xdg).join("capstan");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/capstan")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_logs_section_is_checked() {
        let c = Config::parse("[logs]\nretention = \"3d\"\nmax_size = \"512MiB\"\n").unwrap();
        assert_eq!(c.logs.retention_ns(), Some(3 * 86_400_000_000_000));
        assert_eq!(c.logs.max_bytes(), Some(512 * 1024 * 1024));
        for bad in [
            "memory = \"16MiB\"",
            "memory = \"lots\"",
            "source = \"socket\"",
        ] {
            let err = format!(
                "{:#}",
                Config::parse(&format!("[logs]\n{bad}\n")).unwrap_err()
            );
            let key = bad.split(' ').next().unwrap();
            assert!(err.contains(&format!("logs.{key}")), "{err}");
        }
        assert_eq!(
            Config::parse("[logs]\nmemory = \"256MiB\"\n")
                .unwrap()
                .logs
                .options()
                .writer_memory(),
            64 * 1024 * 1024
        );
        let err = Config::parse("[logs]\nretention = \"forever\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("logs.retention"), "{err:#}");
        assert!(Config::parse("[logs]\nkeep = \"1d\"\n").is_err());
        let c = Config::parse(
            "[logs]\nlabels = [\"team\"]\n[[logs.rules]]\nservice = \"api\"\nparser = \"logfmt\"\nmultiline = \"java\"\n",
        )
        .unwrap();
        assert_eq!(c.logs.options().rules[0].parser.as_deref(), Some("logfmt"));
        let c = Config::parse(
            "[[logs.sinks]]\nname = \"archive\"\ntype = \"file\"\npath = \"/tmp/x.ndjson\"\nquery = \"level:error\"\n",
        )
        .unwrap();
        assert_eq!(c.logs.sinks[0].name, "archive");
        for (bad, key) in [
            ("name = \"a b\"\ntype = \"file\"\npath = \"/x\"", "name"),
            ("name = \"a\"\ntype = \"kafka\"", "kafka"),
            (
                "name = \"a\"\ntype = \"file\"\npath = \"/x\"\nwrong = 1",
                "wrong",
            ),
            (
                "name = \"a\"\ntype = \"clickhouse\"\nendpoint = \"localhost:8123\"",
                "endpoint",
            ),
            ("name = \"a\"\ntype = \"file\"", "path"),
            (
                "name = \"a\"\ntype = \"file\"\npath = \"/x\"\nquery = \"(\"",
                "query",
            ),
        ] {
            let err = format!(
                "{:#}",
                Config::parse(&format!("[[logs.sinks]]\n{bad}\n")).unwrap_err()
            );
            assert!(
                err.contains(&format!("logs.sinks[0].{key}"))
                    || (err.contains("logs.sinks") && err.contains(key)),
                "{err}"
            );
        }
        let err = Config::parse("[[logs.rules]]\nparser = \"grok:%{NOPE}\"\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("logs.rules[0].parser"),
            "{err:#}"
        );
        assert_eq!(
            Config::default().logs.retention_ns(),
            Some(7 * 86_400_000_000_000)
        );
    }

    #[test]
    fn parses_a_full_config() {
        let c = Config::parse(
            "listen = \"127.0.0.1:9999\"\ndata = \"/tmp/x\"\n[docker]\nhost = \"tcp://127.0.0.1:2375\"\n",
        )
        .unwrap();
        assert_eq!(c.listen, Some("127.0.0.1:9999".parse().unwrap()));
        assert_eq!(c.docker.host.as_deref(), Some("tcp://127.0.0.1:2375"));
    }

    /// quickwit's `wrongkey` fixture: a misspelt key is named in the error.
    #[test]
    fn misspelt_keys_are_named() {
        let err = Config::parse("lisen = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("lisen"), "{err:#}");
        let err = Config::parse("[docker]\nhots = \"x\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("hots"), "{err:#}");
        let err = Config::parse("listen = 7878\n").unwrap_err();
        assert!(format!("{err:#}").contains("listen"), "{err:#}");
    }

    #[test]
    fn the_images_section_is_checked() {
        let ok = Config::parse(
            "[images]\ncheck_every = \"2h\"\nrefs = [\"ghcr.io/acme/api:1.4 minor\", \"nginx\"]\ninsecure = [\"r.lan:5000\"]\n",
        )
        .unwrap();
        let w = ok.images.watch_config(Path::new("/d")).unwrap();
        assert_eq!(w.every, std::time::Duration::from_hours(2));
        assert_eq!(w.refs.len(), 2);
        assert_eq!(w.refs[0].1.to_string(), "minor");
        for (text, says) in [
            (
                "[images]\ncheck_every = \"10s\"\n",
                "images.check_every: at least 1m",
            ),
            ("[images]\ncheck_every = \"soon\"\n", "images.check_every"),
            (
                "[images]\nrefs = [\"nginx weekly\"]\n",
                "images.refs[0]: \"weekly\" is not an update policy",
            ),
            ("[images]\nrefs = [\"Nginx\"]\n", "images.refs[0]"),
            ("[images]\nwatcher = true\n", "watcher"),
        ] {
            let err = format!("{:#}", Config::parse(text).unwrap_err());
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn the_metrics_section_is_checked() {
        let ok = Config::parse("[metrics]\ninterval = \"2s\"\nsource = \"engine\"\n").unwrap();
        let c = ok.metrics.collector().unwrap();
        assert_eq!(c.interval, std::time::Duration::from_secs(2));
        assert_eq!(c.source, capstan_metrics::Source::Engine);
        let default = Config::parse("").unwrap().metrics.collector().unwrap();
        assert_eq!(
            (default.interval, default.source),
            (
                std::time::Duration::from_secs(5),
                capstan_metrics::Source::Auto
            )
        );
        for (text, says) in [
            (
                "[metrics]\ninterval = \"500ms\"\n",
                "metrics.interval: at least 1s",
            ),
            ("[metrics]\ninterval = \"often\"\n", "metrics.interval"),
            (
                "[metrics]\nsource = \"cadvisor\"\n",
                "metrics.source: \"cadvisor\" is not auto, cgroups or engine",
            ),
            ("[metrics]\nevery = \"1s\"\n", "every"),
        ] {
            let err = format!("{:#}", Config::parse(text).unwrap_err());
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
