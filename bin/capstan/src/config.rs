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
    /// Host names the API answers to besides IP addresses and `localhost` (the names a browser
    /// reaches it by, say behind a DNS name); another name is refused, so that a DNS-rebinding
    /// page cannot reach a daemon on loopback.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Data directory (state database, admin token, lock).
    #[serde(default)]
    pub data: Option<PathBuf>,
    /// The Docker engine.
    #[serde(default)]
    pub docker: capstan_engine::EngineConfig,
    /// Log collection and the embedded log store.
    #[serde(default)]
    pub logs: capstan_logs::LogsConfig,
    /// Registry watching for image updates.
    #[serde(default)]
    pub images: capstan_images::ImagesConfig,
    /// Container metrics.
    #[serde(default)]
    pub metrics: capstan_metrics::MetricsConfig,
    /// Notification channels (`[[notify]]`).
    #[serde(default)]
    pub notify: Vec<capstan_notify::ChannelConfig>,
    /// Alert rules (`[alerts]`, `[[alerts.rules]]`).
    #[serde(default)]
    pub alerts: capstan_alerts::AlertsConfig,
    /// Serve the API and dashboard over TLS (`[tls] cert`, `key`).
    #[serde(default)]
    pub tls: Option<capstan_api::tls::TlsConfig>,
    /// How long the journal's events and the audit log are kept (`[retention]`).
    #[serde(default)]
    pub retention: RetentionConfig,
    /// The host security checks (`[security] every`, `skip`).
    #[serde(default)]
    pub security: capstan_security::SecurityConfig,
    /// Where apps may run besides the local engine (`[[targets]]`: `name`, `kind = "swarm"`,
    /// `docker_host`).
    #[serde(default)]
    pub targets: Vec<capstan_deploy::targets::TargetConfig>,
    /// How builds from git pushes run (`[pipeline] builds`, `timeout`, `memory`).
    #[serde(default)]
    pub pipeline: capstan_pipeline::PipelineConfig,
    /// The fleet's hub (`[fleet] listen`): where agents connect.
    #[serde(default)]
    pub fleet: FleetConfig,
    /// The ports every app's host names share, and certificates given as files (`[proxy]`).
    #[serde(default)]
    pub proxy: ProxyConfig,
    /// Where certificates for host names come from (`[acme]`).
    #[serde(default)]
    pub acme: capstan_acme::AcmeConfig,
    /// The restic repository apps' volumes are backed up into (`[backups]`).
    #[serde(default)]
    pub backups: capstan_backup::BackupsConfig,
}

/// `[proxy]`: the shared HTTP and HTTPS ports of apps' host names (docs/domains.md).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Plain HTTP (`127.0.0.1:80` unless given; `"off"` for none). Bound only while an app
    /// has a host name. ACME's HTTP-01 needs it reachable on port 80 from the internet:
    /// `0.0.0.0:80`.
    #[serde(default)]
    pub http: Option<String>,
    /// HTTPS (`127.0.0.1:443` unless given; `"off"` for none).
    #[serde(default)]
    pub https: Option<String>,
    /// Certificates to serve for the names they hold, instead of asking ACME.
    #[serde(default)]
    pub certificates: Vec<capstan_acme::CertificateFile>,
}

impl ProxyConfig {
    /// The shared ports: (HTTP, HTTPS).
    pub fn ports(&self) -> Result<(Option<SocketAddr>, Option<SocketAddr>)> {
        let port = |key: &str, value: Option<&str>, default: &str| -> Result<Option<SocketAddr>> {
            match value.unwrap_or(default) {
                "off" => Ok(None),
                text => text.parse().map(Some).map_err(|_| {
                    anyhow::anyhow!(
                        "proxy.{key}: {text:?} is not an address (\"0.0.0.0:{}\", or \"off\")",
                        &default[10..]
                    )
                }),
            }
        };
        Ok((
            port("http", self.http.as_deref(), "127.0.0.1:80")?,
            port("https", self.https.as_deref(), "127.0.0.1:443")?,
        ))
    }

    /// The certificate files, read and checked.
    pub fn certificates(&self) -> Result<Vec<capstan_acme::Stored>> {
        self.certificates
            .iter()
            .enumerate()
            .map(|(i, f)| {
                capstan_acme::read_file_certificate(&format!("proxy.certificates[{i}]"), f)
                    .map_err(|e| anyhow::anyhow!("{e}"))
            })
            .collect()
    }
}

/// `[fleet]`: this capstan as the hub of a fleet (docs/fleet.md).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// Where agents connect (mutually authenticated TLS 1.3; agents dial out, the hub never
    /// does). Nothing listens unless set.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

/// `[retention]`: how long the journal's events and the audit log are kept.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Journal events (`90d` by default, at least `1d`).
    #[serde(default)]
    pub journal: Option<capstan_model::ConfigDuration>,
    /// The audit log (`365d` by default, at least `1d`).
    #[serde(default)]
    pub audit: Option<capstan_model::ConfigDuration>,
}

