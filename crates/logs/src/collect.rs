//! The collector: finds every container (managed by capstan or not), follows its `json-file`
//! log from its first line, enriches each line with where it came from, and stores batches,
//! each committed together with the read positions after it. A restart resumes from the last
//! commit's positions, so every line lands exactly once.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use capstan_engine::Engine;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::api::Followee;
use crate::origin::Origin;
use crate::store::{Entry, Store};
use crate::tail::{Position, Tailer};

/// How often the container list is refreshed.
const DISCOVER_EVERY: Duration = Duration::from_secs(1);
/// How long a cluster's manager has to list its tasks before collection goes on without it.
const CLUSTER_DISCOVERY: Duration = Duration::from_secs(2);
/// How long the collector sleeps when no container wrote anything.
const IDLE: Duration = Duration::from_millis(200);
/// Bytes read per container per round: with the commit after each round, this bounds memory.
const MAX_ROUND_BYTES_PER_CONTAINER: usize = 1024 * 1024;
/// Bytes read per round in all.
const MAX_ROUND_BYTES: usize = 8 * 1024 * 1024;
/// The memory the log pipeline may use by default (`[logs] memory`).
pub const DEFAULT_MEMORY: usize = 128 * 1024 * 1024;
/// How often a flood is committed (each commit makes what it covers durable and visible).
const COMMIT_EVERY: Duration = Duration::from_secs(2);

/// Which parser and multiline joiner a container gets when its labels do not say.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    /// Matches on these (a trailing `*` matches a prefix); unset ones match anything.
    pub app: Option<String>,
    pub service: Option<String>,
    pub container: Option<String>,
    pub image: Option<String>,
    /// A parser spec (see [`crate::parse`]).
    pub parser: Option<String>,
    /// A multiline spec (see [`crate::multiline`]).
    pub multiline: Option<String>,
}

/// How the collector treats lines.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only containers whose name matches one of these (a trailing `*` matches a prefix);
    /// empty: every container.
    pub containers: Vec<String>,
    /// Rules in order; the first match wins, container labels win over all.
    pub rules: Vec<Rule>,
    /// Container labels copied onto each line.
    pub labels: Vec<String>,
    /// Read every container through the engine's logs API, even when its json-file could be
    /// opened (`[logs] source = "api"`).
    pub api_only: bool,
    /// What the pipeline may hold in memory (`[logs] memory`; [`DEFAULT_MEMORY`] when 0): a
    /// quarter for the index writer's heap, a thirty-second for each read round (its lines grow
    /// several times over on their way into the store), the rest for the writer's queue (up to
    /// 10,000 lines waiting to be indexed, a fixed size in tantivy), merges and the
    /// allocator's slack.
    pub memory: usize,
    /// The longest line kept whole, in bytes (`[logs] max_line`; 0: the default); the cap of
    /// a multiline entry too.
    pub max_line: usize,
    /// The most lines a multiline entry joins (`[logs] max_group_lines`; 0: the default).
    pub max_group_lines: usize,
}

impl Options {
    fn memory(&self) -> usize {
        if self.memory == 0 {
            DEFAULT_MEMORY
        } else {
            self.memory
        }
    }

    /// Bytes of log text read per round, in all.
    fn round_bytes(&self) -> usize {
        (self.memory() / 32).clamp(256 * 1024, MAX_ROUND_BYTES)
    }

    /// The index writer's heap.
    pub fn writer_memory(&self) -> usize {
        self.memory() / 4
    }
}

fn glob(pattern: Option<&String>, value: &str) -> bool {
    match pattern {
        None => true,
        Some(p) => match p.strip_suffix('*') {
            Some(prefix) => value.starts_with(prefix),
            None => p == value,
        },
    }
}

/// The pipeline's counters (`capstan logs --stats`, `/metrics` later).
#[derive(Debug, Default)]
pub struct Stats {
    pub lines_read: AtomicU64,
    pub bytes_read: AtomicU64,
    pub lines_stored: AtomicU64,
    pub lines_parsed: AtomicU64,
    pub parse_failures: AtomicU64,
    pub bad_records: AtomicU64,
    pub rotated_away_files: AtomicU64,
    /// Lines in those files, estimated.
    pub rotated_away_lines: AtomicU64,
    /// Both, per container name.
    pub rotated_away: std::sync::Mutex<BTreeMap<String, ContainerLoss>>,
    pub commits: AtomicU64,
    pub store_errors: AtomicU64,
    pub containers: AtomicU64,
    /// Engine time of the newest stored line, ns.
    pub newest_ns: AtomicU64,
}

/// The counters as numbers.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct StatsSnapshot {
    pub lines_read: u64,
    pub bytes_read: u64,
    pub lines_stored: u64,
    pub lines_parsed: u64,
    pub parse_failures: u64,
    pub bad_records: u64,
    pub rotated_away_files: u64,
    pub rotated_away_lines: u64,
    pub commits: u64,
    pub store_errors: u64,
    pub containers: u64,
    pub last_seq: u64,
    pub lag_seconds: f64,
    /// Files and lines rotated away, per container name (only those that lost any).
    pub rotated_away_by_container: BTreeMap<String, ContainerLoss>,
}

