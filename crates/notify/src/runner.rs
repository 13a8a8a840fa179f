//! The loop every channel runs: read the events after its cursor, send them as one message,
//! move the cursor, wait for the next batch.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use capstan_model::{ConfigError, NotifyChannel};
use capstan_outbound::{Backoff, read_cursor, write_cursor};
use capstan_store::Store;
use chrono::Utc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::channel::Channel;
use crate::{ChannelConfig, Message};

/// At most this many events per message; more go out in further messages.
const MAX_EVENTS: usize = 100;
/// Events journaled outside a batch (no batch signal follows them) go out within this long.
const SWEEP: Duration = Duration::from_secs(30);
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_mins(5);

/// The configured channels, ready to run.
pub struct Notifier {
    store: Store,
    channels: Vec<(String, Vec<String>, Duration, Channel)>,
    dir: PathBuf,
    host: String,
    status: Arc<Mutex<BTreeMap<String, NotifyChannel>>>,
}

impl Notifier {
    /// Sets the channels up (clients built, secrets read); `dir` keeps their cursors, `host`
    /// names this machine in the messages.
    ///
    /// # Errors
    /// The first problem, under `notify[i]` and the key.
    pub fn new(
        store: Store,
        configs: &[ChannelConfig],
        dir: PathBuf,
        host: String,
    ) -> Result<Self, ConfigError> {
        crate::check_all(configs)?;
        let mut channels = Vec::new();
        let mut status = BTreeMap::new();
        for (i, c) in configs.iter().enumerate() {
            let channel = Channel::new(c).map_err(|e| e.under(&format!("notify[{i}]")))?;
            let repeat = c
                .repeat_every()
                .map_err(|e| e.under(&format!("notify[{i}]")))?;
            channels.push((c.name.clone(), c.events(), repeat, channel));
            status.insert(
                c.name.clone(),
                NotifyChannel {
                    name: c.name.clone(),
                    kind: c.kind_name().to_owned(),
                    events: c.events(),
                    cursor: read_cursor(&dir.join(format!("{}.cursor", c.name))).unwrap_or(0),
                    ..NotifyChannel::default()
                },
            );
        }
        Ok(Self {
            store,
            channels,
            dir,
            host,
            status: Arc::new(Mutex::new(status)),
        })
    }

    /// The channels' statuses, kept current while they run.
    pub fn status(&self) -> Arc<Mutex<BTreeMap<String, NotifyChannel>>> {
        Arc::clone(&self.status)
    }

    /// Runs every channel until `shutdown`. `batches` changes each time a batch of events is
    /// complete (a check cycle ended, an alert evaluation moved alerts): the channels send
    /// then. `firing` holds the `alert_firing` events of the alerts firing now: each channel
    /// sends them again every `repeat_every`.
    pub async fn run(
        self,
        batches: watch::Receiver<u64>,
        firing: watch::Receiver<Vec<capstan_model::Event>>,
        shutdown: CancellationToken,
    ) {
        let mut tasks = tokio::task::JoinSet::new();
        for (name, events, repeat_every, channel) in self.channels {
            let ctx = Context {
                store: self.store.clone(),
                cursor_path: self.dir.join(format!("{name}.cursor")),
                name,
                events,
                host: self.host.clone(),
                status: Arc::clone(&self.status),
                repeat_every,
                firing: firing.clone(),
            };
            tasks.spawn(ctx.run(channel, batches.clone(), shutdown.clone()));
        }
        while tasks.join_next().await.is_some() {}
    }
}

struct Context {
    store: Store,
    name: String,
    events: Vec<String>,
    cursor_path: PathBuf,
    host: String,
    status: Arc<Mutex<BTreeMap<String, NotifyChannel>>>,
    repeat_every: Duration,
    firing: watch::Receiver<Vec<capstan_model::Event>>,
}

