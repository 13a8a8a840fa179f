//! The certificate task: told by the router which names want a certificate, it keeps one per
//! app and challenge, issued or renewed when due, and tells the router what to serve.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use capstan_deploy::{EdgeConfig, EdgeLink, WantedNames};
use capstan_model::{CapstanAction, Event};
use capstan_proxy::ProxyClient;
use capstan_store::Store;
use chrono::Utc;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::files::{Stored, certs_dir, load, save};
use crate::{Acme, Challenge};

/// How often certificates are looked at without any change of names.
const CHECK_EVERY: Duration = Duration::from_hours(1);
/// A certificate is issued again at most this often, whatever `renew_before` says.
const REISSUE_AFTER: Duration = Duration::from_hours(1);
/// The first wait after a failure, doubled each time up to [`CHECK_EVERY`].
const FIRST_RETRY: Duration = Duration::from_mins(1);

/// What the certificate task needs.
pub struct Setup {
    pub data: PathBuf,
    pub acme: Acme,
    /// The certificates of `[[proxy.certificates]]`, read.
    pub files: Vec<Stored>,
    /// The shared ports (`[proxy] http`, `https`).
    pub http: Option<SocketAddr>,
    pub https: Option<SocketAddr>,
    pub proxy: ProxyClient,
    pub store: Store,
    pub live: broadcast::Sender<Event>,
}

/// One app's certificate for one challenge type.
type Key = (String, Challenge);

struct Task {
    setup: Setup,
    certs: PathBuf,
    account: Option<instant_acme::Account>,
    issued: BTreeMap<Key, Stored>,
    /// When each was last issued here (to bound a `renew_before` longer than a certificate's
    /// life).
    fresh: BTreeMap<Key, Instant>,
    /// Failures in a row, and when to try again.
    failing: BTreeMap<Key, (u32, Instant)>,
    config: watch::Sender<EdgeConfig>,
}

/// Starts the certificate task; the link goes to the router.
///
/// # Errors
/// `<data>/certs` cannot be made.
pub fn start(setup: Setup, shutdown: CancellationToken) -> std::io::Result<EdgeLink> {
    let certs = certs_dir(&setup.data)?;
    let (config, config_rx) = watch::channel(EdgeConfig::default());
    let (wanted, wanted_rx) = watch::channel(WantedNames::new());
    let mut task = Task {
        setup,
        certs,
        account: None,
        issued: BTreeMap::new(),
        fresh: BTreeMap::new(),
        failing: BTreeMap::new(),
        config,
    };
    // what was issued before is served from the first table on, before the router says which
    // names it wants (a restarted daemon must not take a certificate from the proxy)
    task.load_all();
    task.publish(None);
    tokio::spawn(task.run(wanted_rx, shutdown));
    Ok(EdgeLink {
        config: config_rx,
        wanted,
    })
}

