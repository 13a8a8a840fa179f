//! Sending one [`Message`] through one channel.

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_model::ConfigError;
use capstan_outbound::{Auth, Error, Secret};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message as Email};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::Message;
use crate::config::{ChannelConfig, EmailConfig, Kind, SmtpServer, url};

/// An SMTP exchange that takes longer than this is a failed try.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// A channel, set up: clients built, secrets read.
pub(crate) enum Channel {
    Webhook {
        client: reqwest::Client,
        url: reqwest::Url,
        auth: Auth,
        headers: BTreeMap<String, Secret>,
    },
    Slack {
        client: reqwest::Client,
        url: reqwest::Url,
    },
    Email {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
        to: Vec<Mailbox>,
        server: String,
    },
    Alertmanager {
        client: reqwest::Client,
        url: reqwest::Url,
        active_for: chrono::Duration,
    },
}

impl Channel {
    /// Sets a checked channel up; an error names the key.
    pub(crate) fn new(config: &ChannelConfig) -> Result<Self, ConfigError> {
        let tls = config.tls.as_ref();
        let http = || capstan_outbound::client(tls).map_err(|e| ConfigError::new("tls", e));
        Ok(match &config.kind {
            Kind::Webhook(c) => Self::Webhook {
                client: http()?,
                url: url(c.url.as_ref(), c.url_file.as_ref())?,
                auth: c.token.clone().map_or(Auth::None, Auth::Bearer),
                headers: c.headers.clone(),
            },
            Kind::Slack(c) => Self::Slack {
                client: http()?,
                url: url(c.url.as_ref(), c.url_file.as_ref())?,
            },
            Kind::Email(c) => email(c, tls.and_then(|t| t.ca_file.as_deref()))?,
            Kind::Alertmanager(c) => Self::Alertmanager {
                client: http()?,
                url: c.endpoint()?,
                active_for: c.active_for()?,
            },
        })
    }

    /// Delivers `message`; an error says whether trying again can help.
    pub(crate) async fn send(&self, message: &Message) -> Result<(), Error> {
        match self {
            Self::Webhook {
                client,
                url,
                auth,
                headers,
            } => {
                let mut req = client.post(url.clone()).json(message);
                for (name, value) in headers {
                    req = req.header(name.as_str(), value.expose());
                }
                post(auth.apply(req), url).await
            }
            Self::Slack { client, url } => {
                post(client.post(url.clone()).json(&message.slack()), url).await
            }
            Self::Alertmanager {
                client,
                url,
                active_for,
            } => {
                let alerts = message.alerts(*active_for);
                post(client.post(url.clone()).json(&alerts), url).await
            }
            Self::Email {
                transport,
                from,
                to,
                server,
            } => {
                let mut builder = Email::builder()
                    .from(from.clone())
                    .subject(message.subject.clone())
                    .header(ContentType::TEXT_PLAIN);
                for r in to {
                    builder = builder.to(r.clone());
                }
                let email = builder
                    .body(message.text())
                    .map_err(|e| Error::Config(format!("cannot build the email: {e}")))?;
                transport.send(email).await.map(drop).map_err(|e| {
                    let permanent = e.is_permanent();
                    let message = capstan_model::error_chain(&e);
                    if permanent {
                        Error::Status {
                            url: server.clone(),
                            status: e.status().map_or(550, u16::from),
                            body: message,
                            retry_after: None,
                            permanent: true,
                        }
                    } else {
                        Error::Request {
                            url: server.clone(),
                            message,
                            hint: "is the SMTP server up, and are smtp, user and password_file \
                                   right? (a server on another host must offer STARTTLS)",
                        }
                    }
                })
            }
        }
    }
}

/// Sends a JSON POST: 2xx is delivered, 400 and 422 are refused for good, the rest is tried
/// again.
async fn post(req: reqwest::RequestBuilder, url: &reqwest::Url) -> Result<(), Error> {
    capstan_outbound::send(req, url, capstan_outbound::data_rejected)
        .await
        .map(drop)
}

fn email(c: &EmailConfig, ca_file: Option<&std::path::Path>) -> Result<Channel, ConfigError> {
    let SmtpServer {
        host,
        port,
        wrapped,
        loopback,
    } = c.server()?;
    let mut params = TlsParameters::builder(host.clone());
    if let Some(path) = ca_file {
        let bad = |message: String| ConfigError::new("tls.ca_file", message);
        let pem =
            std::fs::read(path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| bad(format!("{} is no PEM certificate ({e})", path.display())))?;
        params = params.add_root_certificate(cert);
    }
    let params = params
        .build_rustls()
        .map_err(|e| ConfigError::new("tls", format!("cannot set TLS up for {host}: {e}")))?;
    let tls = if wrapped {
        Tls::Wrapper(params)
    } else if loopback {
        // on this host nobody can listen in: STARTTLS when offered, plain otherwise
        Tls::Opportunistic(params)
    } else {
        Tls::Required(params)
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
        .port(port)
        .tls(tls)
        .timeout(Some(SMTP_TIMEOUT));
    if let Some((user, password)) = c.password()? {
        builder = builder.credentials(Credentials::new(user, password.expose().to_owned()));
    }
    Ok(Channel::Email {
        transport: builder.build(),
        from: c.sender()?,
        to: c.recipients()?,
        server: format!("{}://{host}:{port}", if wrapped { "smtps" } else { "smtp" }),
    })
}
