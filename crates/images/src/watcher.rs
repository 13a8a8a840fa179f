//! The watch loop: every running container's image (and the refs config lists) checked
//! shortly after start, then on a schedule with jitter, and at once when asked. The last check
//! of each is kept in `<data>/images/updates.json`, so a restart neither forgets what was
//! judged nor announces it again. A new update (a candidate or new content not offered
//! before) is journaled once as a `capstan` event `update_available`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_engine::Engine;
use capstan_model::{AutoUpdate, Event, ImageUpdate, ImageUpdates};
use capstan_registry::{Client, Platform, Policy, Reference};
use capstan_store::Store;
use chrono::{DateTime, Utc};
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::watch::{TagFilter, TagLists, Target, check};
use crate::window::Window;

/// The label that sets a container's update policy.
pub const POLICY_LABEL: &str = "io.capstan.update";
/// Only tags this pattern matches are candidates.
pub const INCLUDE_LABEL: &str = "io.capstan.update.include";
/// Tags this pattern matches are never candidates.
pub const EXCLUDE_LABEL: &str = "io.capstan.update.exclude";
/// A candidate is offered once capstan has known it this long (`3d`).
pub const MIN_AGE_LABEL: &str = "io.capstan.update.min_age";
/// `true`: a capstan-deployed service applies its updates itself, through a rollout.
pub const AUTO_LABEL: &str = "io.capstan.update.auto";
/// When automatic updates may run: `MIN HOUR DAY MONTH WEEKDAY DURATION` (see [`Window`]).
pub const WINDOW_LABEL: &str = "io.capstan.update.window";

/// A running container as the watcher watches it, wherever it runs.
#[derive(Debug, Clone)]
pub struct RunningContainer {
    /// How the update list names it (a cluster's: `target/namespace/pod/container`).
    pub name: String,
    /// The reference it was made from (`repo:tag`, `repo:tag@digest`).
    pub image: String,
    /// `repo@sha256:...`: the digests its image has in registries.
    pub repo_digests: Vec<String>,
    /// Its labels (a pod's labels and annotations): the update policy's.
    pub labels: BTreeMap<String, String>,
}

/// A place besides this engine whose running containers' images are watched (a Kubernetes
/// target's pods).
#[async_trait::async_trait]
pub trait RunsElsewhere: Send + Sync + std::fmt::Debug {
    /// Its name, for messages.
    fn name(&self) -> &str;
    /// What runs there now.
    async fn running(&self) -> Result<Vec<RunningContainer>, String>;
}

/// What a watched image's containers ask of automatic updating.
#[derive(Debug, Clone)]
struct Auto {
    /// The capstan app and service, when capstan deployed them.
    service: Option<(String, String)>,
    /// The maintenance window, or why its label does not parse.
    window: Option<Result<Window, String>>,
}

/// One watched image: the check to make, the containers running it, automatic updating.
struct Watched {
    target: Target,
    containers: Vec<String>,
    auto: Option<Auto>,
}

/// How the watcher runs.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Between check cycles (default 1 h); each cycle starts up to a tenth later (jitter).
    pub every: Duration,
    /// The first cycle after start.
    pub first_after: Duration,
    /// References watched besides those running, with their policies.
    pub refs: Vec<(String, Policy)>,
    /// Only containers whose name matches one of these (a trailing `*` matches a prefix);
    /// empty: every container.
    pub containers: Vec<String>,
    /// Where the last checks are kept.
    pub state_file: PathBuf,
    /// The platform whose image decides a multi-arch update.
    pub platform: Platform,
}

/// What the API reads and asks of the watcher.
#[derive(Debug)]
pub struct WatchState {
    checks: Mutex<BTreeMap<String, ImageUpdate>>,
    last_cycle: Mutex<Option<DateTime<Utc>>>,
    wake: Notify,
    cycles: watch::Sender<u64>,
    client: Arc<Client>,
    /// Repositories a registry said were pushed to: the next cycle checks only these.
    pushed: Mutex<Option<Vec<String>>>,
}

