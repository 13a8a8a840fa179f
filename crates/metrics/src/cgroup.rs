//! Reading a container's counters from its cgroup files, cgroup v1 or v2, under the cgroupfs
//! driver (`docker/<id>`) or the systemd one (`system.slice/docker-<id>.scope`). A few small
//! files per container: far cheaper than the engine's stats API.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Which cgroup hierarchy the host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// One directory per controller (`cpuacct/`, `memory/`, `blkio/`, `pids/`).
    V1,
    /// One unified tree (`cgroup.controllers` at its root).
    V2,
}

/// The hierarchy under a root (`/sys/fs/cgroup`, or a recorded tree in tests).
#[derive(Debug, Clone)]
pub struct Cgroups {
    root: PathBuf,
    version: Version,
}

/// One reading of a container's cgroup counters. Absent files leave their fields `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupSample {
    pub cpu_usage_seconds: Option<f64>,
    pub cpu_user_seconds: Option<f64>,
    pub cpu_system_seconds: Option<f64>,
    pub cpu_periods: Option<u64>,
    pub cpu_throttled_periods: Option<u64>,
    pub cpu_throttled_seconds: Option<f64>,
    pub memory_usage_bytes: Option<u64>,
    /// Usage less inactive file cache: what the OOM killer weighs.
    pub memory_working_set_bytes: Option<u64>,
    pub memory_rss_bytes: Option<u64>,
    pub memory_cache_bytes: Option<u64>,
    /// `None` when unlimited.
    pub memory_limit_bytes: Option<u64>,
    pub oom_events: Option<u64>,
    pub io_read_bytes: Option<u64>,
    pub io_write_bytes: Option<u64>,
    pub io_reads: Option<u64>,
    pub io_writes: Option<u64>,
    pub pids: Option<u64>,
}

/// v1's clock ticks per second in `cpuacct.stat` (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;
/// A memory limit at or above this is "no limit" (v1 writes a page-aligned `i64::MAX`).
const UNLIMITED: u64 = 1 << 62;

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn number(path: &Path) -> Option<u64> {
    read(path)?.trim().parse().ok()
}

