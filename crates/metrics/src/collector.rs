//! The collection loop: every interval, each running container's cgroup files and network
//! counters, kept as the latest sample per container for `/metrics`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use capstan_engine::Engine;
use capstan_model::Event;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cgroup::{CgroupSample, Cgroups, NetSample, net_dev};
use capstan_model::ContainerStats;
use capstan_model::Exposition;

/// One container's latest reading.
#[derive(Debug, Clone)]
pub struct ContainerSample {
    pub id: String,
    pub name: String,
    pub image: String,
    /// The labels that say what the container is part of (app, service, Compose project),
    /// as cAdvisor names them: `container_label_<key with . and - as _>`.
    pub labels: Vec<(String, String)>,
    pub cgroup: CgroupSample,
    pub net: Option<NetSample>,
    /// Unix seconds of the reading.
    pub at: f64,
}

/// Container labels exported (and kept in the history) with every series.
const EXPORTED_LABELS: [&str; 4] = [
    "io.capstan.app",
    "io.capstan.service",
    "com.docker.compose.project",
    "com.docker.compose.service",
];

/// A container label as cAdvisor exports it: `container_label_` and the key, `.`/`-` as `_`.
pub fn label_name(key: &str) -> String {
    let mut out = String::from("container_label_");
    out.extend(
        key.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
    );
    out
}

/// A running container, as the collector reads it.
#[derive(Debug, Clone)]
struct Running {
    id: String,
    name: String,
    image: String,
    labels: Vec<(String, String)>,
    pid: Option<u32>,
}

impl Running {
    /// This container's reading, taken now.
    fn reading(self, cgroup: CgroupSample, net: Option<NetSample>) -> ContainerSample {
        ContainerSample {
            id: self.id,
            name: self.name,
            image: self.image,
            labels: self.labels,
            cgroup,
            net,
            at: now(),
        }
    }
}

/// The container list is asked of the engine at least this often, events or not.
const RELIST: Duration = Duration::from_secs(30);

/// Readings kept per container in memory: enough for rates over the last few minutes.
const KEEP: Duration = Duration::from_mins(5);

/// The recent readings of every running container, shared with the API.
#[derive(Debug, Default)]
pub struct Metrics {
    recent: RwLock<HashMap<String, VecDeque<ContainerSample>>>,
}

/// Where readings come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Source {
    /// cgroup files when the engine is on this host and they are there, else the stats API.
    #[default]
    Auto,
    /// cgroup files only.
    Cgroups,
    /// The engine's stats API (a remote engine): a request per container per reading.
    Engine,
}