impl WatchState {
    /// The last check of every watched image.
    pub fn snapshot(&self) -> ImageUpdates {
        let checks = self
            .checks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let last_cycle = *self
            .last_cycle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let c = self.client.counts();
        ImageUpdates {
            updates: checks,
            last_cycle,
            requests: BTreeMap::from([
                ("manifest_heads".into(), c.manifest_heads),
                ("manifest_gets".into(), c.manifest_gets),
                ("tag_pages".into(), c.tag_pages),
                ("tokens".into(), c.tokens),
                ("auth_retries".into(), c.auth_retries),
            ]),
            // found on the engine at each request (`capstan_images::stale_images`)
            stale: Vec::new(),
        }
    }

    /// A registry says `repositories` were pushed to: checks the images of those at once
    /// (and only those), without waiting.
    pub fn pushed(&self, repositories: Vec<String>) {
        {
            let mut pushed = self
                .pushed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            pushed.get_or_insert_with(Vec::new).extend(repositories);
        }
        self.wake.notify_one();
    }

    /// Changes each time a check cycle ends: what it journaled is complete.
    pub fn cycles(&self) -> watch::Receiver<u64> {
        self.cycles.subscribe()
    }

    /// Runs a cycle now and waits for it (at most `timeout`).
    pub async fn check_now(&self, timeout: Duration) -> ImageUpdates {
        // a full cycle, not only pushed repositories
        *self
            .pushed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        let mut rx = self.cycles.subscribe();
        let start = *rx.borrow_and_update();
        self.wake.notify_one();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|n| *n > start)).await;
        self.snapshot()
    }
}

/// Watches images for updates.
#[derive(Debug)]
pub struct Watcher {
    engine: Engine,
    store: Store,
    live: broadcast::Sender<Event>,
    config: WatchConfig,
    state: Arc<WatchState>,
    /// Where updates of services that apply them themselves go (the deploy engine).
    auto: Option<mpsc::Sender<AutoUpdate>>,
    /// Places besides this engine whose images are watched too.
    elsewhere: Vec<Arc<dyn RunsElsewhere>>,
}

/// What an update offers: a newer tag's digest and the tag's new content, either or both.
fn offer(c: &ImageUpdate) -> Option<(Option<&str>, Option<&str>)> {
    let candidate = c.candidate.as_ref().map(|x| x.digest.as_str());
    let content = c
        .content_changed
        .then_some(c.tag_digest.as_deref())
        .flatten();
    (candidate.is_some() || content.is_some()).then_some((candidate, content))
}

impl Watcher {
    pub fn new(
        engine: Engine,
        store: Store,
        live: broadcast::Sender<Event>,
        client: Arc<Client>,
        config: WatchConfig,
    ) -> Self {
        let checks = std::fs::read(&config.state_file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Vec<ImageUpdate>>(&b).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|c| (key(&c.reference, c.running.as_deref()), c))
            .collect();
        let state = Arc::new(WatchState {
            checks: Mutex::new(checks),
            last_cycle: Mutex::new(None),
            wake: Notify::new(),
            cycles: watch::channel(0).0,
            client,
            pushed: Mutex::new(None),
        });
        Self {
            engine,
            store,
            live,
            config,
            state,
            auto: None,
            elsewhere: Vec::new(),
        }
    }

    /// Watches the images of what runs at `place` too.
    #[must_use]
    pub fn watching(mut self, place: Arc<dyn RunsElsewhere>) -> Self {
        self.elsewhere.push(place);
        self
    }

    /// Hands the updates of services labelled `io.capstan.update.auto=true` to `to`.
    #[must_use]
    pub fn with_auto_updates(mut self, to: mpsc::Sender<AutoUpdate>) -> Self {
        self.auto = Some(to);
        self
    }

