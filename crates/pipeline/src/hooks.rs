//! Receiving an app's git webhooks: its secret (kept sealed, shown once), each delivery checked,
//! deduplicated and decided, and what came of it recorded.

use std::sync::Arc;

use capstan_store::Store;
use capstan_store::pipeline::{BuildRow, DeliveryRow, Taken};
use capstan_vault::keyring::Keyring;
use tokio::sync::Notify;

use crate::error::Error;
use crate::payload::read;
use crate::{Change, Decision, Refusal, Source, SourceExt, verify};

/// The largest delivery read (GitHub's own limit is 25 MB; a push listing 20 commits is far
/// below this).
pub const MAX_BODY: usize = 5 * 1024 * 1024;

/// What came of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// No such app, or no hooks set up for it.
    Unknown,
    /// The proof did not hold: nothing of the body was read.
    Refused(Refusal),
    /// The body is not what the provider sends.
    BadPayload(String),
    /// Its delivery id was taken before: a redelivery, ignored.
    Replay,
    /// Nothing to build, and why.
    Skipped(String),
    /// A build was queued.
    Queued { build: i64, commit: String },
}

/// An app's webhooks: their secrets and what they deliver.
#[derive(Clone)]
pub struct Hooks {
    store: Store,
    keyring: Keyring,
    /// Woken when a build is queued.
    queued: Arc<Notify>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks").finish_non_exhaustive()
    }
}

/// The credential an app's hook secret is kept as.
fn secret_name(app: &str) -> String {
    format!("git-hook.{app}")
}

fn now_nano() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

impl Hooks {
    pub fn new(store: Store, keyring: Keyring, queued: Arc<Notify>) -> Self {
        Self {
            store,
            keyring,
            queued,
        }
    }

