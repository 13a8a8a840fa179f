//! The collection loop: every interval, each running container's cgroup files and network
//! counters, kept as the latest sample per container for `/metrics`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use capstan_engine::Engine;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::cgroup::{CgroupSample, Cgroups, NetSample, net_dev};
use crate::exposition::Exposition;

/// One container's latest reading.
#[derive(Debug, Clone)]
pub struct ContainerSample {
    pub id: String,
    pub name: String,
    pub image: String,
    pub cgroup: CgroupSample,
    pub net: Option<NetSample>,
    /// Unix seconds of the reading.
    pub at: f64,
}

/// The latest readings, shared with `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    latest: RwLock<Vec<ContainerSample>>,
}

/// How the collector runs.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Between readings (default 5 s, at least 1 s).
    pub interval: Duration,
    /// Where the cgroup hierarchy is mounted (`/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
    /// Where processes are seen (`/proc`).
    pub proc_root: PathBuf,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            proc_root: PathBuf::from("/proc"),
        }
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Metrics {
    /// The latest reading of every running container.
    pub fn latest(&self) -> Vec<ContainerSample> {
        self.latest
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Collects until `shutdown`.
    pub async fn run(
        self: Arc<Self>,
        engine: Engine,
        config: CollectorConfig,
        shutdown: CancellationToken,
    ) {
        let Some(cgroups) = Cgroups::detect(&config.cgroup_root) else {
            warn!(root = %config.cgroup_root.display(), "no cgroup hierarchy found: container metrics are not collected");
            return;
        };
        info!(version = ?cgroups.version(), every = ?config.interval, "collecting container metrics from cgroups");
        let mut pids: HashMap<String, u32> = HashMap::new();
        let mut tick = tokio::time::interval(config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let containers = match engine.list_containers(false).await {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "cannot list containers to collect their metrics");
                    continue;
                }
            };
            pids.retain(|id, _| containers.iter().any(|c| &c.id == id));
            let mut samples = Vec::with_capacity(containers.len());
            for c in containers {
                if !pids.contains_key(&c.id)
                    && let Ok(Some(pid)) = engine.container_pid(&c.id).await
                {
                    pids.insert(c.id.clone(), pid);
                }
                let (cgroups, proc_root, pid) = (
                    cgroups.clone(),
                    config.proc_root.clone(),
                    pids.get(&c.id).copied(),
                );
                let id = c.id.clone();
                let read = tokio::task::spawn_blocking(move || {
                    let cgroup = cgroups.sample(&id)?;
                    let net = pid.and_then(|p| {
                        std::fs::read_to_string(proc_root.join(p.to_string()).join("net/dev"))
                            .ok()
                            .map(|t| net_dev(&t))
                    });
                    Some((cgroup, net))
                })
                .await
                .ok()
                .flatten();
                let Some((cgroup, net)) = read else {
                    // not (or no longer) in this host's cgroups: a remote engine's, or gone
                    pids.remove(&c.id);
                    continue;
                };
                samples.push(ContainerSample {
                    id: c.id,
                    name: c.name,
                    image: c.image,
                    cgroup,
                    net,
                    at: now(),
                });
            }
            *self.latest.write().unwrap_or_else(PoisonError::into_inner) = samples;
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
            out.family(name, kind, help);
            for s in &latest {
                if let Some(v) = pick(s) {
                    let id = format!("/docker/{}", s.id);
                    out.sample(
                        name,
                        &[("id", &id), ("name", &s.name), ("image", &s.image)],
                        v,
                    );
                }
            }
        }
    }
}