impl Context {
    /// Sends the alerts still firing once more (a failure waits for the next round).
    async fn repeat(&self, channel: &Channel) {
        let events: Vec<capstan_model::Event> = self
            .firing
            .borrow()
            .iter()
            .filter(|e| self.events.contains(&e.action))
            .cloned()
            .collect();
        if events.is_empty() {
            return;
        }
        let mut message = Message::new(&self.host, events);
        message.subject = format!("still firing: {}", message.subject);
        match channel.send(&message).await {
            Ok(()) => self.update(|s| {
                s.sent += 1;
                s.last_sent = Some(Utc::now());
            }),
            Err(e) => {
                warn!(channel = %self.name, error = %e, "sending the firing alerts again failed; trying at the next round");
                self.update(|s| {
                    s.failed += 1;
                    s.last_error = Some(e.to_string());
                });
            }
        }
    }

    fn update(&self, f: impl FnOnce(&mut NotifyChannel)) {
        let mut all = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = all.get_mut(&self.name) {
            f(s);
        }
    }

    async fn run(
        self,
        channel: Channel,
        mut batches: watch::Receiver<u64>,
        shutdown: CancellationToken,
    ) {
        // a new channel starts at the journal's end: it announces what comes, not the past
        let mut cursor = match read_cursor(&self.cursor_path) {
            Some(c) => c,
            None => loop {
                match self.store.read(capstan_store::events::max_seq).await {
                    Ok(seq) => {
                        let seq = seq.max(0) as u64;
                        if let Err(e) = write_cursor(&self.cursor_path, seq) {
                            warn!(channel = %self.name, error = %e, "cannot keep the channel's cursor");
                        }
                        break seq;
                    }
                    Err(e) => {
                        warn!(channel = %self.name, error = %e, "cannot read the journal");
                        if !capstan_outbound::sleep(&shutdown, MAX_BACKOFF).await {
                            return;
                        }
                    }
                }
            },
        };
        self.update(|s| s.cursor = cursor);
        let mut backoff = Backoff::new(&self.name, MIN_BACKOFF, MAX_BACKOFF);
        let mut signals = true;
        let mut repeat_at = tokio::time::Instant::now() + self.repeat_every;
        loop {
            // everything pending, a message per MAX_EVENTS
            loop {
                let (after, actions) = (cursor as i64, self.events.clone());
                let events = match self
                    .store
                    .read(move |c| {
                        capstan_store::events::after_seq(c, after, "capstan", &actions, MAX_EVENTS)
                    })
                    .await
                {
                    Ok(events) => events,
                    Err(e) => {
                        warn!(channel = %self.name, error = %e, "cannot read the journal");
                        break;
                    }
                };
                let Some(last) = events.last().map(|e| e.seq.max(0) as u64) else {
                    break;
                };
                let message = Message::new(&self.host, events);
                match channel.send(&message).await {
                    Ok(()) => {
                        info!(channel = %self.name, subject = %message.subject, "notification sent");
                        self.update(|s| {
                            s.sent += 1;
                            s.last_sent = Some(Utc::now());
                            s.last_error = None;
                        });
                        backoff.reset();
                    }
                    Err(e) if e.is_permanent() => {
                        warn!(channel = %self.name, error = %e, "the notification was refused for good; it is dropped");
                        self.update(|s| {
                            s.rejected += 1;
                            s.last_error = Some(e.to_string());
                        });
                    }
                    Err(e) => {
                        warn!(channel = %self.name, error = %e, retry_in = ?backoff.current(), "notification failed");
                        self.update(|s| {
                            s.failed += 1;
                            s.last_error = Some(e.to_string());
                        });
                        if !backoff.wait(&shutdown, e.retry_after()).await {
                            return;
                        }
                        continue;
                    }
                }
                cursor = last;
                if let Err(e) = write_cursor(&self.cursor_path, cursor) {
                    warn!(channel = %self.name, error = %e, "cannot keep the channel's cursor; a restart sends this message again");
                }
                self.update(|s| s.cursor = cursor);
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = batches.changed(), if signals => signals = changed.is_ok(),
                () = tokio::time::sleep_until(repeat_at) => {
                    repeat_at = tokio::time::Instant::now() + self.repeat_every;
                    self.repeat(&channel).await;
                }
                () = tokio::time::sleep(SWEEP) => {}
            }
        }
    }
}