/// How the collector runs.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    pub source: Source,
    /// Between readings (default 5 s, at least 1 s).
    pub interval: Duration,
    /// Where the cgroup hierarchy is mounted (`/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
    /// Where processes are seen (`/proc`).
    pub proc_root: PathBuf,
    /// Where each sweep (and the host's figures) is kept, when history is on.
    pub history: Option<Arc<crate::History>>,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            source: Source::Auto,
            interval: Duration::from_secs(5),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            proc_root: PathBuf::from("/proc"),
            history: None,
        }
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Metrics {
    /// The latest reading of every running container, by name.
    pub fn latest(&self) -> Vec<ContainerSample> {
        let recent = self.recent.read().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<ContainerSample> =
            recent.values().filter_map(|q| q.back().cloned()).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Every running container's use over the last `window`: rates between the oldest
    /// reading within it and the newest; without a window, between the last two readings.
    pub fn stats(&self, window: Option<Duration>) -> Vec<ContainerStats> {
        let recent = self.recent.read().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<ContainerStats> = recent
            .values()
            .filter_map(|q| {
                let last = q.back()?;
                let first = match window {
                    Some(w) => q
                        .iter()
                        .find(|s| s.at >= last.at - w.as_secs_f64() - 1e-3)
                        .unwrap_or(last),
                    None => q.iter().rev().nth(1).unwrap_or(last),
                };
                Some(stats_between(first, last))
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Collects until `shutdown`. The running containers are listed at start, again when
    /// `events` (the journal's live events) says a container started, stopped or went away,
    /// and at least every [`RELIST`]; between those, a sweep asks the engine nothing.
    pub async fn run(
        self: Arc<Self>,
        engine: Engine,
        config: CollectorConfig,
        mut events: broadcast::Receiver<Event>,
        shutdown: CancellationToken,
    ) {
        let local = engine.is_local();
        let cgroups = match config.source {
            Source::Engine => None,
            Source::Auto if !local => None,
            _ => Cgroups::detect(&config.cgroup_root),
        };
        if cgroups.is_none() && config.source == Source::Cgroups {
            warn!(root = %config.cgroup_root.display(), "no cgroup hierarchy found: container metrics are not collected");
            return;
        }
        let host_memory = if cgroups.is_none() {
            info!(every = ?config.interval, "collecting container metrics through the engine's stats API (its cgroups are not on this host)");
            engine.memory_total().await.ok().flatten()
        } else {
            info!(every = ?config.interval, "collecting container metrics from cgroups");
            None
        };
        let mut running: Vec<Running> = Vec::new();
        let mut listed: Option<Instant> = None;
        // containers that started since the last listing: their pid is new
        let mut restarted: HashSet<String> = HashSet::new();
        let mut failing = false;
        let mut tick = tokio::time::interval(config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
                event = events.recv() => {
                    match event {
                        Ok(e) if e.kind == "container" && !e.action.starts_with("exec_")
                            && !e.action.starts_with("health_status") && e.action != "top" => {
                            if e.action == "start" {
                                restarted.insert(e.actor.clone());
                            }
                            listed = None;
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => listed = None,
                        _ => {}
                    }
                    continue;
                }
            }
            if listed.is_none_or(|t| t.elapsed() >= RELIST) {
                match engine.list_containers(false).await {
                    Ok(containers) => {
                        let mut fresh = Vec::with_capacity(containers.len());
                        for c in containers {
                            // a container seen before keeps its pid unless it started again
                            let known = running
                                .iter()
                                .find(|r| r.id == c.id && !restarted.contains(&c.id))
                                .and_then(|r| r.pid);
                            // the pid is for net/dev, which only the cgroup source reads
                            let pid = match known {
                                Some(pid) => Some(pid),
                                None if cgroups.is_some() => {
                                    engine.container_pid(&c.id).await.ok().flatten()
                                }
                                None => None,
                            };
                            let labels = EXPORTED_LABELS
                                .iter()
                                .filter_map(|k| {
                                    c.labels.get(*k).map(|v| (label_name(k), v.clone()))
                                })
                                .collect();
                            fresh.push(Running {
                                id: c.id,
                                name: c.name,
                                image: c.image,
                                labels,
                                pid,
                            });
                        }
                        restarted.clear();
                        running = fresh;
                        listed = Some(Instant::now());
                        if failing {
                            info!("containers listed again: collecting their metrics");
                            failing = false;
                        }
                    }
                    Err(e) => {
                        // once per outage, not once per interval
                        if !failing {
                            warn!(error = %e, "cannot list containers to collect their metrics; trying again every interval");
                        }
                        failing = true;
                        continue;
                    }
                }
            }
            let samples = match &cgroups {
                Some(cgroups) => read_cgroups(cgroups, &config.proc_root, &running).await,
                None => read_stats_api(&engine, &running, host_memory).await,
            };
            let keep = (KEEP.as_secs_f64() / config.interval.as_secs_f64()).ceil() as usize + 1;
            {
                let mut recent = self.recent.write().unwrap_or_else(PoisonError::into_inner);
                recent.retain(|id, _| samples.iter().any(|s| &s.id == id));
                for s in samples {
                    let q = recent.entry(s.id.clone()).or_default();
                    q.push_back(s);
                    while q.len() > keep {
                        q.pop_front();
                    }
                }
            }
            if let Some(history) = &config.history {
                // this machine's load is the engine host's only when the engine runs here
                let host_figures = local.then_some(config.proc_root.as_path());
                self.keep_sweep(history, host_figures).await;
            }
        }
    }

    /// Adds the latest sweep and (read under `proc_root`) the host's figures now to the
    /// history.
    async fn keep_sweep(
        self: &Arc<Self>,
        history: &Arc<crate::History>,
        proc_root: Option<&std::path::Path>,
    ) {
        let (me, history, proc_root) = (
            Arc::clone(self),
            Arc::clone(history),
            proc_root.map(std::path::Path::to_owned),
        );
        let kept = tokio::task::spawn_blocking(move || {
            let mut capture = Exposition::capture();
            me.render(&mut capture);
            if let Some(proc_root) = &proc_root {
                crate::render_host(&mut capture, proc_root);
            }
            let t = (now() * 1000.0) as i64;
            history.record(t, &capture.into_samples())
        })
        .await;
        match kept {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "cannot keep this sweep in the metrics history"),
            Err(e) => warn!(error = %e, "the metrics history writer failed"),
        }
    }

    /// Writes every container's metrics under cAdvisor's names and labels (`id` as cAdvisor
    /// gives it, `/docker/<id>`; `name`; `image`), so that existing dashboards work.
    pub fn render(&self, out: &mut Exposition) {
        type Pick = fn(&ContainerSample) -> Option<f64>;
        let latest = self.latest();
        let families: [(&str, &str, &str, Pick); 25] = [
            (
                "container_cpu_usage_seconds_total",
                "counter",
                "Cumulative cpu time consumed in seconds.",
                |s| s.cgroup.cpu_usage_seconds,
            ),
            (
                "container_cpu_user_seconds_total",
                "counter",
                "Cumulative user cpu time consumed in seconds.",
                |s| s.cgroup.cpu_user_seconds,
            ),
            (
                "container_cpu_system_seconds_total",
                "counter",
                "Cumulative system cpu time consumed in seconds.",
                |s| s.cgroup.cpu_system_seconds,
            ),
            (
                "container_cpu_cfs_periods_total",
                "counter",
                "Number of elapsed enforcement period intervals.",
                |s| s.cgroup.cpu_periods.map(|v| v as f64),
            ),
            (
                "container_cpu_cfs_throttled_periods_total",
                "counter",
                "Number of throttled period intervals.",
                |s| s.cgroup.cpu_throttled_periods.map(|v| v as f64),
            ),
            (
                "container_cpu_cfs_throttled_seconds_total",
                "counter",
                "Total time duration the container has been throttled.",
                |s| s.cgroup.cpu_throttled_seconds,
            ),
            (
                "container_memory_usage_bytes",
                "gauge",
                "Current memory usage in bytes, including all memory regardless of when it was accessed.",
                |s| s.cgroup.memory_usage_bytes.map(|v| v as f64),
            ),
            (
                "container_memory_working_set_bytes",
                "gauge",
                "Current working set in bytes.",
                |s| s.cgroup.memory_working_set_bytes.map(|v| v as f64),
            ),
            (
                "container_memory_rss",
                "gauge",
                "Size of RSS in bytes.",
                |s| s.cgroup.memory_rss_bytes.map(|v| v as f64),
            ),
            (
                "container_memory_cache",
                "gauge",
                "Number of bytes of page cache memory.",
                |s| s.cgroup.memory_cache_bytes.map(|v| v as f64),
            ),
            // cAdvisor writes 0 for no limit
            (
                "container_spec_memory_limit_bytes",
                "gauge",
                "Memory limit for the container.",
                |s| Some(s.cgroup.memory_limit_bytes.unwrap_or(0) as f64),
            ),
            (
                "container_oom_events_total",
                "counter",
                "Count of out of memory events observed for the container.",
                |s| s.cgroup.oom_events.map(|v| v as f64),
            ),
            (
                "container_fs_reads_bytes_total",
                "counter",
                "Cumulative count of bytes read.",
                |s| s.cgroup.io_read_bytes.map(|v| v as f64),
            ),
            (
                "container_fs_writes_bytes_total",
                "counter",
                "Cumulative count of bytes written.",
                |s| s.cgroup.io_write_bytes.map(|v| v as f64),
            ),
            (
                "container_fs_reads_total",
                "counter",
                "Cumulative count of reads completed.",
                |s| s.cgroup.io_reads.map(|v| v as f64),
            ),
            (
                "container_fs_writes_total",
                "counter",
                "Cumulative count of writes completed.",
                |s| s.cgroup.io_writes.map(|v| v as f64),
            ),
            (
                "container_threads",
                "gauge",
                "Number of threads running inside the container.",
                |s| s.cgroup.pids.map(|v| v as f64),
            ),
            (
                "container_network_receive_bytes_total",
                "counter",
                "Cumulative count of bytes received.",
                |s| s.net.map(|n| n.rx_bytes as f64),
            ),
            (
                "container_network_receive_packets_total",
                "counter",
                "Cumulative count of packets received.",
                |s| s.net.map(|n| n.rx_packets as f64),
            ),
            (
                "container_network_receive_errors_total",
                "counter",
                "Cumulative count of errors encountered while receiving.",
                |s| s.net.map(|n| n.rx_errors as f64),
            ),
            (
                "container_network_receive_packets_dropped_total",
                "counter",
                "Cumulative count of packets dropped while receiving.",
                |s| s.net.map(|n| n.rx_dropped as f64),
            ),
            (
                "container_network_transmit_bytes_total",
                "counter",
                "Cumulative count of bytes transmitted.",
                |s| s.net.map(|n| n.tx_bytes as f64),
            ),
            (
                "container_network_transmit_packets_total",
                "counter",
                "Cumulative count of packets transmitted.",
                |s| s.net.map(|n| n.tx_packets as f64),
            ),
            (
                "container_network_transmit_errors_total",
                "counter",
                "Cumulative count of errors encountered while transmitting.",
                |s| s.net.map(|n| n.tx_errors as f64),
            ),
            (
                "container_last_seen",
                "gauge",
                "Last time a container was seen by the exporter.",
                |s| Some(s.at),
            ),
        ];
        for (name, kind, help, pick) in families {
            if name == "container_last_seen" && out.capturing() {
                continue;
            }
            out.family(name, kind, help);
            for s in &latest {
                if let Some(v) = pick(s) {
                    let id = format!("/docker/{}", s.id);
                    let mut labels =
                        vec![("id", id.as_str()), ("name", &s.name), ("image", &s.image)];
                    labels.extend(s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                    out.sample(name, &labels, v);
                }
            }
        }
    }
}

fn time(at: f64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_micros((at * 1e6) as i64).unwrap_or_default()
}

/// Use between two readings of one container (the same reading: no rates).
fn stats_between(first: &ContainerSample, last: &ContainerSample) -> ContainerStats {
    let secs = last.at - first.at;
    let rate = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if secs > 0.0 && b >= a => Some((b - a) / secs),
        _ => None,
    };
    let f = |v: Option<u64>| v.map(|v| v as f64);
    let (c0, c1) = (&first.cgroup, &last.cgroup);
    let throttled = match (
        c0.cpu_periods,
        c1.cpu_periods,
        c0.cpu_throttled_periods,
        c1.cpu_throttled_periods,
    ) {
        (Some(p0), Some(p1), Some(t0), Some(t1)) if p1 > p0 => {
            Some(t1.saturating_sub(t0) as f64 / (p1 - p0) as f64)
        }
        _ => None,
    };
    ContainerStats {
        id: last.id.clone(),
        name: last.name.clone(),
        image: last.image.clone(),
        cpu_cores: rate(c0.cpu_usage_seconds, c1.cpu_usage_seconds),
        cpu_throttled: throttled,
        memory_usage_bytes: c1.memory_usage_bytes,
        memory_working_set_bytes: c1.memory_working_set_bytes,
        memory_limit_bytes: c1.memory_limit_bytes,
        network_rx_bytes_per_second: rate(
            first.net.map(|n| n.rx_bytes as f64),
            last.net.map(|n| n.rx_bytes as f64),
        ),
        network_tx_bytes_per_second: rate(
            first.net.map(|n| n.tx_bytes as f64),
            last.net.map(|n| n.tx_bytes as f64),
        ),
        block_read_bytes_per_second: rate(f(c0.io_read_bytes), f(c1.io_read_bytes)),
        block_write_bytes_per_second: rate(f(c0.io_write_bytes), f(c1.io_write_bytes)),
        threads: c1.pids,
        oom_events: c1.oom_events,
        from: time(first.at),
        to: time(last.at),
    }
}

/// Each container's cgroup files and `net/dev`, in one blocking task.
async fn read_cgroups(
    cgroups: &Cgroups,
    proc_root: &std::path::Path,
    running: &[Running],
) -> Vec<ContainerSample> {
    let (cgroups, proc_root, list) = (cgroups.clone(), proc_root.to_owned(), running.to_vec());
    tokio::task::spawn_blocking(move || {
        list.into_iter()
            .filter_map(|r| {
                // not (or no longer) in this host's cgroups: gone, or another host's
                let cgroup = cgroups.sample(&r.id)?;
                let net = r.pid.and_then(|p| {
                    std::fs::read_to_string(proc_root.join(p.to_string()).join("net/dev"))
                        .ok()
                        .map(|t| net_dev(&t))
                });
                Some(r.reading(cgroup, net))
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

/// Stats-API requests in flight at once.
const STATS_IN_FLIGHT: usize = 16;

/// Each container's reading from the engine's stats API.
async fn read_stats_api(
    engine: &Engine,
    running: &[Running],
    host_memory: Option<u64>,
) -> Vec<ContainerSample> {
    use futures_util::StreamExt;
    futures_util::stream::iter(running.iter().cloned())
        .map(|r| async move {
            let stats = engine.stats_once(&r.id).await.ok()?;
            let (cgroup, net) = crate::stats_api::from_stats(&stats, host_memory);
            Some(r.reading(cgroup, net))
        })
        .buffer_unordered(STATS_IN_FLIGHT)
        .filter_map(|s| async move { s })
        .collect()
        .await
}
