//! The host's own figures, under node_exporter's names (what host dashboards expect): CPU time
//! per CPU and mode, memory, load, disk IO and filesystem space, read from `/proc` and
//! `statvfs`, when `/metrics` is rendered.

use std::path::Path;

use crate::Exposition;

/// `/proc/stat`'s CPU columns, in the order the kernel writes them.
const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];
/// Clock ticks per second in `/proc/stat`.
const USER_HZ: f64 = 100.0;
/// Filesystems that hold no user data (node_exporter leaves the same out).
const PSEUDO_FS: [&str; 22] = [
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "rpc_pipefs",
    "securityfs",
    "sysfs",
    "tracefs",
];
/// Mount points under these are the system's or the engine's, not the host's disks.
const HIDDEN_MOUNTS: [&str; 5] = [
    "/dev",
    "/proc",
    "/sys",
    "/run/credentials",
    "/var/lib/docker",
];

fn read(root: &Path, name: &str) -> String {
    std::fs::read_to_string(root.join(name)).unwrap_or_default()
}

/// `node_cpu_seconds_total{cpu, mode}` from `/proc/stat`.
fn cpu(out: &mut Exposition, stat: &str) {
    out.family(
        "node_cpu_seconds_total",
        "counter",
        "Seconds the CPUs spent in each mode.",
    );
    for line in stat.lines() {
        let mut fields = line.split_whitespace();
        let Some(cpu) = fields.next().and_then(|c| c.strip_prefix("cpu")) else {
            continue;
        };
        if cpu.is_empty() {
            continue; // the total line
        }
        for (mode, ticks) in MODES.iter().zip(fields) {
            if let Ok(t) = ticks.parse::<u64>() {
                out.sample(
                    "node_cpu_seconds_total",
                    &[("cpu", cpu), ("mode", mode)],
                    t as f64 / USER_HZ,
                );
            }
        }
    }
}

/// `node_memory_<Field>_bytes` from `/proc/meminfo` (its kB turned into bytes).
fn memory(out: &mut Exposition, meminfo: &str) {
    for line in meminfo.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        if !matches!(
            key,
            "MemTotal"
                | "MemFree"
                | "MemAvailable"
                | "Buffers"
                | "Cached"
                | "SwapTotal"
                | "SwapFree"
        ) {
            continue;
        }
        let mut parts = rest.split_whitespace();
        let Some(Ok(v)) = parts.next().map(str::parse::<u64>) else {
            continue;
        };
        let bytes = if parts.next() == Some("kB") {
            v * 1024
        } else {
            v
        };
        let name = format!("node_memory_{key}_bytes");
        out.single(
            &name,
            "gauge",
            &format!("Memory information field {key}_bytes."),
            bytes as f64,
        );
    }
}

fn load(out: &mut Exposition, loadavg: &str) {
    let v: Vec<f64> = loadavg
        .split_whitespace()
        .take(3)
        .filter_map(|x| x.parse().ok())
        .collect();
    for (name, value) in ["node_load1", "node_load5", "node_load15"].iter().zip(v) {
        out.single(name, "gauge", "Load average.", value);
    }
}

/// Whole devices from `/proc/diskstats` (loop and RAM devices left out).
fn disks(out: &mut Exposition, diskstats: &str) {
    let rows: Vec<(String, [u64; 4])> = diskstats
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let device = (*f.get(2)?).to_owned();
            if device.starts_with("loop") || device.starts_with("ram") {
                return None;
            }
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            Some((device, [n(3), n(5) * 512, n(7), n(9) * 512]))
        })
        .collect();
    for (i, (name, help)) in [
        ("node_disk_reads_completed_total", "Reads completed."),
        ("node_disk_read_bytes_total", "Bytes read."),
        ("node_disk_writes_completed_total", "Writes completed."),
        ("node_disk_written_bytes_total", "Bytes written."),
    ]
    .iter()
    .enumerate()
    {
        out.family(name, "counter", help);
        for (device, v) in &rows {
            out.sample(name, &[("device", device)], v[i] as f64);
        }
    }
}

