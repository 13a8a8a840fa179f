//! The watch loop: connect, catch up, reconcile, follow; reconnect with backoff.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use capstan_engine::{Engine, RawEvent};
use capstan_model::Event;
use capstan_store::Store;
use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::Error;
use crate::backoff::Backoff;

/// Most events read from the stream and written in one transaction.
const BATCH_EVENTS: usize = 512;

/// Events read ahead of the writer (about 300 bytes each): enough for bursts of tens of
/// thousands without the engine dropping any for us.
const READ_AHEAD: usize = 65_536;

/// How long an image state no event explained waits before it is recorded as inferred (the
/// explaining event may still be on its way: a busy engine delivers events late).
const SETTLE_AFTER: Duration = Duration::from_secs(2);

/// Live state of the journal, shared with the API's health route.
#[derive(Debug, Default)]
pub struct JournalStatus {
    connected: AtomicBool,
    reconnects: AtomicU64,
}

impl JournalStatus {
    /// Whether the live event stream is connected.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// How many times the stream was re-established after the first connection.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }
}

/// Journals every engine event into the store and keeps the inventory in step.
#[derive(Debug, Clone)]
pub struct Journal {
    pub(crate) engine: Engine,
    pub(crate) store: Store,
    live: broadcast::Sender<Event>,
    status: Arc<JournalStatus>,
    /// Differences settling saw once while the stream was live, not yet inferred: per image,
    /// the row's newest event and the engine's tags then (see `settle`).
    pub(crate) sightings: Arc<std::sync::Mutex<crate::reconcile::Sightings>>,
}

impl Journal {
    /// A journal over `engine` writing to `store`; every stored event is also sent to `live`.
    pub fn new(engine: Engine, store: Store, live: broadcast::Sender<Event>) -> Self {
        Self {
            engine,
            store,
            live,
            status: Arc::default(),
            sightings: Arc::default(),
        }
    }

    /// Shared live status.
    pub fn status(&self) -> Arc<JournalStatus> {
        Arc::clone(&self.status)
    }

    /// Watches the engine until `shutdown` is cancelled, reconnecting with backoff whenever the
    /// engine goes away. A batch being written when shutdown comes is finished first.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        let mut sessions = 0_u64;
        // images whose state no event explained yet, carried from one session to the next: a
        // session that ends must not infer what the next one's replay may still explain
        let mut unsettled = BTreeSet::new();
        loop {
            let started = Instant::now();
            let result = self.session(&shutdown, sessions, &mut unsettled).await;
            self.status.connected.store(false, Ordering::Relaxed);
            if shutdown.is_cancelled() {
                return;
            }
            sessions += 1;
            match result {
                Ok(()) | Err(Error::StreamEnded) => {
                    info!(
                        host = self.engine.host(),
                        "engine event stream ended; reconnecting"
                    );
                }
                Err(err) => warn!(error = %err, "event journal lost the engine; reconnecting"),
            }
            if started.elapsed() > Duration::from_secs(30) {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            debug!(
                delay_ms = delay.as_millis() as u64,
                "waiting before reconnecting"
            );
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// One connection: replay what the engine still holds since the last stored event, diff the
    /// inventory, then follow live events. `unsettled` are images waiting to be settled, kept
    /// up to date whatever the outcome.
    async fn session(
        &self,
        shutdown: &CancellationToken,
        sessions: u64,
        unsettled: &mut BTreeSet<String>,
    ) -> Result<(), Error> {
        self.engine.negotiate().await?;
        let (resume, _) = self.store.journal_position().await?;
        let snapshot_start = self.engine.now_nanos().await?;
        let images = self.engine.list_images().await?;
        let containers = self.engine.list_containers(true).await?;
        let snapshot_end = self.engine.now_nanos().await?;
        // Everything up to the snapshot's end first, so the diff below only reports what no
        // event explains. Since 0 on the first start: keep what the engine still remembers.
        let since = resume.unwrap_or(0);
        debug!(since, until = snapshot_end, "replaying held engine events");
        self.consume(Some(since), Some(snapshot_end), shutdown, unsettled)
            .await?;
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let deferred = self
            .reconcile(images, containers, snapshot_start, snapshot_end)
            .await?;
        unsettled.extend(deferred);
        // The engine keeps only its last 256 events: when more came after the snapshot while
        // this connection replayed and reconciled (a busy engine, seconds), the live stream
        // cannot get them all back, and an image changed then (imported, tagged) would never
        // be journaled. Every image is then settled: what no event explains is still found.
        let now = self.engine.now_nanos().await?;
        let since_snapshot = self.engine.events_between(snapshot_end + 1, now).await?;
        if since_snapshot.len() >= capstan_engine::EVENT_BUFFER {
            let images = self.engine.list_images().await?;
            let unexplained = self
                .store
                .read(move |conn| {
                    let mut out = Vec::new();
                    for image in images {
                        let row = capstan_store::images::get(conn, &image.id)?;
                        if crate::reconcile::differs(row.as_ref(), Some(&image)) {
                            out.push(image.id);
                        }
                    }
                    Ok(out)
                })
                .await?;
            debug!(
                images = unexplained.len(),
                "more events since the snapshot than the engine keeps: settling the images they may have changed"
            );
            unsettled.extend(unexplained);
        }
        self.status.connected.store(true, Ordering::Relaxed);
        if sessions > 0 {
            self.status.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        info!(host = self.engine.host(), "following engine events");
        self.consume(Some(snapshot_end), None, shutdown, unsettled)
            .await?;
        if shutdown.is_cancelled() {
            Ok(())
        } else {
            Err(Error::StreamEnded)
        }
    }

    /// Streams events (`since`/`until` as in [`Engine::events`]) and journals them in batches
    /// until the stream ends or shutdown is asked; `unsettled` are the images waiting to be
    /// settled, before and after.
    ///
    /// The end of a live stream settles nothing: a replay follows, which may still explain the
    /// difference. The end of a replay settles only what no event after it concerns: the
    /// engine's state runs ahead of a replay's end, and inferring there with no confirmation
    /// reported steps the engine did report.
    ///
    /// A thread of its own, with its own runtime and connection, drains the stream into a deep
    /// queue: the engine drops events for a subscriber that does not take them within 100 ms, so
    /// reading must never wait on writing, nor on the API's work.
    async fn consume(
        &self,
        since: Option<i64>,
        until: Option<i64>,
        shutdown: &CancellationToken,
        unsettled: &mut BTreeSet<String>,
    ) -> Result<(), Error> {
        // its own connection, driven by the reader's own runtime
        let engine = self.engine.detached()?;
        let (tx, mut rx) = mpsc::channel(READ_AHEAD);
        let stop = CancellationToken::new();
        // On a thread and runtime of its own: API requests that serialise large pages on the
        // main runtime's workers must never keep the reader from the socket.
        let reader_stop = stop.clone();
        let reader = std::thread::Builder::new()
            .name("capstan-events".into())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async move {
                    let mut stream = engine.events(since, until);
                    loop {
                        let item = tokio::select! {
                            () = reader_stop.cancelled() => break,
                            item = stream.next() => item,
                        };
                        let Some(item) = item else { break };
                        let failed = item.is_err();
                        if tx.send(item).await.is_err() || failed {
                            break;
                        }
                    }
                });
            });
        if let Err(err) = reader {
            warn!(error = %err, "cannot start the event reader thread");
            return Err(Error::StreamEnded);
        }
        // the replay before a live stream read everything up to where the live one starts
        let result = self
            .drain(&mut rx, shutdown, unsettled, since.unwrap_or(0), until)
            .await;
        stop.cancel();
        result
    }

