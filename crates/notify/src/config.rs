//! The `[[notify]]` entries of `capstan.toml`. Keys common to every channel sit beside `type`;
//! the rest belong to the kind, and a key the kind does not know is an error naming it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use capstan_model::{CapstanAction, ConfigError};
use capstan_outbound::{Secret, TlsConfig};
use lettre::message::Mailbox;
use serde::Deserialize;

/// The journal events a channel sends when its `events` key is left out.
pub const DEFAULT_EVENTS: [CapstanAction; 6] = [
    CapstanAction::UpdateAvailable,
    CapstanAction::UpdateApplied,
    CapstanAction::UpdateFailed,
    CapstanAction::AlertFiring,
    CapstanAction::AlertResolved,
    CapstanAction::AlertFlapping,
];

/// One channel.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChannelConfig {
    /// Names the channel and its cursor; letters, digits, `-` and `_`.
    pub name: String,
    /// The `capstan` journal events it sends (actions); default [`DEFAULT_EVENTS`].
    #[serde(default)]
    pub events: Vec<String>,
    /// Certificates for an `https://` webhook or an SMTP server's TLS (`ca_file` only there).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Alerts still firing are sent again this often (`4h` by default; `1m` to Alertmanager,
    /// which forgets an alert not sent again before its end).
    #[serde(default)]
    pub repeat_every: Option<String>,
    /// Where the notifications go, with its own keys.
    #[serde(flatten)]
    pub kind: Kind,
}

/// The kinds of channel, chosen by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Kind {
    /// Any HTTP endpoint that takes a JSON document.
    Webhook(WebhookConfig),
    /// Slack's incoming webhooks, or a server that takes their payload (Mattermost,
    /// Rocket.Chat, Discord's `/slack` endpoint).
    Slack(SlackConfig),
    /// Email over SMTP.
    Email(EmailConfig),
    /// Prometheus Alertmanager's v2 API: each event becomes an alert.
    Alertmanager(AlertmanagerConfig),
}

/// `type = "alertmanager"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Alertmanager's base URL (`http://127.0.0.1:9093`); alerts go to `/api/v2/alerts`.
    pub url: String,
    /// How long an event's alert stays active (`1h` by default): events have no end of their
    /// own, so Alertmanager is told when to resolve it.
    #[serde(default)]
    pub active_for: Option<String>,
}

/// `type = "webhook"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST; or `url_file`, whose first line is the URL (it may carry a token).
    #[serde(default)]
    pub url: Option<Secret>,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// Extra headers; their values are kept out of capstan's own output.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Sent as `Authorization: Bearer ...`.
    #[serde(default)]
    pub token: Option<Secret>,
}

/// `type = "slack"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The incoming webhook's URL (it is the credential: prefer `url_file`).
    #[serde(default)]
    pub url: Option<Secret>,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
}

/// `type = "email"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// `smtp://host[:port]` (STARTTLS, required unless the host is loopback; port 587 by
    /// default) or `smtps://host[:port]` (TLS from the start; port 465).
    pub smtp: String,
    /// The sender, `capstan@example.com` or `capstan <capstan@example.com>`.
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
    /// Authenticate as this user, with the password in `password_file`.
    #[serde(default)]
    pub user: Option<String>,
    /// A file whose first line is the password (keep it readable by capstan only).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// Where an SMTP server is and how to speak TLS to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SmtpServer {
    pub host: String,
    pub port: u16,
    /// TLS from the first byte (`smtps://`).
    pub wrapped: bool,
    /// STARTTLS may be skipped: the server is on this host.
    pub loopback: bool,
}

impl ChannelConfig {
    /// Checks what serde cannot: the name, the events, URLs, addresses, files.
    ///
    /// # Errors
    /// The first problem, under the key it is about (`url`).
    pub fn check(&self) -> Result<(), ConfigError> {
        capstan_outbound::check_name(&self.name)?;
        if let Some(bad) = self.events.iter().find(|e| e.trim().is_empty()) {
            return Err(ConfigError::new(
                "events",
                format!("{bad:?} is not an event name"),
            ));
        }
        if let Some(tls) = &self.tls {
            if matches!(self.kind, Kind::Email(_))
                && (tls.crt_file.is_some() || tls.key_file.is_some())
            {
                return Err(ConfigError::new(
                    "tls",
                    "email takes ca_file only; a client certificate is not supported",
                ));
            }
            tls.load()?;
        }
        match &self.kind {
            Kind::Webhook(c) => {
                url(c.url.as_ref(), c.url_file.as_ref())?;
                capstan_outbound::check_headers(&c.headers)
            }
            Kind::Slack(c) => url(c.url.as_ref(), c.url_file.as_ref()).map(drop),
            Kind::Email(c) => c.check(),
            Kind::Alertmanager(c) => {
                c.endpoint()?;
                c.active_for()?;
                Ok(())
            }
        }
    }