/// What one container lost to rotation since capstan started.
#[derive(Debug, Clone, Copy, Default, Serialize, utoipa::ToSchema)]
pub struct ContainerLoss {
    pub files: u64,
    pub lines_estimated: u64,
}

impl Stats {
    pub fn snapshot(&self, last_seq: u64) -> StatsSnapshot {
        let newest = self.newest_ns.load(Ordering::Relaxed) as i64;
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        StatsSnapshot {
            lines_read: self.lines_read.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            lines_stored: self.lines_stored.load(Ordering::Relaxed),
            lines_parsed: self.lines_parsed.load(Ordering::Relaxed),
            parse_failures: self.parse_failures.load(Ordering::Relaxed),
            bad_records: self.bad_records.load(Ordering::Relaxed),
            rotated_away_files: self.rotated_away_files.load(Ordering::Relaxed),
            rotated_away_lines: self.rotated_away_lines.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
            store_errors: self.store_errors.load(Ordering::Relaxed),
            containers: self.containers.load(Ordering::Relaxed),
            last_seq,
            lag_seconds: if newest > 0 {
                (now - newest) as f64 / 1e9
            } else {
                0.0
            },
            rotated_away_by_container: self
                .rotated_away
                .lock()
                .map(|per| per.clone())
                .unwrap_or_default(),
        }
    }
}

/// Lines the engine rotated away from one container before capstan read them.
#[derive(Debug, Clone, Serialize)]
pub struct RotatedAway {
    pub container_id: String,
    pub container: String,
    pub files: u64,
    /// `files` is the kernel's count of the rotations (capstan kept the log open across
    /// them); otherwise it is estimated, like the lines always are.
    pub files_exact: bool,
    /// Estimated from the size of the files lost and the weight of the records around them,
    /// or, when not even their number is known, from the gap in engine time and the
    /// writer's pace (json-file records carry no sequence numbers).
    pub lines_estimated: u64,
}

struct Followed {
    /// Where its lines come from, per stream (the store keeps each once).
    stdout: Arc<Origin>,
    stderr: Arc<Origin>,
    parser: crate::parse::Parser,
    multiline: Option<crate::multiline::Multiline>,
    reader: crate::reader::Reader,
    /// The container is gone: drop it once everything is read.
    gone: bool,
    /// The last error reading its log, said once (not every round it repeats).
    read_error: Option<String>,
}

impl Followed {
    /// `line` of this container, parsed and ready for the store.
    fn entry(&mut self, line: crate::jsonfile::Line, inode: u64, stats: &Stats) -> Entry {
        let parsed = self.parser.parse(&line.text);
        if parsed.failed {
            stats.parse_failures.fetch_add(1, Ordering::Relaxed);
        } else if !parsed.fields.is_empty() {
            stats.lines_parsed.fetch_add(1, Ordering::Relaxed);
        }
        let origin = match line.stream.as_str() {
            "stdout" => Arc::clone(&self.stdout),
            "stderr" => Arc::clone(&self.stderr),
            other => Arc::new(self.stdout.with_stream(other)),
        };
        // a cluster's task is read through a manager, a pod's log on its node, a build's log
        // is capstan's: their ids stand for a container's (the inode tells files apart)
        let build = format!("build{}", origin.build);
        let cid = if !origin.container_id.is_empty() {
            &origin.container_id
        } else if !origin.task.is_empty() {
            &origin.task
        } else if !origin.pod.is_empty() {
            &origin.pod
        } else {
            &build
        };
        Entry {
            // the engine time too: the filesystem gives a deleted file's inode to a new file,
            // whose records then sit at the same offsets (an Elasticsearch sink would refuse
            // the second as a repeat)
            id: format!(
                "{}:{inode}:{}:{:x}",
                &cid[..cid.len().min(12)],
                line.offset,
                line.time_ns
            ),
            origin,
            time_nano: line.time_ns,
            raw: line.text,
            message: parsed.message.unwrap_or_default(),
            level: parsed.level,
            fields: parsed.fields,
            fields_are_raw: parsed.fields_are_raw,
            parse_error: parsed.failed,
            truncated: line.truncated,
        }
    }
}

/// The collector task.
pub struct Collector {
    engine: Engine,
    options: Options,
    store: Arc<Store>,
    host: String,
    stats: Arc<Stats>,
    committed: watch::Sender<u64>,
    losses: Option<tokio::sync::mpsc::Sender<RotatedAway>>,
    /// Counts every followed log's rotations (one inotify instance for all).
    rotations: Option<Arc<crate::rotations::Rotations>>,
    /// Swarm clusters whose tasks' output is collected too, through a manager.
    clusters: Vec<Cluster>,
    /// Where the pipeline writes its builds' logs (`<dir>/<app>/<service>/<id>.log`).
    build_logs: Option<PathBuf>,
    /// A Kubernetes node's pod logs (`<dir>/<namespace>_<pod>_<uid>/<container>/<N>.log`).
    pod_logs: Option<PathBuf>,
    /// Where a pod's labels and annotations are asked for (its cluster's API).
    pod_labels: Option<Arc<dyn PodLabels>>,
    /// Whether the engine's containers are collected (no engine on a node agent).
    engine_containers: bool,
}