    pub fn state(&self) -> Arc<WatchState> {
        Arc::clone(&self.state)
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut wait = self.config.first_after;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                () = self.state.wake.notified() => {}
            }
            self.cycle().await;
            let jitter = self.config.every.mul_f64(rand_fraction() / 10.0);
            wait = self.config.every + jitter;
        }
    }

    /// The running containers' images (this engine's, and every other place's) and the
    /// configured refs.
    async fn targets(&self) -> Vec<Watched> {
        let mut out: HashMap<String, Watched> = HashMap::new();
        let mut running = self.engine_containers().await;
        for place in &self.elsewhere {
            match place.running().await {
                Ok(more) => running.extend(more),
                Err(e) => {
                    warn!(place = place.name(), error = %e, "cannot list what runs there to watch its images");
                }
            }
        }
        let wanted = |name: &str| {
            self.config.containers.is_empty()
                || self
                    .config
                    .containers
                    .iter()
                    .any(|p| match p.strip_suffix('*') {
                        Some(prefix) => name.starts_with(prefix),
                        None => p == name,
                    })
        };
        for c in running {
            if c.image.starts_with("sha256:") || !wanted(&c.name) {
                continue;
            }
            let Ok(mut reference) = Reference::parse(&c.image) else {
                continue;
            };
            // `repo:tag@digest` (how an automatic update or a cluster pins what it deployed):
            // the tag is what is followed, the digest what runs
            let pinned = reference
                .tag
                .is_some()
                .then(|| reference.digest.take())
                .flatten();
            let policy = match c.labels.get(POLICY_LABEL).map(|p| p.parse::<Policy>()) {
                None => Policy::Digest,
                Some(Ok(p)) => p,
                Some(Err(e)) => {
                    warn!(container = %c.name, error = %e, "label {POLICY_LABEL} does not parse; watching by digest");
                    Policy::Digest
                }
            };
            let running = pinned.or_else(|| {
                c.repo_digests.iter().find_map(|d| {
                    let r = Reference::parse(d).ok()?;
                    (r.registry == reference.registry && r.repository == reference.repository)
                        .then_some(r.digest)
                        .flatten()
                })
            });
            // built or loaded here, never pulled: no registry has its digest, so only a tag
            // policy asked for by label has anything to check (and nothing is sent for it)
            if running.is_none() && !policy.compares_tags() {
                continue;
            }
            let k = key(&reference.to_string(), running.as_deref());
            // applied where the app runs (its release names the place): a container of this
            // engine, or a cluster's pod capstan deployed (its labels name the app and service)
            let auto = c
                .labels
                .get(AUTO_LABEL)
                .is_some_and(|v| v == "true")
                .then(|| Auto {
                    service: c
                        .labels
                        .get("io.capstan.app")
                        .zip(c.labels.get("io.capstan.service"))
                        .map(|(a, s)| (a.clone(), s.clone())),
                    window: c.labels.get(WINDOW_LABEL).map(|w| Window::parse(w)),
                });
            let watched = out.entry(k).or_insert_with(|| Watched {
                target: Target {
                    reference,
                    policy,
                    running,
                    filter: filter(&c.labels, &c.name),
                },
                containers: Vec::new(),
                auto: None,
            });
            watched.containers.push(c.name);
            if watched.auto.is_none() {
                watched.auto = auto;
            }
        }
        for (text, policy) in &self.config.refs {
            let Ok(reference) = Reference::parse(text) else {
                continue;
            };
            let k = key(&reference.to_string(), None);
            out.entry(k).or_insert_with(|| Watched {
                target: Target {
                    reference,
                    policy: policy.clone(),
                    running: None,
                    filter: TagFilter::default(),
                },
                containers: Vec::new(),
                auto: None,
            });
        }
        out.into_values().collect()
    }

    /// This engine's running containers, with the digests their images have in registries.
    async fn engine_containers(&self) -> Vec<RunningContainer> {
        let containers = match self.engine.list_containers(false).await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot list containers to watch their images");
                return Vec::new();
            }
        };
        let mut digests: HashMap<String, Vec<String>> = HashMap::new();
        let mut out = Vec::new();
        for c in containers {
            if !digests.contains_key(&c.image_id) {
                let found = match self.engine.inspect_image(&c.image_id).await {
                    Ok(Some(i)) => i.repo_digests,
                    _ => Vec::new(),
                };
                digests.insert(c.image_id.clone(), found);
            }
            out.push(RunningContainer {
                name: c.name,
                image: c.image,
                repo_digests: digests[&c.image_id].clone(),
                labels: c.labels,
            });
        }
        out
    }

    async fn cycle(&self) {
        let mut targets = self.targets().await;
        let only = self
            .state
            .pushed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        // after a push notification, only the images of the pushed repositories; the other
        // checks stay as they are
        let mut fresh = match &only {
            Some(repositories) => {
                targets.retain(|w| repositories.contains(&w.target.reference.repository));
                self.state
                    .checks
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            }
            None => BTreeMap::new(),
        };
        let mut tags = TagLists::default();
        let failed = if targets.iter().any(|w| w.auto.is_some()) {
            self.failed_updates().await
        } else {
            Ok(HashMap::new())
        };
        for Watched {
            target,
            containers,
            auto,
        } in targets
        {
            let k = key(&target.reference.to_string(), target.running.as_deref());
            let previous = self
                .state
                .checks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&k)
                .cloned();
            let mut c = check(
                &self.state.client,
                &target,
                previous.as_ref(),
                &self.config.platform,
                &mut tags,
            )
            .await;
            c.containers = containers;
            if let Some(e) = &c.error {
                warn!(image = %c.reference, error = %e, "image update check failed");
            }
            let new_offer = offer(&c).filter(|o| previous.as_ref().and_then(offer) != Some(*o));
            if c.error.is_none() && new_offer.is_some() {
                info!(image = %c.reference, reason = %c.reason, "image update available");
                self.journal(&c).await;
            }
            if let Some(auto) = &auto {
                c.auto = self.auto_update(&target, &c, auto, &failed);
            }
            fresh.insert(k, c);
        }
        let list: Vec<ImageUpdate> = fresh.values().cloned().collect();
        *self
            .state
            .checks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
        *self
            .state
            .last_cycle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Utc::now());
        if let Err(e) = save(&self.config.state_file, &list).await {
            warn!(error = %e, file = %self.config.state_file.display(), "cannot keep the update checks");
        }
        self.state.cycles.send_modify(|n| *n += 1);
    }

    /// Digests whose automatic update failed and was rolled back, with when: they are not
    /// tried again (a newer candidate is).
    async fn failed_updates(&self) -> Result<HashMap<String, DateTime<Utc>>, String> {
        let filter = capstan_store::EventFilter {
            kinds: vec!["capstan".into()],
            actions: vec!["update_failed".into()],
            ..capstan_store::EventFilter::default()
        };
        match self.store.events(filter, 10_000).await {
            Ok(events) => Ok(events
                .into_iter()
                .filter_map(|e| Some((e.attributes.get("digest")?.clone(), e.time)))
                .collect()),
            Err(e) => {
                warn!(error = %e, "cannot read which automatic updates failed; none is tried this cycle");
                Err(e.to_string())
            }
        }
    }

    /// Hands an update to the deploy engine when the service asked for that, and says what
    /// became of it (or why nothing did).
    fn auto_update(
        &self,
        target: &Target,
        c: &ImageUpdate,
        auto: &Auto,
        failed: &Result<HashMap<String, DateTime<Utc>>, String>,
    ) -> Option<String> {
        if c.error.is_some() {
            return None;
        }
        let (tag, digest) = match (&c.candidate, c.content_changed, &c.tag_digest) {
            (Some(x), _, _) => (x.tag.clone(), x.digest.clone()),
            (None, true, Some(d)) => (target.reference.tag.clone()?, d.clone()),
            _ => return None,
        };
        let short: String = digest
            .trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect();
        let Some((app, service)) = &auto.service else {
            return Some(
                "not applied: automatic updates need a service capstan deployed (labels \
                 io.capstan.app and io.capstan.service)"
                    .into(),
            );
        };
        let failed = match failed {
            Ok(f) => f,
            Err(e) => return Some(format!("not applied: cannot read the journal ({e})")),
        };
        if let Some(at) = failed.get(&digest) {
            return Some(format!(
                "not applied: {tag} ({short}) failed on {} and was rolled back; waiting for a \
                 newer one",
                at.format("%Y-%m-%d %H:%M:%S UTC")
            ));
        }
        match &auto.window {
            Some(Err(e)) => return Some(format!("not applied: {WINDOW_LABEL}: {e}")),
            Some(Ok(w)) if !w.is_open(&chrono::Local::now()) => {
                return Some(format!("waits for the maintenance window ({w})"));
            }
            _ => {}
        }
        let Some(to) = &self.auto else {
            return Some("not applied: automatic updates are off".into());
        };
        let image = Reference {
            tag: Some(tag.clone()),
            digest: Some(digest.clone()),
            ..target.reference.clone()
        }
        .to_string();
        let request = AutoUpdate {
            app: app.clone(),
            service: service.clone(),
            reference: c.reference.clone(),
            image,
            tag: tag.clone(),
            digest,
            reason: c.reason.clone(),
        };
        match to.try_send(request) {
            Ok(()) => Some(format!(
                "{tag} ({short}) handed to the deploy engine for {app}/{service}"
            )),
            Err(_) => Some("the deploy engine is busy; tried again next cycle".into()),
        }
    }

    async fn journal(&self, c: &ImageUpdate) {
        let mut attributes = BTreeMap::from([
            ("reference".to_owned(), c.reference.clone()),
            ("policy".to_owned(), c.policy.clone()),
            ("reason".to_owned(), c.reason.clone()),
        ]);
        if let Some(candidate) = &c.candidate {
            attributes.insert("tag".into(), candidate.tag.clone());
            attributes.insert("digest".into(), candidate.digest.clone());
        } else if let Some(d) = &c.tag_digest {
            attributes.insert("digest".into(), d.clone());
        }
        self.store
            .record(
                &self.live,
                capstan_model::CapstanAction::UpdateAvailable,
                c.reference.clone(),
                attributes,
            )
            .await;
    }
}