    /// The app's hook secret, if it has hooks.
    ///
    /// # Errors
    /// The keyring cannot be read.
    pub async fn secret(&self, app: &str) -> Result<Option<String>, Error> {
        let (keyring, name) = (self.keyring.clone(), secret_name(app));
        let got = tokio::task::spawn_blocking(move || keyring.get(&name))
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        Ok(got.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Makes the app a new hook secret (the one before stops working) and returns it: the only
    /// time it is shown.
    ///
    /// # Errors
    /// No randomness, or the keyring cannot be written.
    pub async fn new_secret(&self, app: &str) -> Result<String, Error> {
        let secret = crate::signature::new_secret(capstan_vault::random()?);
        let (keyring, name, value) = (self.keyring.clone(), secret_name(app), secret.clone());
        tokio::task::spawn_blocking(move || keyring.set(&name, value.as_bytes()))
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        Ok(secret)
    }

    /// The app's source, if it has one.
    ///
    /// # Errors
    /// The store cannot be read, or what it keeps is not a source.
    pub async fn source(&self, app: &str) -> Result<Option<Source>, Error> {
        match self.store.source(app.to_owned()).await? {
            Some(json) => Ok(Some(
                serde_json::from_str(&json).map_err(|e| Error::Stored(e.to_string()))?,
            )),
            None => Ok(None),
        }
    }

    /// Sets (or with `None`, forgets) the app's source.
    ///
    /// # Errors
    /// A source whose settings do not hold (the message names the key), or the store.
    pub async fn set_source(&self, app: &str, source: Option<&Source>) -> Result<(), Error> {
        let json = match source {
            Some(s) => {
                s.check().map_err(Error::BadSource)?;
                Some(serde_json::to_string(s).map_err(|e| Error::Stored(e.to_string()))?)
            }
            None => None,
        };
        let app = app.to_owned();
        self.store
            .write(move |tx| {
                capstan_store::pipeline::set_source(tx, &app, json.as_deref(), now_nano())
            })
            .await?;
        Ok(())
    }

    /// Takes one delivery for `app`: its proof checked over the raw `body` before anything is
    /// read, then deduplicated by its id, decided against the app's source, and recorded.
    /// `header` gives the request's headers by lowercase name.
    ///
    /// # Errors
    /// The keyring or the store cannot be used (the delivery may be sent again).
    pub async fn receive(
        &self,
        app: &str,
        header: &(dyn Fn(&str) -> Option<String> + Sync),
        body: &[u8],
    ) -> Result<Received, Error> {
        let Some(secret) = self.secret(app).await? else {
            return Ok(Received::Unknown);
        };
        let now = now_nano();
        let provider = match verify(header, body, &secret, now / 1_000_000_000) {
            Ok(p) => p,
            Err(refusal) => {
                // the refusal only: nothing the sender says is kept
                let row = DeliveryRow {
                    app: app.to_owned(),
                    provider: refusal.provider().unwrap_or("unknown").to_owned(),
                    received_nano: now,
                    outcome: "refused".into(),
                    reason: refusal.to_string(),
                    ..DeliveryRow::default()
                };
                self.store
                    .write(move |tx| capstan_store::pipeline::record_delivery(tx, &row))
                    .await?;
                return Ok(Received::Refused(refusal));
            }
        };
        let delivery = match read(provider, header, body) {
            Ok(d) => d,
            Err(why) => {
                let row = DeliveryRow {
                    app: app.to_owned(),
                    provider: provider.as_str().to_owned(),
                    received_nano: now,
                    outcome: "failed".into(),
                    reason: why.clone(),
                    ..DeliveryRow::default()
                };
                self.store
                    .write(move |tx| capstan_store::pipeline::record_delivery(tx, &row))
                    .await?;
                return Ok(Received::BadPayload(why));
            }
        };
        let commit = match &delivery.change {
            Change::Push(p) => p.commit.clone(),
            Change::PullRequest(pr) => pr.commit.clone(),
            Change::Other => String::new(),
        };
        let source = self.source(app).await?;
        let source_service = source.as_ref().and_then(|s| s.service.clone());
        let decision = match &source {
            Some(source) => source.decide(app, &delivery),
            None => Decision::Skip(format!(
                "{app} has no source: set x-capstan.source in its Compose file, or PUT /api/v1/apps/{app}/source"
            )),
        };
        let (outcome, reason) = match &decision {
            Decision::Build { .. } => ("accepted", String::new()),
            Decision::Preview { app, .. } => ("accepted", format!("a preview: {app}")),
            Decision::RemovePreview { app } => {
                ("accepted", format!("the preview {app} is removed"))
            }
            Decision::Skip(why) => ("skipped", why.clone()),
        };
        let row = DeliveryRow {
            app: app.to_owned(),
            delivery: delivery.id.clone(),
            provider: provider.as_str().to_owned(),
            event: delivery.event.clone(),
            received_nano: now,
            outcome: outcome.into(),
            reason: reason.clone(),
            commit: commit.clone(),
            ..DeliveryRow::default()
        };
        let app_owned = app.to_owned();
        let received = self
            .store
            .write(move |tx| {
                let seq = match capstan_store::pipeline::record_delivery(tx, &row)? {
                    Taken::Replay => return Ok(Received::Replay),
                    Taken::New(seq) => seq,
                };
                let mut detail =
                    serde_json::json!({ "delivery": row.delivery, "provider": row.provider });
                let (of_app, branch, commit, author, message) = match decision {
                    Decision::Build {
                        branch,
                        commit,
                        author,
                        message,
                    } => (app_owned, branch, commit, author, message),
                    Decision::Preview {
                        app: preview,
                        branch,
                        commit,
                        author,
                        message,
                    } => {
                        detail["preview_of"] = app_owned.into();
                        (preview, branch, commit, author, message)
                    }
                    Decision::RemovePreview { app: preview } => {
                        capstan_store::pipeline::expire_preview(tx, &preview, now)?;
                        return Ok(Received::Skipped(reason));
                    }
                    Decision::Skip(_) => return Ok(Received::Skipped(reason)),
                };
                let build = capstan_store::pipeline::queue_build(
                    tx,
                    &BuildRow {
                        app: of_app,
                        service: source_service.unwrap_or_default(),
                        branch,
                        commit: commit.clone(),
                        author,
                        message,
                        queued_nano: now,
                        detail: detail.to_string(),
                        ..BuildRow::default()
                    },
                )?;
                capstan_store::pipeline::settle_delivery(tx, seq, "accepted", "", Some(build))?;
                Ok::<_, capstan_store::Error>(Received::Queued { build, commit })
            })
            .await?;
        if matches!(received, Received::Queued { .. }) {
            self.queued.notify_one();
        }
        Ok(received)
    }

    /// The app's last `limit` deliveries, newest first.
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn deliveries(&self, app: &str, limit: i64) -> Result<Vec<DeliveryRow>, Error> {
        Ok(self.store.deliveries(app.to_owned(), limit).await?)
    }
}