/// A pod's labels and annotations, from its cluster's API: the allowlisted ones go onto its
/// lines (as a container's labels do), and `io.capstan.logs.parser` / `.multiline` choose its
/// parser and joiner.
#[async_trait::async_trait]
pub trait PodLabels: Send + Sync + std::fmt::Debug {
    /// The labels and annotations of pod `pod` in `namespace` (annotations win).
    ///
    /// # Errors
    /// The cluster did not say: the pod's lines carry none.
    async fn labels(&self, namespace: &str, pod: &str) -> Result<BTreeMap<String, String>, String>;
}

/// How long the API is given to say a new pod's labels before its lines go on without them.
const POD_LABELS_WITHIN: Duration = Duration::from_secs(2);

/// A Swarm cluster (a `[[targets]]` entry) whose tasks' output is collected through a manager.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The target's name.
    pub target: String,
    /// One of its managers.
    pub engine: Engine,
}

/// The label capstan's services carry (their app).
const APP_LABEL: &str = "io.capstan.app";

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector").finish_non_exhaustive()
    }
}

impl Collector {
    /// A collector storing into `store`; `committed` is told the last sequence number after
    /// every commit (live tails wait on it).
    pub fn new(
        engine: Engine,
        store: Arc<Store>,
        committed: watch::Sender<u64>,
        options: Options,
    ) -> Self {
        let host = capstan_model::host_name();
        Self {
            engine,
            options,
            store,
            host,
            stats: Arc::default(),
            committed,
            losses: None,
            rotations: crate::rotations::Rotations::new(),
            clusters: Vec::new(),
            build_logs: None,
            pod_logs: None,
            pod_labels: None,
            engine_containers: true,
        }
    }

    /// Collects no engine's containers: there is none (a Kubernetes node's agent).
    #[must_use]
    pub fn without_engine(mut self) -> Self {
        self.engine_containers = false;
        self
    }

    /// Asks `labels` for each new pod's labels and annotations.
    #[must_use]
    pub fn with_pod_labels(mut self, labels: Arc<dyn PodLabels>) -> Self {
        self.pod_labels = Some(labels);
        self
    }

    /// Collects the output of capstan's tasks on `clusters` too, each through a manager's
    /// task logs API: every node's tasks, from one place.
    #[must_use]
    pub fn with_clusters(mut self, clusters: Vec<Cluster>) -> Self {
        self.clusters = clusters;
        self
    }

    /// Collects the CRI logs of a Kubernetes node's pods under `dir` too (the kubelet's
    /// `/var/log/pods`): each container instance's `<N>.log` and its rotations, until its
    /// file is gone.
    #[must_use]
    pub fn with_pod_logs(mut self, dir: PathBuf) -> Self {
        self.pod_logs = Some(dir);
        self
    }

    /// Collects the builds' logs the pipeline writes under `dir` too (as `json-file`
    /// records), each until its `.done` beside it says the build ended.
    #[must_use]
    pub fn with_build_logs(mut self, dir: PathBuf) -> Self {
        self.build_logs = Some(dir);
        self
    }

    /// Tells `tx` of every loss to rotation (the daemon journals each as an event).
    #[must_use]
    pub fn with_losses(mut self, tx: tokio::sync::mpsc::Sender<RotatedAway>) -> Self {
        self.losses = Some(tx);
        self
    }