/// The tag filter a container's labels set; a pattern that does not parse is left out, with
/// a warning naming the label.
fn filter(labels: &BTreeMap<String, String>, container: &str) -> TagFilter {
    let pattern = |label: &str| {
        let text = labels.get(label)?;
        regex::Regex::new(text)
            .map_err(|e| warn!(container, label, error = %e, "the pattern does not parse; it is left out"))
            .ok()
    };
    let min_age = labels.get(MIN_AGE_LABEL).and_then(|text| {
        capstan_model::parse_duration_nanos(text)
            .map_err(|e| warn!(container, label = MIN_AGE_LABEL, error = %e, "the minimum age does not parse; it is left out"))
            .ok()
            .map(|ns| Duration::from_nanos(ns.max(0) as u64))
    });
    TagFilter {
        include: pattern(INCLUDE_LABEL),
        exclude: pattern(EXCLUDE_LABEL),
        min_age,
    }
}

fn key(reference: &str, running: Option<&str>) -> String {
    format!("{reference} {}", running.unwrap_or("-"))
}

/// A fraction in [0, 1) from the clock: jitter needs no better randomness.
fn rand_fraction() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1000) / 1000.0
}

async fn save(path: &std::path::Path, list: &[ImageUpdate]) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(list).map_err(std::io::Error::other)?;
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || capstan_store::files::replace(&path, &text))
        .await
        .map_err(std::io::Error::other)?
}