/// `key value` lines (`memory.stat`, `cpu.stat`, `cpuacct.stat`, `memory.events`).
fn pairs(path: &Path) -> HashMap<String, u64> {
    read(path)
        .map(|t| {
            t.lines()
                .filter_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    Some((k.to_owned(), v.trim().parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Cgroups {
    /// Detects the hierarchy under `root`.
    pub fn detect(root: &Path) -> Option<Self> {
        let version = if root.join("cgroup.controllers").exists() {
            Version::V2
        } else if root.join("memory").is_dir() || root.join("cpuacct").is_dir() {
            Version::V1
        } else {
            return None;
        };
        Some(Self {
            root: root.to_owned(),
            version,
        })
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// The container's directory under `base` (the root, or a v1 controller's directory),
    /// whichever driver made it.
    fn dir(base: &Path, id: &str) -> Option<PathBuf> {
        [
            base.join("docker").join(id),
            base.join("system.slice").join(format!("docker-{id}.scope")),
        ]
        .into_iter()
        .find(|p| p.is_dir())
    }

    /// Reads a container's counters; `None` when it has no cgroup here (not running, or
    /// another engine's).
    pub fn sample(&self, id: &str) -> Option<CgroupSample> {
        match self.version {
            Version::V1 => self.sample_v1(id),
            Version::V2 => self.sample_v2(id),
        }
    }

    fn sample_v1(&self, id: &str) -> Option<CgroupSample> {
        let cpu = Self::dir(&self.root.join("cpuacct"), id)
            .or_else(|| Self::dir(&self.root.join("cpu,cpuacct"), id));
        let memory = Self::dir(&self.root.join("memory"), id);
        if cpu.is_none() && memory.is_none() {
            return None;
        }
        let mut s = CgroupSample::default();
        if let Some(cpu) = &cpu {
            s.cpu_usage_seconds = number(&cpu.join("cpuacct.usage")).map(|ns| ns as f64 / 1e9);
            let stat = pairs(&cpu.join("cpuacct.stat"));
            s.cpu_user_seconds = stat.get("user").map(|t| *t as f64 / USER_HZ);
            s.cpu_system_seconds = stat.get("system").map(|t| *t as f64 / USER_HZ);
            // throttling lives in the cpu controller (often the same directory as cpuacct)
            let throttle = Self::dir(&self.root.join("cpu"), id)
                .map(|d| d.join("cpu.stat"))
                .filter(|p| p.exists())
                .unwrap_or_else(|| cpu.join("cpu.stat"));
            let t = pairs(&throttle);
            s.cpu_periods = t.get("nr_periods").copied();
            s.cpu_throttled_periods = t.get("nr_throttled").copied();
            s.cpu_throttled_seconds = t.get("throttled_time").map(|ns| *ns as f64 / 1e9);
        }
        if let Some(mem) = &memory {
            let usage = number(&mem.join("memory.usage_in_bytes"));
            let stat = pairs(&mem.join("memory.stat"));
            let inactive = stat
                .get("total_inactive_file")
                .or_else(|| stat.get("inactive_file"))
                .copied()
                .unwrap_or(0);
            s.memory_usage_bytes = usage;
            s.memory_working_set_bytes = usage.map(|u| u.saturating_sub(inactive));
            s.memory_rss_bytes = stat.get("total_rss").or_else(|| stat.get("rss")).copied();
            s.memory_cache_bytes = stat
                .get("total_cache")
                .or_else(|| stat.get("cache"))
                .copied();
            s.memory_limit_bytes =
                number(&mem.join("memory.limit_in_bytes")).filter(|l| *l < UNLIMITED);
            s.oom_events = pairs(&mem.join("memory.oom_control"))
                .get("oom_kill")
                .copied();
        }
        if let Some(blkio) = Self::dir(&self.root.join("blkio"), id) {
            let (rb, wb) = blkio_totals(&blkio.join("blkio.throttle.io_service_bytes"));
            let (r, w) = blkio_totals(&blkio.join("blkio.throttle.io_serviced"));
            (s.io_read_bytes, s.io_write_bytes, s.io_reads, s.io_writes) = (rb, wb, r, w);
        }
        if let Some(pids) = Self::dir(&self.root.join("pids"), id) {
            s.pids = number(&pids.join("pids.current"));
        }
        Some(s)
    }

    fn sample_v2(&self, id: &str) -> Option<CgroupSample> {
        let dir = Self::dir(&self.root, id)?;
        let mut s = CgroupSample::default();
        let cpu = pairs(&dir.join("cpu.stat"));
        let us = |k: &str| cpu.get(k).map(|v| *v as f64 / 1e6);
        s.cpu_usage_seconds = us("usage_usec");
        s.cpu_user_seconds = us("user_usec");
        s.cpu_system_seconds = us("system_usec");
        s.cpu_periods = cpu.get("nr_periods").copied();
        s.cpu_throttled_periods = cpu.get("nr_throttled").copied();
        s.cpu_throttled_seconds = us("throttled_usec");
        let usage = number(&dir.join("memory.current"));
        let stat = pairs(&dir.join("memory.stat"));
        s.memory_usage_bytes = usage;
        s.memory_working_set_bytes =
            usage.map(|u| u.saturating_sub(stat.get("inactive_file").copied().unwrap_or(0)));
        s.memory_rss_bytes = stat.get("anon").copied();
        s.memory_cache_bytes = stat.get("file").copied();
        // "max" does not parse: unlimited
        s.memory_limit_bytes = number(&dir.join("memory.max")).filter(|l| *l < UNLIMITED);
        s.oom_events = pairs(&dir.join("memory.events")).get("oom_kill").copied();
        if let Some(text) = read(&dir.join("io.stat")) {
            let mut totals = [0_u64; 4];
            for line in text.lines() {
                for field in line.split_whitespace().skip(1) {
                    let Some((k, v)) = field.split_once('=') else {
                        continue;
                    };
                    let v: u64 = v.parse().unwrap_or(0);
                    match k {
                        "rbytes" => totals[0] += v,
                        "wbytes" => totals[1] += v,
                        "rios" => totals[2] += v,
                        "wios" => totals[3] += v,
                        _ => {}
                    }
                }
            }
            s.io_read_bytes = Some(totals[0]);
            s.io_write_bytes = Some(totals[1]);
            s.io_reads = Some(totals[2]);
            s.io_writes = Some(totals[3]);
        }
        s.pids = number(&dir.join("pids.current"));
        Some(s)
    }
}

/// `Read` and `Write` totals over every device of a v1 blkio file (`8:0 Read 4096`).
fn blkio_totals(path: &Path) -> (Option<u64>, Option<u64>) {
    let Some(text) = read(path) else {
        return (None, None);
    };
    let (mut r, mut w) = (0, 0);
    for line in text.lines() {
        let mut f = line.split_whitespace();
        match (
            f.next(),
            f.next(),
            f.next().and_then(|v| v.parse::<u64>().ok()),
        ) {
            (Some(_), Some("Read"), Some(v)) => r += v,
            (Some(_), Some("Write"), Some(v)) => w += v,
            _ => {}
        }
    }
    (Some(r), Some(w))
}

/// Network totals of the interfaces other than loopback in a `/proc/<pid>/net/dev` (the
/// container's network namespace, seen through one of its processes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetSample {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Parses `net/dev`.
pub fn net_dev(text: &str) -> NetSample {
    let mut s = NetSample::default();
    for line in text.lines().skip(2) {
        let Some((iface, rest)) = line.split_once(':') else {
            continue;
        };
        if iface.trim() == "lo" {
            continue;
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        if v.len() < 12 {
            continue;
        }
        s.rx_bytes += v[0];
        s.rx_packets += v[1];
        s.rx_errors += v[2];
        s.rx_dropped += v[3];
        s.tx_bytes += v[8];
        s.tx_packets += v[9];
        s.tx_errors += v[10];
        s.tx_dropped += v[11];
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// A cgroup v2 tree as the systemd driver lays it out (recorded from a v2 host: this
    /// machine runs v1 with cgroupfs, so v2 and systemd are read from recorded files).
    #[test]
    fn v2_under_the_systemd_driver() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "cgroup.controllers",
            "cpuset cpu io memory hugetlb pids rdma misc\n",
        );
        let c = "system.slice/docker-abc.scope";
        write(
            root,
            &format!("{c}/cpu.stat"),
            "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 40\nnr_throttled 10\nthrottled_usec 750000\n",
        );
        write(root, &format!("{c}/memory.current"), "104857600\n");
        write(root, &format!("{c}/memory.max"), "268435456\n");
        write(
            root,
            &format!("{c}/memory.stat"),
            "anon 52428800\nfile 41943040\ninactive_file 20971520\nactive_file 20971520\n",
        );
        write(
            root,
            &format!("{c}/memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        );
        write(
            root,
            &format!("{c}/io.stat"),
            "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n259:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
        );
        write(root, &format!("{c}/pids.current"), "7\n");
        let cg = Cgroups::detect(root).unwrap();
        assert_eq!(cg.version(), Version::V2);
        let s = cg.sample("abc").unwrap();
        assert_eq!(s.cpu_usage_seconds, Some(2.5));
        assert_eq!(s.cpu_system_seconds, Some(0.5));
        assert_eq!(
            (s.cpu_periods, s.cpu_throttled_periods),
            (Some(40), Some(10))
        );
        assert_eq!(s.cpu_throttled_seconds, Some(0.75));
        assert_eq!(s.memory_usage_bytes, Some(104_857_600));
        assert_eq!(s.memory_working_set_bytes, Some(104_857_600 - 20_971_520));
        assert_eq!(
            (s.memory_rss_bytes, s.memory_cache_bytes),
            (Some(52_428_800), Some(41_943_040))
        );
        assert_eq!(s.memory_limit_bytes, Some(268_435_456));
        assert_eq!(s.oom_events, Some(1));
        assert_eq!(
            (s.io_read_bytes, s.io_write_bytes, s.io_reads, s.io_writes),
            (Some(8192), Some(8192), Some(2), Some(2))
        );
        assert_eq!(s.pids, Some(7));
        // unlimited memory, and a container with no cgroup here
        write(root, &format!("{c}/memory.max"), "max\n");
        assert_eq!(cg.sample("abc").unwrap().memory_limit_bytes, None);
        assert_eq!(cg.sample("other"), None);
    }

    /// A cgroup v1 tree as the cgroupfs driver lays it out (as on this machine).
    #[test]
    fn v1_under_the_cgroupfs_driver() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "cpuacct/docker/abc/cpuacct.usage", "1500000000\n");
        write(
            root,
            "cpuacct/docker/abc/cpuacct.stat",
            "user 120\nsystem 30\n",
        );
        write(
            root,
            "cpu/docker/abc/cpu.stat",
            "nr_periods 100\nnr_throttled 25\nthrottled_time 2000000000\n",
        );
        write(
            root,
            "memory/docker/abc/memory.usage_in_bytes",
            "73400320\n",
        );
        write(
            root,
            "memory/docker/abc/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        write(
            root,
            "memory/docker/abc/memory.stat",
            "cache 8192\nrss 4096\ntotal_cache 10485760\ntotal_rss 52428800\ntotal_inactive_file 3145728\n",
        );
        write(
            root,
            "memory/docker/abc/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        write(
            root,
            "blkio/docker/abc/blkio.throttle.io_service_bytes",
            "8:0 Read 4096\n8:0 Write 12288\n8:0 Sync 0\n8:0 Total 16384\nTotal 16384\n",
        );
        write(
            root,
            "blkio/docker/abc/blkio.throttle.io_serviced",
            "8:0 Read 1\n8:0 Write 3\nTotal 4\n",
        );
        write(root, "pids/docker/abc/pids.current", "3\n");
        let cg = Cgroups::detect(root).unwrap();
        assert_eq!(cg.version(), Version::V1);
        let s = cg.sample("abc").unwrap();
        assert_eq!(s.cpu_usage_seconds, Some(1.5));
        assert_eq!(
            (s.cpu_user_seconds, s.cpu_system_seconds),
            (Some(1.2), Some(0.3))
        );
        assert_eq!(
            (s.cpu_throttled_periods, s.cpu_throttled_seconds),
            (Some(25), Some(2.0))
        );
        assert_eq!(s.memory_working_set_bytes, Some(73_400_320 - 3_145_728));
        assert_eq!(
            (s.memory_rss_bytes, s.memory_cache_bytes),
            (Some(52_428_800), Some(10_485_760))
        );
        assert_eq!(s.memory_limit_bytes, None, "unlimited");
        assert_eq!(s.oom_events, Some(2));
        assert_eq!(
            (s.io_read_bytes, s.io_write_bytes, s.io_reads, s.io_writes),
            (Some(4096), Some(12288), Some(1), Some(3))
        );
        assert_eq!(s.pids, Some(3));
    }

    #[test]
    fn v1_under_the_systemd_driver() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "memory/system.slice/docker-abc.scope/memory.usage_in_bytes",
            "100\n",
        );
        write(
            root,
            "memory/system.slice/docker-abc.scope/memory.limit_in_bytes",
            "1048576\n",
        );
        let s = Cgroups::detect(root).unwrap().sample("abc").unwrap();
        assert_eq!(
            (s.memory_usage_bytes, s.memory_limit_bytes),
            (Some(100), Some(1_048_576))
        );
        assert_eq!(s.cpu_usage_seconds, None);
    }

    #[test]
    fn network_counters_skip_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0\n  eth0:  123456     100    1    2    0     0          0         0    65432      50    3    4    0     0       0          0\n";
        let s = net_dev(text);
        assert_eq!(
            (s.rx_bytes, s.rx_packets, s.rx_errors, s.rx_dropped),
            (123_456, 100, 1, 2)
        );
        assert_eq!(
            (s.tx_bytes, s.tx_packets, s.tx_errors, s.tx_dropped),
            (65_432, 50, 3, 4)
        );
    }
}
