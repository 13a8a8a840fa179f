//! The engine's stats API as a source (a remote engine, whose cgroups are not on this host):
//! one `stream=false&one-shot=true` reading per container, turned into the same sample the
//! cgroup reader makes.

use serde_json::Value;

use crate::cgroup::{CgroupSample, NetSample};

/// A reading of `GET /containers/{id}/stats` (the engine's JSON). `host_memory` is the engine
/// host's memory: the API reports it as the limit of a container that has none.
pub fn from_stats(stats: &Value, host_memory: Option<u64>) -> (CgroupSample, Option<NetSample>) {
    let n = |v: &Value| v.as_u64();
    let cpu = &stats["cpu_stats"];
    let mem = &stats["memory_stats"];
    let throttling = &cpu["throttling_data"];
    let usage = n(&mem["usage"]);
    let inactive = n(&mem["stats"]["total_inactive_file"])
        .or_else(|| n(&mem["stats"]["inactive_file"]))
        .unwrap_or(0);
    let limit = n(&mem["limit"]).filter(|l| Some(*l) != host_memory && *l < 1 << 62);
    let (mut read, mut write, mut reads, mut writes) = (None, None, None, None);
    for (list, bytes) in [
        (&stats["blkio_stats"]["io_service_bytes_recursive"], true),
        (&stats["blkio_stats"]["io_serviced_recursive"], false),
    ] {
        for entry in list.as_array().into_iter().flatten() {
            let op = entry["op"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let v = n(&entry["value"]).unwrap_or(0);
            let slot = match (op.as_str(), bytes) {
                ("read", true) => &mut read,
                ("write", true) => &mut write,
                ("read", false) => &mut reads,
                ("write", false) => &mut writes,
                _ => continue,
            };
            *slot = Some(slot.unwrap_or(0) + v);
        }
    }
    let sample = CgroupSample {
        cpu_usage_seconds: n(&cpu["cpu_usage"]["total_usage"]).map(|ns| ns as f64 / 1e9),
        cpu_user_seconds: n(&cpu["cpu_usage"]["usage_in_usermode"]).map(|ns| ns as f64 / 1e9),
        cpu_system_seconds: n(&cpu["cpu_usage"]["usage_in_kernelmode"]).map(|ns| ns as f64 / 1e9),
        cpu_periods: n(&throttling["periods"]),
        cpu_throttled_periods: n(&throttling["throttled_periods"]),
        cpu_throttled_seconds: n(&throttling["throttled_time"]).map(|ns| ns as f64 / 1e9),
        memory_usage_bytes: usage,
        memory_working_set_bytes: usage.map(|u| u.saturating_sub(inactive)),
        memory_rss_bytes: n(&mem["stats"]["total_rss"])
            .or_else(|| n(&mem["stats"]["rss"]))
            .or_else(|| n(&mem["stats"]["anon"])),
        memory_cache_bytes: n(&mem["stats"]["total_cache"])
            .or_else(|| n(&mem["stats"]["cache"]))
            .or_else(|| n(&mem["stats"]["file"])),
        memory_limit_bytes: limit,
        oom_events: None,
        io_read_bytes: read,
        io_write_bytes: write,
        io_reads: reads,
        io_writes: writes,
        pids: n(&stats["pids_stats"]["current"]),
    };
    let net = stats["networks"].as_object().map(|nets| {
        let mut s = NetSample::default();
        for v in nets.values() {
            let f = |k: &str| n(&v[k]).unwrap_or(0);
            s.rx_bytes += f("rx_bytes");
            s.rx_packets += f("rx_packets");
            s.rx_errors += f("rx_errors");
            s.rx_dropped += f("rx_dropped");
            s.tx_bytes += f("tx_bytes");
            s.tx_packets += f("tx_packets");
            s.tx_errors += f("tx_errors");
            s.tx_dropped += f("tx_dropped");
        }
        s
    });
    (sample, net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engines_stats_document_reads_like_cgroups() {
        let stats = serde_json::json!({
            "cpu_stats": {"cpu_usage": {"total_usage": 2_500_000_000_u64, "usage_in_usermode": 2_000_000_000_u64, "usage_in_kernelmode": 500_000_000},
                          "throttling_data": {"periods": 40, "throttled_periods": 10, "throttled_time": 750_000_000}},
            "memory_stats": {"usage": 104_857_600, "limit": 25_000_000_000_u64,
                             "stats": {"total_inactive_file": 20_971_520, "total_rss": 52_428_800, "total_cache": 41_943_040}},
            "blkio_stats": {"io_service_bytes_recursive": [{"major": 8, "minor": 0, "op": "Read", "value": 4096}, {"major": 8, "minor": 0, "op": "Write", "value": 8192}, {"op": "Total", "value": 12288}],
                            "io_serviced_recursive": [{"op": "Read", "value": 1}, {"op": "Write", "value": 2}]},
            "pids_stats": {"current": 7},
            "networks": {"eth0": {"rx_bytes": 1000, "rx_packets": 10, "rx_errors": 0, "rx_dropped": 1, "tx_bytes": 500, "tx_packets": 5, "tx_errors": 0, "tx_dropped": 0}}
        });
        let (s, net) = from_stats(&stats, Some(25_000_000_000));
        assert_eq!(s.cpu_usage_seconds, Some(2.5));
        assert_eq!(
            (s.cpu_user_seconds, s.cpu_system_seconds),
            (Some(2.0), Some(0.5))
        );
        assert_eq!(
            (s.cpu_throttled_periods, s.cpu_throttled_seconds),
            (Some(10), Some(0.75))
        );
        assert_eq!(s.memory_working_set_bytes, Some(104_857_600 - 20_971_520));
        assert_eq!(s.memory_limit_bytes, None, "the host's memory is no limit");
        assert_eq!(
            (s.io_read_bytes, s.io_write_bytes, s.io_reads, s.io_writes),
            (Some(4096), Some(8192), Some(1), Some(2))
        );
        assert_eq!(s.pids, Some(7));
        let net = net.unwrap();
        assert_eq!((net.rx_bytes, net.rx_dropped, net.tx_bytes), (1000, 1, 500));
        let (s, _) = from_stats(&stats, Some(8_000_000_000));
        assert_eq!(s.memory_limit_bytes, Some(25_000_000_000));
    }
}