impl Task {
    async fn run(mut self, mut wanted: watch::Receiver<WantedNames>, shutdown: CancellationToken) {
        // until the router's first table, nothing is known to be unwanted
        let told = tokio::select! {
            () = shutdown.cancelled() => return,
            changed = wanted.changed() => changed.is_ok(),
        };
        if !told {
            return;
        }
        loop {
            let names = wanted.borrow_and_update().clone();
            let next = self.pass(&names).await;
            self.publish(Some(&names));
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = wanted.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(next) => {}
            }
        }
    }

    /// Every certificate kept in `<data>/certs/<app>.<challenge>/`.
    fn load_all(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.certs) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((app, challenge)) = name
                .rsplit_once('.')
                .and_then(|(app, c)| Some((app.to_owned(), Challenge::parse(c)?)))
            else {
                continue;
            };
            if let Some(stored) = load(&entry.path()) {
                self.issued.insert((app, challenge), stored);
            }
        }
    }

    fn dir(&self, (app, challenge): &Key) -> PathBuf {
        self.certs.join(format!("{app}.{}", challenge.as_str()))
    }

    /// The certificate each wanted group should have, issued where due; returns how long
    /// until the next one is due. What is kept is served before anything is asked of ACME.
    async fn pass(&mut self, wanted: &WantedNames) -> Duration {
        self.publish(Some(wanted));
        let mut next = CHECK_EVERY;
        for ((app, challenge), names) in wanted {
            let challenge = challenge
                .as_deref()
                .and_then(Challenge::parse)
                .unwrap_or(self.setup.acme.challenge);
            let key = (app.clone(), challenge);
            if !self.issued.contains_key(&key)
                && let Some(stored) = load(&self.dir(&key))
            {
                self.issued.insert(key.clone(), stored);
            }
            let now = Utc::now();
            let due = match self.issued.get(&key) {
                None => true,
                Some(s) => {
                    let held: BTreeSet<&String> = s.names.iter().collect();
                    let left = (s.not_after - now).to_std().unwrap_or_default();
                    !names.iter().all(|n| held.contains(n)) || left <= self.setup.acme.renew_before
                }
            };
            if !due || !self.setup.acme.enabled {
                continue;
            }
            if let Some(at) = self.fresh.get(&key).map(|t| *t + REISSUE_AFTER)
                && at > Instant::now()
            {
                next = next.min(at - Instant::now());
                continue;
            }
            if let Some((_, at)) = self.failing.get(&key)
                && *at > Instant::now()
            {
                next = next.min(*at - Instant::now());
                continue;
            }
            let names: Vec<String> = names.iter().cloned().collect();
            self.obtain(&key, &names, wanted).await;
            if let Some((_, at)) = self.failing.get(&key) {
                next = next.min(at.saturating_duration_since(Instant::now()));
            }
        }
        next
    }

    /// Issues `key`'s certificate for `names`, hands it to the router at once (not after the
    /// other certificates of this pass), then journals it.
    async fn obtain(&mut self, key: &Key, names: &[String], wanted: &WantedNames) {
        let (app, challenge) = key;
        let renewal = self.issued.contains_key(key);
        let result = self.try_obtain(names, *challenge).await;
        let mut attributes = BTreeMap::from([
            ("app".to_owned(), app.clone()),
            ("names".to_owned(), names.join(",")),
            ("challenge".to_owned(), challenge.as_str().to_owned()),
        ]);
        match result {
            Ok(stored) => {
                let dir = self.dir(key);
                if let Err(e) = save(&dir, &stored) {
                    warn!(error = %e, dir = %dir.display(), "cannot keep an issued certificate; it is served until capstan stops");
                }
                info!(app = %app, names = ?stored.names, not_after = %stored.not_after, renewal, "certificate issued");
                attributes.insert("not_after".to_owned(), stored.not_after.to_rfc3339());
                attributes.insert("renewal".to_owned(), renewal.to_string());
                self.issued.insert(key.clone(), stored);
                self.fresh.insert(key.clone(), Instant::now());
                self.failing.remove(key);
                self.publish(Some(wanted));
                self.record(CapstanAction::CertificateIssued, attributes)
                    .await;
            }
            Err(error) => {
                let failures = self.failing.get(key).map_or(0, |(n, _)| *n) + 1;
                let wait = FIRST_RETRY
                    .saturating_mul(1 << failures.saturating_sub(1).min(6))
                    .min(CHECK_EVERY);
                warn!(app = %app, names = ?names, %error, retry_in = ?wait, "no certificate: its names stay on plain HTTP");
                self.failing
                    .insert(key.clone(), (failures, Instant::now() + wait));
                attributes.insert("error".to_owned(), error);
                self.record(CapstanAction::CertificateFailed, attributes)
                    .await;
            }
        }
    }

    async fn try_obtain(
        &mut self,
        names: &[String],
        challenge: Challenge,
    ) -> Result<Stored, String> {
        if self.account.is_none() {
            self.account = Some(crate::issue::account(&self.setup.acme, &self.certs).await?);
        }
        let account = self.account.as_ref().ok_or("no ACME account")?;
        crate::issue::issue(account, &self.setup.proxy, names, challenge).await
    }

    async fn record(&self, action: CapstanAction, attributes: BTreeMap<String, String>) {
        self.setup
            .store
            .record(&self.setup.live, action, "acme".to_owned(), attributes)
            .await;
    }

    /// Tells the router the shared ports and the certificates to serve: the files', and the
    /// issued ones of the names wanted now (all of them, before the router has said).
    fn publish(&self, wanted: Option<&WantedNames>) {
        let mut certificates: Vec<capstan_proxy::Certificate> =
            self.setup.files.iter().map(Stored::for_proxy).collect();
        let from_files = self
            .setup
            .files
            .iter()
            .flat_map(|s| s.names.iter().cloned())
            .collect();
        let now = Utc::now();
        let keys: Vec<Key> = match wanted {
            Some(w) => w
                .keys()
                .map(|(app, challenge)| {
                    let challenge = challenge
                        .as_deref()
                        .and_then(Challenge::parse)
                        .unwrap_or(self.setup.acme.challenge);
                    (app.clone(), challenge)
                })
                .collect(),
            None => self.issued.keys().cloned().collect(),
        };
        for key in keys {
            if let Some(s) = self.issued.get(&key)
                && s.not_after > now
            {
                certificates.push(s.for_proxy());
            }
        }
        let config = EdgeConfig {
            http: self.setup.http,
            https: self.setup.https,
            certificates,
            from_files,
        };
        self.config.send_if_modified(|old| {
            let changed = *old != config;
            *old = config;
            changed
        });
    }
}