    async fn drain(
        &self,
        rx: &mut mpsc::Receiver<Result<RawEvent, capstan_engine::Error>>,
        shutdown: &CancellationToken,
        unsettled: &mut BTreeSet<String>,
        read_from: i64,
        until: Option<i64>,
    ) -> Result<(), Error> {
        // when the oldest unsettled image became so; settling waits for it to age, not for a
        // quiet stream, so a busy engine cannot starve it
        let mut unsettled_since = tokio::time::Instant::now();
        // engine time of the newest event read so far
        let mut last_read = read_from;
        let mut items = Vec::with_capacity(BATCH_EVENTS);
        loop {
            items.clear();
            let received = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep_until(unsettled_since + SETTLE_AFTER), if !unsettled.is_empty() => {
                    // an event not yet read may explain what we would infer: settle checks with
                    // the engine that nothing after `last_read` is pending
                    *unsettled = self.settle(unsettled.clone(), SETTLE_AFTER, last_read, true).await?;
                    unsettled_since = tokio::time::Instant::now();
                    continue;
                }
                n = rx.recv_many(&mut items, BATCH_EVENTS) => n,
            };
            if received == 0 {
                // a replay read to its end: what no event explained, and no event after its
                // end concerns, had its events dropped from the engine's short memory (a busy
                // engine keeps 256): inferred now. The rest waits for the live stream.
                if let Some(until) = until
                    && !unsettled.is_empty()
                {
                    *unsettled = self
                        .settle(
                            unsettled.clone(),
                            Duration::ZERO,
                            until.max(last_read),
                            false,
                        )
                        .await?;
                }
                return Ok(());
            }
            let mut batch = Vec::with_capacity(items.len());
            let mut failure = None;
            for item in items.drain(..) {
                match item {
                    Ok(event) => {
                        last_read = last_read.max(event.time_nano);
                        batch.push(event);
                    }
                    Err(err) => {
                        failure = Some(err);
                        break;
                    }
                }
            }
            if !batch.is_empty() {
                let (stored, more) = self.ingest(batch).await?;
                if unsettled.is_empty() {
                    unsettled_since = tokio::time::Instant::now();
                }
                unsettled.extend(more);
                self.publish(stored);
            }
            if let Some(err) = failure {
                return Err(err.into());
            }
        }
    }

    /// Hands stored events to live subscribers (none listening is fine).
    pub(crate) fn publish(&self, events: Vec<Event>) {
        for event in events {
            let _ = self.live.send(event);
        }
    }
}
