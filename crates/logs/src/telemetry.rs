//! The log job's own figures on `/metrics`: what the pipeline read, parsed and stored, what
//! the engine rotated away, and each sink's deliveries.

use capstan_model::Exposition;

use crate::StatsSnapshot;
use crate::sinks::SinkSnapshot;

/// Writes the pipeline's figures (`stats`), each sink's (`sinks`) and the store's size
/// (`partitions` hourly partitions holding `store_bytes`).
pub fn render(
    out: &mut Exposition,
    stats: &StatsSnapshot,
    sinks: &[SinkSnapshot],
    partitions: usize,
    store_bytes: u64,
) {
    for (name, help, value) in [
        (
            "lines_read",
            "Lines read from containers' logs.",
            stats.lines_read,
        ),
        ("bytes_read", "Bytes of log text read.", stats.bytes_read),
        (
            "lines_parsed",
            "Lines a parser found fields in.",
            stats.lines_parsed,
        ),
        (
            "parse_failures",
            "Lines the configured parser could not read (kept raw).",
            stats.parse_failures,
        ),
        (
            "lines_stored",
            "Lines committed to the embedded store.",
            stats.lines_stored,
        ),
        (
            "bad_records",
            "Records of a log file that were not the engine's JSON.",
            stats.bad_records,
        ),
        (
            "rotated_away_files",
            "Log files the engine deleted before capstan read them.",
            stats.rotated_away_files,
        ),
        (
            "rotated_away_lines",
            "Lines in those files (estimated: json-file records carry no sequence numbers).",
            stats.rotated_away_lines,
        ),
        ("commits", "Commits of the embedded store.", stats.commits),
        (
            "store_errors",
            "Failed writes to the embedded store (read again from the last commit).",
            stats.store_errors,
        ),
    ] {
        out.single(
            &format!("capstan_logs_{name}_total"),
            "counter",
            help,
            value as f64,
        );
    }
    let family = "capstan_logs_container_rotated_away_lines_total";
    out.family(
        family,
        "counter",
        "Lines the engine rotated away from a container before capstan read them (estimated).",
    );
    for (container, loss) in &stats.rotated_away_by_container {
        out.sample(
            family,
            &[("container", container)],
            loss.lines_estimated as f64,
        );
    }
    out.single(
        "capstan_logs_containers",
        "gauge",
        "Containers whose logs are followed.",
        stats.containers as f64,
    );
    out.single(
        "capstan_logs_last_seq",
        "gauge",
        "Sequence number of the newest stored line.",
        stats.last_seq as f64,
    );
    out.single(
        "capstan_logs_lag_seconds",
        "gauge",
        "Age of the newest stored line.",
        stats.lag_seconds,
    );
    for (name, help, pick) in [
        (
            "shipped",
            "Lines delivered by the sink.",
            (|s| s.shipped) as fn(&SinkSnapshot) -> u64,
        ),
        ("batches", "Batches delivered by the sink.", |s| s.batches),
        ("failures", "Failed deliveries (each tried again).", |s| {
            s.failures
        }),
        (
            "retried",
            "Lines sent again after the rest of their batch was taken.",
            |s| s.retried,
        ),
        ("rejected", "Lines the server refused for good.", |s| {
            s.rejected
        }),
    ] {
        let metric = format!("capstan_logs_sink_{name}_total");
        out.family(&metric, "counter", help);
        for s in sinks {
            out.sample(&metric, &[("sink", &s.name)], pick(s) as f64);
        }
    }
    out.family(
        "capstan_logs_sink_behind",
        "gauge",
        "Store sequence numbers between the sink's cursor and the newest line.",
    );
    for s in sinks {
        out.sample(
            "capstan_logs_sink_behind",
            &[("sink", &s.name)],
            stats.last_seq.saturating_sub(s.cursor) as f64,
        );
    }
    out.single(
        "capstan_logs_store_partitions",
        "gauge",
        "Hourly partitions of the embedded store.",
        partitions as f64,
    );
    out.single(
        "capstan_logs_store_bytes",
        "gauge",
        "Disk used by the embedded store.",
        store_bytes as f64,
    );
}