/// Space and inodes of the mounted filesystems that hold data.
fn filesystems(out: &mut Exposition, mounts: &str) {
    let mut rows = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(device), Some(mountpoint), Some(fstype)) = (f.first(), f.get(1), f.get(2)) else {
            continue;
        };
        if PSEUDO_FS.contains(fstype)
            || HIDDEN_MOUNTS
                .iter()
                .any(|h| mountpoint == h || mountpoint.starts_with(&format!("{h}/")))
            || !seen.insert(*mountpoint)
        {
            continue;
        }
        let Ok(s) = rustix::fs::statvfs(*mountpoint) else {
            continue;
        };
        let block = s.f_frsize as f64;
        rows.push((
            (*device).to_owned(),
            (*mountpoint).to_owned(),
            (*fstype).to_owned(),
            [
                s.f_blocks as f64 * block,
                s.f_bfree as f64 * block,
                s.f_bavail as f64 * block,
                s.f_files as f64,
                s.f_ffree as f64,
            ],
        ));
    }
    for (i, (name, help)) in [
        ("node_filesystem_size_bytes", "Filesystem size in bytes."),
        (
            "node_filesystem_free_bytes",
            "Filesystem free space in bytes.",
        ),
        (
            "node_filesystem_avail_bytes",
            "Filesystem space available to non-root users in bytes.",
        ),
        ("node_filesystem_files", "Filesystem total file nodes."),
        (
            "node_filesystem_files_free",
            "Filesystem total free file nodes.",
        ),
    ]
    .iter()
    .enumerate()
    {
        out.family(name, "gauge", help);
        for (device, mountpoint, fstype, v) in &rows {
            out.sample(
                name,
                &[
                    ("device", device),
                    ("mountpoint", mountpoint),
                    ("fstype", fstype),
                ],
                v[i],
            );
        }
    }
}

/// Writes the host's figures, read from `proc_root` (`/proc`) now.
pub fn render_host(out: &mut Exposition, proc_root: &Path) {
    cpu(out, &read(proc_root, "stat"));
    memory(out, &read(proc_root, "meminfo"));
    load(out, &read(proc_root, "loadavg"));
    disks(out, &read(proc_root, "diskstats"));
    filesystems(out, &read(proc_root, "mounts"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_become_node_exporters_families() {
        let mut out = Exposition::default();
        cpu(
            &mut out,
            "cpu  10 0 5 100 1 0 0 0 0 0\ncpu0 500 1 200 9000 7 0 3 0 0 0\nintr 1 2\n",
        );
        memory(
            &mut out,
            "MemTotal:       24576000 kB\nMemAvailable:   20000000 kB\nActive: 5 kB\n",
        );
        load(&mut out, "0.52 0.41 0.30 2/345 6789\n");
        disks(
            &mut out,
            "   8       0 sda 100 0 2048 10 50 0 4096 20 0 30 30 0 0 0 0\n   7       0 loop0 1 0 8 0 0 0 0 0 0 0 0 0 0 0 0\n",
        );
        filesystems(
            &mut out,
            "proc /proc proc rw 0 0\n/dev/root / ext4 rw 0 0\n",
        );
        let text = out.into_text();
        assert!(
            text.contains("node_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 5\n"),
            "{text}"
        );
        assert!(text.contains("node_cpu_seconds_total{cpu=\"0\",mode=\"softirq\"} 0.03\n"));
        assert!(!text.contains("cpu=\"\""), "the total line is not a CPU");
        assert!(text.contains("node_memory_MemTotal_bytes 25165824000\n"));
        assert!(!text.contains("Active"));
        for line in [
            "node_load1 0.52\n",
            "node_load5 0.41\n",
            "node_load15 0.3\n",
        ] {
            assert!(text.contains(line), "{line}");
        }
        assert!(text.contains("node_disk_read_bytes_total{device=\"sda\"} 1048576\n"));
        assert!(text.contains("node_disk_written_bytes_total{device=\"sda\"} 2097152\n"));
        assert!(!text.contains("loop0"));
        assert!(
            text.contains(
                "node_filesystem_size_bytes{device=\"/dev/root\",mountpoint=\"/\",fstype=\"ext4\"}"
            ),
            "{text}"
        );
        assert!(!text.contains("mountpoint=\"/proc\""));
    }
}