    /// The events it sends.
    pub fn events(&self) -> Vec<String> {
        if self.events.is_empty() {
            DEFAULT_EVENTS
                .iter()
                .map(|e| e.as_str().to_owned())
                .collect()
        } else {
            self.events.clone()
        }
    }

    /// How often alerts still firing are sent again.
    ///
    /// # Errors
    /// `repeat_every` is not a duration of at least 1s.
    pub fn repeat_every(&self) -> Result<std::time::Duration, ConfigError> {
        let default = if matches!(self.kind, Kind::Alertmanager(_)) {
            "1m"
        } else {
            "4h"
        };
        let text = self.repeat_every.as_deref().unwrap_or(default);
        let ns = capstan_model::parse_duration_nanos(text)
            .map_err(|e| ConfigError::new("repeat_every", e))?;
        if ns < 1_000_000_000 {
            return Err(ConfigError::new("repeat_every", "at least 1s"));
        }
        Ok(std::time::Duration::from_nanos(ns as u64))
    }

    /// The kind's name, as written after `type =`.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            Kind::Webhook(_) => "webhook",
            Kind::Slack(_) => "slack",
            Kind::Email(_) => "email",
            Kind::Alertmanager(_) => "alertmanager",
        }
    }
}

/// An address, under `key`.
fn mailbox(key: &str, text: &str) -> Result<Mailbox, ConfigError> {
    text.parse::<Mailbox>()
        .map_err(|e| ConfigError::new(key, format!("{text:?} is not an address ({e})")))
}

/// Checks every channel, and that no two share a name (which names their cursors).
///
/// # Errors
/// The first problem, under `notify[i]`.
pub fn check_all(channels: &[ChannelConfig]) -> Result<(), ConfigError> {
    let mut names = std::collections::BTreeSet::new();
    for (i, channel) in channels.iter().enumerate() {
        let section = format!("notify[{i}]");
        channel.check().map_err(|e| e.under(&section))?;
        channel.repeat_every().map_err(|e| e.under(&section))?;
        if !names.insert(&channel.name) {
            return Err(ConfigError::new(
                format!("{section}.name"),
                format!("{:?} is used twice", channel.name),
            ));
        }
    }
    Ok(())
}

/// The URL, given inline or in a file, checked.
pub(crate) fn url(
    inline: Option<&Secret>,
    file: Option<&PathBuf>,
) -> Result<reqwest::Url, ConfigError> {
    let text = match (inline, file) {
        (Some(u), None) => u.clone(),
        (None, Some(path)) => Secret::from_file("url_file", path)?,
        (Some(_), Some(_)) => {
            return Err(ConfigError::new("url", "give url or url_file, not both"));
        }
        (None, None) => return Err(ConfigError::new("url", "missing (or give url_file)")),
    };
    // the URL may carry a token: say what is wrong without repeating it
    capstan_outbound::endpoint(text.expose()).map_err(|_| {
        ConfigError::new(
            "url",
            "not an http:// or https:// URL with a host (the value is not repeated here)",
        )
    })
}

impl AlertmanagerConfig {
    /// Where alerts are posted.
    pub(crate) fn endpoint(&self) -> Result<reqwest::Url, ConfigError> {
        capstan_outbound::join(&self.url, "/api/v2/alerts").map_err(|e| ConfigError::new("url", e))
    }

    /// How long an event's alert stays active.
    pub(crate) fn active_for(&self) -> Result<chrono::Duration, ConfigError> {
        let text = self.active_for.as_deref().unwrap_or("1h");
        let ns = capstan_model::parse_duration_nanos(text)
            .map_err(|e| ConfigError::new("active_for", e))?;
        if ns <= 0 {
            return Err(ConfigError::new("active_for", "must be more than 0"));
        }
        Ok(chrono::Duration::nanoseconds(ns))
    }
}

impl EmailConfig {
    fn check(&self) -> Result<(), ConfigError> {
        self.server()?;
        self.sender()?;
        self.recipients()?;
        self.password()?;
        Ok(())
    }

    /// `from`, parsed.
    pub(crate) fn sender(&self) -> Result<Mailbox, ConfigError> {
        mailbox("from", &self.from)
    }

    /// `to`, parsed; at least one.
    pub(crate) fn recipients(&self) -> Result<Vec<Mailbox>, ConfigError> {
        if self.to.is_empty() {
            return Err(ConfigError::new("to", "give at least one recipient"));
        }
        self.to.iter().map(|to| mailbox("to", to)).collect()
    }