impl RetentionConfig {
    /// How long journal events are kept.
    pub fn journal(&self) -> std::time::Duration {
        self.journal
            .map_or(capstan_store::retention::DEFAULT_JOURNAL, |d| d.0)
    }

    /// How long the audit log is kept.
    pub fn audit(&self) -> std::time::Duration {
        self.audit
            .map_or(capstan_store::retention::DEFAULT_AUDIT, |d| d.0)
    }

    fn check(&self) -> Result<()> {
        for (key, kept) in [
            ("retention.journal", self.journal()),
            ("retention.audit", self.audit()),
        ] {
            if kept < std::time::Duration::from_hours(24) {
                anyhow::bail!("{key}: keep at least 1d");
            }
        }
        Ok(())
    }
}

/// The API's default address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

impl Config {
    /// Reads a config file: its structure, not yet what [`Self::check`] looks at (files and
    /// credentials it names, which `capstan serve` reads once its vault is open).
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::structure(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    #[cfg(test)]
    fn parse(text: &str) -> Result<Self> {
        let config = Self::structure(text)?;
        config.check()?;
        Ok(config)
    }

    fn structure(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| {
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
        })
    }

    /// Checks every section, reading the files and credentials it names (`vault:NAME` from
    /// the installed keyring): bad input before anything runs.
    pub fn check(&self) -> Result<()> {
        // the certificate and key are read now, so a bad one is bad input, before anything runs
        if let Some(tls) = &self.tls {
            capstan_api::tls::server_config(&tls.cert, &tls.key)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        self.logs.check()?;
        self.images.watch_config(Path::new("/"))?;
        self.images.prune_schedule()?;
        self.images.credential_source(None)?;
        self.metrics.collector()?;
        self.alerts.rules().map_err(|e| anyhow::anyhow!("{e}"))?;
        self.alerts
            .evaluate_every()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        capstan_notify::check_all(&self.notify)?;
        self.retention.check()?;
        self.security.check()?;
        capstan_deploy::targets::check(&self.targets).map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(t) = self
            .targets
            .iter()
            .find(|t| t.kind == capstan_model::TargetKind::Host)
            && self.fleet.listen.is_none()
        {
            anyhow::bail!(
                "targets.{}: a host without an agent is run as a host of this capstan's fleet: set [fleet] listen (e.g. \"127.0.0.1:7879\") too",
                t.name
            );
        }
        if let Some(name) = &self.logs.pod_labels_from
            && name != capstan_kube::IN_CLUSTER
            && !self
                .targets
                .iter()
                .any(|t| &t.name == name && t.kind == capstan_model::TargetKind::Kubernetes)
        {
            anyhow::bail!(
                "logs.pod_labels_from: no Kubernetes target named {name:?} in [[targets]] (it names the cluster whose API says the pods' labels; \"{}\": the cluster capstan runs in)",
                capstan_kube::IN_CLUSTER
            );
        }
        self.pipeline.check().map_err(|e| anyhow::anyhow!("{e}"))?;
        self.proxy.ports()?;
        self.proxy.certificates()?;
        self.acme.check().map_err(|e| anyhow::anyhow!("{e}"))?;
        self.backups
            .restic(Path::new("/"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
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

    /// The package's /etc/capstan/capstan.toml: as shipped, and with every example line taken
    /// out of its comment (each names a real key with a value it accepts).
    #[test]
    fn the_packaged_config_reads_as_shipped_and_with_every_example_on() {
        let shipped = include_str!("../../../packaging/deb/capstan.toml");
        let c = Config::parse(shipped).unwrap();
        assert_eq!(c.listen, Some("127.0.0.1:7878".parse().unwrap()));
        assert_eq!(c.data.as_deref(), Some(Path::new("/var/lib/capstan")));
        let examples: String = shipped
            .lines()
            .filter_map(|l| {
                let l = l.strip_prefix("# ").unwrap_or(l);
                let example = l.starts_with('[')
                    || l.split_once(" = ").is_some_and(|(key, _)| {
                        key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    });
                example.then(|| format!("{l}\n"))
            })
            .collect();
        let all = Config::structure(&examples).unwrap();
        assert!(
            all.tls.is_some() && all.fleet.listen.is_some(),
            "{examples}"
        );
        assert_eq!(all.logs.max_bytes(), 10 * 1024 * 1024 * 1024);
    }

    #[test]
    fn the_logs_section_is_checked() {
        let c = Config::parse("[logs]\nretention = \"3d\"\nmax_size = \"512MiB\"\n").unwrap();
        assert_eq!(c.logs.retention(), std::time::Duration::from_hours(3 * 24));
        assert_eq!(c.logs.max_bytes(), 512 * 1024 * 1024);
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
            Config::default().logs.retention(),
            std::time::Duration::from_hours(7 * 24)
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