    /// Its counters.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// Runs until `shutdown`; what was read but not committed is read again next time.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut followed: HashMap<String, Followed> = HashMap::new();
        let mut positions = self.store.checkpoint().positions;
        let mut last_discovery: Option<Instant> = None;
        // build logs read to their end (their positions stay in `positions`)
        let mut builds_read: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut last_commit = Instant::now();
        // lines added to the store and not committed yet
        let mut uncommitted: u64 = 0;
        // the store's rollbacks when the first of them was added: another writer's failure
        // (a fleet host's lines, `Store::append_remote`) drops them too, and they are read again
        let mut since_rollbacks = self.store.rollbacks();
        info!(
            containers = positions.len(),
            "log collection resumes from the last commit"
        );
        // pod uid → its labels and annotations, asked once
        let mut pods_labels: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            if last_discovery.is_none_or(|t| t.elapsed() >= DISCOVER_EVERY) {
                last_discovery = Some(Instant::now());
                if self.engine_containers
                    && let Err(e) = self.discover(&mut followed, &mut positions).await
                {
                    debug!(error = %e, "cannot list containers; following the known ones");
                }
                if let Some(dir) = &self.build_logs {
                    self.discover_builds(dir, &mut followed, &mut positions, &builds_read);
                }
                if let Some(dir) = &self.pod_logs {
                    self.discover_pods(dir, &mut followed, &mut positions, &mut pods_labels)
                        .await;
                }
                for cluster in &self.clusters {
                    // a manager that does not answer must not hold up every other log
                    let found = tokio::time::timeout(
                        CLUSTER_DISCOVERY,
                        self.discover_tasks(cluster, &mut followed, &mut positions),
                    )
                    .await;
                    match found {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            debug!(target = %cluster.target, error = %e, "cannot list the cluster's tasks; following the known ones");
                        }
                        Err(_) => {
                            debug!(target = %cluster.target, "the cluster's manager does not answer; following the known tasks");
                        }
                    }
                }
            }
            // read a round (blocking file I/O)
            let work: Vec<(String, Followed)> = followed.drain().collect();
            let round_bytes = self.options.round_bytes();
            let stats = Arc::clone(&self.stats);
            let Round {
                work,
                entries,
                bad,
                lost,
                bytes,
                more,
            } = tokio::task::spawn_blocking(move || read_round(work, round_bytes, &stats))
                .await
                .unwrap_or_default();
            followed.extend(work);
            self.stats.bad_records.fetch_add(bad, Ordering::Relaxed);
            for loss in lost {
                self.rotated_away(loss);
            }
            if entries.is_empty() {
                if uncommitted > 0 {
                    let store = Arc::clone(&self.store);
                    let done = tokio::task::spawn_blocking(move || store.commit()).await;
                    if self.store.rollbacks() != since_rollbacks {
                        self.store.discard();
                        self.rewind(&mut followed, &mut positions, &mut uncommitted);
                        continue;
                    }
                    match done {
                        Ok(Ok(Some(seq))) => {
                            self.committed(seq, &mut uncommitted);
                            last_commit = Instant::now();
                        }
                        Ok(Ok(None)) => uncommitted = 0,
                        _ => {
                            self.rewind(&mut followed, &mut positions, &mut uncommitted);
                            continue;
                        }
                    }
                }
                // nothing new: forget containers that are gone and fully read (a build's log
                // keeps its position while its file is there: it is not read again)
                followed.retain(|id, f| {
                    if f.gone && id.starts_with(BUILD_KEY) {
                        positions.insert(id.clone(), f.reader.position().clone());
                        builds_read.insert(id.clone());
                    }
                    !f.gone
                });
                self.stats
                    .containers
                    .store(followed.len() as u64, Ordering::Relaxed);
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(IDLE) => {}
                }
                continue;
            }
            self.stats
                .lines_read
                .fetch_add(entries.len() as u64, Ordering::Relaxed);
            self.stats
                .bytes_read
                .fetch_add(bytes as u64, Ordering::Relaxed);
            let positions_now: BTreeMap<String, Position> = followed
                .iter()
                .map(|(id, f)| (id.clone(), f.reader.position().clone()))
                .chain(positions.iter().map(|(k, v)| (k.clone(), v.clone())))
                .collect();
            let store = Arc::clone(&self.store);
            let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
            let newest = entries
                .iter()
                .map(|l| l.time_nano)
                .max()
                .unwrap_or_default();
            // when every container is read to its end, at once (a live tail sees the line right
            // away); under a flood, every COMMIT_EVERY: each commit ends a segment, and
            // segments are what the index writer and its merges pay for
            let due = !more || last_commit.elapsed() >= COMMIT_EVERY;
            let count = entries.len() as u64;
            if uncommitted == 0 {
                since_rollbacks = self.store.rollbacks();
            }
            let result = tokio::task::spawn_blocking(move || {
                store.add(entries, positions_now, now)?;
                if due { store.commit() } else { Ok(None) }
            })
            .await;
            match result {
                // another writer's failure dropped lines added before these: all of them go,
                // and are read again from the last commit
                Ok(Ok(_)) if self.store.rollbacks() != since_rollbacks => {
                    self.store.discard();
                    self.rewind(&mut followed, &mut positions, &mut uncommitted);
                }
                Ok(Ok(committed)) => {
                    uncommitted += count;
                    self.stats
                        .newest_ns
                        .fetch_max(newest.max(0) as u64, Ordering::Relaxed);
                    if let Some(seq) = committed {
                        self.committed(seq, &mut uncommitted);
                        last_commit = Instant::now();
                    }
                }
                Ok(Err(e)) => {
                    warn!(error = %e, "cannot store log lines");
                    self.rewind(&mut followed, &mut positions, &mut uncommitted);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => warn!(error = %e, "the log store task failed"),
            }
        }
    }

    /// After a failed add or commit: positions advanced past lines that were not stored, so
    /// every container is read again from the last commit.
    fn rewind(
        &self,
        followed: &mut HashMap<String, Followed>,
        positions: &mut BTreeMap<String, Position>,
        uncommitted: &mut u64,
    ) {
        self.stats.store_errors.fetch_add(1, Ordering::Relaxed);
        warn!("reading every container again from the last commit");
        *uncommitted = 0;
        followed.clear();
        *positions = self.store.checkpoint().positions;
    }

    /// Counts a loss to rotation, says so, and passes it on.
    fn rotated_away(&self, loss: RotatedAway) {
        self.stats
            .rotated_away_files
            .fetch_add(loss.files, Ordering::Relaxed);
        self.stats
            .rotated_away_lines
            .fetch_add(loss.lines_estimated, Ordering::Relaxed);
        if let Ok(mut per) = self.stats.rotated_away.lock() {
            let e = per.entry(loss.container.clone()).or_default();
            e.files += loss.files;
            e.lines_estimated += loss.lines_estimated;
        }
        warn!(
            container = %loss.container,
            files = loss.files,
            lines_estimated = loss.lines_estimated,
            "the engine rotated log files away before capstan read them"
        );
        if let Some(tx) = &self.losses
            && tx.try_send(loss).is_err()
        {
            debug!("the loss is counted but not journaled: the journal's queue is full");
        }
    }

    /// Counts a commit and tells live tails.
    fn committed(&self, seq: u64, uncommitted: &mut u64) {
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        self.stats
            .lines_stored
            .fetch_add(std::mem::take(uncommitted), Ordering::Relaxed);
        // (another writer may have told of a later commit already)
        self.committed.send_if_modified(|at| {
            let newer = seq > *at;
            if newer {
                *at = seq;
            }
            newer
        });
    }

    /// Follows new containers and marks removed ones.
    async fn discover(
        &self,
        followed: &mut HashMap<String, Followed>,
        positions: &mut BTreeMap<String, Position>,
    ) -> Result<(), capstan_engine::Error> {
        let list = self.engine.list_containers(true).await?;
        let present: std::collections::HashSet<&str> = list.iter().map(|c| c.id.as_str()).collect();
        // (a cluster's tasks are the cluster's to say)
        let local = |id: &str| {
            !id.starts_with(TASK_KEY) && !id.starts_with(BUILD_KEY) && !id.starts_with(POD_KEY)
        };
        for (id, f) in followed.iter_mut() {
            if local(id) && !present.contains(id.as_str()) {
                f.gone = true;
            }
        }
        // a container removed while capstan was down: its position goes with it
        positions.retain(|id, _| {
            !local(id) || present.contains(id.as_str()) || followed.contains_key(id)
        });
        for c in &list {
            if followed.contains_key(&c.id)
                || !(self.options.containers.is_empty()
                    || self
                        .options
                        .containers
                        .iter()
                        .any(|p| glob(Some(p), &c.name)))
            {
                continue;
            }
            let Ok(json) = self.engine.inspect_container_json(&c.id).await else {
                continue;
            };
            let driver = json["HostConfig"]["LogConfig"]["Type"]
                .as_str()
                .unwrap_or_default();
            let path = json["LogPath"].as_str().unwrap_or_default();
            if driver == "none" {
                continue;
            }
            // the file when capstan can open it; else (another driver, a remote engine) the
            // logs API, which the engine serves for every driver but `none` (dual logging)
            let by_file = driver == "json-file"
                && !path.is_empty()
                && !self.options.api_only
                && self.engine.is_local()
                && std::fs::File::open(path).is_ok();
            let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
            let source = Origin {
                host: self.host.clone(),
                container_id: c.id.clone(),
                container: c.name.clone(),
                image: c.image.clone(),
                image_id: c.image_id.clone(),
                app: label("io.capstan.app"),
                service: c
                    .labels
                    .get("io.capstan.service")
                    .or_else(|| c.labels.get("com.docker.compose.service"))
                    .cloned()
                    .unwrap_or_default(),
                replica: c
                    .labels
                    .get("io.capstan.replica")
                    .or_else(|| c.labels.get("com.docker.compose.container-number"))
                    .and_then(|r| r.parse().ok()),
                project: label("com.docker.compose.project"),
                labels: self
                    .options
                    .labels
                    .iter()
                    .filter_map(|k| c.labels.get(k).map(|v| (k.clone(), v.clone())))
                    .collect(),
                ..Origin::default()
            };
            let mut pos = positions.remove(&c.id).unwrap_or_default();
            pos.joiner.max_line = self.options.max_line;
            debug!(container = %c.name, path, driver, by_file, "following log");
            let reader = if by_file {
                crate::reader::Reader::File(
                    Tailer::new(&PathBuf::from(path), pos).with_rotations(self.rotations.as_ref()),
                )
            } else {
                crate::reader::Reader::Api(crate::api::ApiFollower::new(
                    self.engine.clone(),
                    Followee::Container,
                    &c.id,
                    &c.name,
                    pos,
                ))
            };
            let label = |k: &str| c.labels.get(k).cloned();
            followed.insert(c.id.clone(), self.followed(&label, &source, reader));
        }
        self.stats
            .containers
            .store(followed.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Follows the new tasks of capstan's services on `cluster`, and marks those the cluster
    /// no longer lists (its task history is short) as gone. A task is followed from its first
    /// line to its end, through the manager, whatever its node.
    async fn discover_tasks(
        &self,
        cluster: &Cluster,
        followed: &mut HashMap<String, Followed>,
        positions: &mut BTreeMap<String, Position>,
    ) -> Result<(), capstan_engine::Error> {
        let services = cluster.engine.swarm_services(APP_LABEL, None).await?;
        let ids: Vec<String> = services.iter().map(|s| s.id.clone()).collect();
        let tasks = cluster.engine.swarm_tasks(&ids).await?;
        let prefix = format!("{TASK_KEY}{}:", cluster.target);
        let key = |task: &str| format!("{prefix}{task}");
        let present: std::collections::HashSet<String> = tasks.iter().map(|t| key(&t.id)).collect();
        for (id, f) in followed.iter_mut() {
            if id.starts_with(&prefix) && !present.contains(id) {
                f.gone = true;
            }
        }
        positions.retain(|id, _| {
            !id.starts_with(&prefix) || present.contains(id) || followed.contains_key(id)
        });
        // a task that never ran has no output
        let new: Vec<_> = tasks
            .iter()
            .filter(|t| !followed.contains_key(&key(&t.id)))
            .filter(|t| {
                !matches!(
                    t.state.as_str(),
                    "new" | "pending" | "assigned" | "accepted" | "rejected"
                )
            })
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let hostnames = cluster.engine.swarm_hostnames().await?;
        for t in new {
            let service = services
                .iter()
                .find(|s| s.id == t.service_id)
                .map_or(t.service_id.as_str(), |s| s.name.as_str());
            let label = |k: &str| t.labels.get(k).cloned();
            let node = hostnames
                .get(&t.node_id)
                .cloned()
                .unwrap_or_else(|| t.node_id.clone());
            let source = Origin {
                host: node.clone(),
                // the container's name on its node
                container: match t.slot {
                    Some(slot) => format!("{service}.{slot}.{}", t.id),
                    None => format!("{service}.{}.{}", t.node_id, t.id),
                },
                image: t.image.clone(),
                app: label(APP_LABEL).unwrap_or_default(),
                service: label("io.capstan.service").unwrap_or_default(),
                replica: t.slot.and_then(|s| u32::try_from(s).ok()),
                project: label("com.docker.compose.project").unwrap_or_default(),
                labels: self
                    .options
                    .labels
                    .iter()
                    .filter_map(|k| label(k).map(|v| (k.clone(), v)))
                    .collect(),
                node,
                task: t.id.clone(),
                ..Origin::default()
            };
            let id = key(&t.id);
            let mut pos = positions.remove(&id).unwrap_or_default();
            pos.joiner.max_line = self.options.max_line;
            debug!(task = %source.container, node = %source.node, "following a task's log");
            let reader = crate::reader::Reader::Api(crate::api::ApiFollower::new(
                cluster.engine.clone(),
                Followee::Task,
                &t.id,
                &source.container,
                pos,
            ));
            followed.insert(id, self.followed(&label, &source, reader));
        }
        self.stats
            .containers
            .store(followed.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Follows the build logs under `dir` not read to their end yet; marks those whose build
    /// ended as gone (read to their end, then forgotten), and forgets the positions of logs
    /// no longer there.
    fn discover_builds(
        &self,
        dir: &Path,
        followed: &mut HashMap<String, Followed>,
        positions: &mut BTreeMap<String, Position>,
        read: &std::collections::HashSet<String>,
    ) {
        let mut present = std::collections::HashSet::new();
        let apps = std::fs::read_dir(dir).into_iter().flatten().flatten();
        for app in apps {
            let services = std::fs::read_dir(app.path())
                .into_iter()
                .flatten()
                .flatten();
            for service in services {
                let logs = std::fs::read_dir(service.path())
                    .into_iter()
                    .flatten()
                    .flatten();
                for log in logs {
                    let path = log.path();
                    if path.extension().and_then(|e| e.to_str()) != Some("log") {
                        continue;
                    }
                    let Some(id) = path.file_stem().and_then(|s| s.to_str()) else {
                        continue;
                    };
                    let key = format!("{BUILD_KEY}{id}");
                    present.insert(key.clone());
                    let ended = path.with_extension("done").exists();
                    if let Some(f) = followed.get_mut(&key) {
                        f.gone |= ended;
                        continue;
                    }
                    if read.contains(&key) {
                        continue;
                    }
                    let app_name = app.file_name().to_string_lossy().into_owned();
                    let service_name = service.file_name().to_string_lossy().into_owned();
                    let source = Origin {
                        host: self.host.clone(),
                        container: format!("build-{id}"),
                        app: app_name.clone(),
                        service: service_name.clone(),
                        build: id.to_owned(),
                        ..Origin::default()
                    };
                    let mut pos = positions.remove(&key).unwrap_or_default();
                    pos.joiner.max_line = self.options.max_line;
                    let reader = crate::reader::Reader::File(Tailer::new(&path, pos));
                    let label = |k: &str| match k {
                        "io.capstan.app" => Some(app_name.clone()),
                        "io.capstan.service" => Some(service_name.clone()),
                        _ => None,
                    };
                    let mut f = self.followed(&label, &source, reader);
                    f.gone = ended;
                    followed.insert(key, f);
                }
            }
        }
        positions.retain(|id, _| !id.starts_with(BUILD_KEY) || present.contains(id));
    }

    /// Follows the CRI logs under `dir` (`<namespace>_<pod>_<uid>/<container>/<N>.log`, one
    /// file per instance of a container, `N` its restarts); marks those whose file is gone
    /// (read to their end, then forgotten), and forgets their positions.
    async fn discover_pods(
        &self,
        dir: &Path,
        followed: &mut HashMap<String, Followed>,
        positions: &mut BTreeMap<String, Position>,
        labels_of: &mut HashMap<String, BTreeMap<String, String>>,
    ) {
        // the new pods' labels, asked all at once: one slow answer holds up no other log
        // longer than POD_LABELS_WITHIN
        if self.pod_labels.is_some() {
            let new: Vec<(String, String, String)> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|d| {
                    let name = d.file_name().to_string_lossy().into_owned();
                    let mut parts = name.splitn(3, '_');
                    let (ns, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
                    (!labels_of.contains_key(uid))
                        .then(|| (ns.to_owned(), pod.to_owned(), uid.to_owned()))
                })
                .collect();
            let asked = futures_util::future::join_all(
                new.iter().map(|(ns, pod, _)| self.pod_labels_of(ns, pod)),
            )
            .await;
            for ((_, _, uid), labels) in new.into_iter().zip(asked) {
                labels_of.insert(uid, labels);
            }
        }
        let mut present = std::collections::HashSet::new();
        for pod_dir in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let pod_name = pod_dir.file_name().to_string_lossy().into_owned();
            // <namespace>_<pod>_<uid>: neither a namespace nor a pod name has `_`
            let mut parts = pod_name.splitn(3, '_');
            let (Some(namespace), Some(pod), Some(uid)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let containers = std::fs::read_dir(pod_dir.path())
                .into_iter()
                .flatten()
                .flatten();
            for container in containers {
                let container_name = container.file_name().to_string_lossy().into_owned();
                let logs = std::fs::read_dir(container.path())
                    .into_iter()
                    .flatten()
                    .flatten();
                for log in logs {
                    let file = log.file_name().to_string_lossy().into_owned();
                    let Some(instance) = file
                        .strip_suffix(".log")
                        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    else {
                        continue;
                    };
                    let key = format!("{POD_KEY}{uid}/{container_name}/{instance}");
                    present.insert(key.clone());
                    if followed.contains_key(&key) {
                        continue;
                    }
                    let pod_labels = labels_of.get(uid).cloned().unwrap_or_default();
                    let source = Origin {
                        host: self.host.clone(),
                        container: container_name.clone(),
                        namespace: namespace.to_owned(),
                        pod: pod.to_owned(),
                        labels: self
                            .options
                            .labels
                            .iter()
                            .filter_map(|k| pod_labels.get(k).map(|v| (k.clone(), v.clone())))
                            .collect(),
                        ..Origin::default()
                    };
                    let mut pos = positions.remove(&key).unwrap_or_default();
                    pos.joiner.max_line = self.options.max_line;
                    let reader = crate::reader::Reader::File(
                        Tailer::new(&log.path(), pos)
                            .with_format(crate::tail::Format::Cri)
                            .with_rotations(self.rotations.as_ref()),
                    );
                    let f = self.followed(&|k| pod_labels.get(k).cloned(), &source, reader);
                    followed.insert(key, f);
                }
            }
        }
        // a pod gone from the node is not asked about again
        let dirs: std::collections::HashSet<String> = present
            .iter()
            .filter_map(|k| k.strip_prefix(POD_KEY)?.split('/').next())
            .map(str::to_owned)
            .collect();
        labels_of.retain(|uid, _| dirs.contains(uid));
        for (key, f) in followed.iter_mut() {
            if key.starts_with(POD_KEY) && !present.contains(key) {
                f.gone = true;
            }
        }
        positions.retain(|id, _| !id.starts_with(POD_KEY) || present.contains(id));
    }

    /// A container's (or task's) log as followed: its origin, and the parser and multiline
    /// joiner its labels (`label`), or else the first matching rule, give it.
    /// A pod's labels and annotations as its cluster says them, or none (no cluster to ask,
    /// or no answer in time).
    async fn pod_labels_of(&self, namespace: &str, pod: &str) -> BTreeMap<String, String> {
        let Some(asker) = &self.pod_labels else {
            return BTreeMap::new();
        };
        match tokio::time::timeout(POD_LABELS_WITHIN, asker.labels(namespace, pod)).await {
            Ok(Ok(labels)) => labels,
            Ok(Err(e)) => {
                warn!(namespace, pod, error = %e, "cannot ask the cluster for a pod's labels; its lines go on without them");
                BTreeMap::new()
            }
            Err(_) => {
                warn!(
                    namespace,
                    pod,
                    "the cluster did not say a pod's labels within 2 s; its lines go on without them"
                );
                BTreeMap::new()
            }
        }
    }

    fn followed(
        &self,
        label: &dyn Fn(&str) -> Option<String>,
        source: &Origin,
        reader: crate::reader::Reader,
    ) -> Followed {
        let rule = self.options.rules.iter().find(|r| {
            glob(r.app.as_ref(), &source.app)
                && glob(r.service.as_ref(), &source.service)
                && glob(r.container.as_ref(), &source.container)
                && glob(r.image.as_ref(), &source.image)
        });
        let parser_spec = label("io.capstan.logs.parser")
            .or_else(|| rule.and_then(|r| r.parser.clone()))
            .unwrap_or_default();
        let parser = crate::parse::Parser::from_spec(&parser_spec).unwrap_or_else(|e| {
            warn!(container = %source.container, error = %e, "bad parser; the container's lines stay raw and auto-parsed");
            crate::parse::Parser::Auto
        });
        let multiline = label("io.capstan.logs.multiline")
            .or_else(|| rule.and_then(|r| r.multiline.clone()))
            .and_then(|spec| match crate::multiline::Multiline::from_spec(&spec) {
                Ok(m) => Some(m.with_limits(self.options.max_line, self.options.max_group_lines)),
                Err(e) => {
                    warn!(container = %source.container, error = %e, "bad multiline; lines are not joined");
                    None
                }
            });
        Followed {
            stdout: Arc::new(source.with_stream("stdout")),
            stderr: Arc::new(source.with_stream("stderr")),
            parser,
            multiline,
            reader,
            gone: false,
            read_error: None,
        }
    }
}

/// How a pod's container log is keyed among the followed ones:
/// `pod:<pod uid>/<container>/<instance>`.
const POD_KEY: &str = "pod:";

/// How a build's log is keyed among the followed ones: `build:<id>`.
const BUILD_KEY: &str = "build:";

/// How the log of a cluster's task is keyed among the followed ones:
/// `task:<target>:<task id>`.
const TASK_KEY: &str = "task:";

/// What one round read from every followed container.
#[derive(Default)]
struct Round {
    /// The containers, handed back.
    work: Vec<(String, Followed)>,
    /// The lines read, parsed and enriched.
    entries: Vec<Entry>,
    /// Records that were not the engine's JSON.
    bad: u64,
    /// What the engine rotated away before it was read.
    lost: Vec<RotatedAway>,
    /// Bytes of log text read.
    bytes: usize,
    /// Some container has more written than this round took.
    more: bool,
}

/// Reads up to `round_bytes` in all (and [`MAX_ROUND_BYTES_PER_CONTAINER`] or a quarter of it
/// from each container), joining multiline groups; blocking file I/O, run off the async
/// threads.
fn read_round(mut work: Vec<(String, Followed)>, round_bytes: usize, stats: &Stats) -> Round {
    let per_container = MAX_ROUND_BYTES_PER_CONTAINER.min(round_bytes / 4);
    let mut round = Round::default();
    let mut budget = round_bytes;
    for (_, f) in &mut work {
        if budget == 0 {
            round.more = true;
            break;
        }
        let n = read_container(f, per_container.min(budget), stats, &mut round);
        budget = budget.saturating_sub(n);
    }
    round.work = work;
    round
}

/// Reads up to `limit` bytes of one container into `round`; returns the bytes read. A read
/// error is said once until it changes, and tried again next round.
fn read_container(f: &mut Followed, limit: usize, stats: &Stats, round: &mut Round) -> usize {
    let mut batch = match f.reader.read(limit) {
        Ok(batch) => batch,
        Err(e) => {
            let error = e.to_string();
            if f.read_error.as_ref() != Some(&error) {
                warn!(container = %f.stdout.container, %error, "cannot read the log; trying again each round");
                f.read_error = Some(error);
            }
            return 0;
        }
    };
    f.read_error = None;
    round.more |= batch.more;
    let flush_all = f.gone && batch.lines.is_empty();
    if flush_all {
        // everything the engine wrote is read: finish pieces left
        batch.lines = f.reader.flush();
        batch.inodes = vec![f.reader.position().inode; batch.lines.len()];
    }
    if let Some(ml) = &f.multiline {
        let inode = f.reader.position().inode;
        let mut joined = Vec::new();
        let groups = f.reader.groups_mut();
        for (line, ino) in batch.lines.into_iter().zip(batch.inodes) {
            joined.extend(ml.feed(groups, line).map(|l| (l, ino)));
        }
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        joined.extend(
            crate::multiline::Multiline::due(groups, now, flush_all)
                .into_iter()
                .map(|l| (l, inode)),
        );
        (batch.lines, batch.inodes) = joined.into_iter().unzip();
    }
    round.bad += batch.bad;
    if batch.lost_files > 0 {
        round.lost.push(RotatedAway {
            container_id: f.stdout.container_id.clone(),
            container: f.stdout.container.clone(),
            files: batch.lost_files,
            files_exact: batch.lost_files_exact,
            lines_estimated: batch.lost_lines,
        });
    }
    let n: usize = batch.lines.iter().map(|l| l.text.len()).sum();
    round.bytes += n;
    round.entries.reserve(batch.lines.len());
    for (line, inode) in batch.lines.into_iter().zip(batch.inodes) {
        round.entries.push(f.entry(line, inode, stats));
    }
    n
}