    /// The user and the password read from `password_file`, when the server wants a login.
    pub(crate) fn password(&self) -> Result<Option<(String, Secret)>, ConfigError> {
        match (&self.user, &self.password_file) {
            (Some(user), Some(path)) => Ok(Some((
                user.clone(),
                Secret::from_file("password_file", path)?,
            ))),
            (Some(_), None) => Err(ConfigError::new("password_file", "give it with user")),
            (None, Some(_)) => Err(ConfigError::new("user", "give it with password_file")),
            (None, None) => Ok(None),
        }
    }

    pub(crate) fn server(&self) -> Result<SmtpServer, ConfigError> {
        let bad = |message: String| ConfigError::new("smtp", message);
        let url = reqwest::Url::parse(&self.smtp).map_err(|e| {
            bad(format!(
                "{:?} is not a URL ({e}); write it like smtp://mail.example.com:587",
                self.smtp
            ))
        })?;
        let wrapped = match url.scheme() {
            "smtp" => false,
            "smtps" => true,
            other => return Err(bad(format!("the scheme {other:?} is not smtp or smtps"))),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad(format!("{:?} has no host", self.smtp)))?
            .trim_matches(['[', ']'])
            .to_owned();
        if url.path().len() > 1 || url.query().is_some() || !url.username().is_empty() {
            return Err(bad(format!(
                "{:?}: give only scheme, host and port (user and password_file are keys of \
                 their own)",
                self.smtp
            )));
        }
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        Ok(SmtpServer {
            port: url.port().unwrap_or(if wrapped { 465 } else { 587 }),
            host,
            wrapped,
            loopback,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Doc {
        notify: Vec<ChannelConfig>,
    }

    fn parse(text: &str) -> Result<ChannelConfig, String> {
        let doc: Doc =
            serde_json::from_str(&format!("{{\"notify\":[{text}]}}")).map_err(|e| e.to_string())?;
        let channel = doc.notify.into_iter().next().ok_or("no channel")?;
        channel.check().map_err(|e| e.to_string())?;
        Ok(channel)
    }

    #[test]
    fn channels_parse_and_bad_ones_name_the_key() {
        let c = parse(r#"{"name":"ops","type":"slack","url":"https://hooks.example.com/T/B/x"}"#)
            .unwrap();
        assert_eq!(c.kind_name(), "slack");
        assert_eq!(
            c.events(),
            DEFAULT_EVENTS.map(CapstanAction::as_str).to_vec()
        );
        let c = parse(
            r#"{"name":"mail","type":"email","smtp":"smtp://127.0.0.1:2525","from":"capstan@h.example","to":["ops@h.example"],"events":["update_failed"]}"#,
        )
        .unwrap();
        assert_eq!(c.events(), ["update_failed"]);
        let Kind::Email(e) = &c.kind else { panic!() };
        assert_eq!(
            e.server().unwrap(),
            SmtpServer {
                host: "127.0.0.1".into(),
                port: 2525,
                wrapped: false,
                loopback: true
            }
        );
        for (bad, says) in [
            (
                r#"{"name":"a b","type":"slack","url":"http://h/"}"#,
                "name:",
            ),
            (r#"{"name":"a","type":"slack"}"#, "url: missing"),
            (
                r#"{"name":"a","type":"slack","url":"h/x?token=s3cret"}"#,
                "url: not",
            ),
            (
                r#"{"name":"a","type":"pager","url":"http://h/"}"#,
                "unknown variant",
            ),
            (
                r#"{"name":"a","type":"webhook","url":"http://h/","colour":1}"#,
                "colour",
            ),
            (
                r#"{"name":"a","type":"email","smtp":"imap://h","from":"a@h","to":["b@h"]}"#,
                "smtp: the scheme",
            ),
            (
                r#"{"name":"a","type":"email","smtp":"smtp://h","from":"a@h","to":[]}"#,
                "to: give",
            ),
            (
                r#"{"name":"a","type":"email","smtp":"smtp://h","from":"not an address","to":["b@h"]}"#,
                "from:",
            ),
            (
                r#"{"name":"a","type":"email","smtp":"smtp://h","from":"a@h","to":["b@h"],"user":"u"}"#,
                "password_file: give it",
            ),
            (
                r#"{"name":"a","type":"email","smtp":"smtp://h","from":"a@h","to":["b@h"],"user":"u","password_file":"/nonexistent/pw"}"#,
                "password_file: cannot read",
            ),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn smtp_servers_default_their_ports_and_spot_loopback() {
        let server = |smtp: &str| {
            EmailConfig {
                smtp: smtp.into(),
                from: "a@h".into(),
                to: vec!["b@h".into()],
                user: None,
                password_file: None,
            }
            .server()
        };
        let s = server("smtps://mail.example.com").unwrap();
        assert_eq!((s.port, s.wrapped, s.loopback), (465, true, false));
        let s = server("smtp://[::1]").unwrap();
        assert_eq!((s.host.as_str(), s.port, s.loopback), ("::1", 587, true));
        assert!(server("smtp://u:p@h:25").is_err());
    }
}
